// OpenAI Responses (POST /v1/responses): requests (string or item input, instructions,
// function / custom tools, tool_choice, reasoning, text.format, store, previous_response_id,
// include, prompt_cache_key), the response object and its event stream, both directions.
//
// Input items → messages: `message` items (roles user / assistant / system / developer;
// input_text / output_text / refusal parts), `function_call` / `custom_tool_call` (joined to
// the assistant turn they follow), `function_call_output` / `custom_tool_call_output` (tool
// results), `reasoning` (summary, content, encrypted_content: attached to the next assistant
// turn). Tool types other than function / custom (web_search, namespace, image_generation,
// file_search, mcp, local_shell, …) are kept as Tool::Kind::Other and listed in `notes`.
//
// Output: a `reasoning` item (the reasoning as `content` reasoning_text, or as `summary`
// summary_text when reasoning.summary asks for one; `encrypted_content` when set), a `message`
// item with one output_text part, then `function_call` / `custom_tool_call` items. The stream:
// response.created, response.in_progress, per item output_item.added → (content_part.added /
// reasoning_summary_part.added, *.delta…, *.done, content_part.done) → output_item.done, and
// exactly one of response.completed / response.incomplete / response.failed; every event has a
// sequence_number. Tool-call items are sent whole once the call is complete and valid (a call
// that fails to parse or validate is left out and noted), so a client never sees a broken call.
#pragma once
#include <functional>

#include "protocol/stream.h"
#include "protocol/types.h"

namespace v4::protocol::responses {

Request parse_request(const ojson& body);
ojson emit_request(const Request& r);
Response parse_response(const ojson& body);
// The response object; `req` supplies the echoed request fields (instructions, tools, …).
// status: completed, or incomplete (FinishReason::Length) or failed (FinishReason::Error).
ojson emit_response(const Response& r, const Request& req);
ojson usage_json(const Usage& u);
Usage parse_usage(const ojson& u);
// The output items of `r` (what the next request's `input` carries back).
ojson output_items(const Response& r, const Request& req);

// reasoning.summary asks for a summary: the reasoning is delivered as summary_text.
bool wants_summary(const Request& req);

class StreamWriter final : public protocol::StreamWriter {
 public:
  explicit StreamWriter(StreamMeta meta);
  std::vector<SseFrame> write(const StreamEvent& e) override;
  bool complete() const override { return done_; }
  const Response& response() const { return r_; }  // the object as sent in the terminal event

 private:
  SseFrame ev(const char* type, ojson j);
  void close_open(std::vector<SseFrame>& out, const std::string& encrypted);
  void open_reasoning(std::vector<SseFrame>& out);
  void open_message(std::vector<SseFrame>& out, size_t k);
  ojson snapshot(const char* status) const;
  StreamMeta m_;
  Response r_;
  bool done_ = false, started_ = false, summary_;
  int64_t seq_ = 0;
  int output_index_ = -1;
  std::string open_;  // "", "reasoning", "message"
  std::string msg_id_;       // the open message item (one per stretch of text between calls)
  size_t msg_start_ = 0;     // where its text starts in r_.content
  bool message_opened_ = false;
  struct PendingCall { int index; ToolCall call; };
  std::vector<PendingCall> pending_;
};

class StreamReader final : public protocol::StreamReader {
 public:
  std::vector<StreamEvent> read(const SseFrame& f) override;
  std::vector<StreamEvent> end() override;
  bool complete() const override { return done_; }

 private:
  bool done_ = false, started_ = false;
  int calls_ = 0;
  struct Open { std::string item_id; int call; bool custom; bool got_delta; };
  std::vector<Open> open_;
};

}  // namespace v4::protocol::responses
