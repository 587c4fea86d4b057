// OpenAI Chat Completions (POST /v1/chat/completions): requests, responses and the
// `chat.completion.chunk` stream, both directions. Extensions kept: `reasoning_content` (also
// read as `reasoning`), `thinking`, `chat_template_kwargs`, `enable_thinking`, `thinking_mode`,
// `reasoning_effort`, `tool_call_errors` (calls that failed to parse/validate), custom tools.
#pragma once
#include "protocol/stream.h"
#include "protocol/types.h"

namespace v4::protocol::chat {

Request parse_request(const ojson& body);    // throws ProtocolError naming the field
ojson emit_request(const Request& r);
Response parse_response(const ojson& body);  // throws ProtocolError (502) on a malformed answer
ojson emit_response(const Response& r);
ojson usage_json(const Usage& u);
FinishReason parse_finish(const ojson& finish_reason);
Usage parse_usage(const ojson& u);

class StreamWriter final : public protocol::StreamWriter {
 public:
  explicit StreamWriter(StreamMeta meta) : m_(std::move(meta)) {}
  std::vector<SseFrame> write(const StreamEvent& e) override;
  bool complete() const override { return done_; }

 private:
  SseFrame chunk(ojson delta, ojson finish = nullptr, ojson logprobs = nullptr) const;
  StreamMeta m_;
  bool started_ = false, done_ = false;
  std::vector<int> custom_;  // indexes of custom (freeform) calls: deltas go to custom.input
};

class StreamReader final : public protocol::StreamReader {
 public:
  std::vector<StreamEvent> read(const SseFrame& f) override;
  std::vector<StreamEvent> end() override;
  bool complete() const override { return done_; }

 private:
  bool started_ = false, done_ = false;
  std::optional<StreamEvent> finish_;  // held until the usage chunk or [DONE]
  std::vector<int> open_;              // tool call indexes started and not yet ended
  std::vector<int> ended_;
  Usage pending_usage_;
  std::vector<StreamEvent> close_calls();
};

}  // namespace v4::protocol::chat
