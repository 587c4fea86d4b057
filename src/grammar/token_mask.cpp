#include "grammar/token_mask.h"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <numeric>

#include "core/error.h"

namespace v4 {

TokenMasker::TokenMasker(const std::vector<std::string>& tokens, int32_t eos_id)
    : TokenMasker(tokens, eos_id, Options{}) {}

TokenMasker::TokenMasker(const std::vector<std::string>& tokens, int32_t eos_id, const Options& options)
    : vocab_(tokens.size()), eos_(eos_id) {
  static std::atomic<uint64_t> next_id{1};
  id_ = next_id++;
  if (eos_id < 0 || static_cast<size_t>(eos_id) >= tokens.size())
    throw InputError("TokenMasker: EOS id " + std::to_string(eos_id) + " is outside the vocabulary");
  std::vector<uint8_t> excluded(tokens.size(), 0);
  excluded[eos_id] = 1;
  for (int32_t id : options.special_ids) {
    if (id < 0 || static_cast<size_t>(id) >= tokens.size()) continue;
    const bool keep = std::find(options.allowed_special_texts.begin(), options.allowed_special_texts.end(),
                                tokens[id]) != options.allowed_special_texts.end();
    if (!keep) excluded[id] = 1;
  }
  std::vector<int32_t> order;
  for (size_t i = 0; i < tokens.size(); ++i)
    if (!excluded[i] && !tokens[i].empty()) order.push_back(static_cast<int32_t>(i));
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return tokens[a] < tokens[b]; });

  std::vector<uint32_t> path;  // node index per depth-1
  const std::string* prev = nullptr;
  auto close_to = [&](size_t keep) {
    while (path.size() > keep) {
      end_[path.back()] = static_cast<uint32_t>(byte_.size());
      path.pop_back();
    }
  };
  for (int32_t id : order) {
    const std::string& t = tokens[id];
    size_t lcp = 0;
    if (prev) {
      const size_t lim = std::min(prev->size(), t.size());
      while (lcp < lim && (*prev)[lcp] == t[lcp]) ++lcp;
    }
    close_to(lcp);
    for (size_t k = lcp; k < t.size(); ++k) {
      const uint32_t node = static_cast<uint32_t>(byte_.size());
      byte_.push_back(static_cast<uint8_t>(t[k]));
      depth_.push_back(static_cast<uint16_t>(k + 1));
      end_.push_back(0);
      tok_off_.push_back(static_cast<uint32_t>(ids_.size()));
      path.push_back(node);
    }
    ids_.push_back(id);  // attaches to the deepest node on the path (tokens sorted: contiguous)
    max_depth_ = std::max(max_depth_, t.size());
    prev = &t;
  }
  close_to(0);
  tok_off_.push_back(static_cast<uint32_t>(ids_.size()));
  if (depth_.size() && max_depth_ > 65535) throw InputError("TokenMasker: token longer than 65535 bytes");
}

void TokenMasker::walk(const Grammar& g, uint32_t begin, uint32_t end, const uint32_t* prefix, size_t plen,
                       std::vector<Level>& levels, std::vector<uint8_t>& mask) const {
  thread_local GrammarMatcher::Stacks tmp;
  for (uint32_t i = begin; i < end;) {
    const uint16_t d = depth_[i];
    const Level& p = levels[d - 1];
    Level& c = levels[d];
    const uint8_t b = byte_[i];
    if (p.simple && !g.is_final(p.top) && !g.has_calls(p.top)) {
      const int32_t t = g.next(p.top, b);
      if (t < 0) {
        i = end_[i];
        continue;
      }
      c.simple = true;
      c.top = static_cast<uint32_t>(t);
    } else {
      if (p.simple) {
        tmp.clear();
        tmp.add(prefix, plen, p.top);
        GrammarMatcher::step(g, tmp, b, c.full);
      } else {
        GrammarMatcher::step(g, p.full, b, c.full);
      }
      if (c.full.empty()) {
        i = end_[i];
        continue;
      }
      // Back to the cheap form when the result is one stack over the shared prefix.
      c.simple = c.full.size() == 1 && c.full.data.size() == plen + 1 &&
                 std::equal(prefix, prefix + plen, c.full.data.begin());
      if (c.simple) c.top = c.full.data[plen];
    }
    for (uint32_t k = tok_off_[i]; k < tok_off_[i + 1]; ++k) mask[ids_[k]] = 1;
    ++i;
  }
}

void TokenMasker::walk_stacks(const Grammar& g, const GrammarMatcher::Stacks& stacks, std::vector<uint8_t>& mask) const {
  thread_local std::vector<Level> levels;
  if (levels.size() < max_depth_ + 1) levels.resize(max_depth_ + 1);
  if (stacks.size() == 1) {
    levels[0].simple = true;
    levels[0].top = stacks.data.back();
    walk(g, 0, static_cast<uint32_t>(byte_.size()), stacks.data.data(), stacks.data.size() - 1, levels, mask);
  } else {
    levels[0].simple = false;
    levels[0].full = stacks;
    walk(g, 0, static_cast<uint32_t>(byte_.size()), nullptr, 0, levels, mask);
  }
}

void TokenMasker::fill_uncached(const GrammarMatcher& m, std::vector<uint8_t>& mask) const {
  mask.assign(vocab_, 0);
  walk_stacks(*m.grammar(), m.stacks(), mask);
  mask[eos_] = m.is_complete() ? 1 : 0;
}

// Context-independent part of the mask for a top-of-stack state: the tokens that are consumed
// without ever popping that frame (calls and their returns inside the token are fine), and the
// trie nodes where a path would pop it ("escapes"), which depend on the frames below and are
// walked per request with the real stack.
struct TokenMasker::StateMask {
  bool dense = false;
  std::vector<uint64_t> bits;  // dense: one bit per token id
  std::vector<int32_t> ids;    // sparse
  std::vector<std::pair<uint32_t, uint32_t>> escapes;  // (trie node, state of the popped frame)
};

struct TokenMasker::Cache {
  std::mutex mu;
  std::vector<std::shared_ptr<const StateMask>> states;
  std::vector<uint8_t> visits;  // a state's entry is built on its second visit
};

std::shared_ptr<const TokenMasker::StateMask> TokenMasker::state_mask(const Grammar& g, uint32_t state) const {
  auto cache = std::static_pointer_cast<Cache>(g.attached_cache(id_, [&] {
    auto c = std::make_shared<Cache>();
    c->states.resize(g.num_states());
    c->visits.resize(g.num_states());
    return std::static_pointer_cast<void>(c);
  }));
  {
    std::lock_guard<std::mutex> lock(cache->mu);
    if (cache->states[state]) return cache->states[state];
    // First visit: the caller walks the trie directly (as cheap as building the entry); states
    // seen once (e.g. positions inside a length-limited string) never pay for an entry.
    if (cache->visits[state]++ == 0) return nullptr;
  }
  auto sm = std::make_shared<StateMask>();
  thread_local std::vector<GrammarMatcher::Stacks> levels;
  if (levels.size() < max_depth_ + 1) levels.resize(max_depth_ + 1);
  levels[0].clear();
  levels[0].add(nullptr, 0, state);
  std::vector<uint32_t> esc;
  std::vector<int32_t> ids;
  const uint32_t n = static_cast<uint32_t>(byte_.size());
  for (uint32_t i = 0; i < n;) {
    const uint16_t d = depth_[i];
    esc.clear();
    GrammarMatcher::step(g, levels[d - 1], byte_[i], levels[d], &esc);
    for (uint32_t e : esc) sm->escapes.emplace_back(i, e);
    if (levels[d].empty()) {
      i = end_[i];
      continue;
    }
    for (uint32_t k = tok_off_[i]; k < tok_off_[i + 1]; ++k) ids.push_back(ids_[k]);
    ++i;
  }
  if (ids.size() * 32 > vocab_) {
    sm->dense = true;
    sm->bits.assign((vocab_ + 63) / 64, 0);
    for (int32_t id : ids) sm->bits[id >> 6] |= uint64_t{1} << (id & 63);
  } else {
    sm->ids = std::move(ids);
  }
  std::lock_guard<std::mutex> lock(cache->mu);
  if (!cache->states[state]) cache->states[state] = sm;
  return cache->states[state];
}

void TokenMasker::fill(const GrammarMatcher& m, std::vector<uint8_t>& mask) const {
  const auto& stacks = m.stacks();
  for (size_t k = 0; k < stacks.size(); ++k)
    if (stacks.off[k + 1] - stacks.off[k] > GrammarMatcher::kMaxDepth / 2) return fill_uncached(m, mask);
  mask.assign(vocab_, 0);
  const Grammar& g = *m.grammar();
  thread_local std::vector<Level> levels;
  if (levels.size() < max_depth_ + 1) levels.resize(max_depth_ + 1);
  thread_local GrammarMatcher::Stacks one;
  for (size_t k = 0; k < stacks.size(); ++k) {
    const uint32_t* st = stacks.data.data() + stacks.off[k];
    const size_t n = stacks.off[k + 1] - stacks.off[k];
    const auto sm = state_mask(g, st[n - 1]);
    if (!sm) {
      one.clear();
      one.add(st, n - 1, st[n - 1]);
      walk_stacks(g, one, mask);
      continue;
    }
    if (sm->dense) {
      for (size_t w = 0; w < sm->bits.size(); ++w) {
        uint64_t x = sm->bits[w];
        if (x == ~uint64_t{0}) {
          const size_t lo = w * 64, hi = std::min(vocab_, lo + 64);
          std::fill(mask.begin() + lo, mask.begin() + hi, 1);
          continue;
        }
        while (x) {
          mask[w * 64 + static_cast<size_t>(__builtin_ctzll(x))] = 1;
          x &= x - 1;
        }
      }
    } else {
      for (int32_t id : sm->ids) mask[id] = 1;
    }
    if (n == 1) continue;  // the bottom frame cannot be popped: escapes lead nowhere
    for (auto [node, state] : sm->escapes) {
      auto& lv = levels[depth_[node] - 1];
      lv.simple = true;
      lv.top = state;
      walk(g, node, end_[node], st, n - 1, levels, mask);
    }
  }
  mask[eos_] = m.is_complete() ? 1 : 0;
}

std::vector<int32_t> TokenMasker::allowed(const GrammarMatcher& m) const {
  std::vector<uint8_t> mask;
  fill(m, mask);
  std::vector<int32_t> ids;
  for (size_t i = 0; i < mask.size(); ++i)
    if (mask[i]) ids.push_back(static_cast<int32_t>(i));
  return ids;
}

}  // namespace v4
