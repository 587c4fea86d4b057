// Internal to src/protocol: request fields several dialects share (sampling, stop, the chat
// reasoning switches).
#pragma once
#include "protocol/types.h"

namespace v4::protocol {

// temperature, top_p, min_p, top_k, seed (validated, naming the field).
void read_sampling(const ojson& body, Request& r);
void write_sampling(const Request& r, ojson& body);
// `key` as a string or an array of at most `max` non-empty strings.
std::vector<std::string> read_stop(const ojson& body, const char* key, size_t max = 4);
// thinking, chat_template_kwargs {thinking, enable_thinking, thinking_mode, reasoning_effort,
// drop_thinking}, thinking_mode, enable_thinking, reasoning_effort: last one wins, effort last.
void read_chat_reasoning(const ojson& body, ReasoningRequest& out);
// The effort names every dialect accepts.
bool known_effort(const std::string& e);
// OpenAI's string form of tool_choice ("auto", "none", "required", shared by Chat Completions and
// Responses) into `out`; false for any other word, so each reader names its own object form.
bool read_tool_choice_word(const std::string& word, ToolChoice& out);
// An OpenAI-style usage object: {<in>, <out>, <in>_details.cached_tokens,
// <out>_details.reasoning_tokens} ("prompt"/"completion" for chat, "input"/"output" for responses).
// A streamed frame's data as a JSON object, else a 502 naming `what` ("chunk", "event").
ojson read_sse_object(const SseFrame& f, const char* what);
// The event's "type" field, else the SSE event name.
std::string sse_event_type(const ojson& j, const SseFrame& f);
Usage read_openai_usage(const ojson& u, const std::string& in, const std::string& out);

}  // namespace v4::protocol
