// ModelConfig: the V4 hyper-parameters, read from a checkpoint's HF-style config.json
// (the official inference/config.json key names are accepted too).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace v4 {

// The DSpark drafter of the current official checkpoints (V4-Flash-0731, V4-Pro-0813): block
// speculative drafting by the full V4 blocks stored as mtp.0..n-1 (instead of the preview's
// one-block NextN head). Config keys and tensor names with their sources: docs/checkpoints.md.
struct DSparkConfig {
  int n_stages = 0;                   // draft blocks mtp.0..n_stages-1 (3); 0 = no drafter
  int block_size = 0;                 // dspark_block_size: tokens drafted per step (5)
  int noise_token_id = 0;             // dspark_noise_token_id: filler of the draft block (128799)
  std::vector<int> target_layer_ids;  // dspark_target_layer_ids: main blocks whose streams feed main_proj
  int markov_rank = 0;                // dspark_markov_rank: rank of the Markov bias head (256)

  bool present() const { return n_stages > 0; }
};

struct ModelConfig {
  int vocab_size = 129280;
  int dim = 4096;                 // hidden_size
  int n_layers = 43;
  int n_heads = 64;
  int head_dim = 512;
  int rope_dim = 64;              // qk_rope_head_dim; rotated dims are the LAST rope_dim of a head
  int q_lora_rank = 1024;
  int o_groups = 8;
  int o_lora_rank = 1024;
  int window = 128;               // sliding_window
  int index_n_heads = 64;
  int index_head_dim = 128;
  int index_topk = 512;
  int n_routed_experts = 256;
  int n_shared_experts = 1;
  int n_activated = 6;            // num_experts_per_tok
  int moe_inter = 2048;
  int n_hash_layers = 3;
  float route_scale = 1.5f;
  float swiglu_limit = 10.0f;
  int hc_mult = 4;
  int hc_sinkhorn_iters = 20;
  float hc_eps = 1e-6f;
  float norm_eps = 1e-6f;
  float rope_theta = 10000.0f;
  float compress_rope_theta = 160000.0f;
  float rope_factor = 16.0f;      // YaRN (compressed layers only)
  int original_seq_len = 65536;
  float beta_fast = 32.0f;
  float beta_slow = 1.0f;
  std::vector<int> compress_ratios;  // n_layers + n_mtp (or + DSpark stages) entries
  int n_mtp_layers = 1;           // NextN head (preview layout); 0 when the checkpoint has DSpark
  DSparkConfig dspark;
  std::string expert_dtype;       // "fp4" / "fp8" / "" (informational: tensors decide)
  int bos_id = 0;
  int eos_id = 1;

  int nope_dim() const { return head_dim - rope_dim; }
  int ratio(int layer) const { return compress_ratios.at(static_cast<size_t>(layer)); }
  int hc_mix() const { return (2 + hc_mult) * hc_mult; }

  static ModelConfig from_json(const nlohmann::json& j);   // throws InputError naming the field
  static ModelConfig load(const std::string& model_dir);   // reads <dir>/config.json
  void validate() const;                                   // throws InputError
};

}  // namespace v4
