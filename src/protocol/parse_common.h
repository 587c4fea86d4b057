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

}  // namespace v4::protocol
