// Launch commands for the recommended deployment: v4host, vLLM and SGLang, with the flags each
// needs for V4 (parsers, KV dtype, parallelism, context and sequence limits).
#pragma once
#include <string>
#include <vector>

#include "plan/fit.h"

namespace v4::plan {

struct LaunchCommand {
  std::string engine;
  std::string command;             // for node 0 (multi-node: see notes)
  std::vector<std::string> notes;
};

// `model_ref` is the HF repo or local directory to serve; `context`/`seqs` the limits to set.
LaunchCommand launch_command(const std::string& engine, const ModelConfig& m, const std::string& model_ref,
                             const FitResult& fit, const GpuSet& gpus, const KvFormat& kv, int64_t context,
                             int64_t seqs);

}  // namespace v4::plan
