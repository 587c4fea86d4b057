// Engine benchmark: decode throughput at several batch sizes, prefill at several prompt lengths,
// prefill and decode after a long context, and the machine's roofline (read bandwidth, FP32 FMA
// and BF16 dot-product peaks) measured in the same run, with every figure's ratio to it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/engine.h"

namespace v4 {

// What a token touches: weight bytes and multiply-accumulate parameters of the dense part (all
// projections, shared experts, hc matrices; the LM head separately) and of one routed expert.
struct WeightTraffic {
  double dense_bytes = 0, dense_params = 0;
  double expert_bytes = 0, expert_params = 0;  // one routed expert, summed over the MoE layers
  double head_bytes = 0, head_params = 0;      // LM head (+ hc head, one embedding row)
  int experts = 0, topk = 0;
  // Weight bytes one decode step of `batch` sequences reads (expected distinct experts under
  // uniform routing: E·(1-(1-k/E)^batch)).
  double step_bytes(int batch) const;
  // Matmul FLOP of one prefill token (2 per parameter; the head only runs on the last token).
  double prefill_flop() const { return 2 * (dense_params + topk * expert_params); }
};
WeightTraffic weight_traffic(const ModelWeights& w);
// Weight bytes one batch-1 decode step reads (kept for callers of the old figure).
double decode_weight_bytes(const ModelWeights& w);

struct BenchOptions {
  std::vector<int> prompts = {256, 2048};  // prefill figures
  std::vector<int> batches = {1, 4, 8, 16};
  int decode = 32;                         // decode steps per figure
  int context = 16384;                     // long-context figure (0 = skip) ...
  int context_base = 1024;                 // ... against this short context
  int speculative = 0;                     // tokens generated with MTP speculation (0 = skip)
  uint64_t seed = 1;
  bool progress = false;                   // one line per figure on stderr
};

struct DecodeFigure {
  int batch = 0;
  double tok_s = 0;          // aggregate tokens/s over the batch
  double step_bytes = 0;     // weight bytes per step
  double roofline_tok_s = 0; // batch · bandwidth / step_bytes
  double ratio = 0;          // tok_s / roofline_tok_s
  double speedup = 0;        // tok_s / batch-1 tok_s
  double cpu_share = 0;      // process CPU seconds / (wall seconds · threads) over the timed steps:
                             // below 1 the pool waited (memory, synchronisation) or neighbours had the cores
};
struct PrefillFigure {
  int tokens = 0;
  double tok_s = 0, flop_s = 0;
  double ratio = 0;          // flop_s / the peak of the units the numerics use
};
struct ContextFigure {
  int tokens = 0, base = 0;
  double prefill_tok_s = 0, base_prefill_tok_s = 0;  // whole-prompt prefill rates
  double decode_tok_s = 0, base_decode_tok_s = 0;    // batch-1 decode after the prompt
};

struct SpeculativeFigure {
  int tokens = 0;
  double tok_s = 0;            // greedy generation with MTP drafts
  double acceptance = 0;       // accepted drafts / drafts
  double tokens_per_step = 0;  // tokens per verifying forward
};

struct EngineBenchResult {
  // Figures of the first prompt / batch 1 (field names kept from the first version).
  int prompt_tokens = 0, decode_tokens = 0, threads = 0;
  double prefill_s = 0, decode_s = 0;
  double prefill_tok_s = 0, decode_tok_s = 0;
  double bytes_per_token = 0;      // weight bytes read per decoded token (batch 1)
  double mem_bw_bytes_s = 0;       // measured read bandwidth: the best probe (kernels/peaks.h)
  std::string mem_bw_probe;        // which probe gave it
  double mem_bw_4k_bytes_s = 0;    // the original probe (4 KiB pages), for older runs' ratios
  std::vector<std::pair<std::string, double>> mem_bw_probes;  // every probe's best
  double bw_ratio = 0;             // bytes_per_token · decode_tok_s / mem_bw
  std::string kernels;
  bool weights_populated = false;  // the checkpoint's pages were mapped at load (--populate)
  double populate_s = 0;           // how long that took
  // Roofline of this machine, measured in the same run.
  double fp32_peak_flop_s = 0, bf16_peak_flop_s = 0;
  double peak_flop_s = 0;          // the one the engine's numerics use (BF16 when bf16_dot)
  bool bf16_dot = false;
  std::string numerics;
  double prefill_flop_per_token = 0;
  std::vector<DecodeFigure> decode;
  std::vector<PrefillFigure> prefill;
  ContextFigure context;
  SpeculativeFigure speculative;
};

EngineBenchResult bench_engine(Engine& eng, const BenchOptions& opt);
// The JSON object bench-engine --json prints (field names documented in docs/engine.md).
std::string bench_json(const EngineBenchResult& r);

}  // namespace v4
