// Linear layers over the checkpoint's own storage formats: y[M,N] = x[M,K] · W[N,K]ᵀ in float32.
// Weights stay in the mapped file (FP8 e4m3 + 128x128 block scales, packed FP4 e2m1 + 1x32 UE8M0
// scales, BF16, F32); rows are dequantised exactly on the fly, so `exact` numerics equal a float32
// GEMM on the dequantised weights. Every format has a portable reference path; AVX-512 or AVX2 is
// picked at run time.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/float_formats.h"

namespace v4 {

enum class WFormat { F32, BF16, FP8, FP4 };
enum class ScaleFormat { None, E8M0, F32 };

struct LinearWeight {
  WFormat format = WFormat::F32;
  int rows = 0;  // N (out)
  int cols = 0;  // K (in)
  const void* data = nullptr;
  ScaleFormat scale_format = ScaleFormat::None;
  const void* scale = nullptr;  // FP8: [ceil(N/128), ceil(K/128)]; FP4: [N, K/32]
  std::string name;

  bool valid() const { return data != nullptr; }
  size_t bytes() const;       // bytes of weight + scale storage touched by one full pass
  size_t data_bytes() const;  // the weight codes alone (the scales live elsewhere)
  // Dequantises row n into out[0..cols).
  void dequant_row(int n, float* out) const;
  // The multiplier applied to element (n, k) (inline: called once per weight block).
  float scale_at(int n, int k) const {
    size_t idx;
    if (format == WFormat::FP8) {
      const size_t kb = (static_cast<size_t>(cols) + 127) / 128;
      idx = static_cast<size_t>(n / 128) * kb + static_cast<size_t>(k / 128);
    } else if (format == WFormat::FP4) {
      idx = static_cast<size_t>(n) * static_cast<size_t>(cols / 32) + static_cast<size_t>(k / 32);
    } else {
      return 1.0f;
    }
    if (scale_format == ScaleFormat::F32) return static_cast<const float*>(scale)[idx];
    return e8m0_to_f32(static_cast<const uint8_t*>(scale)[idx]);
  }
};

// y[m*ldy + n] = Σ_k x[m*ldx + k] · W[n,k]  (threaded over N). ldx/ldy default to K/N.
void linear(const LinearWeight& w, const float* x, int M, float* y, int ldx = 0, int ldy = 0);
// Single-threaded reference (dequantise row, plain float loop) used by the kernel tests.
void linear_ref(const LinearWeight& w, const float* x, int M, float* y);
// Same, over the output-row range [n0, n1), caller-threaded.
void linear_rows(const LinearWeight& w, const float* x, int M, float* y, int ldx, int ldy, int n0, int n1);

}  // namespace v4
