#include "router/rules.h"

#include <algorithm>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "router/subprocess.h"
#include "text/tokenizer.h"

namespace v4::router {

int64_t count_prompt_tokens(const protocol::Request& r, const text::Tokenizer* tok) {
  std::string all;
  for (auto& m : r.messages) {
    all += m.text;
    if (m.reasoning) all += *m.reasoning;
    for (auto& tc : m.tool_calls) all += tc.name + tc.arguments;
    all += '\n';
  }
  for (auto& t : r.tools) all += t.name + t.description + (t.parameters.is_null() ? "" : t.parameters.dump());
  all += r.prompt;
  if (r.prompt_is_ids) return static_cast<int64_t>(r.prompt_ids.size());
  if (!tok) return static_cast<int64_t>(all.size() + 3) / 4;
  // The chat template adds a few tokens per message; count them so the cap errs on the high side.
  return static_cast<int64_t>(tok->encode(all).size() + 4 * r.messages.size());
}

Features request_features(const protocol::Request& r, const text::Tokenizer* tok) {
  Features f;
  f.model = r.model;
  f.tools = !r.tools.empty();
  for (auto& m : r.messages) {
    f.images = f.images || !m.images.empty();
    for (auto& d : m.dropped)  // an image the protocol layer could not carry (a Responses file_id) still counts
      if (d.find("image") != std::string::npos) f.images = true;
  }
  f.reasoning_effort = r.reasoning.effort;
  if (f.reasoning_effort.empty() && r.reasoning.enabled) f.reasoning_effort = *r.reasoning.enabled ? "" : "none";
  f.prompt_tokens = count_prompt_tokens(r, tok);
  return f;
}

bool rule_matches(const Match& m, const Features& f) {
  if (m.model && *m.model != f.model) return false;
  if (m.tools && *m.tools != f.tools) return false;
  if (m.images && *m.images != f.images) return false;
  if (!m.reasoning_effort.empty() &&
      std::find(m.reasoning_effort.begin(), m.reasoning_effort.end(), f.reasoning_effort) == m.reasoning_effort.end())
    return false;
  if (m.prompt_tokens_over >= 0 && f.prompt_tokens <= m.prompt_tokens_over) return false;
  for (auto& [k, v] : m.headers) {
    auto it = f.headers.find(k);
    if (it == f.headers.end() || it->second != v) return false;
  }
  if (m.tag && *m.tag != f.tag) return false;
  if (m.key && *m.key != f.key) return false;
  if (m.team && *m.team != f.team) return false;
  return true;
}

RouteChoice choose_route(const Config& c, const Features& f, const std::string& request_json, const RuleEnv& env) {
  auto permitted = [&](const std::string& route) {
    return !env.allowed_routes || env.allowed_routes->empty() ||
           std::find(env.allowed_routes->begin(), env.allowed_routes->end(), route) != env.allowed_routes->end();
  };
  int i = 0;
  for (auto& r : c.rules) {
    ++i;
    if (!rule_matches(r.match, f)) continue;
    if (r.overflow) {
      if (!env.pressure) continue;
      Pressure p = env.pressure(r.overflow->upstream);
      std::string why;
      if (r.overflow->queue_depth_over >= 0 && p.queue_depth > r.overflow->queue_depth_over)
        why = fmt::format("queue {} > {}", p.queue_depth, r.overflow->queue_depth_over);
      else if (r.overflow->ttft_over_s >= 0 && p.ttft_s > r.overflow->ttft_over_s)
        why = fmt::format("predicted ttft {:.3f}s > {}s", p.ttft_s, r.overflow->ttft_over_s);
      if (why.empty() || !permitted(r.route)) continue;
      return {r.route, fmt::format("rule {} (overflow of {}: {})", i, r.overflow->upstream, why)};
    }
    if (r.classifier) {
      std::string named = env.classify ? env.classify(*r.classifier, request_json) : "";
      if (!named.empty() && c.route(named) && permitted(named)) return {named, fmt::format("rule {} (classifier)", i)};
      if (!permitted(r.route)) continue;
      return {r.route, fmt::format("rule {} (classifier gave no usable route)", i)};
    }
    if (!permitted(r.route)) continue;
    return {r.route, fmt::format("rule {} ({})", i, r.describe())};
  }
  if (c.route(f.model) && permitted(f.model)) return {f.model, "alias"};
  if (permitted(c.default_route)) return {c.default_route, "default"};
  if (env.allowed_routes && !env.allowed_routes->empty()) return {env.allowed_routes->front(), "the key's first allowed route"};
  return {c.default_route, "default"};
}

std::string run_classifier_command(const std::vector<std::string>& argv, const std::string& input, double timeout_s) {
  ProcessResult p = run_process(argv, input, timeout_s);
  if (p.timed_out || p.exit_code != 0) return "";
  std::string s = p.out;
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  auto j = nlohmann::json::parse(s, nullptr, false);
  if (!j.is_discarded() && j.is_object() && j.contains("route") && j["route"].is_string()) return j["route"].get<std::string>();
  auto nl = s.find('\n');
  return nl == std::string::npos ? s : s.substr(0, nl);
}

}  // namespace v4::router
