// One upstream as the router sees it at run time: how a neutral request becomes its wire request
// (API, model name, the reasoning switch in its dialect, reasoning_content echoed on tool turns
// where it demands it), its circuit breaker, in-flight count, and the pressure and health read
// from its /health and /metrics (v4host, vLLM and SGLang formats).
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "router/upstream_client.h"
#include "protocol/types.h"
#include "router/config.h"
#include "router/rules.h"

namespace v4::router {

// Reasoning the router has seen the model produce before tool calls, by tool-call id, so that a
// client that drops reasoning_content (most SDKs do) can still talk to an upstream that demands
// it back on tool turns. Bounded LRU; thread-safe.
class ReasoningMemo {
 public:
  explicit ReasoningMemo(size_t cap = 20000) : cap_(cap) {}
  void put(const std::string& tool_call_id, const std::string& reasoning);
  bool get(const std::string& tool_call_id, std::string* out) const;

 private:
  size_t cap_;
  mutable std::mutex mu_;
  std::list<std::string> order_;
  std::unordered_map<std::string, std::pair<std::string, std::list<std::string>::iterator>> map_;
};

struct WireRequest {
  std::string url;
  HeaderList headers;
  std::string body;
  protocol::Dialect dialect = protocol::Dialect::ChatCompletions;  // the upstream's stream format
  std::string note;  // e.g. "thinking off: reasoning_content of an earlier tool turn unknown"
};

// Whether the request asks for reasoning on (true), off (false) or leaves it to the upstream.
std::optional<bool> thinking_on(const protocol::ReasoningRequest& r);
// The reasoning switch in upstream `u`'s dialect, as the members to set on a Chat Completions
// body ({"thinking": …}, {"chat_template_kwargs": {…}} or {"reasoning_effort": …}; empty when
// `on` is unset or the dialect is None). Shared by the emit path and the edited way in.
protocol::ojson reasoning_members(const Upstream& u, std::optional<bool> on, const std::string& effort);

// Always a streaming request (the router reads every answer as a stream, so it sees the first
// token, a cut stream and usage the same way for every client API).
// `client`: the client's body (bytes and parsed), when known: a plain Chat Completions body for a
// Chat Completions upstream is then edited instead of re-emitted (router/wire_edit.h).
struct ClientBody {
  std::string_view raw;
  const protocol::ojson* json = nullptr;
};
WireRequest build_wire_request(const Upstream& u, const protocol::Request& req, const ReasoningMemo& memo, const ClientBody* client = nullptr);

// Parses the pressure an engine reports: /health JSON (v4host: "queued"/"running") or Prometheus
// text (vllm:num_requests_waiting, sglang:num_queue_reqs, v4host_queue_depth_requests; TTFT from
// the *time_to_first_token_seconds histograms).
struct PressureSample {
  double queue_depth = -1, running = -1, ttft_sum = -1, ttft_count = -1;
};
PressureSample parse_health_json(const std::string& body);
PressureSample parse_prometheus(const std::string& text);

class UpstreamState {
 public:
  explicit UpstreamState(const Upstream& u) : cfg(u) {}
  const Upstream& cfg;

  // Circuit breaker: `failures_to_open` consecutive failures open it for `cooldown_s`; then one
  // probe is let through (half-open); its success closes it.
  bool allow(std::chrono::steady_clock::time_point now);
  void success();
  void failure(std::chrono::steady_clock::time_point now);
  std::string breaker_state() const;  // closed | open | half_open
  bool healthy() const { return healthy_; }
  void set_healthy(bool h, std::chrono::steady_clock::time_point now);

  std::atomic<int> in_flight{0};  // requests now at this upstream (changed on the upstream thread, read anywhere)
  // Pressure from the last poll, and a TTFT prediction from it.
  void update_pressure(const PressureSample& s);
  Pressure pressure() const;

  // Share of prompt tokens the upstream reported as cached (EWMA), for the cost cap estimate.
  double cached_share() const;
  void observe_cache(int64_t prompt, int64_t cached);

  int failures_to_open = 5;
  double cooldown_s = 10;

 private:
  mutable std::mutex mu_;
  int consecutive_ = 0;
  bool open_ = false, probing_ = false, healthy_ = true;
  std::chrono::steady_clock::time_point open_until_{};
  PressureSample last_{}, prev_{};
  double ttft_mean_ = -1;
  double cached_share_ = 0;
  bool cache_seen_ = false;
};

}  // namespace v4::router
