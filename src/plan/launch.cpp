#include "plan/launch.h"

#include <fmt/format.h>

namespace v4::plan {

LaunchCommand launch_command(const std::string& engine, const ModelConfig& m, const std::string& model_ref,
                             const FitResult& fit, const GpuSet& gpus, const KvFormat& kv, int64_t context,
                             int64_t seqs) {
  LaunchCommand c;
  c.engine = engine;
  const bool fp8_experts_without_key = m.expert_format == ExpertFormat::FP8 && !m.base_model;
  const int n = gpus.count;
  if (engine == "v4host") {
    const double kv_budget = std::max(0.0, fit.kv_budget_bytes_per_gpu);
    c.command = fmt::format("v4host serve --model {} --ctx {} --max-seqs {} --kv-budget {:.0f}", model_ref, context,
                            std::max<int64_t>(1, seqs), kv_budget);
    c.notes.push_back("v4host is a CPU engine: it maps the checkpoint from disk and keeps the KV in host RAM");
    return c;
  }
  if (engine == "vllm") {
    std::string cmd = fmt::format("vllm serve {} --trust-remote-code", model_ref);
    if (fit.parallel == "tp")
      cmd += fmt::format(" --tensor-parallel-size {}", fit.tp);
    if (fit.dp > 1) cmd += fmt::format(" --data-parallel-size {}", fit.dp);
    if (n > 1) cmd += " --enable-expert-parallel";
    if (gpus.nodes > 1) {
      const int local = fit.parallel == "tp" ? 1 : gpus.per_node();
      cmd += fmt::format(" --data-parallel-size-local {} --data-parallel-address NODE0_IP --data-parallel-rpc-port 13345", local);
      c.notes.push_back(fmt::format("{} nodes: run the same command on the other nodes with --headless "
                                    "--data-parallel-start-rank <node_index x {}>", gpus.nodes, local));
    }
    cmd += fmt::format(" --kv-cache-dtype {} --block-size 256", kv.name == "bf16" ? "auto" : "fp8");
    cmd += fmt::format(" --max-model-len {} --max-num-seqs {} --gpu-memory-utilization 0.90", context,
                       std::max<int64_t>(1, seqs));
    if (kv.name == "fp8-fp4idx") cmd += " --attention_config.use_fp4_indexer_cache True";
    if (fp8_experts_without_key) {
      cmd += " --hf-overrides '{\"expert_dtype\": \"fp8\"}'";
      c.notes.push_back("the FP8 build's config.json has no expert_dtype and vLLM defaults a missing key to fp4; "
                        "--hf-overrides sets it (spec §7.2)");
    }
    cmd += " --tokenizer-mode deepseek_v4 --reasoning-parser deepseek_v4 --tool-call-parser deepseek_v4 "
           "--enable-auto-tool-choice";
    c.command = cmd;
    return c;
  }
  // SGLang
  std::string cmd = fmt::format("python -m sglang.launch_server --model-path {} --trust-remote-code --tp {}", model_ref, n);
  if (fit.dp > 1) cmd += fmt::format(" --dp {} --enable-dp-attention", fit.dp);
  if (n > 1) cmd += fmt::format(" --ep-size {}", n);
  if (gpus.nodes > 1) {
    cmd += fmt::format(" --nnodes {} --node-rank 0 --dist-init-addr NODE0_IP:5000", gpus.nodes);
    c.notes.push_back(fmt::format("{} nodes: run the same command on each node with its --node-rank", gpus.nodes));
  }
  cmd += fmt::format(" --context-length {} --max-running-requests {} --mem-fraction-static 0.88", context,
                     std::max<int64_t>(1, seqs));
  if (kv.name != "bf16") cmd += " --kv-cache-dtype fp8_e4m3";
  if (kv.name == "fp8-fp4idx") cmd += " --enable-deepseek-v4-fp4-indexer";
  cmd += " --reasoning-parser deepseek-v4 --tool-call-parser deepseekv4";
  c.command = cmd;
  return c;
}

}  // namespace v4::plan
