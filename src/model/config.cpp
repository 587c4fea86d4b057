#include "model/config.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace v4 {
using json = nlohmann::json;

namespace {

// Reads the first present key among `keys` into out; throws on a wrong type.
template <class T>
bool read(const json& j, std::initializer_list<const char*> keys, T* out) {
  for (const char* k : keys) {
    if (!j.contains(k) || j[k].is_null()) continue;
    try {
      *out = j[k].get<T>();
    } catch (const std::exception&) {
      throw InputError(std::string("config.json: field '") + k + "' has the wrong type: " + j[k].dump());
    }
    return true;
  }
  return false;
}

// DSpark drafter keys (docs/checkpoints.md). A config with any dspark_* key describes the
// drafter layout: the stages are the compress_ratios entries past the main layers (the HF
// config keeps a stale "num_nextn_predict_layers": 1), or "n_mtp_layers" of the official
// inference/config.json (3) when that key is present; there is no NextN head then.
void read_dspark(const json& j, ModelConfig* c) {
  bool any = false;
  for (auto it = j.begin(); it != j.end(); ++it) any = any || it.key().rfind("dspark_", 0) == 0;
  if (!any) return;
  DSparkConfig& d = c->dspark;
  auto need = [&](const char* key, auto* out) {
    if (!read(j, {key}, out)) throw InputError(std::string("config.json: DSpark drafter config without '") + key + "'");
  };
  need("dspark_block_size", &d.block_size);
  need("dspark_noise_token_id", &d.noise_token_id);
  need("dspark_target_layer_ids", &d.target_layer_ids);
  need("dspark_markov_rank", &d.markov_rank);
  if (j.contains("n_mtp_layers") && !j["n_mtp_layers"].is_null()) {
    read(j, {"n_mtp_layers"}, &d.n_stages);
  } else if (j.contains("dspark_num_layers") && !j["dspark_num_layers"].is_null()) {
    read(j, {"dspark_num_layers"}, &d.n_stages);
  } else {
    d.n_stages = static_cast<int>(c->compress_ratios.size()) - c->n_layers;
  }
  if (d.n_stages < 1)
    throw InputError("config.json: DSpark drafter config, but compress_ratios has no entries past the " +
                     std::to_string(c->n_layers) + " main layers (one per draft stage is expected)");
  c->n_mtp_layers = 0;
}

}  // namespace

ModelConfig ModelConfig::from_json(const json& j) {
  if (!j.is_object()) throw InputError("config.json: not a JSON object");
  ModelConfig c;
  read(j, {"vocab_size"}, &c.vocab_size);
  read(j, {"hidden_size", "dim"}, &c.dim);
  read(j, {"num_hidden_layers", "n_layers"}, &c.n_layers);
  read(j, {"num_attention_heads", "n_heads"}, &c.n_heads);
  read(j, {"head_dim"}, &c.head_dim);
  read(j, {"qk_rope_head_dim", "rope_head_dim"}, &c.rope_dim);
  read(j, {"q_lora_rank"}, &c.q_lora_rank);
  read(j, {"o_groups"}, &c.o_groups);
  read(j, {"o_lora_rank"}, &c.o_lora_rank);
  read(j, {"sliding_window", "window_size"}, &c.window);
  read(j, {"index_n_heads"}, &c.index_n_heads);
  read(j, {"index_head_dim"}, &c.index_head_dim);
  read(j, {"index_topk"}, &c.index_topk);
  read(j, {"n_routed_experts"}, &c.n_routed_experts);
  read(j, {"n_shared_experts"}, &c.n_shared_experts);
  read(j, {"num_experts_per_tok", "n_activated_experts"}, &c.n_activated);
  read(j, {"moe_intermediate_size", "moe_inter_dim"}, &c.moe_inter);
  read(j, {"num_hash_layers", "n_hash_layers"}, &c.n_hash_layers);
  read(j, {"routed_scaling_factor", "route_scale"}, &c.route_scale);
  read(j, {"swiglu_limit"}, &c.swiglu_limit);
  read(j, {"hc_mult"}, &c.hc_mult);
  read(j, {"hc_sinkhorn_iters"}, &c.hc_sinkhorn_iters);
  read(j, {"hc_eps"}, &c.hc_eps);
  read(j, {"rms_norm_eps", "norm_eps"}, &c.norm_eps);
  read(j, {"rope_theta"}, &c.rope_theta);
  read(j, {"compress_rope_theta"}, &c.compress_rope_theta);
  read(j, {"num_nextn_predict_layers", "n_mtp_layers"}, &c.n_mtp_layers);
  read(j, {"expert_dtype"}, &c.expert_dtype);
  read(j, {"bos_token_id"}, &c.bos_id);
  read(j, {"eos_token_id"}, &c.eos_id);
  if (j.contains("rope_scaling") && j["rope_scaling"].is_object()) {
    const json& r = j["rope_scaling"];
    read(r, {"factor"}, &c.rope_factor);
    read(r, {"original_max_position_embeddings"}, &c.original_seq_len);
    read(r, {"beta_fast"}, &c.beta_fast);
    read(r, {"beta_slow"}, &c.beta_slow);
  } else {
    read(j, {"rope_factor"}, &c.rope_factor);
    read(j, {"original_seq_len"}, &c.original_seq_len);
    read(j, {"beta_fast"}, &c.beta_fast);
    read(j, {"beta_slow"}, &c.beta_slow);
  }
  if (!read(j, {"compress_ratios"}, &c.compress_ratios))
    throw InputError("config.json: missing 'compress_ratios' (is this a DeepSeek V4 config?)");
  read_dspark(j, &c);
  if (j.contains("score_func") || j.contains("scoring_func")) {
    std::string sf;
    read(j, {"scoring_func", "score_func"}, &sf);
    if (sf != "sqrtsoftplus") throw InputError("config.json: scoring_func '" + sf + "' is not supported (V4 uses sqrtsoftplus)");
  }
  c.validate();
  return c;
}

ModelConfig ModelConfig::load(const std::string& model_dir) {
  std::string p = model_dir + "/config.json";
  if (!std::filesystem::exists(p)) throw InputError("no config.json in " + model_dir);
  std::ifstream f(p);
  json j;
  try {
    j = json::parse(f);
  } catch (const std::exception& e) {
    throw InputError(p + ": not valid JSON: " + e.what());
  }
  return from_json(j);
}

void ModelConfig::validate() const {
  auto need = [](bool ok, const std::string& what) {
    if (!ok) throw InputError("config.json: " + what);
  };
  need(vocab_size > 0 && dim > 0 && n_layers > 0 && n_heads > 0, "vocab_size, hidden_size, layers and heads must be positive");
  need(head_dim > rope_dim && rope_dim > 0 && rope_dim % 2 == 0, "need 0 < qk_rope_head_dim < head_dim, even");
  need(index_head_dim >= rope_dim, "index_head_dim must be >= qk_rope_head_dim");
  need((index_head_dim & (index_head_dim - 1)) == 0, "index_head_dim must be a power of two (Hadamard)");
  need(o_groups > 0 && n_heads % o_groups == 0, "num_attention_heads must be a multiple of o_groups");
  need(n_activated > 0 && n_activated <= n_routed_experts, "num_experts_per_tok must be in [1, n_routed_experts]");
  need(hc_mult > 0 && hc_sinkhorn_iters > 0, "hc_mult and hc_sinkhorn_iters must be positive");
  need(window > 0, "sliding_window must be positive");
  need(n_mtp_layers >= 0 && n_mtp_layers <= 1, "at most one MTP layer is supported");
  need(static_cast<int>(compress_ratios.size()) >= n_layers + n_mtp_layers,
       "compress_ratios has " + std::to_string(compress_ratios.size()) + " entries, need num_hidden_layers + MTP = " +
           std::to_string(n_layers + n_mtp_layers));
  for (int r : compress_ratios) need(r == 0 || r >= 2, "compress_ratios entries must be 0 or >= 2");
  need(n_hash_layers >= 0 && n_hash_layers <= n_layers, "num_hash_layers out of range");
  if (dspark.present()) {
    const DSparkConfig& d = dspark;
    need(n_mtp_layers == 0, "a DSpark drafter and an MTP head cannot both be configured");
    need(static_cast<int>(compress_ratios.size()) >= n_layers + d.n_stages,
         "compress_ratios has " + std::to_string(compress_ratios.size()) + " entries, need num_hidden_layers + " +
             std::to_string(d.n_stages) + " DSpark stages = " + std::to_string(n_layers + d.n_stages));
    for (int s = 0; s < d.n_stages; ++s)
      need(ratio(n_layers + s) == 0, "compress_ratios entry " + std::to_string(n_layers + s) + " (DSpark stage " +
                                         std::to_string(s) + ") must be 0: the draft blocks use sliding-window attention");
    need(n_hash_layers <= n_layers, "num_hash_layers out of range");
    need(d.block_size >= 1, "dspark_block_size must be >= 1");
    need(d.markov_rank >= 1, "dspark_markov_rank must be >= 1");
    need(d.noise_token_id >= 0 && d.noise_token_id < vocab_size, "dspark_noise_token_id must be a token id < vocab_size");
    need(!d.target_layer_ids.empty(), "dspark_target_layer_ids must not be empty");
    for (int t : d.target_layer_ids)
      need(t >= 0 && t < n_layers, "dspark_target_layer_ids entry " + std::to_string(t) + " is not a main layer (0.." +
                                       std::to_string(n_layers - 1) + ")");
  }
}

}  // namespace v4
