#include "plan/kv.h"

#include <algorithm>

#include "core/error.h"

namespace v4::plan {

const std::vector<KvFormat>& kv_formats() {
  static const std::vector<KvFormat> f = {
      {"bf16", 1024, 256, "reference layout: BF16 512-d entries, BF16 128-d indexer keys"},
      {"fp8", 584, 132,
       "FP8 layout: 448 FP8 + 64 BF16 rope + 8 scale bytes per entry, FP8 indexer key + FP32 scale"},
      {"fp8-fp4idx", 584, 68, "FP8 entries as 'fp8', MXFP4 indexer keys (64 B + 4 scale bytes)"},
  };
  return f;
}

const KvFormat& find_kv_format(const std::string& name) {
  std::string n = name == "fp8_e4m3" || name == "fp8_ds_mla" ? "fp8" : name;
  for (auto& f : kv_formats())
    if (f.name == n) return f;
  throw InputError("--kv-dtype: unknown KV cache format '" + name + "' (known: bf16, fp8, fp8-fp4idx)");
}

KvBreakdown kv_bytes(const ModelConfig& m, const KvFormat& f, int64_t L) {
  KvBreakdown k;
  const double layers = m.n_swa() + m.n_csa() + m.n_hca();
  k.window = layers * static_cast<double>(std::min<int64_t>(m.window, L)) * f.entry_bytes;
  k.c4 = m.n_csa() * static_cast<double>(L / 4) * f.entry_bytes;
  k.indexer = m.n_csa() * static_cast<double>(L / 4) * f.indexer_bytes;
  k.c128 = m.n_hca() * static_cast<double>(L / 128) * f.entry_bytes;
  // Spec §4.1: CSA 2·[8, 2·512] + indexer 2·[8, 2·128] FP32; HCA 2·[128, 512] FP32.
  const double csa_state = 2.0 * 8 * 2 * m.head_dim * 4 + 2.0 * 8 * 2 * m.index_head_dim * 4;
  const double hca_state = 2.0 * 128 * m.head_dim * 4;
  k.frontier = m.n_csa() * csa_state + m.n_hca() * hca_state;
  return k;
}

double kv_bytes_per_token(const ModelConfig& m, const KvFormat& f) {
  return m.n_csa() * (f.entry_bytes + f.indexer_bytes) / 4.0 + m.n_hca() * f.entry_bytes / 128.0;
}

double kv_read_bytes_per_step(const ModelConfig& m, const KvFormat& f, int64_t L) {
  const double layers = m.n_swa() + m.n_csa() + m.n_hca();
  const double window = layers * static_cast<double>(std::min<int64_t>(m.window, L)) * f.entry_bytes;
  const double c4_sel = m.n_csa() * static_cast<double>(std::min<int64_t>(m.index_topk, L / 4)) * f.entry_bytes;
  const double idx = m.n_csa() * static_cast<double>(L / 4) * f.indexer_bytes;
  const double c128 = m.n_hca() * static_cast<double>(L / 128) * f.entry_bytes;
  return window + c4_sel + idx + c128;
}

}  // namespace v4::plan
