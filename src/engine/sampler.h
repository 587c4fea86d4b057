// Token sampling: greedy, temperature, top-p, min-p, with a seeded generator.
#pragma once
#include <cstdint>
#include <random>
#include <vector>

namespace v4 {

struct SamplingParams {
  float temperature = 0.0f;  // 0 = greedy
  float top_p = 1.0f;
  float min_p = 0.0f;
  int top_k = 0;             // 0 = off
  uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& p) : p_(p), rng_(p.seed) {}
  // Picks a token from logits[vocab]; `mask` (optional) marks allowed tokens.
  int32_t sample(const float* logits, int vocab, const std::vector<uint8_t>* mask = nullptr);
  const SamplingParams& params() const { return p_; }

 private:
  SamplingParams p_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> cand_;
};

int32_t argmax(const float* logits, int vocab);

}  // namespace v4
