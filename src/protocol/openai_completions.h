// OpenAI legacy Completions (POST /v1/completions): raw prompt (a string, [string] or token
// ids), text choices, `text_completion` stream; both directions. Response text travels in
// Response::content; Completions logprobs are the server's own business (not translated).
#pragma once
#include "protocol/stream.h"
#include "protocol/types.h"

namespace v4::protocol::completions {

Request parse_request(const ojson& body);
ojson emit_request(const Request& r);   // messages (if any) are flattened into the prompt text
Response parse_response(const ojson& body);
ojson emit_response(const Response& r);

class StreamWriter final : public protocol::StreamWriter {
 public:
  explicit StreamWriter(StreamMeta meta) : m_(std::move(meta)) {}
  std::vector<SseFrame> write(const StreamEvent& e) override;
  bool complete() const override { return done_; }

 private:
  SseFrame chunk(const std::string& text, ojson finish) const;
  StreamMeta m_;
  bool done_ = false;
};

class StreamReader final : public protocol::StreamReader {
 public:
  std::vector<StreamEvent> read(const SseFrame& f) override;
  std::vector<StreamEvent> end() override;
  bool complete() const override { return done_; }

 private:
  bool started_ = false, done_ = false;
  std::optional<StreamEvent> finish_;
  // Usage that came before (or in the same chunk as) the finish_reason: vLLM's continuous usage
  // stats put it in every chunk, so it is kept for the finish rather than dropped.
  Usage pending_usage_;
};

}  // namespace v4::protocol::completions
