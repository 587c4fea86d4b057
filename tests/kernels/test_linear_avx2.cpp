// The AVX2 + FMA + F16C linear kernels (kernels/linear_avx2.*) against the float32 reference on
// random data of awkward sizes (relative error), their decoders against dequant_row (exact: they
// must give the same floats), and a token's outputs across batch sizes (exact: one summation
// order whatever M). Called directly, so they run on AVX-512 machines too; skipped on CPUs
// without AVX2/FMA/F16C.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <random>
#include <string>

#include "core/cpu.h"
#include "kernels/linear.h"
#include "kernels/linear_avx2.h"
#include "kernel_test_util.h"

using namespace v4;

namespace {

using test::rel_err;

bool have_avx2() {
  const auto& f = cpu_features();
  return f.avx2 && f.fma && f.f16c;
}
#define V4_NEED_AVX2() \
  if (!have_avx2()) GTEST_SKIP() << "no AVX2+FMA+F16C on this CPU"

// Non-power-of-two F32 scales (as FP8 checkpoints with float32 scale_inv have): the products are
// then rounded, by the decoders exactly as by dequant_row.
void odd_f32_scales(test::OwnedWeight& o, std::mt19937& rng) {
  if (o.w.scale_format != ScaleFormat::F32) return;
  std::uniform_real_distribution<float> u(0.001f, 0.05f);
  float* s = reinterpret_cast<float*>(o.scale.data());
  for (size_t i = 0; i < o.scale.size() / 4; ++i) s[i] = u(rng);
}

std::vector<float> random_x(int M, int K, std::mt19937& rng) {
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> x(static_cast<size_t>(M) * K);
  for (auto& v : x) v = nd(rng);
  return x;
}

std::vector<float> run_avx2(const LinearWeight& w, const float* x, int M) {
  std::vector<float> y(static_cast<size_t>(M) * w.rows, -1.f);
  linear_rows_avx2(w, x, M, y.data(), w.cols, w.rows, 0, w.rows);
  return y;
}

struct Case {
  WFormat f;
  ScaleFormat sf;
  int N, K;
};

std::string name(const ::testing::TestParamInfo<Case>& i) {
  static const char* fs[] = {"F32", "BF16", "FP8", "FP4"};
  static const char* ss[] = {"", "_E8M0", "_F32scale"};
  return std::string(fs[static_cast<int>(i.param.f)]) + ss[static_cast<int>(i.param.sf)] + "_N" + std::to_string(i.param.N) + "_K" +
         std::to_string(i.param.K);
}

class LinearAvx2 : public ::testing::TestWithParam<Case> {};

TEST_P(LinearAvx2, MatchesFloat32ReferenceForEveryBatchSize) {
  V4_NEED_AVX2();
  const Case c = GetParam();
  std::mt19937 rng(4321 + c.N * 13 + c.K);
  auto w = test::random_weight(c.f, c.N, c.K, rng, c.sf);
  odd_f32_scales(w, rng);
  for (int M : {1, 2, 3, 4, 5, 8, 17}) {
    const auto x = random_x(M, c.K, rng);
    std::vector<float> ref(static_cast<size_t>(M) * c.N);
    linear_ref(w.w, x.data(), M, ref.data());
    EXPECT_LT(rel_err(run_avx2(w.w, x.data(), M), ref), 1e-5) << "M " << M;
    // Row ranges that start and end off the row-block boundaries (callers thread over N).
    std::vector<float> y(static_cast<size_t>(M) * c.N, -1.f);
    const int cut = std::min(c.N, 5);
    linear_rows_avx2(w.w, x.data(), M, y.data(), c.K, c.N, 0, cut);
    linear_rows_avx2(w.w, x.data(), M, y.data(), c.K, c.N, cut, c.N);
    EXPECT_LT(rel_err(y, ref), 1e-5) << "M " << M << " split at " << cut;
  }
}

TEST_P(LinearAvx2, DecodersGiveDequantRowsFloats) {
  V4_NEED_AVX2();
  const Case c = GetParam();
  std::mt19937 rng(77 + c.N + c.K);
  auto w = test::random_weight(c.f, c.N, c.K, rng, c.sf);
  odd_f32_scales(w, rng);
  std::vector<float> a(static_cast<size_t>(c.K)), b(a.size());
  for (int n = 0; n < c.N; ++n) {
    w.w.dequant_row(n, a.data());
    dequant_row_avx2(w.w, n, b.data());
    for (int k = 0; k < c.K; ++k)
      ASSERT_EQ(std::bit_cast<uint32_t>(a[static_cast<size_t>(k)]), std::bit_cast<uint32_t>(b[static_cast<size_t>(k)]))
          << "row " << n << " col " << k;
  }
}

// A token's outputs are the same bits alone (M = 1: weights decoded in registers) as in any batch
// (rows decoded into a buffer, register tiles): what keeps continuous batching exact.
TEST_P(LinearAvx2, TokenRowsAreIndependentOfBatchSize) {
  V4_NEED_AVX2();
  const Case c = GetParam();
  std::mt19937 rng(5 + c.N + c.K);
  auto w = test::random_weight(c.f, c.N, c.K, rng, c.sf);
  odd_f32_scales(w, rng);
  const int Mmax = 17;
  const auto x = random_x(Mmax, c.K, rng);
  std::vector<std::vector<float>> single(Mmax);
  for (int m = 0; m < Mmax; ++m) single[static_cast<size_t>(m)] = run_avx2(w.w, x.data() + static_cast<size_t>(m) * c.K, 1);
  for (int M : {2, 3, 4, 5, 7, 8, 17}) {
    const auto y = run_avx2(w.w, x.data(), M);
    for (int m = 0; m < M; ++m)
      for (int n = 0; n < c.N; ++n)
        ASSERT_EQ(std::bit_cast<uint32_t>(single[static_cast<size_t>(m)][static_cast<size_t>(n)]),
                  std::bit_cast<uint32_t>(y[static_cast<size_t>(m) * c.N + n]))
            << "M " << M << " token " << m << " row " << n;
  }
}

INSTANTIATE_TEST_SUITE_P(Formats, LinearAvx2,
                         ::testing::Values(Case{WFormat::F32, ScaleFormat::None, 37, 61}, Case{WFormat::F32, ScaleFormat::None, 6, 1000},
                                           Case{WFormat::BF16, ScaleFormat::None, 33, 77}, Case{WFormat::BF16, ScaleFormat::None, 70, 4100},
                                           Case{WFormat::FP8, ScaleFormat::E8M0, 131, 259}, Case{WFormat::FP8, ScaleFormat::E8M0, 257, 130},
                                           Case{WFormat::FP8, ScaleFormat::E8M0, 9, 1536}, Case{WFormat::FP8, ScaleFormat::F32, 200, 384},
                                           Case{WFormat::FP8, ScaleFormat::F32, 130, 1029}, Case{WFormat::FP4, ScaleFormat::E8M0, 67, 96},
                                           Case{WFormat::FP4, ScaleFormat::E8M0, 130, 2080}, Case{WFormat::FP4, ScaleFormat::E8M0, 5, 32},
                                           Case{WFormat::FP4, ScaleFormat::F32, 38, 320}, Case{WFormat::FP4, ScaleFormat::F32, 3, 1056}),
                         name);

// Every finite e4m3 code — zeros of both signs, the subnormals, the largest (±448) — twice a row,
// at column offsets that shift by one from row to row (so in all 8 lanes and in the K tail),
// through the decoder and through the kernels; with block scales up to 2^14 too (the decoder for
// scales of 2^8 and more).
TEST(LinearAvx2Codes, EveryFp8Code) {
  V4_NEED_AVX2();
  for (int big : {0, 1})
  for (ScaleFormat sf : {ScaleFormat::E8M0, ScaleFormat::F32}) {
    SCOPED_TRACE(big ? "scales 2^4..2^14" : "scales 2^-9..2^-1");
    std::mt19937 rng(3);
    const int N = 21, K = 509;  // 254 codes, each twice a row and at shifting offsets
    auto w = test::random_weight(WFormat::FP8, N, K, rng, sf, big ? 131 : 118, big ? 141 : 126);
    if (!big) odd_f32_scales(w, rng);
    int code = 0;
    for (auto& b : w.data) {
      b = static_cast<uint8_t>(code);
      code = (code + 1) % 256;
      if ((code & 0x7f) == 0x7f) code = (code + 1) % 256;  // skip the two NaN codes
    }
    std::vector<float> a(K), b(K);
    for (int n = 0; n < N; ++n) {
      w.w.dequant_row(n, a.data());
      dequant_row_avx2(w.w, n, b.data());
      for (int k = 0; k < K; ++k) ASSERT_EQ(std::bit_cast<uint32_t>(a[k]), std::bit_cast<uint32_t>(b[k])) << "row " << n << " col " << k;
    }
    for (int M : {1, 3}) {
      const auto x = random_x(M, K, rng);
      std::vector<float> ref(static_cast<size_t>(M) * N);
      linear_ref(w.w, x.data(), M, ref.data());
      EXPECT_LT(rel_err(run_avx2(w.w, x.data(), M), ref), 1e-5) << "M " << M;
    }
  }
}

TEST(LinearAvx2Codes, StridedInputAndOutput) {
  V4_NEED_AVX2();
  std::mt19937 rng(8);
  auto w = test::random_weight(WFormat::FP4, 70, 160, rng);
  const int M = 5, ldx = 170, ldy = 90;
  const auto x = random_x(M, ldx, rng);
  std::vector<float> dense(static_cast<size_t>(M) * 160);
  for (int m = 0; m < M; ++m)
    for (int k = 0; k < 160; ++k) dense[static_cast<size_t>(m * 160 + k)] = x[static_cast<size_t>(m * ldx + k)];
  std::vector<float> ref(static_cast<size_t>(M) * 70), y(static_cast<size_t>(M) * ldy, 0.f);
  linear_ref(w.w, dense.data(), M, ref.data());
  for (int mm : {1, M}) {  // the one-token path, then the batched one
    std::fill(y.begin(), y.end(), 0.f);
    for (int m = 0; m < M; m += mm) linear_rows_avx2(w.w, x.data() + static_cast<size_t>(m) * ldx, mm, y.data() + static_cast<size_t>(m) * ldy, ldx, ldy, 0, 70);
    std::vector<float> got(ref.size());
    for (int m = 0; m < M; ++m)
      for (int n = 0; n < 70; ++n) got[static_cast<size_t>(m * 70 + n)] = y[static_cast<size_t>(m * ldy + n)];
    EXPECT_LT(rel_err(got, ref), 1e-5) << "tokens per call " << mm;
  }
}

// The dispatch: a CPU with AVX2+FMA+F16C and no AVX-512 (AMD Zen 2/3) runs these kernels, unless
// forced portable.
TEST(LinearAvx2Codes, DispatchPicksAvx2WithoutAvx512) {
  if (!have_avx2() || use_avx512()) GTEST_SKIP() << "needs AVX2+FMA+F16C with AVX-512 absent or off";
  if (std::getenv("V4HOST_NO_AVX2")) GTEST_SKIP() << "V4HOST_NO_AVX2 is set";
  EXPECT_TRUE(use_avx2());
  EXPECT_NE(cpu_summary().find("(kernels: avx2)"), std::string::npos) << cpu_summary();
  // linear() gives the AVX2 kernels' bits.
  std::mt19937 rng(11);
  auto w = test::random_weight(WFormat::FP8, 300, 700, rng);
  const auto x = random_x(3, 700, rng);
  std::vector<float> y(3 * 300);
  linear(w.w, x.data(), 3, y.data());
  const auto direct = run_avx2(w.w, x.data(), 3);
  for (size_t i = 0; i < y.size(); ++i) ASSERT_EQ(std::bit_cast<uint32_t>(y[i]), std::bit_cast<uint32_t>(direct[i])) << i;
  set_force_portable(true);
  EXPECT_FALSE(use_avx2());
  EXPECT_NE(cpu_summary().find("(kernels: portable)"), std::string::npos) << cpu_summary();
  set_force_portable(false);
}

}  // namespace
