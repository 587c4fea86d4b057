// Choosing a route for a request: the request's features (tools, images, reasoning effort, prompt
// tokens counted with the V4 tokenizer, headers, tag, API key, team), the ordered rules (first
// match wins), external classifiers (a command or an HTTP endpoint answering with a route) and
// overflow on local pressure (queue depth / predicted TTFT of a watched upstream).
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "protocol/types.h"
#include "router/config.h"

namespace v4::text {
class Tokenizer;
}

namespace v4::router {

struct Features {
  std::string model;  // as the client sent it
  bool tools = false, images = false;
  std::string reasoning_effort;  // "" = not given; "none" when reasoning was switched off
  int64_t prompt_tokens = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string tag, key, team;
};

// Prompt tokens of the request's text (messages, tool schemas) with `tok`; bytes/4 when null.
int64_t count_prompt_tokens(const protocol::Request& r, const text::Tokenizer* tok);

Features request_features(const protocol::Request& r, const text::Tokenizer* tok);

// Pressure of a watched upstream (from its /health or /metrics), < 0 when unknown.
struct Pressure {
  double queue_depth = -1, ttft_s = -1;
};

struct RouteChoice {
  std::string route;
  std::string why;  // "rule 2 (tools=yes)", "alias", "default", "classifier", "overflow of flash: queue 12 > 8"
};

struct RuleEnv {
  std::function<Pressure(const std::string& upstream)> pressure;
  // Runs an external classifier; returns the route it named ("" = none / failed / timed out).
  std::function<std::string(const Classifier&, const std::string& request_json)> classify;
  // Principal's allow-list of routes (empty = any): rules that lead outside it are skipped.
  const std::vector<std::string>* allowed_routes = nullptr;
};

bool rule_matches(const Match& m, const Features& f);
RouteChoice choose_route(const Config& c, const Features& f, const std::string& request_json, const RuleEnv& env);

// Runs a classifier command with the request JSON on stdin and a time limit; the route is the
// "route" field of a JSON answer, or the first line of plain output.
std::string run_classifier_command(const std::vector<std::string>& argv, const std::string& input, double timeout_s);

}  // namespace v4::router
