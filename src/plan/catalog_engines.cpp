#include "plan/catalog_engines.h"

#include "core/error.h"

namespace v4::plan {

const std::vector<EngineSpec>& builtin_engines() {
  static const std::vector<EngineSpec> e = {
      {"v4host", 1.0,
       "v4host's own cache (src/kv) stores exactly the state of spec §4.1, so its bytes are the formula",
       2.0, "v4host runs on the CPU: 2 GiB for scratch activations and the HTTP server (estimate)", 0.95,
       "bf16", true, true, "2026-11-29"},
      {"vllm", 1.10,
       "planning margin, not a measurement: paged allocation in 256-token blocks (vLLM recipes pass "
       "--block-size 256; log line 'Setting kv cache block size to 256 for DEEPSEEK_SPARSE_SWA backend' "
       "quoted in vllm-project/vllm#51041) rounds every cache family of every sequence up to whole pages, "
       "and the compressor state is kept per token in a paged state cache (spec §4.4). #51041 reports a "
       "vLLM 0.26 build holding far fewer tokens than the formula; measure yours and set kv_factor in a "
       "--catalog file",
       6.0, "CUDA context, CUDA graphs, activation and MoE all-to-all workspaces (estimate)", 0.90, "fp8",
       true, false, "2026-11-29"},
      {"sglang", 1.10,
       "planning margin, not a measurement: paged KV pool with per-family rounding and the compressor "
       "state kept alongside (spec §4.4); measure yours and set kv_factor in a --catalog file",
       6.0, "CUDA context, CUDA graphs, activation and DeepEP buffers (estimate)", 0.88, "fp8", true, false,
       "2026-11-29"},
  };
  return e;
}

const EngineSpec& find_engine(const std::vector<EngineSpec>& catalog, const std::string& name) {
  for (auto& e : catalog)
    if (e.name == name) return e;
  throw InputError("--engine: unknown engine '" + name + "' (known: v4host, vllm, sglang)");
}

const std::vector<Tariff>& builtin_tariffs() {
  static const std::vector<Tariff> t = {
      {"v4-flash", 0.14, 0.28, -1, "2026-04-27",
       "DeepSeek API list price for V4-Flash as used by the self-hosting checklist article (issue 5); "
       "same figures quoted by 1011-a.github.io/reports/deepseek-v4/self-hosting (verified 2026-04-27). "
       "Cache-hit price not recorded: pass --price-cached-input"},
      {"v4-pro", 0.435, 0.87, 0.003625, "2026-05-22",
       "DeepSeek API price for V4-Pro after the promotion ended, as reported by aitechconnect (quoting "
       "Artificial Analysis) on 2026-05-22"},
  };
  return t;
}

const Tariff* find_tariff(const std::vector<Tariff>& catalog, const std::string& model) {
  std::string key = model;
  if (model.rfind("v4-flash", 0) == 0) key = "v4-flash";
  if (model.rfind("v4-pro", 0) == 0) key = "v4-pro";
  for (auto& t : catalog)
    if (t.model == model) return &t;
  for (auto& t : catalog)
    if (t.model == key) return &t;
  return nullptr;
}

}  // namespace v4::plan
