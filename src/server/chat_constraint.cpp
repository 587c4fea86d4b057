#include "server/chat_constraint.h"

#include <map>
#include <mutex>

namespace v4 {

namespace {
// Closing mode's choice: the longest allowed token that is a prefix of `close` (-1 if none).
int32_t closing_token(const TokenMasker& masker, const text::Tokenizer& tok, const GrammarMatcher& m, const std::string& close,
                      std::vector<uint8_t>& allowed) {
  masker.fill(m, allowed);
  int32_t best = -1;
  size_t best_len = 0;
  for (size_t id = 0; id < allowed.size(); ++id) {
    if (!allowed[id]) continue;
    allowed[id] = 0;
    const std::string& b = tok.token_bytes(static_cast<int32_t>(id));
    if (!b.empty() && b.size() > best_len && close.compare(0, b.size(), b) == 0) {
      best = static_cast<int32_t>(id);
      best_len = b.size();
    }
  }
  return best;
}
}  // namespace

int ChatConstraint::min_tokens(const TokenMasker& masker, const text::Tokenizer& tok, const GrammarPtr& grammar) {
  // Cached per grammar (not in Grammar::attached_cache: the masker fills below take that lock).
  static std::mutex mu;
  static std::map<const Grammar*, std::pair<std::weak_ptr<const Grammar>, int>> cache;
  {
    std::lock_guard<std::mutex> lk(mu);
    auto it = cache.find(grammar.get());
    if (it != cache.end() && it->second.first.lock() == grammar) return it->second.second;
  }
  GrammarMatcher m(grammar);
  std::vector<uint8_t> allowed;
  int n = 1;  // EOS
  for (int guard = 0; guard < 100000; ++guard) {
    const std::string close = m.shortest_completion();
    if (close.empty()) break;
    int32_t t = closing_token(masker, tok, m, close, allowed);
    if (t < 0 || !m.accept(tok.token_bytes(t))) {  // cannot happen for a grammar the masker covers
      n += static_cast<int>(close.size());
      break;
    }
    ++n;
  }
  std::lock_guard<std::mutex> lk(mu);
  for (auto it = cache.begin(); it != cache.end();) it = it->second.first.expired() ? cache.erase(it) : std::next(it);
  cache[grammar.get()] = {grammar, n};
  return n;
}

ChatConstraint::ChatConstraint(const TokenMasker& masker, const text::Tokenizer& tok, ChatConstraintSpec spec)
    : masker_(masker), tok_(tok), spec_(std::move(spec)), eos_(masker.eos_id()) {
  think_end_ = tok.token_to_id("</think>").value_or(-1);
  dsml_ = tok.token_to_id("\xEF\xBD\x9C" "DSML" "\xEF\xBD\x9C").value_or(-1);
  answer_min_bytes_ = spec_.grammar ? static_cast<int>(GrammarMatcher(spec_.grammar).shortest_completion().size()) : 0;
  if (spec_.dsml && spec_.grammar) {
    min_call_tokens_ = min_tokens(masker, tok, spec_.grammar);
    block_close_ = "\n</" + tok.token_bytes(dsml_ >= 0 ? dsml_ : 0) + "tool_calls>";
  }
  phase_ = spec_.thinking ? Phase::Reasoning : (spec_.forced ? Phase::Grammar : Phase::Free);
  if (phase_ == Phase::Grammar) engage("");
}

void ChatConstraint::engage(const std::string& already) {
  m_.emplace(spec_.grammar);
  // Replays the block opening the model already wrote; if the grammar rejects it (a variant
  // spelling), the matcher stays at the start of the block.
  if (!already.empty()) m_->accept(already);
  phase_ = Phase::Grammar;
}

bool ChatConstraint::mask(std::vector<uint8_t>& allowed) {
  if (!spec_.grammar) {  // only the tool-call ban
    if (!spec_.ban_tool_calls || dsml_ < 0) return false;
    std::fill(allowed.begin(), allowed.end(), 1);
    allowed[static_cast<size_t>(dsml_)] = 0;
    return true;
  }
  const int left = spec_.max_tokens - generated_;
  switch (phase_) {
    case Phase::Reasoning:
      // Forced answers need room: end the reasoning once its budget is used.
      // (The answer needs at most as many tokens as its shortest completion has bytes.)
      if (spec_.forced && think_end_ >= 0 && (reasoning_ >= spec_.reasoning_budget || left <= 2 + answer_min_bytes_)) {
        std::fill(allowed.begin(), allowed.end(), 0);
        allowed[static_cast<size_t>(think_end_)] = 1;
        return true;
      }
      return false;
    case Phase::Free:
      return false;
    case Phase::Done:
      std::fill(allowed.begin(), allowed.end(), 0);
      allowed[static_cast<size_t>(eos_)] = 1;
      return true;
    case Phase::Grammar:
      break;
  }
  const std::string close = m_->shortest_completion();
  // Between two calls of a tool block: start another only if a complete one still fits
  // (else the block closes here, so no call is ever cut short or left degenerate).
  const bool no_room_for_a_call = spec_.dsml && dsml_ >= 0 && (m_->can_accept(block_close_) || m_->can_accept(std::string_view(block_close_).substr(1))) &&
                                  static_cast<int>(close.size()) + 1 + min_call_tokens_ >= left;
  if (no_room_for_a_call || static_cast<int>(close.size()) + 1 >= left) {
    // Closing mode: only tokens along the shortest completion, so it ends within the budget.
    std::fill(allowed.begin(), allowed.end(), 0);
    if (close.empty()) {
      allowed[static_cast<size_t>(eos_)] = 1;
      return true;
    }
    // Greedy along the completion: the longest allowed token that is a prefix of it.
    const int32_t best = closing_token(masker_, tok_, *m_, close, allowed);
    const bool any = best >= 0;
    if (any) allowed[static_cast<size_t>(best)] = 1;
    if (any) return true;
  }
  masker_.fill(*m_, allowed);
  return true;
}

void ChatConstraint::accept(int32_t token) {
  ++generated_;
  switch (phase_) {
    case Phase::Reasoning:
      if (token == think_end_) {
        phase_ = Phase::Free;
        if (spec_.forced) engage("");
      } else if (token == dsml_ && spec_.grammar && !spec_.forced) {
        engage("\n\n<" + tok_.token_bytes(token));  // a tool block opened inside the reasoning
      } else {
        ++reasoning_;
      }
      return;
    case Phase::Free:
      if (token == dsml_ && spec_.grammar) engage("\n\n<" + tok_.token_bytes(token));
      return;
    case Phase::Grammar:
      if (token == eos_) {
        phase_ = Phase::Done;
        return;
      }
      m_->accept(tok_.token_bytes(token));
      return;
    case Phase::Done:
      return;
  }
}

}  // namespace v4
