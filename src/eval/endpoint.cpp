#include "eval/endpoint.h"

#include <chrono>

#include "core/error.h"

namespace v4::eval {

namespace {

std::string text_of(const Json& content) {
  if (content.is_string()) return content.get<std::string>();
  std::string s;
  if (content.is_array())
    for (const auto& p : content)
      if (p.is_object() && p.value("type", "") == "text") s += p.value("text", "");
  return s;
}

Json parse_args(const Json& a) {
  if (!a.is_string()) return a;
  try {
    return Json::parse(a.get<std::string>());
  } catch (...) {
    return a;  // not JSON: kept as the string, and the checks say so
  }
}

Json to_anthropic_body(const EndpointConfig& cfg, const ChatRequest& r) {
  Json body = {{"model", cfg.model}, {"max_tokens", r.max_tokens}};
  std::string system;
  Json msgs = Json::array();
  for (const auto& m : r.messages) {
    const std::string role = m.value("role", "");
    if (role == "system" || role == "developer") {
      if (!system.empty()) system += "\n\n";
      system += text_of(m.value("content", Json()));
    } else if (role == "tool") {
      Json block = {{"type", "tool_result"}, {"tool_use_id", m.value("tool_call_id", "")}, {"content", text_of(m.value("content", Json()))}};
      if (!msgs.empty() && msgs.back()["role"] == "user" && msgs.back()["content"].is_array() &&
          !msgs.back()["content"].empty() && msgs.back()["content"].back().value("type", "") == "tool_result")
        msgs.back()["content"].push_back(block);
      else
        msgs.push_back({{"role", "user"}, {"content", Json::array({block})}});
    } else if (role == "assistant") {
      Json blocks = Json::array();
      if (m.contains("reasoning_content") && m["reasoning_content"].is_string() && !m["reasoning_content"].get<std::string>().empty())
        blocks.push_back({{"type", "thinking"}, {"thinking", m["reasoning_content"]}, {"signature", ""}});
      std::string t = text_of(m.value("content", Json()));
      if (!t.empty()) blocks.push_back({{"type", "text"}, {"text", t}});
      if (m.contains("tool_calls"))
        for (const auto& c : m["tool_calls"])
          blocks.push_back({{"type", "tool_use"},
                            {"id", c.value("id", "")},
                            {"name", c["function"].value("name", "")},
                            {"input", parse_args(c["function"].value("arguments", Json("{}")))}});
      msgs.push_back({{"role", "assistant"}, {"content", blocks}});
    } else {
      msgs.push_back({{"role", "user"}, {"content", text_of(m.value("content", Json()))}});
    }
  }
  if (!system.empty()) body["system"] = system;
  body["messages"] = msgs;
  if (r.tools.is_array() && !r.tools.empty()) {
    Json tools = Json::array();
    for (const auto& t : r.tools) {
      const Json& f = t.contains("function") ? t["function"] : t;
      Json a = {{"name", f.value("name", "")}, {"input_schema", f.value("parameters", Json::object())}};
      if (f.contains("description")) a["description"] = f["description"];
      tools.push_back(a);
    }
    body["tools"] = tools;
  }
  if (!r.tool_choice.is_null()) {
    const Json& tc = r.tool_choice;
    if (tc.is_string()) {
      const std::string s = tc.get<std::string>();
      body["tool_choice"] = {{"type", s == "required" ? "any" : s}};
    } else if (tc.is_object() && tc.contains("function")) {
      body["tool_choice"] = {{"type", "tool"}, {"name", tc["function"].value("name", "")}};
    }
  }
  if (r.reasoning == "none") {
    body["thinking"] = {{"type", "disabled"}};
  } else if (r.reasoning == "high" || r.reasoning == "max") {
    body["thinking"] = {{"type", "enabled"}, {"budget_tokens", std::max(1024, r.max_tokens - 1)}};
    if (r.reasoning == "max") body["output_config"] = {{"effort", "max"}};
  }
  if (r.reasoning != "high" && r.reasoning != "max") body["temperature"] = r.temperature;
  return body;
}

}  // namespace

Json build_request_body(const EndpointConfig& cfg, const ChatRequest& r) {
  if (cfg.api == "anthropic") return to_anthropic_body(cfg, r);
  Json body = {{"model", cfg.model}, {"messages", r.messages}, {"max_tokens", r.max_tokens}, {"temperature", r.temperature}};
  if (r.seed >= 0) body["seed"] = r.seed;
  if (r.tools.is_array() && !r.tools.empty()) body["tools"] = r.tools;
  if (!r.tool_choice.is_null()) body["tool_choice"] = r.tool_choice;
  if (!r.reasoning.empty()) body["reasoning_effort"] = r.reasoning;
  return body;
}

Answer parse_response_body(const EndpointConfig& cfg, const std::string& text) {
  Answer a;
  Json j;
  try {
    j = Json::parse(text);
  } catch (const std::exception&) {
    a.error = "the endpoint answered with a body that is not JSON: " + text.substr(0, 200);
    a.transport = true;
    return a;
  }
  try {
    if (cfg.api == "anthropic") {
      for (const auto& b : j.at("content")) {
        const std::string type = b.value("type", "");
        if (type == "text") a.text += b.value("text", "");
        else if (type == "thinking") a.reasoning += b.value("thinking", "");
        else if (type == "tool_use")
          a.tool_calls.push_back({{"id", b.value("id", "")}, {"name", b.value("name", "")}, {"arguments", b.value("input", Json::object())}});
      }
      a.finish_reason = j.value("stop_reason", "");
      if (j.contains("usage")) {
        a.prompt_tokens = j["usage"].value("input_tokens", 0L);
        a.completion_tokens = j["usage"].value("output_tokens", 0L);
      }
    } else {
      const Json& c = j.at("choices").at(0);
      const Json& m = c.at("message");
      if (m.contains("content") && m["content"].is_string()) a.text = m["content"].get<std::string>();
      if (m.contains("reasoning_content") && m["reasoning_content"].is_string()) a.reasoning = m["reasoning_content"].get<std::string>();
      else if (m.contains("reasoning") && m["reasoning"].is_string()) a.reasoning = m["reasoning"].get<std::string>();
      if (m.contains("tool_calls") && m["tool_calls"].is_array())
        for (const auto& t : m["tool_calls"]) {
          const Json& f = t.at("function");
          a.tool_calls.push_back({{"id", t.value("id", "")}, {"name", f.value("name", "")}, {"arguments", parse_args(f.value("arguments", Json("")))}});
        }
      if (c.contains("finish_reason") && c["finish_reason"].is_string()) a.finish_reason = c["finish_reason"].get<std::string>();
      if (j.contains("usage") && j["usage"].is_object()) {
        const Json& u = j["usage"];
        a.prompt_tokens = u.value("prompt_tokens", 0L);
        a.completion_tokens = u.value("completion_tokens", 0L);
        if (u.contains("completion_tokens_details") && u["completion_tokens_details"].is_object())
          a.reasoning_tokens = u["completion_tokens_details"].value("reasoning_tokens", 0L);
      }
    }
  } catch (const std::exception& e) {
    a.error = std::string("the endpoint's answer is not a ") + (cfg.api == "anthropic" ? "Messages" : "chat completion") +
              " response: " + e.what();
  }
  return a;
}

Endpoint::Endpoint(EndpointConfig cfg, HttpFn http) : cfg_(std::move(cfg)), http_(std::move(http)) {
  while (!cfg_.url.empty() && cfg_.url.back() == '/') cfg_.url.pop_back();
  if (cfg_.url.size() < 3 || cfg_.url.compare(cfg_.url.size() - 3, 3, "/v1") != 0) cfg_.url += "/v1";
  if (!http_) http_ = default_http();
}

std::string Endpoint::join(const std::string& path) const { return cfg_.url + path; }

HttpHeaders Endpoint::headers() const {
  HttpHeaders h = {{"content-type", "application/json"}, {"accept", "application/json"}};
  if (cfg_.api == "anthropic") {
    h.push_back({"anthropic-version", "2023-06-01"});
    if (!cfg_.api_key.empty()) h.push_back({"x-api-key", cfg_.api_key});
  } else if (!cfg_.api_key.empty()) {
    h.push_back({"authorization", "Bearer " + cfg_.api_key});
  }
  return h;
}

Answer Endpoint::chat(const ChatRequest& req) const {
  const std::string body = build_request_body(cfg_, req).dump(-1, ' ', false, Json::error_handler_t::replace);
  const auto t0 = std::chrono::steady_clock::now();
  HttpReply rep = http_("POST", join(cfg_.api == "anthropic" ? "/messages" : "/chat/completions"), headers(), body, cfg_.timeout_s);
  const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  Answer a;
  if (rep.status == 0) {
    a.error = "no answer from " + cfg_.url + ": " + rep.error;
    a.transport = true;
  } else if (rep.status < 200 || rep.status >= 300) {
    std::string msg = rep.body.substr(0, 500);
    try {
      Json e = Json::parse(rep.body);
      if (e.contains("error") && e["error"].is_object()) msg = e["error"].value("message", msg);
    } catch (...) {
    }
    a.error = "HTTP " + std::to_string(rep.status) + ": " + msg;
    // The server's own trouble (overload, 5xx) is redone on resume; a 4xx is the item's outcome.
    a.transport = rep.status >= 500 || rep.status == 429 || rep.status == 408;
  } else {
    a = parse_response_body(cfg_, rep.body);
  }
  a.http_status = rep.status;
  a.latency_s = dt;
  return a;
}

Json Endpoint::probe_models(long* context_tokens) const {
  HttpReply rep = http_("GET", join("/models"), headers(), "", 30);
  if (rep.status == 0) throw InputError("cannot reach the endpoint " + cfg_.url + " (" + rep.error + ")");
  if (rep.status == 401 || rep.status == 403)
    throw InputError("the endpoint " + cfg_.url + " refused the API key (HTTP " + std::to_string(rep.status) + "); pass --api-key-env VAR");
  Json ident = {{"models_status", rep.status}};
  if (rep.status >= 200 && rep.status < 300) {
    try {
      Json j = Json::parse(rep.body);
      Json list = j.contains("data") ? j["data"] : Json::array();
      for (const auto& m : list) {
        if (!m.is_object()) continue;
        if (m.value("id", "") == cfg_.model || list.size() == 1) {
          ident["model"] = m;
          for (const char* k : {"max_model_len", "context_length", "context_window", "max_context_length"})
            if (m.contains(k) && m[k].is_number_integer() && context_tokens) *context_tokens = m[k].get<long>();
        }
      }
      if (!ident.contains("model")) {
        Json ids = Json::array();
        for (const auto& m : list)
          if (m.is_object()) ids.push_back(m.value("id", ""));
        ident["served_ids"] = ids;
      }
    } catch (const std::exception&) {
      ident["models_body"] = rep.body.substr(0, 200);
    }
  }
  return ident;
}

}  // namespace v4::eval
