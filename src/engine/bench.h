// Engine benchmark: prefill and decode throughput, weight bytes touched per decoded token, and
// the ratio of the achieved weight traffic to this machine's measured read bandwidth.
#pragma once
#include <cstddef>
#include <string>

#include "engine/engine.h"

namespace v4 {

struct EngineBenchResult {
  int prompt_tokens = 0, decode_tokens = 0, threads = 0;
  double prefill_s = 0, decode_s = 0;
  double prefill_tok_s = 0, decode_tok_s = 0;
  double bytes_per_token = 0;      // weight bytes read per decoded token (batch 1)
  double mem_bw_bytes_s = 0;       // measured sequential read bandwidth
  double bw_ratio = 0;             // bytes_per_token · decode_tok_s / mem_bw
  std::string kernels;
};

// Weight bytes one decode step reads: every dense projection, the shared expert and the k
// routed experts per MoE layer, the hc matrices, one embedding row and the LM head.
double decode_weight_bytes(const ModelWeights& w);
// Sequential read bandwidth over a buffer of `bytes` using the global thread pool.
double measure_read_bandwidth(size_t bytes = size_t(1) << 30);
EngineBenchResult bench_engine(Engine& eng, int prompt_tokens, int decode_tokens, uint64_t seed);

}  // namespace v4
