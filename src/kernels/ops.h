// Element-wise and small-vector kernels of the V4 forward pass (float32). Written as plain loops
// the compiler vectorises; each is its own reference.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace v4 {

// y = (x / sqrt(mean(x²) + eps)) ⊙ w; w may be null (no weight).
void rmsnorm(const float* x, const float* w, int n, float eps, float* y);
// 1 / sqrt(mean(x²) + eps): the RMS scale rmsnorm applies (also used on flattened hc streams).
float inv_rms(const float* x, int n, float eps);
// In place, no weight (V4's per-head query normalisation).
void rms_normalize(float* x, int n, float eps);

// Rotary tables: per position, rope_dim/2 (cos, sin) pairs; YaRN-corrected frequencies when
// `yarn` (compressed layers), plain θ^(-2i/d) otherwise. Angles are fp32(pos)·fp32(freq) in fp32.
struct RopeTable {
  int rope_dim = 0;
  std::vector<float> freqs;  // rope_dim/2
  void init(int rope_dim, float theta, bool yarn, float factor, int original_seq_len, float beta_fast, float beta_slow);
  // Rotate the pairs (x[2i], x[2i+1]) by +angle (inverse=false) or -angle at position pos.
  void apply(float* x, int64_t pos, bool inverse = false) const;
  // apply() on `count` vectors x + i·stride at one position: the cos/sin computed once for all
  // (a token's query heads share them), the same bits as `count` apply() calls.
  void apply_heads(float* x, int count, size_t stride, int64_t pos, bool inverse = false) const;
  void cos_sin(int64_t pos, int pair, float* c, float* s) const;
};

// Normalised Sylvester Walsh–Hadamard transform in place (n a power of two), scale n^-1/2.
void hadamard(float* x, int n);

// FP8 e4m3 quant-dequant per block: s = 2^ceil(log2(max(amax,1e-4)/448)), x = e4m3(x/s)·s.
void fakequant_fp8(float* x, int n, int block);
// FP4 e2m1 quant-dequant per block: s = 2^ceil(log2(max(amax,6·2^-126)/6)), x = e2m1(x/s)·s.
void fakequant_fp4(float* x, int n, int block);
// FP8 activation quantisation of a row (block 128), returning dequantised values and the scales.
void act_quant_fp8(const float* x, int n, int block, float* q_values, float* scales);

// mHC: from the (2+hc)·hc mixing logits compute pre[hc], post[hc] and the Sinkhorn-normalised
// comb[hc][hc] (row j = source stream, column k = destination stream).
void hc_split_sinkhorn(const float* mixes, const float* scale3, const float* base, int hc, int iters, float eps,
                       float* pre, float* post, float* comb);

float sigmoidf(float x);
float softplus(float x);
float silu(float x);

}  // namespace v4
