#include "kernels/linear.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <vector>

#include "core/cpu.h"
#include "core/float_formats.h"
#include "core/thread_pool.h"
#include "kernels/linear_avx2.h"
#include "kernels/linear_avx512.h"

namespace v4 {

size_t LinearWeight::data_bytes() const {
  const size_t n = static_cast<size_t>(rows), k = static_cast<size_t>(cols);
  switch (format) {
    case WFormat::F32: return n * k * 4;
    case WFormat::BF16: return n * k * 2;
    case WFormat::FP8: return n * k;
    case WFormat::FP4: return n * k / 2;
  }
  return 0;
}

size_t LinearWeight::bytes() const {
  const size_t n = static_cast<size_t>(rows), k = static_cast<size_t>(cols);
  switch (format) {
    case WFormat::F32:
    case WFormat::BF16: return data_bytes();
    case WFormat::FP8: return data_bytes() + ((n + 127) / 128) * ((k + 127) / 128) * (scale_format == ScaleFormat::F32 ? 4 : 1);
    case WFormat::FP4: return data_bytes() + n * (k / 32);
  }
  return 0;
}

void LinearWeight::dequant_row(int n, float* out) const {
  const size_t K = static_cast<size_t>(cols);
  switch (format) {
    case WFormat::F32:
      std::memcpy(out, static_cast<const float*>(data) + n * K, K * 4);
      return;
    case WFormat::BF16: {
      const uint16_t* p = static_cast<const uint16_t*>(data) + n * K;
      for (size_t k = 0; k < K; ++k) out[k] = bf16_to_f32(p[k]);
      return;
    }
    case WFormat::FP8: {
      // e4m3_to_f32's 256 values, built once: it computes each with ldexp, which made this the
      // portable path's bottleneck (FP8 decode at 0.15 GB/s on Zen 3; engine-perf-notes.md).
      static const std::array<float, 256> kE4m3 = [] {
        std::array<float, 256> t{};
        for (int b = 0; b < 256; ++b) t[static_cast<size_t>(b)] = e4m3_to_f32(static_cast<uint8_t>(b));
        return t;
      }();
      const uint8_t* p = static_cast<const uint8_t*>(data) + n * K;
      for (size_t k0 = 0; k0 < K; k0 += 128) {
        float s = scale_at(n, static_cast<int>(k0));
        size_t k1 = std::min(K, k0 + 128);
        for (size_t k = k0; k < k1; ++k) out[k] = kE4m3[p[k]] * s;
      }
      return;
    }
    case WFormat::FP4: {
      const uint8_t* p = static_cast<const uint8_t*>(data) + n * (K / 2);
      for (size_t k0 = 0; k0 < K; k0 += 32) {
        float s = scale_at(n, static_cast<int>(k0));
        for (size_t k = k0; k < k0 + 32; k += 2) {
          uint8_t b = p[k / 2];
          out[k] = e2m1_to_f32(b & 0xf) * s;
          out[k + 1] = e2m1_to_f32(b >> 4) * s;
        }
      }
      return;
    }
  }
}

void linear_ref(const LinearWeight& w, const float* x, int M, float* y) {
  std::vector<float> row(static_cast<size_t>(w.cols));
  for (int n = 0; n < w.rows; ++n) {
    w.dequant_row(n, row.data());
    for (int m = 0; m < M; ++m) {
      const float* xm = x + static_cast<size_t>(m) * w.cols;
      float acc = 0.f;
      for (int k = 0; k < w.cols; ++k) acc += xm[k] * row[static_cast<size_t>(k)];
      y[static_cast<size_t>(m) * w.rows + n] = acc;
    }
  }
}

namespace {

// Portable path: dequantise a block of rows once, reuse it for every token.
void linear_rows_portable(const LinearWeight& w, const float* x, int M, float* y, int ldx, int ldy, int n0, int n1) {
  constexpr int RB = 4;
  const size_t K = static_cast<size_t>(w.cols);
  thread_local std::vector<float> buf;
  buf.resize(RB * K);
  for (int nb = n0; nb < n1; nb += RB) {
    int nr = std::min(RB, n1 - nb);
    for (int r = 0; r < nr; ++r) w.dequant_row(nb + r, buf.data() + r * K);
    for (int m = 0; m < M; ++m) {
      const float* xm = x + static_cast<size_t>(m) * ldx;
      for (int r = 0; r < nr; ++r) {
        const float* wr = buf.data() + r * K;
        // 8 partial sums let the compiler vectorise without -ffast-math.
        float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        size_t k = 0;
        for (; k + 8 <= K; k += 8)
          for (int j = 0; j < 8; ++j) acc[j] += xm[k + j] * wr[k + j];
        float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
        for (; k < K; ++k) s += xm[k] * wr[k];
        y[static_cast<size_t>(m) * ldy + nb + r] = s;
      }
    }
  }
}

}  // namespace

void linear_rows(const LinearWeight& w, const float* x, int M, float* y, int ldx, int ldy, int n0, int n1) {
  if (use_avx512()) linear_rows_avx512(w, x, M, y, ldx, ldy, n0, n1);
  else if (use_avx2()) linear_rows_avx2(w, x, M, y, ldx, ldy, n0, n1);
  else linear_rows_portable(w, x, M, y, ldx, ldy, n0, n1);
}

void linear(const LinearWeight& w, const float* x, int M, float* y, int ldx, int ldy) {
  if (M <= 0 || w.rows <= 0) return;
  if (ldx <= 0) ldx = w.cols;
  if (ldy <= 0) ldy = w.rows;
  // Grain: enough rows that each task streams a few hundred KB of weights.
  size_t row_bytes = std::max<size_t>(1, w.bytes() / static_cast<size_t>(w.rows));
  size_t grain = std::max<size_t>(16, (256u << 10) / row_bytes);
  grain = (grain + 15) / 16 * 16;
  parallel_for(static_cast<size_t>(w.rows), grain, [&](size_t b, size_t e) {
    linear_rows(w, x, M, y, ldx, ldy, static_cast<int>(b), static_cast<int>(e));
  });
}

}  // namespace v4
