// The V4 forward pass on CPU. One call runs any number of sequence segments through shared
// layer passes: projections and experts are batched over all tokens of all segments, attention
// runs per segment against that sequence's own state. A segment is a chunk of prefill (any
// length, from the sequence's current position) or one decode token, so the same call serves
// chunked prefill, token-by-token decode and continuous batching.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "kv/sequence_state.h"
#include "model/weights.h"

namespace v4 {

enum class Numerics {
  Exact,     // exactly dequantised weights, float32 activations (matches golden noaq)
  Official,  // + FP8 activation quantisation before FP8/FP4 GEMMs, FP8 KV and FP4 indexer simulation
  CacheSim,  // only the FP8 KV / FP4 indexer simulation (golden cachesim)
  Fast,      // official, but wo_a and the compressor projections take their FP32 activations
             // rounded once to BF16 instead of exactly split in three: a third of their tile work
};
bool parse_numerics(const std::string& s, Numerics* out);
const char* numerics_name(Numerics n);  // the name parse_numerics reads
inline constexpr const char* kNumericsChoices = "exact, official, fast or cachesim";  // for messages

// Optional per-call recording of internals (tests and debugging); applies to segment 0.
struct Trace {
  std::vector<int> hidden_layers;                 // record residual streams after these blocks
  std::map<int, std::vector<float>> hidden;       // layer -> [n, hc, D]
  bool routes = false;
  std::map<int, std::vector<int32_t>> route_experts;  // layer -> [n, topk], sorted ascending
  std::map<int, std::vector<float>> route_weights;    // aligned with route_experts
  bool indexer = false;
  std::map<int, std::vector<int32_t>> indexer_topk;   // layer -> [n, index_topk], sorted, -1 padded
};

struct Segment {
  SequenceState* state = nullptr;
  const int32_t* tokens = nullptr;
  int n = 0;
  bool all_logits = false;     // logits for every token (else the last only)
  float* logits = nullptr;     // [all_logits ? n : 1, vocab]; may be null
  float* hidden = nullptr;     // optional: final residual streams [n, hc·D] (MTP input)
  // optional: DSpark context rows [n, T·D] — for each of the T dspark target layers, the mean
  // over the hc streams after that block, concatenated (the drafter's main_proj input).
  float* aux = nullptr;
  int logits_from = 0;         // with all_logits: only tokens from this index on (logits row 0 = that token)
};

// One sequence's DSpark draft block: the anchor (the last sampled token, not yet consumed by
// the main model) at position `pos`, then noise tokens; the drafter's context rows must cover
// positions < pos. `logits` receives the base draft logits [block_size, vocab] (row i predicts
// position pos + 1 + i; the Markov bias is added by the caller, token by token).
struct DSparkDraft {
  DSparkState* state = nullptr;
  int32_t anchor = 0;
  int64_t pos = 0;
  float* logits = nullptr;
};

namespace detail {
struct Ctx;
}

// Input of one MTP segment: the main model's final streams at positions mtp_pos.. and the
// tokens that follow each of them.
struct MtpSegment {
  SequenceState* state = nullptr;
  const float* hidden = nullptr;   // [n, hc·D]
  const int32_t* next_tokens = nullptr;
  int n = 0;
  bool all_logits = true;
  float* logits = nullptr;
};

class Engine {
 public:
  explicit Engine(const ModelWeights& w, Numerics numerics = Numerics::Exact);
  ~Engine();

  const ModelConfig& config() const { return w_.cfg; }
  const ModelWeights& weights() const { return w_; }
  Numerics numerics() const { return numerics_; }
  // FP8 activation quantisation before the FP8/FP4 GEMMs (`official`, `fast`).
  bool act_quant() const { return numerics_ == Numerics::Official || numerics_ == Numerics::Fast; }
  bool has_mtp() const { return w_.mtp.has_value(); }
  bool has_dspark() const { return w_.dspark.has_value(); }
  // Whether `official` numerics run their FP8/FP4 GEMMs on the BF16 dot-product units (same
  // products, FP32 accumulation; V4HOST_NO_BF16=1 keeps the float32 kernels for comparison).
  bool bf16_dot() const;

  std::unique_ptr<SequenceState> new_sequence(bool with_mtp = false) const;

  // Runs the segments (each advances its state by n tokens). Long segments are split internally
  // into chunks of at most max_chunk tokens; results are identical to one pass.
  void forward(std::span<Segment> segs, Trace* trace = nullptr);
  void forward_mtp(std::span<MtpSegment> segs);

  // DSpark drafter (engine/dspark.cpp). A fresh per-sequence drafter state; context rows
  // (Segment::aux) of positions first.. are projected into every stage's window (positions must
  // follow on from the state's end, or restart it); draft blocks run non-causally over the
  // window and the block.
  DSparkState new_dspark_state() const;
  void dspark_context(DSparkState& st, const float* aux, int64_t first, int n);
  void dspark_draft(std::span<DSparkDraft> drafts);
  // bias[v] = markov_w2[v] · markov_w1[prev]: the Markov head's transition bias (added to a row
  // of base draft logits before sampling that position).
  void dspark_markov_bias(int32_t prev, float* bias) const;

  int max_chunk = 512;

 private:
  detail::Ctx drafter_ctx() const;
  struct Impl;
  const ModelWeights& w_;
  Numerics numerics_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace v4
