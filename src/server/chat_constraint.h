// The TokenConstraint of a chat request: free reasoning, then — depending on the request — a
// forced DSML tool block (tool_choice required / named), JSON output (response_format), or a
// tool-call grammar that engages lazily when the model opens a DSML block (tool_choice auto).
// When the token budget is about to run out the grammar is closed along its shortest
// completion, so a constrained output is always complete and valid.
#pragma once
#include <optional>
#include <string>

#include "grammar/grammar.h"
#include "sched/scheduler.h"
#include "grammar/token_mask.h"
#include "text/tokenizer.h"

namespace v4 {

struct ChatConstraintSpec {
  GrammarPtr grammar;            // what the answer must match once it starts
  bool forced = false;           // the answer must be `grammar` (else: lazy tool block)
  bool thinking = false;         // output starts in reasoning
  int max_tokens = 0;
  int reasoning_budget = 0;      // forced mode: </think> is forced after this many reasoning tokens
  bool ban_tool_calls = false;   // tool_choice "none": the DSML marker is never sampled
  bool dsml = false;             // `grammar` is the DSML tool block: between two calls, another
                                 // call is only started when a complete one still fits
};

class ChatConstraint : public TokenConstraint {
 public:
  ChatConstraint(const TokenMasker& masker, const text::Tokenizer& tok, ChatConstraintSpec spec);
  bool mask(std::vector<uint8_t>& allowed) override;
  void accept(int32_t token) override;

  // Tokens the closing mode needs to write `grammar` from its start to the end (EOS included):
  // the least budget a forced answer can have. Cached on the grammar.
  static int min_tokens(const TokenMasker& masker, const text::Tokenizer& tok, const GrammarPtr& grammar);

 private:
  enum class Phase { Reasoning, Free, Grammar, Done };
  void engage(const std::string& already);
  const TokenMasker& masker_;
  const text::Tokenizer& tok_;
  ChatConstraintSpec spec_;
  Phase phase_;
  std::optional<GrammarMatcher> m_;
  int generated_ = 0, reasoning_ = 0;
  int answer_min_bytes_ = 0;
  int min_call_tokens_ = 0;  // dsml: a whole block with one shortest call, in tokens
  std::string block_close_;  // dsml: what ends the block between two calls
  int32_t think_end_ = -1, dsml_ = -1, eos_;
};

}  // namespace v4
