#include "eval/endpoint.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"
#include "protocol/protocol.h"

namespace v4::eval {

namespace {

Json parse_args(const std::string& a) {
  try {
    return Json::parse(a);
  } catch (...) {
    return a;  // not JSON: kept as the string, and the checks say so
  }
}

protocol::Dialect dialect_of(const std::string& api) {
  if (api == "anthropic") return protocol::Dialect::AnthropicMessages;
  if (api == "responses") return protocol::Dialect::Responses;
  return protocol::Dialect::ChatCompletions;
}

}  // namespace

Json build_request_body(const EndpointConfig& cfg, const ChatRequest& r) {
  // Items are written as chat completions; the protocol layer carries them to the other APIs
  // (system prompt, tool_use / tool_result blocks, thinking, reasoning items, tool_choice).
  Json body = {{"model", cfg.model}, {"messages", r.messages}, {"max_tokens", r.max_tokens}};
  const bool thinking = r.reasoning == "high" || r.reasoning == "max";
  // Anthropic refuses a temperature with thinking on; the others take it.
  if (!(thinking && cfg.api == "anthropic")) body["temperature"] = r.temperature;
  if (r.seed >= 0) body["seed"] = r.seed;
  if (r.tools.is_array() && !r.tools.empty()) body["tools"] = r.tools;
  if (!r.tool_choice.is_null()) body["tool_choice"] = r.tool_choice;
  if (!r.reasoning.empty()) body["reasoning_effort"] = r.reasoning;
  const protocol::Dialect d = dialect_of(cfg.api);
  if (d == protocol::Dialect::ChatCompletions) return body;
  protocol::Request req = protocol::parse_request(protocol::Dialect::ChatCompletions, body);
  if (d == protocol::Dialect::AnthropicMessages && thinking && !req.reasoning.budget_tokens)
    req.reasoning.budget_tokens = std::max(1024, r.max_tokens - 1);
  return protocol::emit_request(d, req);
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
    protocol::Response r = protocol::parse_response(dialect_of(cfg.api), j);
    a.text = r.content;
    a.reasoning = r.reasoning.value_or("");
    for (const auto& c : r.tool_calls) a.tool_calls.push_back({{"id", c.id}, {"name", c.name}, {"arguments", parse_args(c.arguments)}});
    // A call the endpoint itself flagged as malformed still counts as a (bad) call.
    for (const auto& f : r.failures) a.tool_calls.push_back({{"id", f.id}, {"name", f.name}, {"arguments", f.error.dump()}, {"invalid", true}});
    a.finish_reason = protocol::finish_reason_name(r.finish);
    a.prompt_tokens = r.usage.input_tokens;
    a.completion_tokens = r.usage.output_tokens;
    a.reasoning_tokens = r.usage.reasoning_tokens;
  } catch (const std::exception& e) {
    a.error = std::string("the endpoint's answer is not a ") + protocol::dialect_name(dialect_of(cfg.api)) + " response: " + e.what();
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
  const std::string path = cfg_.api == "anthropic" ? "/messages" : cfg_.api == "responses" ? "/responses" : "/chat/completions";
  HttpReply rep = http_("POST", join(path), headers(), body, cfg_.timeout_s);
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
