#include "bench/api.h"

#include <cstring>

#include "core/error.h"

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

json anthropic_messages(const json& msgs, std::string& system) {
  json out = json::array();
  for (const auto& m : msgs) {
    std::string role = m.value("role", "user");
    if (role == "system") {
      system += (system.empty() ? "" : "\n") + text_of(m["content"]);
      continue;
    }
    if (role == "tool") {
      json block = {{"type", "tool_result"}, {"tool_use_id", m.value("tool_call_id", "")}, {"content", text_of(m["content"])}};
      if (!out.empty() && out.back()["role"] == "user" && out.back()["content"].is_array()) out.back()["content"].push_back(block);
      else out.push_back({{"role", "user"}, {"content", json::array({block})}});
      continue;
    }
    json content = json::array();
    std::string t = m.contains("content") ? text_of(m["content"]) : "";
    if (!t.empty()) content.push_back({{"type", "text"}, {"text", t}});
    if (m.contains("tool_calls") && m["tool_calls"].is_array())
      for (const auto& tc : m["tool_calls"]) {
        json input = json::parse(tc["function"].value("arguments", "{}"), nullptr, false);
        if (input.is_discarded() || !input.is_object()) input = json::object();
        content.push_back({{"type", "tool_use"}, {"id", tc.value("id", "")}, {"name", tc["function"].value("name", "")}, {"input", input}});
      }
    if (content.empty()) content.push_back({{"type", "text"}, {"text", "."}});
    out.push_back({{"role", role}, {"content", content}});
  }
  return out;
}

json responses_input(const json& msgs, std::string& instructions) {
  json out = json::array();
  for (const auto& m : msgs) {
    std::string role = m.value("role", "user");
    if (role == "system") {
      instructions += (instructions.empty() ? "" : "\n") + text_of(m["content"]);
    } else if (role == "tool") {
      out.push_back({{"type", "function_call_output"}, {"call_id", m.value("tool_call_id", "")}, {"output", text_of(m["content"])}});
    } else {
      std::string t = m.contains("content") ? text_of(m["content"]) : "";
      if (!t.empty()) out.push_back({{"role", role}, {"content", t}});
      if (m.contains("tool_calls") && m["tool_calls"].is_array())
        for (const auto& tc : m["tool_calls"])
          out.push_back({{"type", "function_call"}, {"call_id", tc.value("id", "")}, {"name", tc["function"].value("name", "")},
                         {"arguments", tc["function"].value("arguments", "{}")}});
    }
  }
  return out;
}

int as_int(const json& j, const char* k) {
  if (j.is_object() && j.contains(k) && j[k].is_number_integer()) return j[k].get<int>();
  return -1;
}

void openai_usage(const json& u, StreamState& st) {
  if (!u.is_object()) return;
  int p = as_int(u, "prompt_tokens");
  if (p < 0) p = as_int(u, "input_tokens");
  int c = as_int(u, "completion_tokens");
  if (c < 0) c = as_int(u, "output_tokens");
  if (p >= 0) st.prompt_tokens = p;
  if (c >= 0) st.completion_tokens = c;
  for (const char* d : {"completion_tokens_details", "output_tokens_details"})
    if (u.contains(d) && as_int(u[d], "reasoning_tokens") >= 0) st.reasoning_tokens = as_int(u[d], "reasoning_tokens");
  for (const char* d : {"prompt_tokens_details", "input_tokens_details"})
    if (u.contains(d) && as_int(u[d], "cached_tokens") >= 0) st.cached_tokens = as_int(u[d], "cached_tokens");
  if (as_int(u, "prompt_cache_hit_tokens") >= 0) st.cached_tokens = as_int(u, "prompt_cache_hit_tokens");  // DeepSeek API
}

void anthropic_usage(const json& u, StreamState& st) {
  if (!u.is_object()) return;
  int in = as_int(u, "input_tokens"), out = as_int(u, "output_tokens"), cr = as_int(u, "cache_read_input_tokens");
  if (cr >= 0) st.cached_tokens = cr;
  if (in >= 0) st.prompt_tokens = in + std::max(0, cr) + std::max(0, as_int(u, "cache_creation_input_tokens"));
  if (out >= 0) st.completion_tokens = out;
}

}  // namespace

std::string build_body(Api api, const std::string& model, const GenRequest& r, bool stream) {
  json b = {{"model", model}, {"stream", stream}};
  switch (api) {
    case Api::chat:
      b["messages"] = r.messages;
      b["max_tokens"] = r.max_tokens;
      if (stream) b["stream_options"] = {{"include_usage", true}};
      break;
    case Api::completions: {
      std::string p = r.prompt;
      if (p.empty())
        for (const auto& m : r.messages) p += text_of(m.value("content", json(""))) + "\n";
      b["prompt"] = p;
      b["max_tokens"] = r.max_tokens;
      if (stream) b["stream_options"] = {{"include_usage", true}};
      break;
    }
    case Api::responses: {
      std::string instr;
      b["input"] = responses_input(r.messages, instr);
      if (!instr.empty()) b["instructions"] = instr;
      b["max_output_tokens"] = r.max_tokens;
      break;
    }
    case Api::messages: {
      std::string system;
      b["messages"] = anthropic_messages(r.messages, system);
      if (!system.empty()) b["system"] = system;
      b["max_tokens"] = r.max_tokens;
      break;
    }
  }
  if (r.force_length && api != Api::messages && api != Api::responses) {
    b["min_tokens"] = r.max_tokens;  // vLLM / SGLang / v4host extension
    b["ignore_eos"] = true;
  }
  if (r.tools.is_array() && !r.tools.empty()) {
    if (api == Api::messages) {
      json t = json::array();
      for (const auto& f : r.tools)
        t.push_back({{"name", f["function"]["name"]}, {"description", f["function"].value("description", "")},
                     {"input_schema", f["function"].value("parameters", json::object())}});
      b["tools"] = t;
    } else if (api == Api::responses) {
      json t = json::array();
      for (const auto& f : r.tools)
        t.push_back({{"type", "function"}, {"name", f["function"]["name"]}, {"description", f["function"].value("description", "")},
                     {"parameters", f["function"].value("parameters", json::object())}});
      b["tools"] = t;
    } else if (api == Api::chat) {
      b["tools"] = r.tools;
    }
  }
  switch (r.reasoning) {
    case Reasoning::server_default: break;
    case Reasoning::off:
      if (api == Api::responses) b["reasoning"] = {{"effort", "none"}};
      else if (api != Api::completions) b["thinking"] = {{"type", "disabled"}};
      break;
    case Reasoning::on:
    case Reasoning::max:
      if (api == Api::responses) b["reasoning"] = {{"effort", r.reasoning == Reasoning::max ? "xhigh" : "high"}};
      else if (api == Api::messages) b["thinking"] = {{"type", "enabled"}, {"budget_tokens", std::max(1024, r.max_tokens / 2)}};
      else if (api == Api::chat) {
        b["thinking"] = {{"type", "enabled"}};
        if (r.reasoning == Reasoning::max) b["reasoning_effort"] = "max";
      }
      break;
  }
  if (r.extra.is_object())
    for (auto it = r.extra.begin(); it != r.extra.end(); ++it) b[it.key()] = it.value();
  return b.dump();
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
}  // namespace

int StreamState::feed(Api api, const net::SseEvent& ev) {
  if (ev.data == "[DONE]") {
    done = true;
    return 0;
  }
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
  json j = json::parse(ev.data, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return 0;
  if (j.contains("error")) {
    const json& e = j["error"];
    error = e.is_object() ? e.value("message", e.dump()) : e.dump();
    return 0;
  }
  int pieces = 0;
  auto add = [&](bool reasoning_piece, const std::string& s) {
    if (s.empty()) return;
    (reasoning_piece ? reasoning : answer) += s;
    (reasoning_piece ? reasoning_pieces : answer_pieces)++;
    last_piece_reasoning = reasoning_piece;
    ++pieces;
  };
  if (api == Api::chat || api == Api::completions) {
    if (j.contains("usage")) openai_usage(j["usage"], *this);
    if (j.contains("choices") && j["choices"].is_array() && !j["choices"].empty()) {
      const json& c = j["choices"][0];
      if (c.contains("finish_reason") && c["finish_reason"].is_string()) finish_reason = c["finish_reason"];
      if (api == Api::completions) {
        if (c.contains("text") && c["text"].is_string()) add(false, c["text"]);
      } else if (c.contains("delta") && c["delta"].is_object()) {
        const json& d = c["delta"];
        for (const char* k : {"reasoning_content", "reasoning"})
          if (d.contains(k) && d[k].is_string()) add(true, d[k]);
        if (d.contains("content") && d["content"].is_string()) add(false, d["content"]);
        if (d.contains("tool_calls") && d["tool_calls"].is_array())
          for (const auto& tc : d["tool_calls"]) {
            std::string piece;
            if (tc.contains("function") && tc["function"].is_object()) {
              piece = tc["function"].value("name", "") + tc["function"].value("arguments", "");
            }
            if (!piece.empty()) {
              ++tool_call_deltas;
              answer_pieces++;
              last_piece_reasoning = false;
              ++pieces;
            }
          }
      }
    }
    return pieces;
  }
  std::string type = j.value("type", ev.event);
  if (api == Api::messages) {
    if (type == "message_start" && j.contains("message")) anthropic_usage(j["message"].value("usage", json()), *this);
    else if (type == "content_block_delta" && j.contains("delta")) {
      const json& d = j["delta"];
      std::string dt = d.value("type", "");
      if (dt == "thinking_delta") add(true, d.value("thinking", ""));
      else if (dt == "text_delta") add(false, d.value("text", ""));
      else if (dt == "input_json_delta" && !d.value("partial_json", "").empty()) {
        ++tool_call_deltas;
        answer_pieces++;
        last_piece_reasoning = false;
        ++pieces;
      }
    } else if (type == "message_delta") {
      if (j.contains("usage")) anthropic_usage(j["usage"], *this);
      if (j.contains("delta") && j["delta"].contains("stop_reason") && j["delta"]["stop_reason"].is_string()) finish_reason = j["delta"]["stop_reason"];
    } else if (type == "message_stop") {
      done = true;
    } else if (type == "error") {
      error = j.contains("error") ? j["error"].value("message", "error") : "error";
    }
    return pieces;
  }
  // responses
  if (type == "response.output_text.delta") add(false, j.value("delta", ""));
  else if (type == "response.reasoning_text.delta" || type == "response.reasoning_summary_text.delta") add(true, j.value("delta", ""));
  else if (type == "response.function_call_arguments.delta" && !j.value("delta", "").empty()) {
    ++tool_call_deltas;
    answer_pieces++;
    last_piece_reasoning = false;
    ++pieces;
  } else if (type == "response.completed" || type == "response.incomplete" || type == "response.failed") {
    done = true;
    if (j.contains("response")) {
      openai_usage(j["response"].value("usage", json()), *this);
      finish_reason = j["response"].value("status", "");
      if (type == "response.failed") error = "response failed";
    }
  } else if (type == "error") {
    error = j.value("message", "error");
  }
  return pieces;
}

void parse_full_response(Api api, const std::string& body, StreamState& st) {
  json j = json::parse(body, nullptr, false);
  if (j.is_discarded()) return;
  st.done = true;
  if (api == Api::messages) {
    anthropic_usage(j.value("usage", json()), st);
    for (const auto& b : j.value("content", json::array())) {
      if (b.value("type", "") == "text") st.answer += b.value("text", "");
      if (b.value("type", "") == "thinking") st.reasoning += b.value("thinking", "");
    }
  } else if (api == Api::responses) {
    openai_usage(j.value("usage", json()), st);
    for (const auto& o : j.value("output", json::array()))
      for (const auto& c : o.value("content", json::array())) st.answer += c.value("text", "");
  } else {
    openai_usage(j.value("usage", json()), st);
    if (j.contains("choices") && !j["choices"].empty()) {
      const json& c = j["choices"][0];
      if (api == Api::completions) st.answer = c.value("text", "");
      else if (c.contains("message")) {
        st.answer = c["message"].value("content", json("")).is_string() ? c["message"].value("content", "") : "";
        if (c["message"].contains("reasoning_content") && c["message"]["reasoning_content"].is_string())
          st.reasoning = c["message"]["reasoning_content"];
      }
    }
  }
  st.answer_pieces = st.answer.empty() ? 0 : 1;
  st.reasoning_pieces = st.reasoning.empty() ? 0 : 1;
}

}  // namespace v4::bench
