// Synthetic checkpoint writer (see synth.h, docs/synth.md).
//
// Every tensor's values are a pure function of (seed, tensor name, element index): a splitmix64
// hash of the counter gives one 64-bit word per element, whose four 16-bit parts are summed
// (Irwin-Hall(4), rescaled to unit variance) as a cheap normal sample. Output is therefore
// identical whatever the thread count or chunking. Shards are streamed to disk with pwrite from
// the worker threads: only a few row bands per thread are ever held in memory.
#include "model/synth.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <regex>
#include <set>

#include <fmt/format.h>

#include "core/cpu.h"
#include "core/error.h"
#include "core/float_formats.h"
#include "core/progress.h"
#include "core/thread_pool.h"

namespace v4 {

using json = nlohmann::json;
namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------
// Fast encoders (inputs already scaled into range).

namespace {
// Branch-free so that the loops over rows vectorise.
__attribute__((always_inline)) inline uint32_t enc_e4m3(float x) {
  const uint32_t u = std::bit_cast<uint32_t>(x);
  const uint32_t sign = (u >> 24) & 0x80u;
  // |x| clamped to 448 (saturation; 448 itself encodes as 0x7e below). NaN is never passed.
  const float a = std::min(std::bit_cast<float>(u & 0x7fffffffu), 448.0f);
  const uint32_t ua = std::bit_cast<uint32_t>(a);
  // Below 2^-6 the grid is m * 2^-9 (m = 0..8, m = 8 being code 0x08 = 2^-6): adding 1.5 * 2^23
  // rounds a * 512 to an integer, ties to even, left in the low mantissa bits.
  const uint32_t sub = std::bit_cast<uint32_t>(a * 512.0f + 12582912.0f) - 0x4b400000u;
  // Otherwise round the f32 mantissa to 3 bits, ties to even (a carry into the exponent is right).
  const uint32_t r = ua + 0x7ffffu + ((ua >> 20) & 1u);
  const uint32_t norm = ((((r >> 23) - 120u) << 3) | ((r >> 20) & 7u)) & 0x7fu;
  return sign | (a < 0.015625f ? sub : norm);
}

__attribute__((always_inline)) inline uint32_t enc_e2m1(float x) {
  const uint32_t u = std::bit_cast<uint32_t>(x);
  const float a = std::bit_cast<float>(u & 0x7fffffffu);
  // Grid 0 .5 1 1.5 2 3 4 6; ties go to the even code (0.25->0, 0.75->1, 1.25->1, 1.75->2,
  // 2.5->2, 3.5->4, 5->4); saturates at 6.
  const uint32_t c = static_cast<uint32_t>(a > 0.25f) + (a >= 0.75f) + (a > 1.25f) + (a >= 1.75f) + (a > 2.5f) +
                     (a >= 3.5f) + (a > 5.0f);
  return ((u >> 28) & 8u) | c;
}
}  // namespace

uint8_t synth_e4m3(float x) { return static_cast<uint8_t>(enc_e4m3(x)); }
uint8_t synth_e2m1(float x) { return static_cast<uint8_t>(enc_e2m1(x)); }

namespace {

// ---------------------------------------------------------------------------------------------
// Counter-based random numbers.

constexpr uint64_t kGamma = 0x9e3779b97f4a7c15ull;

inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t name_key(uint64_t seed, const std::string& name) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a
  for (unsigned char c : name) h = (h ^ c) * 0x100000001b3ull;
  return mix64(h ^ mix64(seed * kGamma + 0x5851f42d4c957f2dull));
}

inline uint64_t bits_at(uint64_t key, uint64_t i) { return mix64(key + (i + 1) * kGamma); }

// Approximately N(0,1): Irwin-Hall sum of four 16-bit uniforms, centred and scaled.
inline float normal_at(uint64_t key, uint64_t i) {
  const uint64_t r = bits_at(key, i);
  const uint32_t s = static_cast<uint32_t>((r & 0xffff) + ((r >> 16) & 0xffff) + ((r >> 32) & 0xffff) + (r >> 48));
  constexpr float kScale = 1.7320508075688772f / 65536.0f;  // sqrt(3) / 2^16
  return (static_cast<float>(s) - 131070.0f) * kScale;
}

// out[j] = mean + sd * normal_at(key, i0 + j) for j < n.
__attribute__((always_inline)) inline void fill_normal_body(uint64_t key, uint64_t i0, size_t n, float mean,
                                                           float sd, float* __restrict out) {
  for (size_t j = 0; j < n; ++j) {
    const float z = normal_at(key, i0 + j);
    const float t = sd * z;
    out[j] = mean + t;
  }
}
// q[j] = e4m3(v[j] * inv[j / 128])  (one row of FP8 128x128 blocks)
__attribute__((always_inline)) inline void quant_e4m3_body(const float* __restrict v, size_t n,
                                                          const float* __restrict inv, uint8_t* __restrict q) {
  for (size_t b = 0; b * 128 < n; ++b) {
    const float s = inv[b];
    const size_t e = std::min<size_t>(128, n - b * 128);
    const float* vb = v + b * 128;
    uint8_t* qb = q + b * 128;
    for (size_t j = 0; j < e; ++j) qb[j] = static_cast<uint8_t>(enc_e4m3(vb[j] * s));
  }
}
// q[j] = e2m1(v[2j] * inv[2j / 32]) | e2m1(v[2j+1] * inv[2j / 32]) << 4  (one row of FP4 1x32
// groups; n is a multiple of 32)
__attribute__((always_inline)) inline void quant_e2m1_body(const float* __restrict v, size_t n,
                                                          const float* __restrict inv, uint8_t* __restrict q) {
  for (size_t g = 0; g * 32 < n; ++g) {
    const float s = inv[g];
    uint8_t c[32];
    for (int j = 0; j < 32; ++j) c[j] = static_cast<uint8_t>(enc_e2m1(v[g * 32 + j] * s));
    for (int j = 0; j < 16; ++j) q[g * 16 + j] = static_cast<uint8_t>(c[2 * j] | (c[2 * j + 1] << 4));
  }
}

// Bits of max |v[j]| (the bit patterns of non-negative floats order like the floats; an
// integer reduction vectorises where a float max would not without -ffast-math).
inline uint32_t abs_max_bits(const float* v, int64_t n) {
  uint32_t m = 0;
  for (int64_t j = 0; j < n; ++j) m = std::max(m, std::bit_cast<uint32_t>(v[j]) & 0x7fffffffu);
  return m;
}

// Each hot loop is compiled twice: the AVX-512 copy lets the vectoriser use 64-bit lane
// multiplies and masked blends; both give bit-identical results (integer hashing, exact
// int->float, the same float roundings, no contraction) -- tested with set_force_portable.
#if defined(__x86_64__) && defined(__GNUC__)
const bool kHaveAvx512dq = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
                           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw");
#define V4_SYNTH_DUAL(name, params, args)                                                         \
  void name##_portable params { name##_body args; }                                               \
  __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw"))) void name##_avx512 params {       \
    name##_body args;                                                                             \
  }                                                                                               \
  void name params {                                                                              \
    if (kHaveAvx512dq && use_avx512()) return name##_avx512 args;                                 \
    name##_portable args;                                                                         \
  }
#else
#define V4_SYNTH_DUAL(name, params, args) \
  void name params { name##_body args; }
#endif
V4_SYNTH_DUAL(fill_normal, (uint64_t key, uint64_t i0, size_t n, float mean, float sd, float* out),
              (key, i0, n, mean, sd, out))
V4_SYNTH_DUAL(quant_e4m3, (const float* v, size_t n, const float* inv, uint8_t* q), (v, n, inv, q))
V4_SYNTH_DUAL(quant_e2m1, (const float* v, size_t n, const float* inv, uint8_t* q), (v, n, inv, q))
#undef V4_SYNTH_DUAL

inline float uniform_at(uint64_t key, uint64_t i) {  // [0, 1)
  return static_cast<float>(bits_at(key, i) >> 40) * (1.0f / 16777216.0f);
}

// ---------------------------------------------------------------------------------------------
// What to generate.

enum class Store { BF16, F32, FP8, FP4, I64 };
enum class Init { Normal, Uniform, HcBase, Tid2eid };

struct Param {
  std::string name;              // full name; for FP8/FP4 the base ("x.weight"/"x.scale" added)
  Store store;
  std::vector<int64_t> shape;    // logical shape ([out, in] for quantised weights)
  Init init = Init::Normal;
  float a = 0.0f, b = 1.0f;      // Normal: mean a, std b; Uniform: [a, b); HcBase: std b
  int64_t n = 0;                 // HcBase: hc_mult; Tid2eid: number of experts
};

struct Quant {
  bool fp8_experts = false;
  bool f32_scales = false;
};

struct Dims {
  int64_t vocab, dim, layers, heads, head_dim, rope_dim, q_lora, o_groups, o_lora, experts, topk,
      shared, inter, index_heads, index_dim, hash_layers, hc, mtp;
  std::vector<int64_t> ratios;  // layers + mtp (or + DSpark stages) entries
  int64_t dspark_stages = 0, dspark_targets = 0, markov_rank = 0;  // DSpark drafter (mtp = 0 then)
};

int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

int64_t get_int(const json& c, const char* key) {
  auto it = c.find(key);
  if (it == c.end() || !it->is_number_integer())
    throw InputError(fmt::format("synthetic checkpoint config: missing or non-integer \"{}\"", key));
  return it->get<int64_t>();
}

Dims dims_from_config(const json& c) {
  if (!c.is_object()) throw InputError("synthetic checkpoint config: not a JSON object");
  Dims d{};
  d.vocab = get_int(c, "vocab_size");
  d.dim = get_int(c, "hidden_size");
  d.layers = get_int(c, "num_hidden_layers");
  d.heads = get_int(c, "num_attention_heads");
  d.head_dim = get_int(c, "head_dim");
  d.rope_dim = get_int(c, "qk_rope_head_dim");
  d.q_lora = get_int(c, "q_lora_rank");
  d.o_groups = get_int(c, "o_groups");
  d.o_lora = get_int(c, "o_lora_rank");
  d.experts = get_int(c, "n_routed_experts");
  d.topk = get_int(c, "num_experts_per_tok");
  d.shared = get_int(c, "n_shared_experts");
  d.inter = get_int(c, "moe_intermediate_size");
  d.index_heads = get_int(c, "index_n_heads");
  d.index_dim = get_int(c, "index_head_dim");
  d.hash_layers = get_int(c, "num_hash_layers");
  d.hc = get_int(c, "hc_mult");
  d.mtp = c.contains("num_nextn_predict_layers") ? get_int(c, "num_nextn_predict_layers") : 0;
  auto bad = [](const std::string& m) { throw InputError("synthetic checkpoint config: " + m); };
  for (auto [v, k] : {std::pair{d.vocab, "vocab_size"}, {d.dim, "hidden_size"}, {d.layers, "num_hidden_layers"},
                      {d.heads, "num_attention_heads"}, {d.head_dim, "head_dim"}, {d.q_lora, "q_lora_rank"},
                      {d.o_groups, "o_groups"}, {d.o_lora, "o_lora_rank"}, {d.experts, "n_routed_experts"},
                      {d.topk, "num_experts_per_tok"}, {d.inter, "moe_intermediate_size"},
                      {d.index_heads, "index_n_heads"}, {d.index_dim, "index_head_dim"}, {d.hc, "hc_mult"}})
    if (v <= 0) bad(fmt::format("\"{}\" must be positive (got {})", k, v));
  if (d.shared < 0 || d.hash_layers < 0 || d.mtp < 0 || d.rope_dim < 0) bad("negative count");
  if (d.rope_dim > d.head_dim) bad("qk_rope_head_dim exceeds head_dim");
  if (d.topk > d.experts)
    bad(fmt::format("num_experts_per_tok ({}) exceeds n_routed_experts ({})", d.topk, d.experts));
  if ((d.heads * d.head_dim) % d.o_groups) bad("num_attention_heads*head_dim not divisible by o_groups");
  if (d.dim % 32 || d.inter % 32) bad("hidden_size and moe_intermediate_size must be multiples of 32");
  if (d.vocab > (int64_t{1} << 31)) bad("vocab_size too large");
  auto it = c.find("compress_ratios");
  if (it == c.end() || !it->is_array()) bad("missing \"compress_ratios\"");
  for (auto& r : *it) {
    if (!r.is_number_integer() || r.get<int64_t>() < 0) bad("compress_ratios must hold non-negative integers");
    d.ratios.push_back(r.get<int64_t>());
  }
  if (static_cast<int64_t>(d.ratios.size()) < d.layers)
    bad(fmt::format("compress_ratios has {} entries for {} layers", d.ratios.size(), d.layers));
  // DSpark drafter (docs/checkpoints.md): the stages are the compress_ratios entries past the
  // main layers; the stale num_nextn_predict_layers of the release is ignored.
  if (c.contains("dspark_target_layer_ids")) {
    auto t = c.find("dspark_target_layer_ids");
    if (!t->is_array() || t->empty()) bad("\"dspark_target_layer_ids\" must be a non-empty list");
    d.dspark_targets = static_cast<int64_t>(t->size());
    d.markov_rank = get_int(c, "dspark_markov_rank");
    d.dspark_stages = c.contains("n_mtp_layers") ? get_int(c, "n_mtp_layers")
                                                 : static_cast<int64_t>(d.ratios.size()) - d.layers;
    if (d.dspark_stages < 1 || d.markov_rank < 1) bad("a DSpark drafter needs >= 1 stage and dspark_markov_rank >= 1");
    d.mtp = 0;
  }
  d.ratios.resize(d.layers + std::max(d.mtp, d.dspark_stages), 0);  // missing MTP entries = sliding window
  return d;
}

// Parameters of one transformer block (`p` ends with '.').
void block_params(const Dims& d, const Quant& q, const std::string& p, int64_t ratio, bool hash,
                  std::vector<Param>& out) {
  auto lin_std = [](int64_t fan_in) { return static_cast<float>(1.0 / std::sqrt(static_cast<double>(fan_in))); };
  auto fp8 = [&](const std::string& n, int64_t o, int64_t i, float mult = 1.0f) {
    out.push_back({p + n, Store::FP8, {o, i}, Init::Normal, 0.0f, mult * lin_std(i)});
  };
  auto expert = [&](const std::string& n, int64_t o, int64_t i, float mult) {
    out.push_back({p + n, q.fp8_experts ? Store::FP8 : Store::FP4, {o, i}, Init::Normal, 0.0f, mult * lin_std(i)});
  };
  auto bf16 = [&](const std::string& n, std::vector<int64_t> s, float mean, float sd) {
    out.push_back({p + n, Store::BF16, std::move(s), Init::Normal, mean, sd});
  };
  auto f32 = [&](const std::string& n, std::vector<int64_t> s, Init init, float a, float b, int64_t k = 0) {
    out.push_back({p + n, Store::F32, std::move(s), init, a, b, k});
  };
  const int64_t D = d.dim, hc = d.hc, mix = (2 + hc) * hc;
  const float norm_sd = 0.1f;

  bf16("attn_norm.weight", {D}, 1.0f, norm_sd);
  bf16("ffn_norm.weight", {D}, 1.0f, norm_sd);
  for (const char* w : {"hc_attn_", "hc_ffn_"}) {
    const std::string s = w;
    f32(s + "fn", {mix, hc * D}, Init::Normal, 0.0f, lin_std(hc * D));
    f32(s + "base", {mix}, Init::HcBase, 0.0f, 0.5f, hc);
    f32(s + "scale", {3}, Init::Uniform, 0.3f, 1.0f);
  }

  // Attention.
  fp8("attn.wq_a", d.q_lora, D);
  bf16("attn.q_norm.weight", {d.q_lora}, 1.0f, norm_sd);
  fp8("attn.wq_b", d.heads * d.head_dim, d.q_lora);
  fp8("attn.wkv", d.head_dim, D);
  bf16("attn.kv_norm.weight", {d.head_dim}, 1.0f, norm_sd);
  fp8("attn.wo_a", d.o_groups * d.o_lora, d.heads * d.head_dim / d.o_groups);
  fp8("attn.wo_b", D, d.o_groups * d.o_lora);
  f32("attn.attn_sink", {d.heads}, Init::Normal, 0.0f, 1.0f);
  auto compressor = [&](const std::string& c, int64_t r, int64_t hd) {
    const int64_t co = (r == 4 ? 2 : 1) * hd;  // ratio 4 has overlapping windows: two halves
    bf16(c + "wkv.weight", {co, D}, 0.0f, lin_std(D));
    bf16(c + "wgate.weight", {co, D}, 0.0f, lin_std(D));
    f32(c + "ape", {r, co}, Init::Normal, 0.0f, 0.5f);
    bf16(c + "norm.weight", {hd}, 1.0f, norm_sd);
  };
  if (ratio > 0) {
    compressor("attn.compressor.", ratio, d.head_dim);
    if (ratio == 4) {
      fp8("attn.indexer.wq_b", d.index_heads * d.index_dim, d.q_lora);
      bf16("attn.indexer.weights_proj.weight", {d.index_heads, D}, 0.0f, lin_std(D));
      compressor("attn.indexer.compressor.", 4, d.index_dim);
    }
  }

  // MoE.
  bf16("ffn.gate.weight", {d.experts, D}, 0.0f, lin_std(D));
  if (hash) out.push_back({p + "ffn.gate.tid2eid", Store::I64, {d.vocab, d.topk}, Init::Tid2eid, 0, 0, d.experts});
  else f32("ffn.gate.bias", {d.experts}, Init::Normal, 0.0f, 0.1f);
  if (d.shared > 0) {
    const int64_t si = d.shared * d.inter;
    fp8("ffn.shared_experts.w1", si, D, 1.5f);
    fp8("ffn.shared_experts.w3", si, D, 1.5f);
    fp8("ffn.shared_experts.w2", D, si);
  }
  for (int64_t e = 0; e < d.experts; ++e) {
    const std::string x = fmt::format("ffn.experts.{}.", e);
    expert(x + "w1", d.inter, D, 1.5f);
    expert(x + "w3", d.inter, D, 1.5f);
    expert(x + "w2", D, d.inter, 1.0f);
  }
}

struct ShardPlan {
  std::string file;
  std::vector<Param> params;
};

std::vector<ShardPlan> plan_checkpoint(const Dims& d, const Quant& q) {
  // embed, one shard per layer, head; then the NextN block (preview) or one shard per DSpark
  // stage (0731: 48 shards = 1 + 43 + 1 + 3).
  const int64_t n = 1 + d.layers + 1 + (d.mtp > 0 ? 1 : 0) + d.dspark_stages;
  std::vector<ShardPlan> shards(n);
  for (int64_t k = 0; k < n; ++k) shards[k].file = fmt::format("model-{:05d}-of-{:05d}.safetensors", k + 1, n);
  const float sd_head = static_cast<float>(2.0 / std::sqrt(static_cast<double>(d.dim)));
  shards[0].params.push_back({"embed.weight", Store::BF16, {d.vocab, d.dim}, Init::Normal, 0.0f, 1.0f});
  for (int64_t l = 0; l < d.layers; ++l)
    block_params(d, q, fmt::format("layers.{}.", l), d.ratios[l], l < d.hash_layers, shards[1 + l].params);
  auto head = [&](const std::string& p, std::vector<Param>& out) {
    out.push_back({p + "hc_head_fn", Store::F32, {d.hc, d.hc * d.dim}, Init::Normal, 0.0f,
                   static_cast<float>(1.0 / std::sqrt(static_cast<double>(d.hc * d.dim)))});
    out.push_back({p + "hc_head_base", Store::F32, {d.hc}, Init::Normal, 0.0f, 0.5f});
    out.push_back({p + "hc_head_scale", Store::F32, {1}, Init::Uniform, 0.3f, 1.0f});
  };
  auto& hs = shards[1 + d.layers].params;
  hs.push_back({"norm.weight", Store::BF16, {d.dim}, Init::Normal, 1.0f, 0.1f});
  hs.push_back({"head.weight", Store::BF16, {d.vocab, d.dim}, Init::Normal, 0.0f, sd_head});
  head("", hs);
  for (int64_t m = 0; m < d.mtp; ++m) {
    auto& ms = shards.back().params;
    const std::string p = fmt::format("mtp.{}.", m);
    const int64_t id = d.layers + m;  // the MTP block's layer id: score-routed unless hash covers it
    block_params(d, q, p, d.ratios[id], id < d.hash_layers, ms);
    const float sd = static_cast<float>(1.0 / std::sqrt(static_cast<double>(d.dim)));
    ms.push_back({p + "e_proj", Store::FP8, {d.dim, d.dim}, Init::Normal, 0.0f, sd});
    ms.push_back({p + "h_proj", Store::FP8, {d.dim, d.dim}, Init::Normal, 0.0f, sd});
    for (const char* nn : {"enorm.weight", "hnorm.weight", "norm.weight"})
      ms.push_back({p + nn, Store::BF16, {d.dim}, Init::Normal, 1.0f, 0.1f});
    head(p, ms);
  }
  for (int64_t s = 0; s < d.dspark_stages; ++s) {
    auto& ss = shards[static_cast<size_t>(1 + d.layers + 1 + s)].params;
    const std::string p = fmt::format("mtp.{}.", s);
    block_params(d, q, p, d.ratios[d.layers + s], false, ss);  // SWA, score-routed
    if (s == 0) {
      const int64_t in = d.dspark_targets * d.dim;
      ss.push_back({p + "main_proj", Store::FP8, {d.dim, in}, Init::Normal, 0.0f,
                    static_cast<float>(1.0 / std::sqrt(static_cast<double>(in)))});
      ss.push_back({p + "main_norm.weight", Store::BF16, {d.dim}, Init::Normal, 1.0f, 0.1f});
    }
    if (s + 1 == d.dspark_stages) {
      const int64_t r = d.markov_rank;
      ss.push_back({p + "norm.weight", Store::BF16, {d.dim}, Init::Normal, 1.0f, 0.1f});
      head(p, ss);
      ss.push_back({p + "markov_head.markov_w1.weight", Store::BF16, {d.vocab, r}, Init::Normal, 0.0f, 1.0f});
      ss.push_back({p + "markov_head.markov_w2.weight", Store::BF16, {d.vocab, r}, Init::Normal, 0.0f,
                    static_cast<float>(1.0 / std::sqrt(static_cast<double>(r)))});
      ss.push_back({p + "confidence_head.proj.weight", Store::F32, {1, d.dim + r}, Init::Normal, 0.0f,
                    static_cast<float>(1.0 / std::sqrt(static_cast<double>(d.dim + r)))});
    }
  }
  return shards;
}

std::vector<SynthTensorInfo> tensors_of(const Param& p, const Quant& q) {
  switch (p.store) {
    case Store::FP8:
      return {{p.name + ".weight", DType::F8_E4M3, p.shape},
              {p.name + ".scale", q.f32_scales ? DType::F32 : DType::F8_E8M0,
               {cdiv(p.shape[0], 128), cdiv(p.shape[1], 128)}}};
    case Store::FP4:
      return {{p.name + ".weight", DType::I8, {p.shape[0], p.shape[1] / 2}},
              {p.name + ".scale", DType::F8_E8M0, {p.shape[0], p.shape[1] / 32}}};
    case Store::BF16: return {{p.name, DType::BF16, p.shape}};
    case Store::F32: return {{p.name, DType::F32, p.shape}};
    case Store::I64: return {{p.name, DType::I64, p.shape}};
  }
  return {};
}

size_t nbytes_of(const SynthTensorInfo& t) {
  size_t n = dtype_size(t.dtype);
  for (auto s : t.shape) n *= static_cast<size_t>(s);
  return n;
}

Quant quant_of(const SynthOptions& opt) {
  Quant q;
  if (opt.expert_dtype == "fp8") q.fp8_experts = true;
  else if (opt.expert_dtype != "fp4")
    throw InputError("--expert-dtype must be fp4 or fp8 (got '" + opt.expert_dtype + "')");
  if (opt.scale_dtype == "f32") q.f32_scales = true;
  else if (opt.scale_dtype != "e8m0")
    throw InputError("--scale-dtype must be e8m0 or f32 (got '" + opt.scale_dtype + "')");
  if (q.f32_scales && !q.fp8_experts)
    throw InputError("--scale-dtype f32 is the Base layout, which has FP8 experts: use it with --expert-dtype fp8");
  return q;
}

// ---------------------------------------------------------------------------------------------
// Writing.

class ShardFile {
 public:
  explicit ShardFile(const std::string& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) throw InputError(fmt::format("cannot create {}: {}", path, std::strerror(errno)));
  }
  ~ShardFile() {
    if (fd_ >= 0) ::close(fd_);
  }
  ShardFile(const ShardFile&) = delete;
  ShardFile& operator=(const ShardFile&) = delete;

  // Thread-safe positional write; the first error is remembered and reported by close().
  void write_at(const void* data, size_t n, uint64_t off) {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      ssize_t w = ::pwrite(fd_, p, n, static_cast<off_t>(off));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {
        std::lock_guard<std::mutex> lk(mu_);
        if (error_.empty()) error_ = w < 0 ? std::strerror(errno) : "short write";
        return;
      }
      p += w, n -= static_cast<size_t>(w), off += static_cast<uint64_t>(w);
    }
  }
  void close() {
    if (fd_ >= 0 && ::close(fd_) != 0 && error_.empty()) error_ = std::strerror(errno);
    fd_ = -1;
    if (!error_.empty()) throw InputError(fmt::format("cannot write {}: {}", path_, error_));
  }

 private:
  std::string path_;
  int fd_ = -1;
  std::mutex mu_;
  std::string error_;
};

void gen_fp8(const Param& p, uint64_t key, bool f32_scales, ShardFile& f, uint64_t w_off, uint64_t s_off) {
  const int64_t out = p.shape[0], in = p.shape[1], nbr = cdiv(out, 128), nbc = cdiv(in, 128);
  std::vector<uint8_t> scales(static_cast<size_t>(nbr * nbc) * (f32_scales ? 4 : 1));
  const float sd = p.b;
  parallel_for(static_cast<size_t>(nbr), 1, [&](size_t b0, size_t b1) {
    std::vector<float> v(static_cast<size_t>(128 * in));
    std::vector<uint8_t> qv(static_cast<size_t>(128 * in));
    std::vector<uint32_t> amax(static_cast<size_t>(nbc));
    std::vector<float> inv(static_cast<size_t>(nbc));
    for (size_t band = b0; band < b1; ++band) {
      const int64_t r0 = static_cast<int64_t>(band) * 128, nr = std::min<int64_t>(128, out - r0);
      const uint64_t base = static_cast<uint64_t>(r0 * in);
      const size_t cnt = static_cast<size_t>(nr * in);
      fill_normal(key, base, cnt, 0.0f, sd, v.data());
      std::fill(amax.begin(), amax.end(), 0u);
      for (int64_t r = 0; r < nr; ++r)
        for (int64_t cb = 0; cb < nbc; ++cb) amax[cb] = std::max(amax[cb], abs_max_bits(&v[r * in + cb * 128], std::min<int64_t>(128, in - cb * 128)));
      for (int64_t cb = 0; cb < nbc; ++cb) {
        const float s = pow2_ceil(std::max(std::bit_cast<float>(amax[cb]) / 448.0f, 1.17549435e-38f));
        inv[cb] = 1.0f / s;
        const size_t si = static_cast<size_t>(static_cast<int64_t>(band) * nbc + cb);
        if (f32_scales) std::memcpy(&scales[si * 4], &s, 4);
        else scales[si] = f32_pow2_to_e8m0(s);
      }
      for (int64_t r = 0; r < nr; ++r) quant_e4m3(&v[r * in], static_cast<size_t>(in), inv.data(), &qv[r * in]);
      f.write_at(qv.data(), cnt, w_off + base);
    }
  });
  f.write_at(scales.data(), scales.size(), s_off);
}

void gen_fp4(const Param& p, uint64_t key, ShardFile& f, uint64_t w_off, uint64_t s_off) {
  const int64_t out = p.shape[0], in = p.shape[1], groups = in / 32;
  const float sd = p.b;
  constexpr int64_t kRows = 16;
  parallel_for(static_cast<size_t>(cdiv(out, kRows)), 1, [&](size_t c0, size_t c1) {
    std::vector<uint8_t> packed(static_cast<size_t>(kRows * in / 2)), sc(static_cast<size_t>(kRows * groups));
    std::vector<float> row(static_cast<size_t>(in)), inv(static_cast<size_t>(groups));
    for (size_t chunk = c0; chunk < c1; ++chunk) {
      const int64_t r0 = static_cast<int64_t>(chunk) * kRows, nr = std::min<int64_t>(kRows, out - r0);
      for (int64_t r = 0; r < nr; ++r) {
        fill_normal(key, static_cast<uint64_t>((r0 + r) * in), static_cast<size_t>(in), 0.0f, sd, row.data());
        for (int64_t g = 0; g < groups; ++g) {
          const float amax = std::bit_cast<float>(abs_max_bits(&row[static_cast<size_t>(g * 32)], 32));
          const float s = pow2_ceil(std::max(amax / 6.0f, 1.17549435e-38f));
          inv[static_cast<size_t>(g)] = 1.0f / s;
          sc[static_cast<size_t>(r * groups + g)] = f32_pow2_to_e8m0(s);
        }
        quant_e2m1(row.data(), static_cast<size_t>(in), inv.data(), &packed[static_cast<size_t>(r * in / 2)]);
      }
      f.write_at(packed.data(), static_cast<size_t>(nr * in / 2), w_off + static_cast<uint64_t>(r0 * in / 2));
      f.write_at(sc.data(), static_cast<size_t>(nr * groups), s_off + static_cast<uint64_t>(r0 * groups));
    }
  });
}

void gen_plain(const Param& p, uint64_t key, ShardFile& f, uint64_t off) {
  int64_t n = 1;
  for (auto s : p.shape) n *= s;
  const bool bf = p.store == Store::BF16;
  constexpr int64_t kChunk = 1 << 16;
  parallel_for(static_cast<size_t>(cdiv(n, kChunk)), 1, [&](size_t c0, size_t c1) {
    std::vector<uint8_t> buf(static_cast<size_t>(kChunk) * 4);
    std::vector<float> vals(static_cast<size_t>(kChunk));
    for (size_t chunk = c0; chunk < c1; ++chunk) {
      const int64_t i0 = static_cast<int64_t>(chunk) * kChunk, cnt = std::min(kChunk, n - i0);
      const size_t es = bf ? 2 : 4;
      if (p.init == Init::Normal) {  // the bulk (embed, head, BF16 projections): vectorised
        fill_normal(key, static_cast<uint64_t>(i0), static_cast<size_t>(cnt), p.a, p.b, vals.data());
        if (bf) {
          uint16_t* o = reinterpret_cast<uint16_t*>(buf.data());
          for (int64_t j = 0; j < cnt; ++j) o[j] = f32_to_bf16(vals[static_cast<size_t>(j)]);
        } else {
          std::memcpy(buf.data(), vals.data(), static_cast<size_t>(cnt) * 4);
        }
        f.write_at(buf.data(), static_cast<size_t>(cnt) * es, off + static_cast<uint64_t>(i0) * es);
        continue;
      }
      for (int64_t j = 0; j < cnt; ++j) {
        const uint64_t i = static_cast<uint64_t>(i0 + j);
        float x;
        switch (p.init) {
          case Init::Uniform: x = p.a + (p.b - p.a) * uniform_at(key, i); break;
          case Init::HcBase: {
            x = p.b * normal_at(key, i);
            const int64_t hc = p.n, c = static_cast<int64_t>(i) - 2 * hc;  // comb part: [hc, hc] after pre, post
            if (c >= 0 && c / hc == c % hc) x += 1.0f;
            break;
          }
          default: x = p.a + p.b * normal_at(key, i); break;
        }
        if (bf) {
          const uint16_t h = f32_to_bf16(x);
          std::memcpy(&buf[static_cast<size_t>(j) * 2], &h, 2);
        } else {
          std::memcpy(&buf[static_cast<size_t>(j) * 4], &x, 4);
        }
      }
      f.write_at(buf.data(), static_cast<size_t>(cnt) * es, off + static_cast<uint64_t>(i0) * es);
    }
  });
}

void gen_tid2eid(const Param& p, uint64_t key, ShardFile& f, uint64_t off) {
  const int64_t rows = p.shape[0], k = p.shape[1], experts = p.n;
  constexpr int64_t kRows = 4096;
  parallel_for(static_cast<size_t>(cdiv(rows, kRows)), 1, [&](size_t c0, size_t c1) {
    std::vector<int64_t> buf(static_cast<size_t>(kRows * k));
    for (size_t chunk = c0; chunk < c1; ++chunk) {
      const int64_t r0 = static_cast<int64_t>(chunk) * kRows, nr = std::min(kRows, rows - r0);
      for (int64_t r = 0; r < nr; ++r) {
        int64_t* row = &buf[static_cast<size_t>(r * k)];
        uint64_t ctr = static_cast<uint64_t>(r0 + r) << 20;  // distinct counter ranges per row
        for (int64_t j = 0; j < k; ++j) {
          for (;;) {  // rejection sampling: distinct experts within a row
            const uint64_t x = bits_at(key, ctr++);
            const int64_t e = static_cast<int64_t>(((x >> 32) * static_cast<uint64_t>(experts)) >> 32);
            if (std::find(row, row + j, e) == row + j) {
              row[j] = e;
              break;
            }
          }
        }
      }
      f.write_at(buf.data(), static_cast<size_t>(nr * k) * 8, off + static_cast<uint64_t>(r0 * k) * 8);
    }
  });
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) throw InputError("cannot write " + path.string());
  f << text;
  f.close();
  if (!f) throw InputError("short write to " + path.string());
}

constexpr int64_t kRealVocab = 129280;

json base_config() {
  // V4-Flash HF config.json (spec 1.1), adjusted by the presets.
  return json{
      {"architectures", {"DeepseekV4ForCausalLM"}},
      {"attention_bias", false},
      {"attention_dropout", 0.0},
      {"bos_token_id", 0},
      {"eos_token_id", 1},
      {"expert_dtype", "fp4"},
      {"hc_eps", 1e-06},
      {"hc_mult", 4},
      {"hc_sinkhorn_iters", 20},
      {"head_dim", 512},
      {"hidden_act", "silu"},
      {"hidden_size", 4096},
      {"index_head_dim", 128},
      {"index_n_heads", 64},
      {"index_topk", 512},
      {"initializer_range", 0.02},
      {"max_position_embeddings", 1048576},
      {"model_type", "deepseek_v4"},
      {"moe_intermediate_size", 2048},
      {"n_routed_experts", 256},
      {"n_shared_experts", 1},
      {"norm_topk_prob", true},
      {"num_attention_heads", 64},
      {"num_experts_per_tok", 6},
      {"num_hidden_layers", 43},
      {"num_hash_layers", 3},
      {"num_key_value_heads", 1},
      {"num_nextn_predict_layers", 1},
      {"o_groups", 8},
      {"o_lora_rank", 1024},
      {"q_lora_rank", 1024},
      {"qk_rope_head_dim", 64},
      {"quantization_config",
       {{"activation_scheme", "dynamic"},
        {"fmt", "e4m3"},
        {"quant_method", "fp8"},
        {"scale_fmt", "ue8m0"},
        {"weight_block_size", {128, 128}}}},
      {"rms_norm_eps", 1e-06},
      {"rope_scaling",
       {{"beta_fast", 32}, {"beta_slow", 1}, {"factor", 16.0}, {"original_max_position_embeddings", 65536}, {"type", "yarn"}}},
      {"rope_theta", 10000.0},
      {"routed_scaling_factor", 1.5},
      {"scoring_func", "sqrtsoftplus"},
      {"sliding_window", 128},
      {"swiglu_limit", 10.0},
      {"tie_word_embeddings", false},
      {"topk_method", "noaux_tc"},
      {"torch_dtype", "bfloat16"},
      {"transformers_version", "4.57.1"},
      {"use_cache", true},
      {"vocab_size", kRealVocab},
      {"compress_rope_theta", 160000.0},
  };
}

const char* kGenerationConfig = R"({
  "_from_model_config": true,
  "bos_token_id": 0,
  "eos_token_id": 1,
  "do_sample": true,
  "temperature": 1.0,
  "top_p": 1.0,
  "transformers_version": "4.46.3"
}
)";

json tokenizer_config() {
  auto tok = [](const char* s) {
    return json{{"__type", "AddedToken"}, {"content", s}, {"lstrip", false}, {"normalized", true},
                {"rstrip", false}, {"single_word", false}};
  };
  return json{{"add_bos_token", false},
              {"add_eos_token", false},
              {"bos_token", tok("<｜begin▁of▁sentence｜>")},
              {"clean_up_tokenization_spaces", false},
              {"eos_token", tok("<｜end▁of▁sentence｜>")},
              {"legacy", true},
              {"model_max_length", 1048576},
              {"pad_token", tok("<｜end▁of▁sentence｜>")},
              {"sp_model_kwargs", json::object()},
              {"unk_token", nullptr},
              {"tokenizer_class", "PreTrainedTokenizerFast"}};
}

}  // namespace

// ---------------------------------------------------------------------------------------------

json synth_config(const SynthOptions& opt) {
  const Quant q = quant_of(opt);
  json c = base_config();
  int64_t first = 0, hca = 128;  // ratio of layers 0 and 1; ratio of odd layers >= 3
  if (opt.preset == "tiny") {
    // Same dims as the golden tiny-all set, but the real vocabulary.
    c.update(json{{"hidden_size", 256}, {"num_hidden_layers", 7}, {"num_attention_heads", 4}, {"head_dim", 128},
                  {"qk_rope_head_dim", 64}, {"q_lora_rank", 128}, {"o_groups", 2}, {"o_lora_rank", 128},
                  {"n_routed_experts", 8}, {"num_experts_per_tok", 2}, {"moe_intermediate_size", 128},
                  {"index_n_heads", 16}, {"index_head_dim", 128}, {"index_topk", 32}, {"sliding_window", 32},
                  {"swiglu_limit", 3.0}});
    hca = 16;
  } else if (opt.preset == "flash-shaped") {
    c["n_routed_experts"] = 8;
  } else if (opt.preset == "pro-shaped") {
    c.update(json{{"hidden_size", 7168}, {"num_hidden_layers", 61}, {"num_attention_heads", 128},
                  {"q_lora_rank", 1536}, {"o_groups", 16}, {"moe_intermediate_size", 3072},
                  {"index_topk", 1024}, {"routed_scaling_factor", 2.5}, {"n_routed_experts", 8}});
    first = 128;
  } else {
    throw InputError("--preset must be tiny, flash-shaped or pro-shaped (got '" + opt.preset + "')");
  }
  if (opt.experts < 0 || opt.experts > 4096) throw InputError(fmt::format("--experts must be in 1..4096 (got {})", opt.experts));
  if (opt.layers < 0 || opt.layers > 1024) throw InputError(fmt::format("--layers must be in 1..1024 (got {})", opt.layers));
  if (opt.vocab < 0 || opt.vocab == 1 || opt.vocab > (int64_t{1} << 31))
    throw InputError(fmt::format("--vocab must be in 2..2^31 (got {})", opt.vocab));
  if (opt.experts > 0) c["n_routed_experts"] = opt.experts;
  if (opt.layers > 0) c["num_hidden_layers"] = opt.layers;
  if (opt.vocab > 0) c["vocab_size"] = opt.vocab;
  const int64_t topk = c["num_experts_per_tok"].get<int64_t>(), ne = c["n_routed_experts"].get<int64_t>();
  if (ne < topk)
    throw InputError(fmt::format("--experts {} is fewer than the {} experts each token uses (num_experts_per_tok)", ne, topk));
  const int64_t L = c["num_hidden_layers"].get<int64_t>();
  c["num_hash_layers"] = std::min<int64_t>(3, L);  // never hash-route the MTP block
  // Rebuild the schedule for the layer count: layers 0,1 = `first`, then CSA (4) on even and
  // HCA on odd layers; the MTP block (last entry) is sliding-window only.
  json ratios = json::array();
  for (int64_t l = 0; l < L; ++l) ratios.push_back(l < 2 ? first : (l % 2 == 0 ? 4 : hca));
  ratios.push_back(0);
  c["compress_ratios"] = ratios;
  if (!q.fp8_experts) c["expert_dtype"] = "fp4";
  else if (q.f32_scales) c["expert_dtype"] = "fp8";  // Base layout
  else c.erase("expert_dtype");                      // FP8-only (Hopper) build drops the key
  if (opt.revision == "0731" || opt.revision == "0813") {
    // The current official layout (docs/checkpoints.md): three draft stages mtp.0..2 with their
    // own (sliding-window) compress_ratios entries, the dspark_* keys, and the stale
    // num_nextn_predict_layers = 1 the release keeps. Target layers: the last three.
    constexpr int64_t kStages = 3;
    for (int64_t s = 1; s < kStages; ++s) c["compress_ratios"].push_back(0);
    const int64_t V = c["vocab_size"].get<int64_t>();
    json targets = json::array();
    for (int64_t i = 0; i < 3; ++i) targets.push_back(std::max<int64_t>(0, L - 3 + i));
    c["dspark_block_size"] = 5;
    c["dspark_noise_token_id"] = std::min<int64_t>(128799, V - 1);
    c["dspark_target_layer_ids"] = targets;
    c["dspark_markov_rank"] = opt.preset == "tiny" ? 64 : 256;
  } else if (opt.revision != "preview") {
    throw InputError("--revision must be preview, 0731 or 0813 (got '" + opt.revision + "')");
  }
  return c;
}

std::vector<SynthShardInfo> synth_layout(const json& config, const SynthOptions& opt) {
  const Quant q = quant_of(opt);
  const Dims d = dims_from_config(config);
  std::vector<SynthShardInfo> out;
  for (auto& s : plan_checkpoint(d, q)) {
    SynthShardInfo si{s.file, {}};
    for (auto& p : s.params)
      for (auto& t : tensors_of(p, q)) si.tensors.push_back(std::move(t));
    out.push_back(std::move(si));
  }
  return out;
}

void write_synthetic_checkpoint(const SynthOptions& opt) { write_synthetic_checkpoint(synth_config(opt), opt); }

void write_synthetic_checkpoint(const json& config, const SynthOptions& opt) {
  const Quant q = quant_of(opt);
  const Dims d = dims_from_config(config);
  if (auto it = config.find("expert_dtype"); it != config.end() && it->is_string() &&
                                           it->get<std::string>() != opt.expert_dtype)
    throw InputError("config.json says expert_dtype " + it->get<std::string>() + " but --expert-dtype is " +
                     opt.expert_dtype);
  if (opt.out_dir.empty()) throw InputError("synth: --out DIR is required");
  const fs::path dir(opt.out_dir);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir)) throw InputError("cannot create directory " + opt.out_dir);

  const auto shards = plan_checkpoint(d, q);
  // Drop shards of an earlier checkpoint in the same directory that this one does not overwrite.
  std::set<std::string> mine;
  for (auto& s : shards) mine.insert(s.file);
  static const std::regex shard_re(R"(model-\d+-of-\d+\.safetensors(\.tmp)?)");
  for (auto& e : fs::directory_iterator(dir, ec)) {
    const std::string fn = e.path().filename().string();
    if (std::regex_match(fn, shard_re) && !mine.count(fn)) fs::remove(e.path(), ec);
  }

  // Byte layout of every shard up front (so the progress bar knows the total).
  struct Placed {
    const Param* p;
    std::vector<SynthTensorInfo> t;
    std::vector<uint64_t> off;  // absolute file offsets of t[i]'s data
  };
  std::vector<std::vector<Placed>> placed(shards.size());
  std::vector<std::string> headers(shards.size());
  json weight_map = json::object();
  uint64_t total = 0;
  for (size_t k = 0; k < shards.size(); ++k) {
    json h = json::object();
    h["__metadata__"] = {{"format", "pt"}};
    uint64_t off = 0;
    for (auto& p : shards[k].params) {
      Placed pl{&p, tensors_of(p, q), {}};
      for (auto& t : pl.t) {
        const uint64_t nb = nbytes_of(t);
        h[t.name] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {off, off + nb}}};
        weight_map[t.name] = shards[k].file;
        pl.off.push_back(off);
        off += nb;
      }
      placed[k].push_back(std::move(pl));
    }
    std::string hs = h.dump();
    hs.append((8 - hs.size() % 8) % 8, ' ');
    const uint64_t data_start = 8 + hs.size();
    for (auto& pl : placed[k])
      for (auto& o : pl.off) o += data_start;
    uint64_t hl = hs.size();
    headers[k].assign(reinterpret_cast<const char*>(&hl), 8);
    headers[k] += hs;
    total += off;
  }

  Progress bar("synth", static_cast<size_t>(total), opt.quiet);
  uint64_t done = 0;
  for (size_t k = 0; k < shards.size(); ++k) {
    const fs::path final_path = dir / shards[k].file;
    const std::string tmp = final_path.string() + ".tmp";
    ShardFile f(tmp);
    f.write_at(headers[k].data(), headers[k].size(), 0);
    for (auto& pl : placed[k]) {
      const Param& p = *pl.p;
      const uint64_t key = name_key(opt.seed, p.name);
      switch (p.store) {
        case Store::FP8: gen_fp8(p, key, q.f32_scales, f, pl.off[0], pl.off[1]); break;
        case Store::FP4: gen_fp4(p, key, f, pl.off[0], pl.off[1]); break;
        case Store::I64: gen_tid2eid(p, key, f, pl.off[0]); break;
        default: gen_plain(p, key, f, pl.off[0]); break;
      }
      for (auto& t : pl.t) done += nbytes_of(t);
      bar.update(static_cast<size_t>(done));
    }
    f.close();
    fs::rename(tmp, final_path, ec);
    if (ec) throw InputError(fmt::format("cannot rename {} to {}: {}", tmp, final_path.string(), ec.message()));
  }
  bar.finish();

  write_text(dir / "model.safetensors.index.json",
             json{{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}}.dump(2) + "\n");
  write_text(dir / "config.json", config.dump(2) + "\n");
  write_text(dir / "generation_config.json", kGenerationConfig);
  write_text(dir / "tokenizer_config.json", tokenizer_config().dump(2) + "\n");
  if (!opt.tokenizer_json.empty()) write_text(dir / "tokenizer.json", opt.tokenizer_json);
}

}  // namespace v4
