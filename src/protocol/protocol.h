// The protocol layer in one include: parse a request / response in any dialect, emit it in any
// other, stream writers and readers by dialect. See types.h for the neutral form and the
// field-by-field mapping between dialects.
//
//   Request req = protocol::parse_request(Dialect::AnthropicMessages, body);   // client side
//   ojson upstream = protocol::emit_request(Dialect::Responses, req);           // to an upstream
//   Response res = protocol::parse_response(Dialect::Responses, upstream_answer);
//   ojson back = protocol::emit_response(Dialect::AnthropicMessages, res, req);
//   auto reader = make_stream_reader(Dialect::Responses);                       // upstream SSE
//   auto writer = make_stream_writer(Dialect::AnthropicMessages, meta);         // client SSE
//   for (frame : decoder.feed(bytes)) for (ev : reader->read(frame)) send(writer->write(ev));
#pragma once
#include "protocol/anthropic.h"
#include "protocol/openai_chat.h"
#include "protocol/openai_completions.h"
#include "protocol/openai_responses.h"
#include "protocol/stream.h"
#include "protocol/types.h"

namespace v4::protocol {

Request parse_request(Dialect d, const ojson& body);
ojson emit_request(Dialect d, const Request& r);
Response parse_response(Dialect d, const ojson& body);
// `req`: the request being answered (the Responses object echoes its fields; others ignore it).
ojson emit_response(Dialect d, const Response& r, const Request& req = {});

// The request path of a dialect ("/v1/chat/completions", …) and back (nullopt if none).
const char* dialect_path(Dialect d);
std::optional<Dialect> dialect_for_path(std::string_view path);

}  // namespace v4::protocol
