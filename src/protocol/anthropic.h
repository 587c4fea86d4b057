// Anthropic Messages (POST /v1/messages, /v1/messages/count_tokens): requests, responses and
// the event stream (message_start, content_block_start/delta/stop, message_delta,
// message_stop, ping, error), both directions.
//
// Requests: `system` (string or text blocks; Claude Code's per-request
// "x-anthropic-billing-header" block is dropped so the prompt prefix stays cacheable),
// messages with role user / assistant / system (a system turn in the middle stays where it is),
// text / tool_use / tool_result / thinking / redacted_thinking blocks, tools with input_schema
// (server tools such as web_search_* are kept as Tool::Kind::Other and noted), tool_choice,
// thinking {type, budget_tokens}; no thinking unless asked for (Anthropic semantics).
#pragma once
#include "protocol/stream.h"
#include "protocol/types.h"

namespace v4::protocol::anthropic {

// `for_count`: a count_tokens body (max_tokens not required).
Request parse_request(const ojson& body, bool for_count = false);
ojson emit_request(const Request& r);
Response parse_response(const ojson& body);
ojson emit_response(const Response& r);
ojson usage_json(const Usage& u);  // input_tokens (not cached), cache_read_input_tokens, cache_creation_input_tokens, output_tokens
Usage parse_usage(const ojson& u);
const char* stop_reason(FinishReason f);  // end_turn | max_tokens | tool_use | stop_sequence | refusal
FinishReason parse_stop_reason(const ojson& s);

class StreamWriter final : public protocol::StreamWriter {
 public:
  explicit StreamWriter(StreamMeta meta) : m_(std::move(meta)) {}
  std::vector<SseFrame> write(const StreamEvent& e) override;
  bool complete() const override { return done_; }

 private:
  void start(std::vector<SseFrame>& out, const Usage& u);
  void open(std::vector<SseFrame>& out, const std::string& kind, ojson block);
  void close(std::vector<SseFrame>& out);
  StreamMeta m_;
  bool started_ = false, done_ = false;
  int index_ = -1;
  std::string open_;  // "", "thinking", "text", "tool_use"
  struct Pending { int index; std::string id, name, input; };
  std::vector<Pending> pending_;
};

class StreamReader final : public protocol::StreamReader {
 public:
  std::vector<StreamEvent> read(const SseFrame& f) override;
  std::vector<StreamEvent> end() override;
  bool complete() const override { return done_; }

 private:
  bool done_ = false;
  Usage usage_;
  FinishReason finish_ = FinishReason::Stop;
  std::string stop_sequence_;
  struct Block { std::string type; int call = -1; };
  std::vector<Block> blocks_;  // by content block index
  int calls_ = 0;
};

}  // namespace v4::protocol::anthropic
