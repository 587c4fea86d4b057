#include "plan/catalog_models.h"

#include <algorithm>
#include <cctype>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace v4::plan {

int ModelConfig::n_swa() const {
  int n = 0;
  for (int r : compress_ratios) n += r == 0;
  return n;
}
int ModelConfig::n_csa() const {
  int n = 0;
  for (int r : compress_ratios) n += r == 4;
  return n;
}
int ModelConfig::n_hca() const {
  int n = 0;
  for (int r : compress_ratios) n += r == 128;
  return n;
}

namespace {

// Spec §1.2: Flash = [0, 0, 4, 128, ..., 4] (43 layers), Pro = [128, 128, 4, 128, ..., 4] (61).
std::vector<int> ratios(int layers, int first_two) {
  std::vector<int> r(static_cast<size_t>(layers));
  for (int l = 0; l < layers; ++l) r[static_cast<size_t>(l)] = l < 2 ? first_two : (l % 2 == 0 ? 4 : 128);
  return r;
}

ModelConfig flash() {
  ModelConfig m;
  m.compress_ratios = ratios(43, 0);
  return m;
}

ModelConfig pro() {
  ModelConfig m;
  m.dim = 7168;
  m.layers = 61;
  m.heads = 128;
  m.q_lora = 1536;
  m.o_groups = 16;
  m.index_topk = 1024;
  m.experts = 384;
  m.moe_inter = 3072;
  m.compress_ratios = ratios(61, 128);
  return m;
}

std::vector<ModelConfig> make_catalog() {
  std::vector<ModelConfig> v;
  ModelConfig f = flash();
  f.name = "v4-flash";
  f.hf_repo = "deepseek-ai/DeepSeek-V4-Flash";
  f.description = "V4-Flash instruct, native FP4 routed experts + FP8 (284B total / 13B active)";
  f.fp8_sibling = "v4-flash-fp8";
  v.push_back(f);

  ModelConfig fb = flash();
  fb.name = "v4-flash-base";
  fb.hf_repo = "deepseek-ai/DeepSeek-V4-Flash-Base";
  fb.description = "V4-Flash pre-trained base, FP8 experts with F32 block scales";
  fb.expert_format = ExpertFormat::FP8;
  fb.scale_bytes = 4;
  fb.base_model = true;
  v.push_back(fb);

  ModelConfig f8 = flash();
  f8.name = "v4-flash-fp8";
  f8.hf_repo = "sgl-project/DeepSeek-V4-Flash-FP8";
  f8.description = "V4-Flash instruct re-packaged with FP8 experts for Hopper/Ada (lossless cast)";
  f8.expert_format = ExpertFormat::FP8;
  v.push_back(f8);

  ModelConfig p = pro();
  p.name = "v4-pro";
  p.hf_repo = "deepseek-ai/DeepSeek-V4-Pro";
  p.description = "V4-Pro instruct, native FP4 routed experts + FP8 (1.6T total / 49B active)";
  p.fp8_sibling = "v4-pro-fp8";
  v.push_back(p);

  ModelConfig pb = pro();
  pb.name = "v4-pro-base";
  pb.hf_repo = "deepseek-ai/DeepSeek-V4-Pro-Base";
  pb.description = "V4-Pro pre-trained base, FP8 experts with F32 block scales (layout assumed, spec §2.6)";
  pb.expert_format = ExpertFormat::FP8;
  pb.scale_bytes = 4;
  pb.base_model = true;
  v.push_back(pb);

  // The current official releases (docs/checkpoints.md): the same main model, a DSpark drafter
  // of three full MoE blocks (mtp.0..2) instead of the NextN head. No FP8 repack published.
  ModelConfig f0731 = flash();
  f0731.name = "v4-flash-0731";
  f0731.hf_repo = "deepseek-ai/DeepSeek-V4-Flash-0731";
  f0731.description = "V4-Flash-0731 (official, 2026-07-31): FP4 experts + FP8, DSpark drafter mtp.0..2 instead of MTP";
  f0731.mtp_layers = 3;
  f0731.dspark = true;
  f0731.dspark_targets = 3;
  f0731.dspark_markov_rank = 256;
  v.insert(v.begin(), f0731);

  ModelConfig p0813 = pro();
  p0813.name = "v4-pro-0813";
  p0813.hf_repo = "deepseek-ai/DeepSeek-V4-Pro-0813";
  p0813.description = "V4-Pro-0813 (official, 2026-08-13): FP4 experts + FP8, DSpark drafter mtp.0..2 instead of MTP";
  p0813.mtp_layers = 3;
  p0813.dspark = true;
  p0813.dspark_targets = 3;
  p0813.dspark_markov_rank = 256;  // UNCONFIRMED for Pro (docs/checkpoints.md)
  v.insert(v.begin() + 1, p0813);

  ModelConfig p8 = pro();
  p8.name = "v4-pro-fp8";
  p8.hf_repo = "sgl-project/DeepSeek-V4-Pro-FP8";
  p8.description = "V4-Pro instruct re-packaged with FP8 experts for Hopper (size computed, not published)";
  p8.expert_format = ExpertFormat::FP8;
  v.push_back(p8);
  return v;
}

}  // namespace

const std::vector<ModelConfig>& builtin_models() {
  static const std::vector<ModelConfig> models = make_catalog();
  return models;
}

std::vector<std::string> model_names() {
  std::vector<std::string> n;
  for (auto& m : builtin_models()) n.push_back(m.name);
  return n;
}

const ModelConfig& find_model(const std::string& name) {
  std::string lower;
  for (char c : name) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (auto& m : builtin_models())
    if (m.name == lower) return m;
  std::string known;
  for (auto& n : model_names()) known += (known.empty() ? "" : ", ") + n;
  throw InputError("unknown model '" + name + "' (known: " + known +
                   "; or pass --model-dir DIR with a downloaded checkpoint)");
}

ModelConfig model_config_from_json_text(const std::string& text, const std::string& origin) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    throw InputError(origin + ": not valid JSON: " + e.what());
  }
  if (!j.is_object()) throw InputError(origin + ": expected a JSON object");
  ModelConfig m = j.value("hidden_size", 0) >= 7168 ? pro() : flash();
  auto get = [&](const char* key, int64_t* out, bool required) {
    if (!j.contains(key)) {
      if (required) throw InputError(origin + ": missing '" + std::string(key) + "'");
      return;
    }
    if (!j[key].is_number_integer() || j[key].get<int64_t>() < 0)
      throw InputError(origin + ": '" + std::string(key) + "' must be a non-negative integer");
    *out = j[key].get<int64_t>();
  };
  get("vocab_size", &m.vocab, true);
  get("hidden_size", &m.dim, true);
  get("num_hidden_layers", &m.layers, true);
  get("num_attention_heads", &m.heads, true);
  get("head_dim", &m.head_dim, false);
  get("qk_rope_head_dim", &m.rope_dim, false);
  get("q_lora_rank", &m.q_lora, true);
  get("o_groups", &m.o_groups, false);
  get("o_lora_rank", &m.o_lora, false);
  get("sliding_window", &m.window, false);
  get("index_n_heads", &m.index_heads, false);
  get("index_head_dim", &m.index_head_dim, false);
  get("index_topk", &m.index_topk, false);
  get("n_routed_experts", &m.experts, true);
  get("n_shared_experts", &m.shared_experts, false);
  get("num_experts_per_tok", &m.experts_per_tok, false);
  get("moe_intermediate_size", &m.moe_inter, true);
  get("num_hash_layers", &m.hash_layers, false);
  get("hc_mult", &m.hc_mult, false);
  get("num_nextn_predict_layers", &m.mtp_layers, false);
  if (j.contains("dspark_target_layer_ids")) {  // DSpark drafter: stages = compress_ratios past the layers
    const auto& t = j["dspark_target_layer_ids"];
    if (!t.is_array() || t.empty()) throw InputError(origin + ": 'dspark_target_layer_ids' must be a non-empty list");
    m.dspark = true;
    m.dspark_targets = static_cast<int64_t>(t.size());
    get("dspark_markov_rank", &m.dspark_markov_rank, true);
    const int64_t n = j.contains("compress_ratios") && j["compress_ratios"].is_array()
                          ? static_cast<int64_t>(j["compress_ratios"].size())
                          : 0;
    int64_t layers = 0;
    get("num_hidden_layers", &layers, true);
    m.mtp_layers = j.contains("n_mtp_layers") ? j.value("n_mtp_layers", int64_t{3}) : std::max<int64_t>(1, n - layers);
  } else {
    m.dspark = false;
  }
  get("max_position_embeddings", &m.max_context, false);
  if (m.layers < 1 || m.dim < 1 || m.heads < 1 || m.experts < 1 || m.o_groups < 1)
    throw InputError(origin + ": layers, hidden_size, heads, experts and o_groups must be positive");
  if (j.contains("compress_ratios")) {
    if (!j["compress_ratios"].is_array()) throw InputError(origin + ": 'compress_ratios' must be a list");
    m.compress_ratios.clear();
    for (auto& r : j["compress_ratios"]) {
      if (!r.is_number_integer()) throw InputError(origin + ": 'compress_ratios' must hold integers");
      int v = r.get<int>();
      if (v != 0 && v != 4 && v != 128)
        throw InputError(origin + ": compress ratio " + std::to_string(v) + " is not one of 0, 4, 128");
      m.compress_ratios.push_back(v);
    }
    // The list has one extra entry for the MTP layer (spec §1.2).
    if (static_cast<int64_t>(m.compress_ratios.size()) < m.layers)
      throw InputError(origin + ": 'compress_ratios' has fewer entries than num_hidden_layers");
    m.compress_ratios.resize(static_cast<size_t>(m.layers));
  } else {
    m.compress_ratios = ratios(static_cast<int>(m.layers), m.dim >= 7168 ? 128 : 0);
  }
  std::string ed = j.value("expert_dtype", std::string("fp4"));
  m.expert_format = ed == "fp8" ? ExpertFormat::FP8 : ExpertFormat::FP4;
  m.scale_bytes = 1;
  m.base_model = false;
  m.name = origin;
  m.hf_repo = "";
  m.description = "checkpoint read from " + origin;
  m.fp8_sibling = "";
  return m;
}

}  // namespace v4::plan
