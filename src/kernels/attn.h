// Attention inner loops (float32): the lightning indexer's scoring over keys stored in blocks of
// 16 transposed keys, and shared-KV (MQA) softmax attention with a sink over gathered key rows.
// AVX-512 where available, else AVX2+FMA (CPUs without AVX-512, e.g. AMD Zen 3), else a portable
// path; each is tested against plain loops.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace v4 {

// Indexer keys, appended one at a time, stored as blocks [16 keys][d] transposed to [d][16] so
// a score pass reads 16 keys per vector without horizontal sums.
struct KeyBlocks {
  static constexpr int kBlock = 16;
  int d = 0;
  int64_t n = 0;
  std::vector<float> data;  // [ceil(n/16)][d][16], padding zero
  void append(const float* k);
  float at(int64_t j, int e) const { return data[static_cast<size_t>((j / kBlock) * d + e) * kBlock + static_cast<size_t>(j % kBlock)]; }
};

// out[j] = Σ_h w[h] · max(0, q_h · k_j) for j < n (q: [H, d]); out needs n rounded up to 16.
void indexer_scores(const float* q, const float* w, int H, const KeyBlocks& keys, int64_t n, float* out);
// Indices of the k largest of score[0..n) (any order; ties resolved arbitrarily), linear time.
void top_k_indices(const float* score, int64_t n, int k, std::vector<int32_t>& out);

// o_h = Σ_i softmax_i(scale · q_h·key_i ∪ sink_h) · key_i for every head h (keys are also the
// values, V4's shared KV); q and o are [H, d]; `scratch` is resized as needed.
void mqa_attend(const float* q, int H, int d, const float* const* keys, int nk, const float* sink, float scale, float* o,
                std::vector<float>& scratch);

// Test hook: which kernels indexer_scores and mqa_attend run. kDispatch (the default) is what the
// CPU and the switches select (use_avx512(), use_avx2()); the others force one path, so the AVX2
// kernels are tested on AVX-512 machines too. Forcing a path the CPU lacks is the caller's error.
enum class AttnPath { kDispatch, kPortable, kAvx2, kAvx512 };
void set_attn_path(AttnPath p);
// Whether this CPU can run a forced path (kDispatch and kPortable: always).
bool attn_path_available(AttnPath p);

}  // namespace v4
