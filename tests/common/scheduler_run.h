// Driving the scheduler in tests: random prompts that avoid EOS, greedy requests, and a
// request's tokens, logprobs, finish reason and cached-prefix length once it has finished.
#pragma once
#include <chrono>
#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "sched/scheduler.h"

namespace v4::test {

inline std::vector<int32_t> prompt(int n, int seed) {
  std::mt19937 rng(static_cast<unsigned>(seed));
  std::vector<int32_t> p(static_cast<size_t>(n));
  for (auto& t : p) t = static_cast<int32_t>(2 + rng() % 500);  // avoid EOS (1)
  return p;
}

struct Result {
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  FinishReason reason = FinishReason::None;
  int cached = 0;
};

inline Result collect(const std::shared_ptr<RequestHandle>& h) {
  Result r;
  std::vector<TokenEvent> ev;
  while (!h->poll(ev, std::chrono::milliseconds(50))) {
  }
  for (auto& e : ev) {
    r.tokens.push_back(e.id);
    r.logprobs.push_back(e.logprob);
  }
  r.reason = h->finish_reason();
  r.cached = h->cached_tokens;
  return r;
}

// Greedy (the default sampling), `n` tokens, the chosen token's logprob reported.
inline GenRequest greedy(std::vector<int32_t> p, int n) {
  GenRequest g;
  g.prompt = std::move(p);
  g.max_tokens = n;
  g.top_logprobs = 0;
  return g;
}

}  // namespace v4::test
