// Shared internals of the forward pass (not a public header).
#pragma once
#include <cstdint>
#include <functional>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "engine/engine.h"
#include "kernels/ops.h"

namespace v4::detail {

// One segment's view during a block pass: which layer state, where its tokens sit in the batch.
struct SegCtx {
  LayerState* ls = nullptr;
  int64_t p0 = 0;   // position of the first token
  int off = 0;      // row offset in the batch
  int n = 0;
};

// Which weights the BF16 dot-product kernels compute exactly (decided once per weight: it reads
// every scale). Owned by the engine; keys are the model's LinearWeight objects.
struct Bf16Choice {
  bool enabled = false;  // official numerics, CPU support, not disabled by V4HOST_NO_BF16
  bool one_part = false;  // `fast`: wo_a and the compressor projections on activations rounded once to BF16 (one part, not three)
  std::mutex mu;
  std::unordered_map<const LinearWeight*, bool> ok;
  bool usable(const LinearWeight& w);
};

struct Ctx {
  const ModelConfig& cfg;
  bool act_quant;     // FP8 activation quantisation before FP8/FP4 GEMMs (official numerics)
  bool cache_quant;   // FP8 KV / FP4 indexer simulation
  const RopeTable& rope_plain;
  const RopeTable& rope_comp;
  Trace* trace;
  bool trace_seg0;    // whether segment 0 of this batch is traced (main model only)
  Bf16Choice* bf16 = nullptr;
  const RopeTable& rope(int ratio) const { return ratio ? rope_comp : rope_plain; }
};

// y = x·Wᵀ for weights used without activation quantisation; in `official` with the BF16 units
// enabled, BF16 weights run there on exactly split activations (same products).
// `fast_part`: a projection `fast` runs on one BF16 part (the compressor's).
void linear_w(const Ctx& c, const LinearWeight& w, const float* x, int M, float* y, bool fast_part = false);
// y = x·Wᵀ, with the official FP8 activation quantisation of x when enabled and W is FP8/FP4.
void linear_act(const Ctx& c, const LinearWeight& w, const float* x, int M, float* y);
// Two weights over the same input (the experts' w1 and w3): the input is quantised once.
void linear_act2(const Ctx& c, const LinearWeight& w1, const LinearWeight& w3, const float* x, int M, float* y1, float* y3);

// One token's independent projections, gathered and run in one parallel call (the kernels'
// linear_one_token: one fork/join instead of one per projection) where they take the one-token
// register paths; the others run as linear_act / linear_w. The same results as calling
// linear_act / linear_w one by one (the same row kernels).
class OneTokenCalls {
 public:
  explicit OneTokenCalls(const Ctx& c) : c_(c) {}
  void act(const LinearWeight& w, const float* x, float* y) { calls_.push_back({&w, x, y, true, false}); }  // linear_act, M = 1
  void w(const LinearWeight& w, const float* x, float* y, bool fast_part = false) {
    calls_.push_back({&w, x, y, false, fast_part});  // linear_w, M = 1
  }
  // linear_bf16_split(w, x, 1, y, 0, 0, parts) (`w` must outlive run()).
  void split(const LinearWeight& w, const float* x, float* y, int parts) { calls_.push_back({&w, x, y, false, false, parts}); }
  void run();

 private:
  struct Call {
    const LinearWeight* w;
    const float* x;
    float* y;
    bool act, fast_part;
    int split_parts = 0;  // > 0: a split call
  };
  const Ctx& c_;
  std::vector<Call> calls_;
};

void attention(const Ctx& c, const BlockWeights& b, const float* x, int M, std::vector<SegCtx>& segs, float* out);
// A block (mHC, norms, attention sub-layer, MoE) over streams X [M, hc, D] with the attention
// supplied: attn(x_normed [M, D], out [M, D]).
using AttentionFn = std::function<void(const float*, float*)>;
void run_block_with(const Ctx& c, const BlockWeights& b, float* X, int M, const int32_t* tokens, std::vector<SegCtx>& segs,
                    const AttentionFn& attn);
// hc_head reduction, final norm and logits of the selected rows of X (outs[i] may be null).
void head_rows(const Ctx& c, const HeadWeights& hw, const LinearWeight& lm, const float* X, const std::vector<int>& rows,
               float* const* outs);
void moe(const Ctx& c, const BlockWeights& b, const float* x, int M, const int32_t* tokens, std::vector<SegCtx>& segs,
         float* out);

}  // namespace v4::detail
