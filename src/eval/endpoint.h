// The endpoint under evaluation: an OpenAI-compatible chat-completions server (v4host, vLLM,
// SGLang, the hosted DeepSeek API, ...), an OpenAI Responses server or an Anthropic Messages
// server. Items are written in the OpenAI chat shape; the protocol layer (src/protocol) carries
// them to the other APIs and reads every API's answer. Reasoning modes: none | high | max
// (reasoning_effort, or Anthropic thinking).
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "eval/item.h"

namespace v4::eval {

struct EndpointConfig {
  std::string url;  // base, e.g. http://127.0.0.1:8000/v1 (a trailing /v1 is optional)
  std::string api = "openai";  // openai (chat completions) | responses | anthropic
  std::string model;
  std::string api_key;  // sent as Bearer (openai) or x-api-key (anthropic)
  double timeout_s = 600;
};

struct ChatRequest {
  Json messages = Json::array();
  Json tools;        // null = none
  Json tool_choice;  // null = unset
  std::string reasoning;  // "" (leave to the server) | none | high | max
  int max_tokens = 256;
  double temperature = 0;
  long seed = -1;  // -1 = not sent
};

// One HTTP exchange; status 0 with `error` set when no answer came (connect, timeout, reset).
struct HttpReply {
  int status = 0;
  std::string body;
  std::string error;
};
using HttpHeaders = std::vector<std::pair<std::string, std::string>>;
// method, absolute URL, headers, body, timeout
using HttpFn = std::function<HttpReply(const std::string&, const std::string&, const HttpHeaders&, const std::string&, double)>;

// The request body for `req` in the configured API (pure; tested directly).
Json build_request_body(const EndpointConfig& cfg, const ChatRequest& req);
// Parses a 2xx body into an Answer (text, reasoning, tool calls, usage); sets error on a bad body.
Answer parse_response_body(const EndpointConfig& cfg, const std::string& body);

class Endpoint {
 public:
  // Uses the project HTTP client unless `http` is given (tests).
  explicit Endpoint(EndpointConfig cfg, HttpFn http = {});
  const EndpointConfig& config() const { return cfg_; }

  // One chat turn. Errors are in Answer::error (transport=true for the endpoint's own failures).
  Answer chat(const ChatRequest& req) const;

  // GET {url}/models: the server's identity for the provenance, and its context length if it
  // says (max_model_len / context_length / context_window). Throws v4::InputError naming the
  // URL when the endpoint cannot be reached or does not answer like the API.
  Json probe_models(long* context_tokens) const;

  std::string join(const std::string& path) const;  // base (with /v1) + path

 private:
  HttpHeaders headers() const;
  EndpointConfig cfg_;
  HttpFn http_;
};

// The default transport: the project's blocking HTTP client (src/net).
HttpFn default_http();

}  // namespace v4::eval
