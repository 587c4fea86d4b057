#include "server/token_mask.h"

#include <algorithm>
#include <numeric>

#include "core/error.h"

namespace v4 {

TokenMasker::TokenMasker(const std::vector<std::string>& tokens, int32_t eos_id)
    : TokenMasker(tokens, eos_id, Options{}) {}

TokenMasker::TokenMasker(const std::vector<std::string>& tokens, int32_t eos_id, const Options& options)
    : vocab_(tokens.size()), eos_(eos_id) {
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

namespace {
// One step from a single-stack set whose top state only moves by its own bytes (the common case
// inside strings, numbers and literals), else the general step.
inline void step_fast(const Grammar& g, const GrammarMatcher::Stacks& in, uint8_t b, GrammarMatcher::Stacks& out) {
  if (in.size() == 1) {
    const size_t n = in.data.size();
    const uint32_t s = in.data[n - 1];
    if (!g.is_final(s) && !g.has_calls(s)) {
      out.data.clear();
      out.off.resize(1);
      const int32_t t = g.next(s, b);
      if (t >= 0) {
        out.data.assign(in.data.begin(), in.data.end());
        out.data[n - 1] = static_cast<uint32_t>(t);
        out.off.push_back(static_cast<uint32_t>(n));
      }
      return;
    }
  }
  GrammarMatcher::step(g, in, b, out);
}
}  // namespace

void TokenMasker::fill(const GrammarMatcher& m, std::vector<uint8_t>& mask) const {
  mask.assign(vocab_, 0);
  const Grammar& g = *m.grammar();
  thread_local std::vector<GrammarMatcher::Stacks> levels;
  if (levels.size() < max_depth_ + 1) levels.resize(max_depth_ + 1);
  levels[0] = m.stacks();
  const uint32_t n = static_cast<uint32_t>(byte_.size());
  for (uint32_t i = 0; i < n;) {
    const uint16_t d = depth_[i];
    step_fast(g, levels[d - 1], byte_[i], levels[d]);
    if (levels[d].empty()) {
      i = end_[i];
      continue;
    }
    for (uint32_t k = tok_off_[i]; k < tok_off_[i + 1]; ++k) mask[ids_[k]] = 1;
    ++i;
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
