// Does a checkpoint fit a set of GPUs, and for how much context and how many concurrent
// sequences? Also whether the GPUs can run the checkpoint's number formats.
//
// Placement (spec §2.5): routed experts are spread over all N GPUs (expert parallelism); the
// attention/dense part runs either tensor-parallel inside a node ("tp": the TP-split tensors are
// divided by the node's GPU count, the rest replicated; V4 has one KV head, so every GPU of a TP
// group holds the whole KV of every sequence) or data-parallel ("dp": every GPU holds the whole
// dense part and the KV of its own sequences). "auto" picks the one that serves more sequences.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "plan/catalog_engines.h"
#include "plan/catalog_gpus.h"
#include "plan/catalog_models.h"
#include "plan/kv.h"
#include "plan/weights.h"

namespace v4::plan {

struct Precision {
  std::string status;       // "native", "weight-only", "unsupported"
  std::string explanation;  // plain words
  std::string recommended_model;  // catalog name of the checkpoint to use instead, or ""
};

Precision check_precision(const ModelConfig& m, const GpuSpec& gpu, const EngineSpec& engine);

struct FitInput {
  ModelConfig model;
  WeightBytes weights;
  GpuSet gpus;
  EngineSpec engine;
  KvFormat kv;
  int64_t context = 131072;
  int concurrency = 1;
  std::string parallel = "auto";  // auto | tp | dp
  bool mtp = false;               // load the MTP layer (speculative decoding)
};

struct FitResult {
  std::string parallel;            // "tp" or "dp" (chosen)
  int tp = 1;                      // attention tensor-parallel degree
  int dp = 1;                      // attention data-parallel groups (each holds its own sequences)
  int ep = 1;                      // expert-parallel degree (= GPU count)
  int experts_per_gpu = 0;         // ceil(E / N)
  double weights_bytes_per_gpu = 0;
  double weights_experts_per_gpu = 0, weights_sharded_per_gpu = 0, weights_replicated_per_gpu = 0;
  double memory_bytes_per_gpu = 0;     // device memory
  double usable_bytes_per_gpu = 0;     // memory × engine mem_fraction
  double headroom_bytes_per_gpu = 0;   // memory the engine leaves unused (1 − mem_fraction)
  double overhead_bytes_per_gpu = 0;   // runtime: context, activations, graphs, buffers
  double kv_budget_bytes_per_gpu = 0;  // usable − weights − overhead (negative: weights do not fit)
  double kv_bytes_per_token = 0;        // engine bytes per extra token of context (with kv_factor)
  double kv_floor_bytes_per_token = 0;  // the formula alone (floor)
  double kv_bytes_per_sequence = 0;     // engine bytes for one sequence at the requested context
  double kv_floor_bytes_per_sequence = 0;
  KvBreakdown kv_breakdown;             // formula bytes at the requested context
  bool weights_fit = false;
  bool fits = false;               // weights fit and at least one sequence at the context fits
  bool meets_concurrency = false;  // the requested concurrency fits at the requested context
  int64_t max_context = 0;         // for the requested concurrency (capped at the model's 1M)
  int64_t max_context_single = 0;  // for one sequence
  int64_t max_concurrency = 0;     // at the requested context
  std::vector<std::string> notes;  // why, in plain words
};

FitResult compute_fit(const FitInput& in);
// Engine KV bytes for `seqs_per_gpu` sequences of context L on one GPU.
double kv_engine_bytes(const FitInput& in, int64_t context);

}  // namespace v4::plan
