// Replica groups: interchangeable copies of one tier (several `v4host serve`, vLLM or SGLang
// instances of the same model behind one route). A route's chain may hold a group, written as a
// nested list (`chain: [[flash-a, flash-b], hosted-pro]`); each request tries the group's
// members in an order of its own, then the rest of the chain, so a replica that is down, busy or
// failing falls over to its siblings before the request leaves the tier.
//
// The order (`balance:` of the route):
// - `session` (default): the same conversation goes to the same replica, so its prefix cache
//   (v4host's exact prefix cache, vLLM/SGLang prefix caching) is hit on every turn. The key is
//   the request's `prompt_cache_key` (Codex sends one per conversation), else `metadata.user_id`
//   (Claude Code's carries its session), else a `session_id` / `x-session-id` header, else the
//   text of the conversation's opening (system prompt and first user message). Members are ranked
//   by rendezvous hashing of (key, member name): a key keeps its replica while others come and
//   go, and losing a replica moves only that replica's keys. With bounded loads: a member
//   already holding more than `bounded_load` × its fair share of the group's requests in flight
//   is passed over for the next in the key's ranking, so one hot session cannot pile onto one
//   replica.
// - `least_loaded`: the member with the fewest requests in flight (the router's own plus the
//   queue depth last read from its /health or /metrics) first; ties broken at random.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/types.h"

namespace v4::router {

struct Balance {
  enum By { Session, LeastLoaded } by = Session;
  double bounded_load = 1.25;  // session: capacity per member = ceil(bounded_load × (in flight + 1) / members)
};

// The affinity key of a request ("" = none): prompt_cache_key, metadata.user_id, the session
// header given, else the conversation's opening text. `why` names which one was used.
std::string session_key(const protocol::Request& r, std::string_view session_header, const char** why = nullptr);

// 64-bit rendezvous score of `member` for `key` (FNV-1a then a finaliser; stable across runs).
uint64_t rendezvous_score(std::string_view key, std::string_view member);

// Orders a group's members for one request: indices into `members`, the first to try first.
// `load[i]` is member i's requests in flight (and queued where known); `tie` breaks ties (and
// stands in for the key where there is none).
std::vector<size_t> order_replicas(const Balance& b, std::string_view key, const std::vector<std::string>& members,
                                   const std::vector<double>& load, uint64_t tie);

}  // namespace v4::router
