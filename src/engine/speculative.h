// Speculative decoding with the MTP module: each step drafts the next token with the MTP head,
// verifies it together with the pending tokens in one batched forward of the main model, and
// accepts it exactly: greedy output is identical to plain greedy decoding, and sampled output is
// distributed exactly as plain sampling (rejection sampling: accept d with probability
// min(1, p(d)/q(d)), else draw from the normalised residual max(0, p - q)).
//
// The main model's state is snapshotted before the verifying forward and restored when the draft
// is rejected (the state cannot drop a token); the rejected step's hidden states of the accepted
// positions are kept, so the replacement token costs no extra forward.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <vector>

#include "engine/engine.h"
#include "engine/sampler.h"

namespace v4 {

// The distribution Sampler::sample draws from for these logits (temperature, top-k, top-p,
// min-p; greedy = one-hot on the argmax), as a dense vector over the vocabulary.
void sampling_distribution(const SamplingParams& sp, const float* logits, int vocab, std::vector<double>& p);

// One rejection-sampling decision: draft d was drawn from q; returns the token to emit (d when
// accepted) — distributed exactly as p. `u` is a uniform [0,1) draw for the test, `r` another
// for the residual.
int32_t speculative_accept(const std::vector<double>& p, const std::vector<double>& q, int32_t d, double u, double r,
                           bool* accepted);

struct SpeculativeStats {
  int64_t steps = 0;      // verifying forwards of the main model
  int64_t drafts = 0;     // drafted tokens
  int64_t accepted = 0;   // drafts accepted
  int64_t tokens = 0;     // tokens emitted
  double acceptance() const { return drafts ? static_cast<double>(accepted) / static_cast<double>(drafts) : 0; }
  double tokens_per_step() const { return steps ? static_cast<double>(tokens) / static_cast<double>(steps) : 0; }
};

class SpeculativeDecoder {
 public:
  // `state` must have been created with MTP state; the prompt is prefilled by start().
  SpeculativeDecoder(Engine& eng, SequenceState& state, const SamplingParams& sp);
  void start(const int32_t* prompt, int n);
  // Emits the next tokens (one or two per verifying forward) until `n` more have been emitted
  // or on_token returns false.
  void generate(int n, const std::function<bool(int32_t)>& on_token);
  const SpeculativeStats& stats() const { return stats_; }
  // Tests: replaces the MTP draft logits (called with the drafted position and the MTP logits).
  std::function<void(int64_t, float*)> draft_override;

 private:
  int32_t draw(const std::vector<double>& p);
  Engine& eng_;
  SequenceState& st_;
  SamplingParams sp_;
  std::mt19937_64 rng_;
  Sampler sampler_;
  int V_, row_;
  std::vector<int32_t> tokens_;            // every accepted token (prompt included)
  int64_t n_main_ = 0;                     // tokens the main state has consumed
  int64_t n_mtp_ = 0;                      // MTP has consumed pairs (H_i, t_{i+1}) for i < n_mtp_
  std::vector<std::vector<float>> hidden_; // H_i for i >= n_mtp_ (index i - n_mtp_)
  std::vector<float> last_logits_;         // main logits predicting tokens_[n_main_] when pending is empty
  SpeculativeStats stats_;
};

}  // namespace v4
