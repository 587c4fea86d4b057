// The way in for the common case: a Chat Completions client in front of a Chat Completions
// upstream. Instead of emitting the wire request from the neutral protocol form (protocol types →
// JSON document → text), the client's own body bytes are copied with the few members the router
// must set replaced: the model name, "stream": true with usage, the reasoning switch in the
// upstream's dialect. The protocol layer has still parsed and validated the request (every 4xx is
// unchanged); this only skips the re-emit.
//
// It applies to "plain" bodies only — those whose re-emit would carry the same members with the
// same values, so the upstream receives a request that is semantically identical (tested against
// the emit path member by member): top-level members out of a known list (messages, max_tokens,
// the sampling fields, stop as an array, user, prompt_cache_key; model, stream, stream_options,
// the reasoning switches, n, metadata and store are replaced or dropped as the emit path does), messages with string (or, for assistant turns, null) content and no tool calls or
// reasoning_content, no null values, no duplicate or escaped top-level keys. Anything else
// (tools, content parts, tool turns, response_format, chat_template_kwargs, unknown fields…)
// returns false and takes the emit path.
#pragma once
#include <string>
#include <string_view>

#include "protocol/types.h"
#include "router/config.h"

namespace v4::router {

// `raw`: the client's body as received; `body`: that body parsed; `req`: parse_request's result.
// On success `out` is the wire body for upstream `u`.
bool edit_chat_body(const Upstream& u, const protocol::Request& req, const protocol::ojson& body, std::string_view raw, std::string& out);

}  // namespace v4::router
