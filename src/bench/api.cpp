#include "bench/api.h"

#include <cstring>

#include "core/error.h"
#include "protocol/protocol.h"

namespace v4::bench {

Api parse_api(const std::string& s) {
  if (s == "chat") return Api::chat;
  if (s == "completions") return Api::completions;
  if (s == "responses") return Api::responses;
  if (s == "messages") return Api::messages;
  throw InputError("--api must be chat, completions, responses or messages (got '" + s + "')");
}

const char* api_name(Api a) {
  switch (a) {
    case Api::chat: return "chat";
    case Api::completions: return "completions";
    case Api::responses: return "responses";
    case Api::messages: return "messages";
  }
  return "?";
}

const char* api_path(Api a) {
  switch (a) {
    case Api::chat: return "/chat/completions";
    case Api::completions: return "/completions";
    case Api::responses: return "/responses";
    case Api::messages: return "/messages";
  }
  return "";
}

std::string normalize_base_url(const std::string& url) {
  std::string u = url;
  while (!u.empty() && u.back() == '/') u.pop_back();
  for (const char* suffix : {"/chat/completions", "/completions", "/responses", "/messages"})
    if (u.size() > std::strlen(suffix) && u.compare(u.size() - std::strlen(suffix), std::string::npos, suffix) == 0) {
      u.resize(u.size() - std::strlen(suffix));
      break;
    }
  net::Url::parse(u);  // validates (throws InputError)
  if (u.size() < 3 || u.compare(u.size() - 3, 3, "/v1") != 0) {
    auto p = net::Url::parse(u);
    if (p.target == "/") u += "/v1";
  }
  return u;
}

Reasoning parse_reasoning(const std::string& s) {
  if (s == "default" || s.empty()) return Reasoning::server_default;
  if (s == "off" || s == "none" || s == "chat") return Reasoning::off;
  if (s == "on" || s == "thinking" || s == "high") return Reasoning::on;
  if (s == "max") return Reasoning::max;
  throw InputError("reasoning mode must be default, off, on or max (got '" + s + "')");
}

const char* reasoning_name(Reasoning r) {
  switch (r) {
    case Reasoning::server_default: return "default";
    case Reasoning::off: return "off";
    case Reasoning::on: return "on";
    case Reasoning::max: return "max";
  }
  return "?";
}

namespace {

std::string text_of(const json& content) {
  if (content.is_string()) return content.get<std::string>();
  std::string s;
  if (content.is_array())
    for (const auto& p : content)
      if (p.is_object() && p.contains("text") && p["text"].is_string()) s += p["text"].get<std::string>();
  return s;
}

}  // namespace

protocol::Dialect dialect_of(Api api) {
  switch (api) {
    case Api::chat: return protocol::Dialect::ChatCompletions;
    case Api::completions: return protocol::Dialect::Completions;
    case Api::responses: return protocol::Dialect::Responses;
    case Api::messages: return protocol::Dialect::AnthropicMessages;
  }
  return protocol::Dialect::ChatCompletions;
}

std::string build_body(Api api, const std::string& model, const GenRequest& r, bool stream) {
  // The neutral request, from the workload's chat messages and tools (the protocol layer's chat
  // parser), emitted in the target dialect by the same emitters the router uses upstream.
  protocol::ojson chat = {{"model", model}, {"messages", protocol::ojson::parse(r.messages.dump())}};
  if (r.tools.is_array() && !r.tools.empty()) chat["tools"] = protocol::ojson::parse(r.tools.dump());
  protocol::Request q;
  try {
    q = protocol::chat::parse_request(chat);
  } catch (const protocol::ProtocolError& e) {
    throw InputError("request messages do not form a valid chat request: " + std::string(e.what()) + (e.param.empty() ? "" : " (" + e.param + ")"));
  }
  q.dialect = dialect_of(api);
  q.max_tokens = r.max_tokens;
  q.stream = stream;
  q.include_usage = stream;
  if (api == Api::completions) {
    // The workload's prompt text; without one, the messages' text joined (no role labels).
    q.prompt = r.prompt;
    if (q.prompt.empty())
      for (const auto& m : r.messages) q.prompt += text_of(m.value("content", json(""))) + "\n";
    q.messages.clear();
  }
  switch (r.reasoning) {
    case Reasoning::server_default: break;
    case Reasoning::off: q.reasoning.enabled = false; break;
    case Reasoning::on:
      q.reasoning.enabled = true;
      if (api == Api::responses) q.reasoning.effort = "high";
      break;
    case Reasoning::max:
      q.reasoning.enabled = true;
      q.reasoning.effort = "max";  // chat: reasoning_effort max; responses: xhigh; messages: thinking on
      break;
  }
  protocol::ojson b = protocol::emit_request(q.dialect, q);
  if (api == Api::messages && r.reasoning == Reasoning::off) b["thinking"] = {{"type", "disabled"}};
  if (api == Api::chat && stream) b["stream_options"] = {{"include_usage", true}};
  b["stream"] = stream;  // also false explicitly (some servers stream by default)
  if (r.force_length && api != Api::messages && api != Api::responses) {
    b["min_tokens"] = r.max_tokens;  // vLLM / SGLang / v4host extension
    b["ignore_eos"] = true;
  }
  if (r.extra.is_object())
    for (auto it = r.extra.begin(); it != r.extra.end(); ++it) b[it.key()] = protocol::ojson::parse(it.value().dump());
  return protocol::wire(b);
}

net::ClientHeaders request_headers(Api api, const std::string& key) {
  net::ClientHeaders h = {{"Content-Type", "application/json"}, {"Accept", "text/event-stream"}};
  if (api == Api::messages) {
    h.emplace_back("anthropic-version", "2023-06-01");
    if (!key.empty()) h.emplace_back("x-api-key", key);
  }
  if (!key.empty()) h.emplace_back("Authorization", "Bearer " + key);
  return h;
}

namespace {
// Hot path for the commonest chat event, a one-key text delta such as
//   {"id":..,"choices":[{"index":0,"delta":{"content":"tok "},"finish_reason":null}]}
// Classifying it by a scan costs well under a microsecond; a full JSON parse cost ~6 us per piece,
// a large share of the client's budget at 1,000+ streams. Anything else (usage, errors, tool calls,
// a finish reason, several deltas, escapes in the text, more than one key in the delta) returns
// false and goes through the full parse, so the result is the same as the slow path's.
bool chat_fast_delta(std::string_view d, bool& reasoning_piece, std::string_view& text) {
  // One pass over the quotes of the event (several std::string_view::find calls cost more than the
  // rest of the client's per-piece work): note where the one "delta":{" key is, and give up on
  // any key that needs the full parse.
  size_t delta = std::string_view::npos;
  for (size_t i = d.find('"'); i != std::string_view::npos; i = d.find('"', i + 1)) {
    std::string_view rest = d.substr(i + 1);
    switch (rest.empty() ? 0 : rest[0]) {
      case 'u': if (rest.starts_with("usage\"")) return false; break;
      case 'e': if (rest.starts_with("error\"")) return false; break;
      case 't': if (rest.starts_with("tool_calls\"")) return false; break;
      case 'f': if (rest.starts_with("finish_reason\":\"")) return false; break;
      case 'd':
        if (rest.starts_with("delta\"")) {
          if (delta != std::string_view::npos || !rest.starts_with("delta\":{\"")) return false;
          delta = i + 9;  // the opening quote of the delta's first key
        }
        break;
      default: break;
    }
  }
  if (delta == std::string_view::npos) return false;
  size_t p = delta + 1;
  size_t q = d.find('"', p);
  if (q == std::string_view::npos) return false;
  std::string_view k = d.substr(p, q - p);
  if (k == "content") reasoning_piece = false;
  else if (k == "reasoning_content" || k == "reasoning") reasoning_piece = true;
  else return false;
  if (d.compare(q, 3, "\":\"") != 0) return false;
  size_t v = q + 3, e = d.find('"', v);
  if (e == std::string_view::npos || e + 1 >= d.size() || d[e + 1] != '}') return false;
  text = d.substr(v, e - v);
  for (char c : text)
    if (c == '\\' || static_cast<unsigned char>(c) < 0x20) return false;
  return true;
}
// Finish reasons by the names the bench reports (the chat names, "stop_sequence" kept apart).
std::string finish_name(protocol::FinishReason f) {
  return f == protocol::FinishReason::StopSequence ? "stop_sequence" : protocol::finish_reason_name(f);
}
}  // namespace

int StreamState::feed(Api api, const net::SseEvent& ev) {
  if (done) return 0;
  if (api == Api::chat) {
    bool rp = false;
    std::string_view text;
    if (chat_fast_delta(ev.data, rp, text)) {
      if (text.empty()) return 0;
      (rp ? reasoning : answer).append(text);
      (rp ? reasoning_pieces : answer_pieces)++;
      last_piece_reasoning = rp;
      return 1;
    }
  }
  // Everything else through the protocol layer's reader for the dialect (the router's upstream
  // reader): it turns frames into neutral events.
  if (!reader) reader = protocol::make_stream_reader(dialect_of(api));
  std::vector<protocol::StreamEvent> evs;
  try {
    evs = ev.data == "[DONE]" ? reader->end() : reader->read(protocol::SseFrame{ev.event == "message" ? "" : ev.event, ev.data});
  } catch (const std::exception& e) {
    error = std::string("malformed stream event: ") + e.what();
    return 0;
  }
  return take(evs);
}

int StreamState::take(const std::vector<protocol::StreamEvent>& evs) {
  using K = protocol::StreamEvent::Kind;
  int pieces = 0;
  for (const auto& e : evs) {
    switch (e.kind) {
      case K::ReasoningDelta:
      case K::TextDelta: {
        if (e.text.empty()) break;
        const bool rp = e.kind == K::ReasoningDelta;
        (rp ? reasoning : answer) += e.text;
        (rp ? reasoning_pieces : answer_pieces)++;
        last_piece_reasoning = rp;
        ++pieces;
        break;
      }
      case K::ToolCallDelta:
        if (e.text.empty()) break;
        ++tool_call_deltas;
        ++answer_pieces;
        last_piece_reasoning = false;
        ++pieces;
        break;
      case K::Start:
        if (e.usage.input_tokens > 0) prompt_tokens = static_cast<int>(e.usage.input_tokens);
        break;
      case K::Finish:
        done = true;
        finish_reason = finish_name(e.finish);
        take_usage(e.usage);
        break;
      case K::Error:
        done = true;
        error = e.text.empty() ? "stream error" : e.text;
        break;
      default: break;
    }
  }
  return pieces;
}

// Usage as the protocol layer reads it has no "absent": a zero where a count cannot be zero (the
// prompt, the output of a stream that carried text, reasoning when reasoning text streamed) means
// the server did not report it, and the local count is used instead.
void StreamState::take_usage(const protocol::Usage& u) {
  if (u.input_tokens > 0) prompt_tokens = static_cast<int>(u.input_tokens);
  if (u.output_tokens > 0 || (u.input_tokens > 0 && answer.empty() && reasoning.empty() && tool_call_deltas == 0))
    completion_tokens = static_cast<int>(u.output_tokens);
  if (u.reasoning_tokens > 0 || (completion_tokens >= 0 && reasoning.empty())) reasoning_tokens = static_cast<int>(u.reasoning_tokens);
  if (u.input_tokens > 0) cached_tokens = static_cast<int>(u.cached_tokens);
}

void parse_full_response(Api api, const std::string& body, StreamState& st) {
  protocol::Response r;
  try {
    r = protocol::parse_response(dialect_of(api), protocol::ojson::parse(body));
  } catch (const std::exception& e) {
    st.error = std::string("malformed response: ") + e.what();
    return;
  }
  st.done = true;
  st.answer = r.content;
  st.reasoning = r.reasoning.value_or("");
  st.tool_call_deltas = static_cast<int>(r.tool_calls.size());
  st.finish_reason = finish_name(r.finish);
  st.take_usage(r.usage);
  if (r.finish == protocol::FinishReason::Error) st.error = r.error_message.empty() ? "error" : r.error_message;
  st.answer_pieces = st.answer.empty() && r.tool_calls.empty() ? 0 : 1;
  st.reasoning_pieces = st.reasoning.empty() ? 0 : 1;
}

}  // namespace v4::bench
