// The dialect-neutral form of a generation request, its result and its stream of events, shared
// by `v4host serve` (parse a client's request, emit the answer) and `v4host route` (parse a
// client's request in one dialect, emit it upstream in another, translate the answer back).
//
// Dialects: OpenAI Chat Completions, OpenAI (legacy) Completions, OpenAI Responses, Anthropic
// Messages. Each has parse_* / emit_* functions for requests, responses and SSE streams in its
// own header (openai_chat.h, openai_completions.h, openai_responses.h, anthropic.h); protocol.h
// dispatches by Dialect. What maps onto what:
//
//   chat messages            Responses input items              Anthropic messages
//   system/developer msg     message role system/developer,     `system`, or role "system" inside
//                            `instructions`                     `messages`
//   assistant.tool_calls     function_call / custom_tool_call   tool_use blocks
//   tool message             function_call_output /             tool_result block (user turn)
//                            custom_tool_call_output
//   reasoning_content        reasoning item (content /          thinking block (+ signature)
//                            summary / encrypted_content)
//   usage prompt/completion  input/output tokens                input (not cached) + cache_read
//
// Everything here is plain data; no I/O.
#pragma once
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "text/py_json.h"

namespace v4::protocol {

using ojson = nlohmann::ordered_json;

enum class Dialect { ChatCompletions, Completions, Responses, AnthropicMessages };
const char* dialect_name(Dialect d);  // "chat_completions", "completions", "responses", "anthropic_messages"

// Serialises JSON for the wire; ill-formed UTF-8 (model output can hold it) becomes U+FFFD.
// Request values are parsed exactly (text::parse_json_exact keeps big integers), so echoed ones
// (tool schemas, response formats) are written back digit for digit.
inline std::string wire(const ojson& j) { return text::json_dump_exact(j); }

// A client's request (or an upstream's answer) that does not fit its dialect: `param` names the
// field (e.g. "messages[2].content[0].type"), `status` is the HTTP status to answer with.
struct ProtocolError : std::runtime_error {
  std::string param, code;
  int status;
  ProtocolError(std::string param_, const std::string& message, int status_ = 400, std::string code_ = "")
      : std::runtime_error(message), param(std::move(param_)), code(std::move(code_)), status(status_) {}
};

enum class Role { System, Developer, User, Assistant, Tool };
const char* role_name(Role r);

struct ToolCall {
  std::string id;         // chat tool_call id / Anthropic tool_use id / Responses call_id
  std::string item_id;    // Responses output item id (fc_…/ctc_…); empty elsewhere
  std::string name;
  bool custom = false;    // freeform input (custom tool): `arguments` is raw text, not JSON
  std::string arguments;  // function: a JSON object as text; custom: the raw input
};

// An image part of a message. V4 reads text only: `serve` refuses (Chat Completions) or drops
// (Responses, Messages, with a warning) them; the router carries them to upstreams that take
// images, where an `images: true` rule sends such requests.
struct Image {
  std::string url;     // http(s) URL, or a data: URL (an Anthropic base64 source is carried as one)
  std::string detail;  // OpenAI's "auto" | "low" | "high"; "" = not given
};

struct Message {
  Role role = Role::User;
  std::string text;          // text content (parts joined with "\n"); tool result text for Role::Tool
  bool has_text = true;      // false: content was null / absent (assistant with only tool calls)
  // Assistant reasoning (reasoning_content / thinking block / reasoning item).
  std::optional<std::string> reasoning;
  std::string reasoning_signature;   // Anthropic thinking signature, echoed back
  std::string reasoning_encrypted;   // Responses encrypted_content as received (opaque here)
  std::string reasoning_item_id;     // Responses reasoning item id
  std::vector<ToolCall> tool_calls;  // assistant
  // Role::Tool: the result of call `tool_call_id`.
  std::string tool_call_id;
  bool is_error = false;             // Anthropic tool_result is_error
  bool custom_output = false;        // Responses custom_tool_call_output
  std::string name;                  // optional participant / tool name
  std::vector<Image> images;         // user (and system) content images, in order, before the text
  std::vector<std::string> dropped;  // content the dialect had but cannot be carried ("input_audio", "document", ...)
};

struct Tool {
  enum class Kind { Function, Custom, Other };
  Kind kind = Kind::Function;
  std::string type = "function";  // as sent: "function", "custom", "web_search", "namespace", …
  std::string name, description;
  ojson parameters;               // function: JSON Schema of the arguments (null = none given)
  std::optional<bool> strict;
  ojson format;                   // custom: null | {"type": "text"} | {"type": "grammar", "syntax", "definition"}
  ojson raw;                      // Other: the entry as received (router passthrough)
};

struct ToolChoice {
  enum class Mode { Unset, Auto, None, Required, Named };
  Mode mode = Mode::Unset;
  std::string name;  // Named
};

struct ResponseFormat {
  std::string type = "text";  // text | json_object | json_schema
  ojson schema;               // json_schema
  std::string name;
  std::optional<bool> strict;
};

// Every way the dialects ask for reasoning, reduced: `enabled` from explicit switches
// (thinking: enabled/disabled, chat_template_kwargs, enable_thinking, …), `effort` as sent
// (none | minimal | low | medium | high | xhigh | max); the effort wins where both are given.
struct ReasoningRequest {
  std::optional<bool> enabled;
  std::string effort;
  std::optional<bool> drop_thinking;   // chat_template_kwargs.drop_thinking
  std::string summary;                 // Responses reasoning.summary (auto | concise | detailed | none)
  std::optional<int64_t> budget_tokens;  // Anthropic thinking.budget_tokens
};

struct Request {
  Dialect dialect = Dialect::ChatCompletions;  // what it was parsed from
  std::string model;
  std::vector<Message> messages;  // system/instructions first where the dialect has them apart
  std::vector<Tool> tools;
  ToolChoice tool_choice;
  std::optional<bool> parallel_tool_calls;
  ReasoningRequest reasoning;
  ResponseFormat response_format;
  std::optional<int64_t> max_tokens;   // max_tokens / max_completion_tokens / max_output_tokens
  std::optional<double> temperature, top_p, min_p;
  std::optional<int64_t> top_k, seed;
  std::vector<std::string> stop;       // stop / stop_sequences
  bool stream = false;
  bool include_usage = false;          // chat stream_options.include_usage
  bool logprobs = false;               // chat
  int top_logprobs = 0;
  // Completions.
  std::string prompt;
  std::vector<int32_t> prompt_ids;
  bool prompt_is_ids = false;
  bool echo = false;
  int completion_logprobs = -1;
  // Responses.
  std::optional<bool> store;
  std::string previous_response_id;
  std::vector<std::string> include;    // e.g. "reasoning.encrypted_content"
  std::string prompt_cache_key;
  std::string instructions;            // also present as the first system message
  std::string text_verbosity;
  ojson metadata;                      // echoed back (Responses, Anthropic metadata)
  std::string user, service_tier;
  // What the request carried that this server accepts and ignores (unsupported tool types, …).
  std::vector<std::string> notes;
};

enum class FinishReason { Stop, Length, ToolCalls, StopSequence, ContentFilter, Error };
const char* finish_reason_name(FinishReason f);  // chat names: stop, length, tool_calls, stop (for StopSequence), content_filter, error

// Token counts. `input_tokens` counts the whole prompt, cached part included.
struct Usage {
  int64_t input_tokens = 0, cached_tokens = 0, output_tokens = 0, reasoning_tokens = 0;
  int64_t cache_creation_tokens = 0;  // Anthropic cache_creation_input_tokens
  int64_t total() const { return input_tokens + output_tokens; }
};

// A tool call the model made that failed to parse or validate (reported, not returned as a call).
struct ToolCallFailure {
  int index = -1;
  std::string id, name;
  ojson error;  // {"type": "invalid_tool_call", "code", "message", "errors": [...]}
};

struct Response {
  std::string id, model;
  int64_t created = 0;
  std::optional<std::string> reasoning;  // absent in non-thinking mode
  std::string reasoning_encrypted;       // Responses encrypted_content / Anthropic signature
  std::string reasoning_item_id;
  std::string content;
  std::string message_item_id;           // Responses message item id
  // Text written after tool calls: content[offset ..] (up to the next break) came after the
  // first `calls` entries of tool_calls. Responses gives each such stretch its own message
  // item after those calls (ids message_item_id + "_1", "_2", …); other dialects keep `content`
  // whole.
  struct TextBreak {
    size_t offset = 0;
    size_t calls = 0;
  };
  std::vector<TextBreak> text_breaks;
  std::vector<ToolCall> tool_calls;
  std::vector<ToolCallFailure> failures;
  FinishReason finish = FinishReason::Stop;
  std::string stop_sequence;             // FinishReason::StopSequence: which one
  Usage usage;
  ojson logprobs;                        // chat choices[0].logprobs, or null
  std::string error_message, error_code; // FinishReason::Error
  std::vector<std::string> notes;        // ignored request parts, server warnings
  // Responses object fields echoed from the request.
  std::string previous_response_id, instructions;
  bool store = false;
  ojson request_echo;                    // tools, tool_choice, … as the Responses object shows them
};

// One step of a streamed answer, dialect-neutral. A stream is
//   Start, (ReasoningDelta | TextDelta | ToolCallStart ToolCallDelta* ToolCallEnd)*, (Finish | Error)
// with at most one Finish or Error, last.
struct StreamEvent {
  enum class Kind { Start, ReasoningDelta, TextDelta, ToolCallStart, ToolCallDelta, ToolCallEnd, Logprobs, Finish, Error };
  Kind kind = Kind::TextDelta;
  std::string text;         // Reasoning/Text delta; ToolCallDelta argument fragment; Error message
  int index = -1;           // tool call index (0-based, per response)
  std::string id, name;     // ToolCallStart: call id and tool name
  bool custom = false;      // ToolCallStart: freeform tool
  ojson error;              // ToolCallEnd: the failure when the call is invalid (null = valid)
  std::string code;         // Error: error code
  FinishReason finish = FinishReason::Stop;  // Finish
  std::string stop_sequence;
  Usage usage;              // Start: input side known so far; Finish: final
  ojson logprobs;           // Logprobs: chat logprobs.content entries
  std::string encrypted;    // Finish (Responses): the reasoning blob to attach, if requested

  static StreamEvent start(Usage u = {}) { StreamEvent e; e.kind = Kind::Start; e.usage = u; return e; }
  static StreamEvent reasoning(std::string t) { StreamEvent e; e.kind = Kind::ReasoningDelta; e.text = std::move(t); return e; }
  static StreamEvent content(std::string t) { StreamEvent e; e.kind = Kind::TextDelta; e.text = std::move(t); return e; }
  static StreamEvent tool_start(int index, std::string id, std::string name, bool custom = false) {
    StreamEvent e; e.kind = Kind::ToolCallStart; e.index = index; e.id = std::move(id); e.name = std::move(name); e.custom = custom; return e;
  }
  static StreamEvent tool_delta(int index, std::string frag) { StreamEvent e; e.kind = Kind::ToolCallDelta; e.index = index; e.text = std::move(frag); return e; }
  static StreamEvent tool_end(int index, ojson err = nullptr) { StreamEvent e; e.kind = Kind::ToolCallEnd; e.index = index; e.error = std::move(err); return e; }
  static StreamEvent finished(FinishReason f, Usage u) { StreamEvent e; e.kind = Kind::Finish; e.finish = f; e.usage = u; return e; }
  static StreamEvent failed(std::string message, std::string code = "server_error") {
    StreamEvent e; e.kind = Kind::Error; e.text = std::move(message); e.code = std::move(code); return e;
  }
};

// One server-sent event: `event:` name (empty = none) and its `data:` payload.
struct SseFrame {
  std::string event, data;
  std::string wire() const;  // "event: …\ndata: …\n\n" (multi-line data split into data: lines)
  bool operator==(const SseFrame&) const = default;
};

// Incremental text/event-stream decoder: feed bytes as they arrive (any split), get complete
// events. Comments (": keep-alive") are dropped; CRLF and LF both end lines.
class SseDecoder {
 public:
  std::vector<SseFrame> feed(std::string_view bytes);
  std::vector<SseFrame> finish();  // an unterminated last event, if any
 private:
  void line(std::string_view l, std::vector<SseFrame>& out);
  std::string buf_, event_, data_;
  bool has_data_ = false;
};

// Assembles a Response from the events of a stream (what a non-streaming client would have got).
class ResponseAccumulator {
 public:
  void add(const StreamEvent& e);
  const Response& response() const { return r_; }
  Response& response() { return r_; }
  bool finished() const { return done_; }
 private:
  Response r_;
  std::vector<int> index_;  // stream index of each call in r_.tool_calls
  bool done_ = false;
};

}  // namespace v4::protocol
