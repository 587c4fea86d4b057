// One chat generation shared by the OpenAI and Anthropic endpoints: renders the conversation
// with the official V4 encoder, submits it, and turns generated tokens into reasoning, content
// and tool-call deltas (DSML parser), applying stop strings and collecting logprobs.
#pragma once
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "protocol/types.h"
#include "server/chat_params.h"
#include "sched/scheduler.h"
#include "server/stop_strings.h"
#include "text/dsml_parser.h"
#include "text/tokenizer.h"

namespace v4 {

class Service;
class TokenMasker;
class GrammarCache;

// The prompt a chat request is charged for: the official encoder's rendering, tokenized.
// Applies the Think Max fallback (below kThinkMaxCtx the request is served as High, noted in
// *warning). Throws ApiError 400 when the encoder rejects the conversation.
std::string render_chat_prompt(ChatParams& p, int64_t ctx, std::string* warning);

class ChatRun {
 public:
  // Throws ApiError for bad requests (encoding rejects, context overflow, queue full).
  // `masker` null disables constrained decoding; `grammars` (optional) reuses compiled grammars
  // (and their warm token-mask caches) across requests with the same tools / schema.
  ChatRun(ChatParams p, Scheduler& sched, const text::Tokenizer& tok, const TokenMasker* masker, int64_t ctx,
          bool log_prompt, GrammarCache* grammars = nullptr);

  const ChatParams& params() const { return p_; }
  std::shared_ptr<RequestHandle> handle() const { return h_; }
  int prompt_tokens() const { return prompt_tokens_; }
  int completion_tokens() const { return h_->completion_tokens(); }
  int reasoning_tokens() const { return reasoning_tokens_; }
  const std::string& warning() const { return warning_; }

  // Converts new tokens into deltas; sets *stop when a stop string was hit.
  std::vector<text::Delta> feed(const std::vector<TokenEvent>& ev, bool* stop);
  std::vector<text::Delta> finish();

  // "stop" | "length" | "tool_calls" (a valid call was produced); valid after finish().
  std::string finish_reason() const;
  protocol::FinishReason finish_kind() const;
  protocol::Usage usage() const;  // prompt (cached part included), completion, reasoning tokens
  // Parser deltas -> dialect-neutral stream events. Calls of custom (freeform) tools are sent
  // whole at their end, as the raw input.
  std::vector<protocol::StreamEvent> events(const std::vector<text::Delta>& ds);
  // The whole answer (after finish()): reasoning, content, valid calls, failures, usage.
  protocol::Response result() const;
  bool stopped_by_string() const { return stop_.stopped(); }
  const text::ParsedMessage& message() const { return parser_.message(); }
  nlohmann::json logprobs_json(const std::vector<TokenEvent>& ev) const;  // OpenAI chat logprobs.content[]
  int tool_call_failures() const;

 private:
  void route(std::vector<text::Delta>& in, std::vector<text::Delta>& out, bool final);
  ChatParams p_;
  const text::Tokenizer& tok_;
  std::shared_ptr<RequestHandle> h_;
  text::DsmlParser parser_;
  text::StreamDecoder dec_;
  StopMatcher stop_;
  bool is_custom(const std::string& name) const;
  // The parser's error for call i, or a grammar violation of an enforced custom tool.
  const text::ToolCallError* call_error(size_t i) const;
  mutable std::map<size_t, std::optional<text::ToolCallError>> grammar_errors_;
  size_t valid_calls_ = 0, content_len_ = 0;            // so far, in delta order
  std::vector<protocol::Response::TextBreak> text_breaks_;  // text written after valid calls
  std::vector<int> custom_calls_;        // tool-call indexes of custom tools
  std::string custom_args_;              // arguments of the custom call being generated
  int prompt_tokens_ = 0, reasoning_tokens_ = 0;
  bool in_reasoning_;
  int32_t think_end_ = -1;
  std::string warning_;
};

}  // namespace v4
