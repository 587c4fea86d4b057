// The V4 model catalog: the configuration of each released checkpoint (spec §1) and how its
// weights are stored (spec §2), plus reading the same facts from a checkpoint directory.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace v4::plan {

// Storage format of the routed experts: packed FP4 (I8 + per-32 E8M0 scales) or FP8 e4m3
// with 128x128 block scales.
enum class ExpertFormat { FP4, FP8 };

struct ModelConfig {
  std::string name;          // catalog name, e.g. "v4-flash"
  std::string hf_repo;       // where the weights are published
  std::string description;
  int64_t vocab = 129280;
  int64_t dim = 4096;
  int64_t layers = 43;
  int64_t heads = 64;
  int64_t head_dim = 512;
  int64_t rope_dim = 64;
  int64_t q_lora = 1024;
  int64_t o_groups = 8;
  int64_t o_lora = 1024;
  int64_t window = 128;
  int64_t index_heads = 64;
  int64_t index_head_dim = 128;
  int64_t index_topk = 512;
  int64_t experts = 256;
  int64_t shared_experts = 1;
  int64_t experts_per_tok = 6;
  int64_t moe_inter = 2048;
  int64_t hash_layers = 3;
  int64_t hc_mult = 4;
  int64_t mtp_layers = 1;    // speculative-decoding blocks under mtp.*: the NextN head (1) or the DSpark stages (3)
  bool dspark = false;       // mtp.* is a DSpark drafter (0731/0813 layout, docs/checkpoints.md)
  int64_t dspark_targets = 0;      // target layers feeding main_proj
  int64_t dspark_markov_rank = 0;
  int64_t max_context = 1048576;
  std::vector<int> compress_ratios;  // one per layer (MTP entry dropped)
  ExpertFormat expert_format = ExpertFormat::FP4;
  int scale_bytes = 1;       // FP8 block-scale element size: 1 (E8M0, instruct) or 4 (F32, Base)
  bool base_model = false;   // pre-trained only (no chat tuning)
  std::string fp8_sibling;   // catalog name of the FP8-expert build for GPUs without FP4 (or "")

  int n_swa() const;
  int n_csa() const;
  int n_hca() const;
};

// The built-in catalog: v4-flash-0731 and v4-pro-0813 (the current official releases, DSpark
// drafter), v4-flash, v4-flash-base, v4-flash-fp8, v4-pro, v4-pro-base, v4-pro-fp8 (preview).
const std::vector<ModelConfig>& builtin_models();
// Throws InputError naming the known models.
const ModelConfig& find_model(const std::string& name);
std::vector<std::string> model_names();

// Reads DIR/config.json (HF names, spec §1.1). The expert format comes from the tensors when
// shards are present (I8 = FP4, F8_E4M3 = FP8; spec §8 item 6), else from `expert_dtype`.
// Throws InputError when the directory or config is unusable.
ModelConfig model_config_from_json_text(const std::string& json_text, const std::string& origin);

}  // namespace v4::plan
