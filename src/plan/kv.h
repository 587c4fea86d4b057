// Per-sequence inference state of V4 (spec §4): the 128-token raw window on every layer, the
// c4 compressed entries plus indexer keys on CSA layers, the c128 entries on HCA layers, and the
// FP32 compressor frontier. Byte formula of spec §4.2.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "plan/catalog_models.h"

namespace v4::plan {

struct KvFormat {
  std::string name;         // "bf16", "fp8", "fp8-fp4idx"
  double entry_bytes;       // E: one 512-d KV entry
  double indexer_bytes;     // I: one 128-d indexer key
  std::string description;
};

// bf16 (E=1024, I=256, the reference layout), fp8 (E=584, I=132, the vLLM/FlashMLA layout
// with an FP8 indexer), fp8-fp4idx (E=584, I=68, MXFP4 indexer cache). Throws InputError.
const KvFormat& find_kv_format(const std::string& name);
const std::vector<KvFormat>& kv_formats();

struct KvBreakdown {
  double window = 0;      // (n_SWA + n_CSA + n_HCA) · min(128, L) · E
  double c4 = 0;          // n_CSA · ⌊L/4⌋ · E
  double indexer = 0;     // n_CSA · ⌊L/4⌋ · I
  double c128 = 0;        // n_HCA · ⌊L/128⌋ · E
  double frontier = 0;    // FP32 compressor partial state, independent of L
  double total() const { return window + c4 + indexer + c128 + frontier; }
};

// Formula bytes for one sequence of context L (no engine overhead: this is the floor).
KvBreakdown kv_bytes(const ModelConfig& m, const KvFormat& f, int64_t context);
// Marginal bytes per extra token for long contexts: n_CSA·(E+I)/4 + n_HCA·E/128.
double kv_bytes_per_token(const ModelConfig& m, const KvFormat& f);
// Bytes of cache one decode step reads for one sequence at context L: the window, the top-k
// selected c4 entries, every indexer key (the indexer scores them all) and every c128 entry.
double kv_read_bytes_per_step(const ModelConfig& m, const KvFormat& f, int64_t context);

}  // namespace v4::plan
