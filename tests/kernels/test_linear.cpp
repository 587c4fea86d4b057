// Every linear-kernel path against the float32 reference (dequantise, plain loop) on random
// data of awkward sizes; relative error, never exact float equality.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <random>

#include "core/cpu.h"
#include "core/float_formats.h"
#include "kernels/linear.h"
#include "kernels/linear_avx512.h"

using namespace v4;

namespace {

struct Owned {
  std::vector<uint8_t> data, scale;
  LinearWeight w;
};

// Random weight of the given format with realistic block scales.
Owned make_weight(WFormat f, int N, int K, std::mt19937& rng, ScaleFormat sf = ScaleFormat::E8M0) {
  std::normal_distribution<float> nd(0.f, 1.f);
  std::uniform_int_distribution<int> se(118, 126);
  Owned o;
  o.w.format = f;
  o.w.rows = N;
  o.w.cols = K;
  const size_t n = static_cast<size_t>(N), k = static_cast<size_t>(K);
  switch (f) {
    case WFormat::F32: {
      o.data.resize(n * k * 4);
      float* p = reinterpret_cast<float*>(o.data.data());
      for (size_t i = 0; i < n * k; ++i) p[i] = nd(rng);
      break;
    }
    case WFormat::BF16: {
      o.data.resize(n * k * 2);
      uint16_t* p = reinterpret_cast<uint16_t*>(o.data.data());
      for (size_t i = 0; i < n * k; ++i) p[i] = f32_to_bf16(nd(rng));
      break;
    }
    case WFormat::FP8: {
      o.data.resize(n * k);
      for (auto& b : o.data) b = f32_to_e4m3(nd(rng) * 50);
      const size_t ns = ((n + 127) / 128) * ((k + 127) / 128);
      o.w.scale_format = sf;
      if (sf == ScaleFormat::F32) {
        o.scale.resize(ns * 4);
        float* s = reinterpret_cast<float*>(o.scale.data());
        for (size_t i = 0; i < ns; ++i) s[i] = std::ldexp(1.0f, se(rng) - 127);
      } else {
        o.scale.resize(ns);
        for (auto& b : o.scale) b = static_cast<uint8_t>(se(rng));
      }
      break;
    }
    case WFormat::FP4: {
      o.data.resize(n * k / 2);
      std::uniform_int_distribution<int> nib(0, 255);
      for (auto& b : o.data) b = static_cast<uint8_t>(nib(rng));
      o.w.scale_format = ScaleFormat::E8M0;
      o.scale.resize(n * (k / 32));
      for (auto& b : o.scale) b = static_cast<uint8_t>(se(rng));
      break;
    }
  }
  o.w.data = o.data.data();
  o.w.scale = o.scale.empty() ? nullptr : o.scale.data();
  return o;
}

double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    den += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(num / den);
}

struct Case {
  WFormat f;
  int N, K, M;
  ScaleFormat sf = ScaleFormat::E8M0;
};

class LinearKernels : public ::testing::TestWithParam<Case> {};

TEST_P(LinearKernels, FastPathsMatchFloat32Reference) {
  const Case c = GetParam();
  std::mt19937 rng(1234 + c.N * 7 + c.K + c.M);
  Owned w = make_weight(c.f, c.N, c.K, rng, c.sf);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> x(static_cast<size_t>(c.M) * c.K);
  for (auto& v : x) v = nd(rng);
  std::vector<float> ref(static_cast<size_t>(c.M) * c.N), got(ref.size());
  linear_ref(w.w, x.data(), c.M, ref.data());
  // Default dispatch (AVX-512 where available), threaded.
  linear(w.w, x.data(), c.M, got.data());
  EXPECT_LT(rel_err(got, ref), 1e-5);
  // Forced portable path.
  set_force_portable(true);
  std::fill(got.begin(), got.end(), 0.f);
  linear(w.w, x.data(), c.M, got.data());
  set_force_portable(false);
  EXPECT_LT(rel_err(got, ref), 1e-5);
  // The AVX-512 row dequantiser is exact.
  if (use_avx512()) {
    std::vector<float> a(static_cast<size_t>(c.K)), b(static_cast<size_t>(c.K));
    for (int n : {0, c.N / 2, c.N - 1}) {
      w.w.dequant_row(n, a.data());
      dequant_row_avx512(w.w, n, b.data());
      for (int k = 0; k < c.K; ++k) ASSERT_EQ(a[static_cast<size_t>(k)], b[static_cast<size_t>(k)]) << "row " << n << " col " << k;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Formats, LinearKernels,
                         ::testing::Values(Case{WFormat::F32, 37, 61, 3}, Case{WFormat::F32, 129, 200, 1},
                                           Case{WFormat::BF16, 33, 77, 5}, Case{WFormat::BF16, 300, 257, 2},
                                           Case{WFormat::BF16, 70, 4100, 1}, Case{WFormat::F32, 6, 1000, 1},
                                           Case{WFormat::FP8, 131, 259, 3}, Case{WFormat::FP8, 257, 130, 1},
                                           Case{WFormat::FP8, 200, 384, 7, ScaleFormat::F32},
                                           Case{WFormat::FP4, 67, 96, 3}, Case{WFormat::FP4, 130, 320, 1},
                                           Case{WFormat::FP4, 5, 32, 9}));

// A token's outputs do not depend on how many tokens share the call (continuous batching is
// exact): the decode path (M = 1) and the batched path give bit-identical rows.
TEST(LinearKernels, RowsAreIndependentOfBatchSize) {
  for (WFormat f : {WFormat::F32, WFormat::BF16, WFormat::FP8, WFormat::FP4}) {
    std::mt19937 rng(99);
    const int N = 37, K = f == WFormat::FP4 ? 160 : 150, M = 5;
    Owned w = make_weight(f, N, K, rng);
    std::normal_distribution<float> nd(0.f, 1.f);
    std::vector<float> x(static_cast<size_t>(M) * K);
    for (auto& v : x) v = nd(rng);
    std::vector<float> batched(static_cast<size_t>(M) * N), single(static_cast<size_t>(N));
    linear(w.w, x.data(), M, batched.data());
    for (int m = 0; m < M; ++m) {
      linear(w.w, x.data() + static_cast<size_t>(m) * K, 1, single.data());
      for (int n = 0; n < N; ++n)
        ASSERT_EQ(std::bit_cast<uint32_t>(single[static_cast<size_t>(n)]), std::bit_cast<uint32_t>(batched[static_cast<size_t>(m * N + n)]))
            << "format " << static_cast<int>(f) << " token " << m << " row " << n;
    }
  }
}

TEST(LinearKernels, StridedInputAndOutput) {
  std::mt19937 rng(7);
  Owned w = make_weight(WFormat::FP8, 70, 150, rng);
  std::normal_distribution<float> nd(0.f, 1.f);
  const int M = 3, ldx = 160, ldy = 90;
  std::vector<float> x(static_cast<size_t>(M) * ldx), dense(static_cast<size_t>(M) * 150);
  for (auto& v : x) v = nd(rng);
  for (int m = 0; m < M; ++m)
    for (int k = 0; k < 150; ++k) dense[static_cast<size_t>(m * 150 + k)] = x[static_cast<size_t>(m * ldx + k)];
  std::vector<float> ref(static_cast<size_t>(M) * 70), y(static_cast<size_t>(M) * ldy, 0.f);
  linear_ref(w.w, dense.data(), M, ref.data());
  linear(w.w, x.data(), M, y.data(), ldx, ldy);
  std::vector<float> got(ref.size());
  for (int m = 0; m < M; ++m)
    for (int n = 0; n < 70; ++n) got[static_cast<size_t>(m * 70 + n)] = y[static_cast<size_t>(m * ldy + n)];
  EXPECT_LT(rel_err(got, ref), 1e-5);
}

}  // namespace
