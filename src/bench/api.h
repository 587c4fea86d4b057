// Wire formats of the four streaming APIs `v4host bench` drives: OpenAI chat completions,
// completions and responses, and Anthropic messages. Builds request bodies from one neutral
// request description and classifies streamed SSE events into reasoning text, answer text, tool
// calls, usage and errors.
//
// Request bodies come from the protocol layer's emitters (src/protocol, the ones `v4host route`
// sends upstream with) plus the bench's extensions (min_tokens / ignore_eos, stream_options,
// --extra-body); streamed events go through the protocol layer's stream readers, except plain
// chat text deltas, which a scan classifies on the hot path (one per piece at thousands of
// pieces per second) with the same result.
#pragma once
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "net/http_client.h"
#include "net/sse_parser.h"
#include "protocol/stream.h"

namespace v4::bench {

using json = nlohmann::json;

enum class Api { chat, completions, responses, messages };
Api parse_api(const std::string& s);  // throws InputError naming --api
const char* api_name(Api a);
const char* api_path(Api a);          // "/chat/completions", ... (appended to the /v1 base)
protocol::Dialect dialect_of(Api a);

// "http://host:8000", "http://host:8000/", "http://host:8000/v1" -> "http://host:8000/v1".
std::string normalize_base_url(const std::string& url);

enum class Reasoning { server_default, off, on, max };
Reasoning parse_reasoning(const std::string& s);  // default|off|on|max
const char* reasoning_name(Reasoning r);

// One request, API-neutral. `messages` are OpenAI chat messages (system/user/assistant with
// optional tool_calls, tool with tool_call_id); completions sends `prompt` (or the messages'
// text joined when empty).
struct GenRequest {
  json messages = json::array();
  std::string prompt;
  int max_tokens = 128;
  bool force_length = false;  // also send min_tokens = max_tokens and ignore_eos (where supported)
  Reasoning reasoning = Reasoning::server_default;
  json tools;                 // OpenAI function tools, or null
  json extra;                 // merged into the body last (--extra-body), or null
};

std::string build_body(Api api, const std::string& model, const GenRequest& r, bool stream = true);
net::ClientHeaders request_headers(Api api, const std::string& api_key);

// Accumulates one streamed response. feed() returns the number of new generated-text pieces this
// event carried (reasoning + answer + tool-call argument deltas; empty deltas do not count).
struct StreamState {
  std::string reasoning, answer;
  int tool_call_deltas = 0;
  int reasoning_pieces = 0, answer_pieces = 0;
  bool last_piece_reasoning = false;
  bool done = false;           // terminator seen ([DONE], message_stop, response.completed)
  std::string finish_reason;
  std::string error;           // an error event's message
  // usage (-1 unknown)
  int prompt_tokens = -1, completion_tokens = -1, reasoning_tokens = -1, cached_tokens = -1;
  int feed(Api api, const net::SseEvent& ev);
  // Neutral events (from the reader, or a whole response) -> the fields above; returns pieces.
  int take(const std::vector<protocol::StreamEvent>& evs);
  void take_usage(const protocol::Usage& u);
  std::unique_ptr<protocol::StreamReader> reader;  // created by the first event that needs it
};

// Non-streaming body -> the same state (used by tests and --no-stream).
void parse_full_response(Api api, const std::string& body, StreamState& st);

}  // namespace v4::bench
