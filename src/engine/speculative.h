// Speculative decoding with the checkpoint's drafter — the MTP head of the preview layout (one
// draft per step) or the DSpark drafter of the 0731/0813 layout (a block of dspark_block_size
// drafts per step, semi-autoregressive through its Markov head) — verified by one batched
// forward of the main model and accepted exactly: greedy output is identical to plain greedy
// decoding, and sampled output is distributed exactly as plain sampling (rejection sampling:
// accept draft d with probability min(1, p(d)/q(d)), else draw from the normalised residual
// max(0, p - q) and stop the block; when every draft is accepted the same forward yields one
// more token).
//
// SpecSequence is one sequence's half of a step, split around the main model's forward so a
// scheduler can verify many sequences in one batched forward: begin_step() drafts and fills the
// sequence's segment (pending tokens + drafts, a mark of the state), the caller runs the forward,
// end_step() accepts and emits. A rejection rolls the state back to the mark (SequenceState::
// rollback, O(tokens) not O(context)); the accepted tokens stay pending and are consumed by the
// next step's forward, and the rows the drafter needs for them (MTP: final streams; DSpark: the
// target layers' streams) come from the rejected forward, so a rejection costs no extra forward.
#pragma once
#include <cstdint>
#include <deque>
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

enum class DrafterKind { None, Mtp, DSpark };
// DSpark when the checkpoint has it (0731/0813), else the MTP head (preview), else none.
DrafterKind drafter_of(const Engine& eng);
const char* drafter_name(DrafterKind k);

struct SpeculativeStats {
  int64_t steps = 0;      // verifying forwards of the main model (with at least one draft)
  int64_t drafts = 0;     // drafted tokens
  int64_t accepted = 0;   // drafts accepted
  int64_t tokens = 0;     // tokens emitted by verifying forwards
  double acceptance() const { return drafts ? static_cast<double>(accepted) / static_cast<double>(drafts) : 0; }
  double tokens_per_step() const { return steps ? static_cast<double>(tokens) / static_cast<double>(steps) : 0; }
};

// on_token(token, logits the token was drawn from [vocab]); return false to stop.
using EmitFn = std::function<bool(int32_t, const float*)>;

class SpecSequence {
 public:
  // `max_drafts` caps the drafts per step (0 = the drafter's own: 1 for MTP, the block for DSpark).
  SpecSequence(Engine& eng, SequenceState& main, const SamplingParams& sp, int max_drafts = 0);
  DrafterKind kind() const { return kind_; }
  int max_drafts() const { return k_; }

  // Prefill. The prompt is consumed by the main state in chunks (from the state's position,
  // e.g. after a prefix-cache hit); for each chunk call prefill_chunk() before the forward (it
  // points the segment's row output at a buffer when the chunk reaches the prompt's last window)
  // and prefill_done() after it. Then first_token() samples the first token from the last
  // logits (the caller delivers it).
  void set_prompt(const std::vector<int32_t>& prompt);
  void prefill_chunk(Segment& s);
  void prefill_done(const Segment& s);
  int32_t first_token(const float* logits);

  // One step: `draft` false decodes the pending tokens without drafting (a plain step).
  // begin_step() fills `s` (state, tokens, logits, rows); end_step() runs after the forward and
  // emits 1..k+1 tokens; it returns false once on_token returned false.
  void begin_step(Segment& s, bool draft);
  bool end_step(const EmitFn& on_token);
  // begin_step in three parts, so a scheduler runs every sequence's drafter in one batched call:
  // plan_step() (true when this step drafts), then the engine call for all the requests
  // (forward_mtp on the mtp_request()s, dspark_draft on the dspark_request()s), then
  // finish_step() (draws the drafts, fills the segment).
  bool plan_step(bool draft);
  MtpSegment* mtp_request();
  DSparkDraft* dspark_request();
  void finish_step(Segment& s);
  bool drafted() const { return !drafts_.empty(); }
  int last_drafts() const { return last_drafts_; }      // drafts of the last step
  int last_accepted() const { return last_accepted_; }  // of which accepted

  const SpeculativeStats& stats() const { return stats_; }
  // Tests: replaces the draft logits (called with the drafted position and the logits row).
  std::function<void(int64_t, float*)> draft_override;

 private:
  int32_t draw(const std::vector<double>& p);
  void keep_rows(const float* rows, int64_t first, int n);
  bool plan_mtp();
  bool plan_dspark();
  Engine& eng_;
  SequenceState& st_;
  SamplingParams sp_;
  DrafterKind kind_;
  int V_, row_, k_;
  std::mt19937_64 rng_;
  Sampler sampler_;                       // plain steps (same distribution, no dense vector)
  std::vector<int32_t> tokens_;           // every token (prompt included)
  int64_t n_main_ = 0;                    // tokens the main state has consumed
  std::deque<std::vector<float>> rows_;   // drafter input rows of positions rows_first_..
  int64_t rows_first_ = 0;
  SequenceState mtp_;                     // MTP: its own window (pairs consumed up to mtp_.mtp_pos)
  DSparkState ds_;                        // DSpark: context windows
  // The step in flight.
  std::vector<int32_t> drafts_, in_;
  std::vector<std::vector<double>> q_;
  std::vector<float> logits_, rowbuf_, prefill_rows_;
  bool planned_ = false;
  MtpSegment mtp_req_;
  DSparkDraft ds_req_;
  std::vector<float> mtp_in_, draft_logits_;
  int64_t prefill_first_ = -1;
  StateMark mark_;
  int npend_ = 0;
  int last_drafts_ = 0, last_accepted_ = 0;
  SpeculativeStats stats_;
};

// Whole-sequence wrapper for `generate` and bench-engine: prefill, then steps until n tokens.
class SpeculativeDecoder {
 public:
  SpeculativeDecoder(Engine& eng, SequenceState& state, const SamplingParams& sp, int max_drafts = 0);
  void start(const int32_t* prompt, int n);
  void generate(int n, const std::function<bool(int32_t)>& on_token);
  const SpeculativeStats& stats() const { return seq_.stats(); }
  SpecSequence& sequence() { return seq_; }
  // Tests: replaces the draft logits (see SpecSequence::draft_override); set before start().
  std::function<void(int64_t, float*)> draft_override;

 private:
  Engine& eng_;
  SequenceState& st_;
  SpecSequence seq_;
  std::vector<float> first_logits_;
  bool have_first_ = false;
};

}  // namespace v4
