#include "router/upstream.h"

#include <algorithm>
#include <cstdlib>
#include <sstream>

#include "protocol/protocol.h"
#include "router/wire_edit.h"

namespace v4::router {

using protocol::ojson;

void ReasoningMemo::put(const std::string& id, const std::string& reasoning) {
  if (id.empty()) return;
  std::lock_guard<std::mutex> l(mu_);
  auto it = map_.find(id);
  if (it != map_.end()) {
    it->second.first = reasoning;
    return;
  }
  order_.push_front(id);
  map_.emplace(id, std::make_pair(reasoning, order_.begin()));
  while (map_.size() > cap_) {
    map_.erase(order_.back());
    order_.pop_back();
  }
}

bool ReasoningMemo::get(const std::string& id, std::string* out) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = map_.find(id);
  if (it == map_.end()) return false;
  *out = it->second.first;
  return true;
}

std::optional<bool> thinking_on(const protocol::ReasoningRequest& r) {
  if (!r.effort.empty()) return r.effort != "none";
  return r.enabled;
}

ojson reasoning_members(const Upstream& u, std::optional<bool> on, const std::string& effort) {
  ojson m = ojson::object();
  if (!on) return m;
  switch (u.dialect) {
    case ReasoningDialect::Thinking: m["thinking"] = {{"type", *on ? "enabled" : "disabled"}}; break;
    case ReasoningDialect::ChatTemplateKwargs:
      m["chat_template_kwargs"]["thinking"] = *on;
      if (*on && !effort.empty()) m["chat_template_kwargs"]["reasoning_effort"] = effort;
      break;
    case ReasoningDialect::ReasoningEffort: m["reasoning_effort"] = *on ? (effort.empty() ? "high" : effort) : "none"; break;
    case ReasoningDialect::None: break;
  }
  return m;
}

namespace {

// The wire body re-emitted from the neutral form: sets w.dialect, w.body and w.note, and for an
// Anthropic upstream its URL and headers.
void emit_wire(const Upstream& u, const protocol::Request& in, const ReasoningMemo& memo, WireRequest& w) {
  protocol::Request req = in;
  if (!u.model.empty()) req.model = u.model;
  req.stream = true;
  req.include_usage = true;
  std::optional<bool> on = thinking_on(req.reasoning);
  // Tool turns: an upstream that demands reasoning_content back gets it from the client's
  // messages, else from what the router saw the model say before those calls; if it is still
  // unknown, thinking is switched off for this request (the API accepts tool turns without
  // reasoning in non-thinking mode) rather than sending a request it will refuse.
  if (u.echo_reasoning_content && on.value_or(true)) {
    for (auto& m : req.messages) {
      if (m.role != protocol::Role::Assistant || m.tool_calls.empty() || m.reasoning) continue;
      std::string r;
      if (memo.get(m.tool_calls.front().id, &r)) {
        m.reasoning = r;
      } else {
        on = false;
        w.note = "thinking off: the reasoning_content of an earlier tool turn is unknown";
        break;
      }
    }
  }
  if (u.api == WireApi::AnthropicMessages) {
    w.dialect = protocol::Dialect::AnthropicMessages;
    if (on && !*on) req.reasoning = {};
    ojson b = protocol::emit_request(w.dialect, req);
    if (!b.contains("max_tokens")) b["max_tokens"] = u.max_output_tokens;  // required by that API
    // Anthropic's API takes a thinking budget of at least 1024 tokens and below max_tokens (which
    // counts the thinking) and answers 400 otherwise: the budget is kept in that range, and a
    // max_tokens of 1024 or less, which leaves no room for it, goes without thinking.
    if (b.contains("thinking") && b["thinking"].is_object() && b["thinking"].value("type", "") == "enabled") {
      const int64_t max_out = b["max_tokens"].get<int64_t>();
      if (max_out <= 1024) {
        b.erase("thinking");
        w.note = "thinking off: max_tokens " + std::to_string(max_out) + " leaves no room for the API's 1024-token minimum budget";
      } else {
        b["thinking"]["budget_tokens"] = std::clamp<int64_t>(b["thinking"].value("budget_tokens", max_out / 2), 1024, max_out - 1);
      }
    }
    w.body = protocol::wire(b);
    w.url = u.base_url + (u.base_url.size() >= 3 && u.base_url.compare(u.base_url.size() - 3, 3, "/v1") == 0 ? "/messages" : "/v1/messages");
    w.headers.emplace_back("anthropic-version", "2023-06-01");
    if (!u.api_key_env.empty())
      if (const char* k = std::getenv(u.api_key_env.c_str())) w.headers.emplace_back("x-api-key", k);
    return;
  }
  // Legacy completions go to the upstream's /completions (every OpenAI-compatible engine has it).
  w.dialect = req.dialect == protocol::Dialect::Completions ? protocol::Dialect::Completions : protocol::Dialect::ChatCompletions;
  ojson b = protocol::emit_request(w.dialect, req);
  b.erase("thinking");
  b.erase("reasoning_effort");
  if (b.contains("chat_template_kwargs") && b["chat_template_kwargs"].is_object()) b["chat_template_kwargs"].erase("thinking");
  const ojson set = reasoning_members(u, on, req.reasoning.effort);
  for (auto& [k, v] : set.items()) {
    if (v.is_object() && b.contains(k) && b[k].is_object()) b[k].update(v);  // the client's other template kwargs stay
    else b[k] = v;
  }
  if (b.contains("chat_template_kwargs") && b["chat_template_kwargs"].empty()) b.erase("chat_template_kwargs");
  // Upstreams that do not demand reasoning_content back ignore it; strip it to keep requests small.
  if (!u.echo_reasoning_content && b.contains("messages"))
    for (auto& m : b["messages"])
      if (m.is_object()) m.erase("reasoning_content");
  w.body = protocol::wire(b);
}

}  // namespace

WireRequest build_wire_request(const Upstream& u, const protocol::Request& in, const ReasoningMemo& memo, const ClientBody* client) {
  WireRequest w;
  // The common case: the client's own bytes with the model, stream and reasoning members set
  // (a plain body has no tool turn, so the reasoning memo has nothing to add).
  if (client && client->json && edit_chat_body(u, in, *client->json, client->raw, w.body)) w.dialect = protocol::Dialect::ChatCompletions;
  else emit_wire(u, in, memo, w);
  if (w.dialect != protocol::Dialect::AnthropicMessages) {
    w.url = u.base_url + (w.dialect == protocol::Dialect::Completions ? "/completions" : "/chat/completions");
    if (!u.api_key_env.empty())
      if (const char* k = std::getenv(u.api_key_env.c_str())) w.headers.emplace_back("Authorization", std::string("Bearer ") + k);
  }
  w.headers.emplace_back("Content-Type", "application/json");
  w.headers.emplace_back("Accept", "text/event-stream");
  return w;
}

PressureSample parse_health_json(const std::string& body) {
  PressureSample s;
  auto j = ojson::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return s;
  for (const char* k : {"queued", "queue_depth", "num_requests_waiting", "waiting"})
    if (j.contains(k) && j[k].is_number()) s.queue_depth = j[k].get<double>();
  for (const char* k : {"running", "num_requests_running"})
    if (j.contains(k) && j[k].is_number()) s.running = j[k].get<double>();
  return s;
}

PressureSample parse_prometheus(const std::string& text) {
  PressureSample s;
  std::istringstream in(text);
  std::string line;
  auto add = [](double& dst, double v) { dst = dst < 0 ? v : dst + v; };
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    auto sp = line.find_last_of(' ');
    if (sp == std::string::npos) continue;
    std::string key = line.substr(0, sp);
    double v = std::strtod(line.c_str() + sp + 1, nullptr);
    std::string name = key.substr(0, key.find('{'));
    if (name == "vllm:num_requests_waiting" || name == "sglang:num_queue_reqs" || name == "v4host_queue_depth_requests") add(s.queue_depth, v);
    else if (name == "vllm:num_requests_running" || name == "sglang:num_running_reqs" || name == "v4host_running_sequences") add(s.running, v);
    else if (name == "vllm:time_to_first_token_seconds_sum" || name == "sglang:time_to_first_token_seconds_sum" ||
             name == "v4host_time_to_first_token_seconds_sum") add(s.ttft_sum, v);
    else if (name == "vllm:time_to_first_token_seconds_count" || name == "sglang:time_to_first_token_seconds_count" ||
             name == "v4host_time_to_first_token_seconds_count") add(s.ttft_count, v);
  }
  return s;
}

bool UpstreamState::allow(std::chrono::steady_clock::time_point now) {
  std::lock_guard<std::mutex> l(mu_);
  if (!open_) return true;
  if (now < open_until_ || probing_) return false;
  probing_ = true;  // half-open: one probe
  return true;
}

void UpstreamState::success() {
  std::lock_guard<std::mutex> l(mu_);
  consecutive_ = 0;
  open_ = false;
  probing_ = false;
}

void UpstreamState::failure(std::chrono::steady_clock::time_point now) {
  std::lock_guard<std::mutex> l(mu_);
  ++consecutive_;
  if (probing_ || consecutive_ >= failures_to_open) {
    open_ = true;
    probing_ = false;
    open_until_ = now + std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(cooldown_s));
  }
}

std::string UpstreamState::breaker_state() const {
  std::lock_guard<std::mutex> l(mu_);
  return !open_ ? "closed" : probing_ ? "half_open" : "open";
}

void UpstreamState::set_healthy(bool h, std::chrono::steady_clock::time_point now) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (healthy_ == h) return;
    healthy_ = h;
  }
  // A failed probe opens the breaker at once (no request has to time out to find out); a passing
  // one closes it.
  if (!h) {
    std::lock_guard<std::mutex> l(mu_);
    open_ = true;
    probing_ = false;
    open_until_ = now + std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(cooldown_s));
  } else {
    success();
  }
}

void UpstreamState::update_pressure(const PressureSample& s) {
  std::lock_guard<std::mutex> l(mu_);
  prev_ = last_;
  last_ = s;
  if (s.ttft_count > 0 && prev_.ttft_count >= 0 && s.ttft_count > prev_.ttft_count)
    ttft_mean_ = (s.ttft_sum - prev_.ttft_sum) / (s.ttft_count - prev_.ttft_count);
  else if (s.ttft_count > 0 && ttft_mean_ < 0)
    ttft_mean_ = s.ttft_sum / s.ttft_count;
}

Pressure UpstreamState::pressure() const {
  std::lock_guard<std::mutex> l(mu_);
  Pressure p;
  p.queue_depth = last_.queue_depth;
  // Predicted TTFT: the recent mean, stretched by how many requests wait per running one.
  if (ttft_mean_ >= 0) p.ttft_s = ttft_mean_ * (1 + std::max(0.0, last_.queue_depth) / std::max(1.0, last_.running));
  return p;
}

double UpstreamState::cached_share() const {
  std::lock_guard<std::mutex> l(mu_);
  return cached_share_;
}

void UpstreamState::observe_cache(int64_t prompt, int64_t cached) {
  if (prompt <= 0) return;
  std::lock_guard<std::mutex> l(mu_);
  double s = static_cast<double>(cached) / static_cast<double>(prompt);
  cached_share_ = cache_seen_ ? 0.9 * cached_share_ + 0.1 * s : s;
  cache_seen_ = true;
}

}  // namespace v4::router
