#include "plan/weights.h"

#include <algorithm>
#include <regex>

#include "core/safetensors.h"

namespace v4::plan {
namespace {

int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

enum class Where { Experts, Sharded, Replicated };

struct Acc {
  WeightPart* part;
  int scale_bytes;
  void add(Where w, double bytes, double params) {
    (w == Where::Experts ? part->experts : w == Where::Sharded ? part->sharded : part->replicated) += bytes;
    part->params += params;
  }
  void plain(Where w, int64_t out, int64_t in, int elem) {
    add(w, static_cast<double>(out * in * elem), static_cast<double>(out * in));
  }
  // FP8 e4m3 weight + [ceil(out/128), ceil(in/128)] block scale.
  void fp8(Where w, int64_t out, int64_t in) {
    add(w, static_cast<double>(out * in + cdiv(out, 128) * cdiv(in, 128) * scale_bytes),
        static_cast<double>(out * in));
  }
};

// Bytes of one routed expert (w1, w3: [inter, dim]; w2: [dim, inter]).
double expert_bytes(const ModelConfig& m) {
  auto one = [&](int64_t out, int64_t in) -> double {
    if (m.expert_format == ExpertFormat::FP4)  // I8 [out, in/2] + E8M0 [out, in/32]
      return static_cast<double>(out * (in / 2) + out * cdiv(in, 32));
    return static_cast<double>(out * in + cdiv(out, 128) * cdiv(in, 128) * m.scale_bytes);
  };
  return 2 * one(m.moe_inter, m.dim) + one(m.dim, m.moe_inter);
}

// One transformer block (attention of the given ratio + MoE), spec §2.2 tables.
void add_block(Acc& a, const ModelConfig& m, int ratio, bool hash_layer, double exp_bytes) {
  const int64_t D = m.dim, mix = (2 + m.hc_mult) * m.hc_mult;
  a.plain(Where::Replicated, 2, D, 2);                      // attn_norm, ffn_norm
  a.plain(Where::Replicated, 2 * mix, m.hc_mult * D, 4);    // hc_attn_fn, hc_ffn_fn
  a.plain(Where::Replicated, 2, mix, 4);                    // hc_*_base
  a.plain(Where::Replicated, 2, 3, 4);                      // hc_*_scale
  a.fp8(Where::Replicated, m.q_lora, D);                    // wq_a
  a.plain(Where::Replicated, 1, m.q_lora, 2);               // q_norm
  a.fp8(Where::Sharded, m.heads * m.head_dim, m.q_lora);    // wq_b
  a.fp8(Where::Replicated, m.head_dim, D);                  // wkv
  a.plain(Where::Replicated, 1, m.head_dim, 2);             // kv_norm
  a.fp8(Where::Sharded, m.o_groups * m.o_lora, m.heads * m.head_dim / m.o_groups);  // wo_a
  a.fp8(Where::Sharded, D, m.o_groups * m.o_lora);          // wo_b
  a.plain(Where::Sharded, 1, m.heads, 4);                   // attn_sink
  a.plain(Where::Replicated, m.experts, D, 2);              // ffn.gate.weight
  if (hash_layer)
    a.plain(Where::Replicated, m.vocab, m.experts_per_tok, 8);  // tid2eid (I64)
  else
    a.plain(Where::Replicated, 1, m.experts, 4);            // gate.bias
  for (int64_t s = 0; s < m.shared_experts; ++s) {
    a.fp8(Where::Replicated, m.moe_inter, D);               // shared w1
    a.fp8(Where::Replicated, m.moe_inter, D);               // shared w3
    a.fp8(Where::Replicated, D, m.moe_inter);               // shared w2
  }
  a.add(Where::Experts, exp_bytes * static_cast<double>(m.experts),
        static_cast<double>(m.experts * 3 * m.moe_inter * D));
  if (ratio == 4) {
    a.plain(Where::Replicated, 2 * 2 * m.head_dim, D, 2);   // compressor wkv + wgate
    a.plain(Where::Replicated, 4, 2 * m.head_dim, 4);       // compressor ape
    a.plain(Where::Replicated, 1, m.head_dim, 2);           // compressor norm
    a.fp8(Where::Replicated, m.index_heads * m.index_head_dim, m.q_lora);  // indexer wq_b
    a.plain(Where::Sharded, m.index_heads, D, 2);           // indexer weights_proj
    a.plain(Where::Replicated, 2 * 2 * m.index_head_dim, D, 2);  // indexer compressor wkv+wgate
    a.plain(Where::Replicated, 4, 2 * m.index_head_dim, 4);     // indexer compressor ape
    a.plain(Where::Replicated, 1, m.index_head_dim, 2);         // indexer compressor norm
  } else if (ratio == 128) {
    a.plain(Where::Replicated, 2 * m.head_dim, D, 2);       // compressor wkv + wgate
    a.plain(Where::Replicated, 128, m.head_dim, 4);         // compressor ape
    a.plain(Where::Replicated, 1, m.head_dim, 2);           // compressor norm
  }
}

}  // namespace

WeightBytes weights_from_schema(const ModelConfig& m) {
  WeightBytes w;
  w.source = "computed from the config and the tensor schema (spec §2.2-2.4)";
  w.expert_bytes = expert_bytes(m);
  const int64_t D = m.dim;
  Acc a{&w.main, m.scale_bytes};
  a.plain(Where::Sharded, m.vocab, D, 2);                   // embed
  a.plain(Where::Sharded, m.vocab, D, 2);                   // head
  a.plain(Where::Replicated, 1, D, 2);                      // norm
  a.plain(Where::Replicated, m.hc_mult, m.hc_mult * D, 4);  // hc_head_fn
  a.plain(Where::Replicated, 1, m.hc_mult + 1, 4);          // hc_head_base + scale
  w.embed_bytes = w.head_bytes = static_cast<double>(m.vocab * D * 2);
  for (int64_t l = 0; l < m.layers; ++l)
    add_block(a, m, m.compress_ratios[static_cast<size_t>(l)], l < m.hash_layers, w.expert_bytes);
  Acc t{&w.mtp, m.scale_bytes};
  if (m.dspark) {  // DSpark drafter (docs/checkpoints.md): full SWA blocks + context and output heads
    for (int64_t k = 0; k < m.mtp_layers; ++k) add_block(t, m, 0, false, w.expert_bytes);
    t.fp8(Where::Replicated, D, m.dspark_targets * D);        // mtp.0.main_proj
    t.plain(Where::Replicated, 2, D, 2);                       // mtp.0.main_norm, last norm
    t.plain(Where::Replicated, m.hc_mult, m.hc_mult * D, 4);  // last hc_head_fn
    t.plain(Where::Replicated, 1, m.hc_mult + 1, 4);          // hc_head_base + scale
    t.plain(Where::Replicated, 2 * m.vocab, m.dspark_markov_rank, 2);  // markov_w1, markov_w2 (BF16)
    t.plain(Where::Replicated, 1, D + m.dspark_markov_rank, 4);       // confidence_head.proj
    return w;
  }
  for (int64_t k = 0; k < m.mtp_layers; ++k) {
    add_block(t, m, 0, false, w.expert_bytes);
    t.fp8(Where::Replicated, D, D);                         // e_proj
    t.fp8(Where::Replicated, D, D);                         // h_proj
    t.plain(Where::Replicated, 3, D, 2);                    // enorm, hnorm, norm
    t.plain(Where::Replicated, m.hc_mult, m.hc_mult * D, 4);
    t.plain(Where::Replicated, 1, m.hc_mult + 1, 4);
  }
  return w;
}

WeightBytes weights_from_store(const TensorStore& store, const ModelConfig& m) {
  WeightBytes w;
  static const std::regex expert_re(R"((^|\.)ffn\.experts\.\d+\.)");
  static const std::regex sharded_re(
      R"((^|\.)(embed\.weight|head\.weight|attn\.wq_b\.|attn\.wo_a\.|attn\.wo_b\.|attn\.attn_sink|indexer\.weights_proj\.))");
  double one_expert = 0;
  for (const auto& name : store.names()) {
    const TensorView& t = store.get(name);
    const double bytes = static_cast<double>(t.nbytes);
    const bool is_scale = name.size() > 6 && name.compare(name.size() - 6, 6, ".scale") == 0;
    double params = is_scale ? 0.0 : static_cast<double>(t.numel()) * (t.dtype == DType::I8 ? 2.0 : 1.0);
    WeightPart& part = name.rfind("mtp.", 0) == 0 ? w.mtp : w.main;
    part.params += params;
    if (std::regex_search(name, expert_re)) {
      part.experts += bytes;
      if (name.rfind("layers.0.ffn.experts.0.", 0) == 0) one_expert += bytes;
    } else if (std::regex_search(name, sharded_re)) {
      part.sharded += bytes;
      if (name == "embed.weight") w.embed_bytes = bytes;
      if (name == "head.weight") w.head_bytes = bytes;
    } else {
      part.replicated += bytes;
    }
  }
  w.expert_bytes = one_expert > 0 ? one_expert
                                  : w.main.experts / static_cast<double>(std::max<int64_t>(1, m.experts * m.layers));
  w.source = "safetensors headers (" + std::to_string(store.names().size()) + " tensors)";
  return w;
}

}  // namespace v4::plan
