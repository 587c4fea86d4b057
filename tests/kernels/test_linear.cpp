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
#include "kernel_test_util.h"

using namespace v4;

namespace {

using test::rel_err;

test::OwnedWeight make_weight(WFormat f, int N, int K, std::mt19937& rng, ScaleFormat sf = ScaleFormat::E8M0) {
  return test::random_weight(f, N, K, rng, sf);
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
  auto w = make_weight(c.f, c.N, c.K, rng, c.sf);
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
    auto w = make_weight(f, N, K, rng);
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
  auto w = make_weight(WFormat::FP8, 70, 150, rng);
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
