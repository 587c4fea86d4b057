#pragma once
// Internal to the Responses dialect: the output items (messages, reasoning, tool calls) and the
// response object, built the same way by the non-streaming emitter (openai_responses.cpp) and by
// the stream writer's snapshots and item events (openai_responses_stream.cpp), so that a streamed
// answer's final response.completed equals the non-streaming body.
#include <string>

#include "protocol/openai_responses.h"

namespace v4::protocol::responses::items {

// The id a ToolCall travels under as a Responses item: its own item id, else fc_… / ctc_… from the call id.
std::string item_id_for(const ToolCall& c);
// A function_call / custom_tool_call item with the given status.
ojson call_item(const ToolCall& c, const char* status);
// A reasoning item: text as a summary part when the client asked for summaries, else as content.
ojson reasoning_item(const std::string& id, const std::string& text, bool summary, const std::string& encrypted);
// An assistant message item holding one output_text part.
ojson message_item(const std::string& id, const std::string& text, const char* status);
// prefix + the response id without its resp_ prefix (rs_…, msg_… ids derived from the response's).
std::string default_id(const std::string& prefix, const std::string& resp_id);
// The id of the k-th message item (k > 0: text after tool calls).
std::string message_id(const Response& r, size_t k);
// The response object with `status` and `output`, echoing the request's settings as the API does.
ojson response_object(const Response& r, const Request& req, const char* status, const ojson& output);
// "completed", "incomplete" or "failed" from the finish reason.
const char* status_of(const Response& r);

}  // namespace v4::protocol::responses::items
