// Serving engines (v4host, vLLM, SGLang): how much memory each needs beyond the weights and how
// far its KV cache exceeds the formula of spec §4.2 (the calibration factor; 1.0 = the formula,
// which is the floor no engine can beat).
#pragma once
#include <string>
#include <vector>

namespace v4::plan {

struct EngineSpec {
  std::string name;              // "v4host", "vllm", "sglang"
  double kv_factor = 1.0;        // engine KV bytes / formula bytes
  std::string kv_factor_source;
  double overhead_gib = 0;       // per GPU: context, activations, graphs, comm buffers
  std::string overhead_source;
  double mem_fraction = 0.9;     // share of device memory the engine lets itself use
  std::string default_kv_dtype;  // "fp8", "bf16"
  // Runs FP4 experts on Hopper without FP4 tensor cores (weight-only kernels): SGLang documents
  // Marlin W4A16 (spec §7.3); vLLM's recipes list H200 as verified for the native V4-Pro
  // checkpoint (vllm-project/recipes#381).
  bool fp4_on_hopper = false;
  bool runs_on_metal = false;
  std::string as_of;
};

const std::vector<EngineSpec>& builtin_engines();
const EngineSpec& find_engine(const std::vector<EngineSpec>& catalog, const std::string& name);

// Hosted API tariff for a model, USD per million tokens.
struct Tariff {
  std::string model;            // catalog model name it applies to
  double input = 0;
  double output = 0;
  double cached_input = -1;     // < 0: unknown (cost then charges cached input at `input`)
  std::string as_of;
  std::string source;
};

const std::vector<Tariff>& builtin_tariffs();
// The tariff for a model (FP8 builds and -Base use the hosted instruct model's price).
// Returns nullptr when none is known.
const Tariff* find_tariff(const std::vector<Tariff>& catalog, const std::string& model);

}  // namespace v4::plan
