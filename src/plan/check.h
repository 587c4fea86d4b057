// `v4host check` as a function: a request (the command-line inputs, already parsed into
// numbers) in, a report (fit, speed bound, cost, verdict, launch commands) out.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "plan/catalog_file.h"
#include "plan/cost.h"
#include "plan/fit.h"
#include "plan/launch.h"
#include "plan/speed.h"
#include "plan/verdict.h"

namespace v4::plan {

struct CheckRequest {
  std::string model = "v4-flash";
  std::string model_dir;                 // overrides model when set
  std::string gpus = "2xH200";
  std::vector<std::string> gpu_specs;    // --gpu-spec entries
  std::string catalog_file;              // --catalog
  int64_t context = 131072;
  bool context_given = true;             // false: the default, lowered to the model's maximum if needed
  int concurrency = 8;
  std::string engine = "vllm";
  std::string kv_dtype;                  // "" = engine default
  std::string parallel = "auto";
  bool mtp = false;
  CostInput cost;                        // prices < 0 = from the tariff catalog
  bool tokens_given = true;
  NonCostReasons non_cost;
  bool sweep = false;
  bool example = false;                  // built-in example (no arguments given)
};

// The defaults of `v4host check` with no arguments: the checklist article's setup
// (V4-Flash, 2 x H200 at $7.18/h, 200M tokens a month).
CheckRequest example_request();

struct SweepCell {
  int64_t context;
  int concurrency;
  bool fits;
};

struct CheckReport {
  CheckRequest request;
  ModelConfig model;
  WeightBytes weights;
  GpuSet gpus;
  EngineSpec engine;
  KvFormat kv;
  FitInput fit_input;
  FitResult fit;
  Precision precision;
  std::string recommended_model;         // checkpoint to serve (may differ from the requested one)
  std::optional<FitResult> alt_fit;      // fit of the recommended checkpoint when it differs
  SpeedBound speed;
  CostInput cost_input;
  CostResult cost;
  std::string tariff_note;               // where the hosted prices come from, with date
  Verdict verdict;
  std::vector<LaunchCommand> launch;     // v4host, vllm, sglang
  std::vector<int64_t> sweep_contexts;
  std::vector<int> sweep_concurrency;
  std::vector<SweepCell> sweep;          // filled with --sweep
  std::vector<int64_t> sweep_max_concurrency;  // per context
};

// Throws InputError for bad input (unknown GPU, negative volume, impossible context...).
CheckReport run_check(const CheckRequest& req);

}  // namespace v4::plan
