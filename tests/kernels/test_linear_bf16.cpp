// The BF16 dot-product kernels (official numerics) against the float32 reference on random data
// of awkward sizes: FP8-quantised activations times FP8/FP4 weights with UE8M0 scales are exact
// products, so the only difference is the FP32 summation order (relative error ~1e-7).
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <random>
#include <string>
#include <tuple>

#include "core/float_formats.h"
#include "kernels/linear.h"
#include "kernels/linear_bf16.h"
#include "kernels/ops.h"
#include "kernel_test_util.h"

using namespace v4;

namespace {

using test::rel_err;

// Every finite code, scales over a wide range (2^-27 .. 2^3).
test::OwnedWeight make_weight(WFormat f, int N, int K, std::mt19937& rng) {
  return test::random_weight(f, N, K, rng, ScaleFormat::E8M0, 100, 130);
}

// Activations as the official numerics feed them: FP8 per 1x128 block with power-of-two scales.
std::vector<float> make_act(int M, int K, std::mt19937& rng) {
  std::normal_distribution<float> nd(0.f, 3.f);
  std::vector<float> x(static_cast<size_t>(M) * K), s(static_cast<size_t>((K + 127) / 128));
  for (auto& v : x) v = nd(rng);
  for (int m = 0; m < M; ++m) {
    float* xm = x.data() + static_cast<size_t>(m) * K;
    act_quant_fp8(xm, K, 128, xm, s.data());
    for (int k = 0; k < K; ++k) xm[k] *= s[static_cast<size_t>(k / 128)];
  }
  return x;
}

struct Case {
  WFormat f;
  int N, K, M;
};

// The table decoders (where the CPU has AVX-512 VBMI) and the arithmetic ones: each is checked.
std::vector<bool> decoder_settings() {
  std::vector<bool> v{false};
  set_bf16_lut_disabled(false);
  if (bf16_lut_available()) v.push_back(true);
  return v;
}
struct LutSetting {
  explicit LutSetting(bool lut) { set_bf16_lut_disabled(!lut); }
  ~LutSetting() { set_bf16_lut_disabled(false); }
};

class Bf16Kernels : public ::testing::TestWithParam<Case> {};

TEST_P(Bf16Kernels, MatchFloat32ReferenceAndAreBatchIndependent) {
  if (!bf16_dot_available()) GTEST_SKIP() << "no AVX-512 BF16 on this CPU";
  const Case c = GetParam();
  for (bool lut : decoder_settings()) {
  SCOPED_TRACE(lut ? "table decoders" : "arithmetic decoders");
  LutSetting setting(lut);
  std::mt19937 rng(77 + c.N * 3 + c.K + c.M);
  auto w = make_weight(c.f, c.N, c.K, rng);
  ASSERT_TRUE(bf16_weight_ok(w.w));
  auto x = make_act(c.M, c.K, rng);
  std::vector<float> ref(static_cast<size_t>(c.M) * c.N), got(ref.size(), 0.f);
  linear_ref(w.w, x.data(), c.M, ref.data());
  const int Kp = bf16_padded_k(w.w);
  std::vector<uint16_t> xp(static_cast<size_t>(c.M) * Kp);
  bf16_pack_act(w.w, x.data(), c.M, c.K, xp.data());
  // Default dispatch (AMX tiles from kAmxMinTokens tokens where present).
  linear_bf16(w.w, xp.data(), c.M, got.data());
  EXPECT_LT(rel_err(got, ref), 2e-6);
  // One token by the default dispatch (where AMX runs the batches, FP4 runs on the FMA units).
  std::vector<float> one(static_cast<size_t>(c.N));
  for (int m = 0; m < c.M; ++m) {
    linear_bf16(w.w, xp.data() + static_cast<size_t>(m) * Kp, 1, one.data());
    std::vector<float> r1(ref.begin() + static_cast<ptrdiff_t>(m) * c.N, ref.begin() + static_cast<ptrdiff_t>(m + 1) * c.N);
    ASSERT_LT(rel_err(one, r1), 2e-6) << "token " << m;
  }
  // The vdpbf16ps batched path, and the decode path (M = 1) gives its bits for every token.
  set_amx_disabled(true);
  linear_bf16(w.w, xp.data(), c.M, got.data());
  EXPECT_LT(rel_err(got, ref), 2e-6);
  for (int m = 0; m < c.M; ++m) {
    linear_bf16(w.w, xp.data() + static_cast<size_t>(m) * Kp, 1, one.data());
    for (int n = 0; n < c.N; ++n)
      ASSERT_EQ(std::bit_cast<uint32_t>(one[static_cast<size_t>(n)]), std::bit_cast<uint32_t>(got[static_cast<size_t>(m) * c.N + n]))
          << "token " << m << " row " << n;
  }
  set_amx_disabled(false);
  // The fused quantise+pack gives the same packed rows as quantising then packing.
  std::normal_distribution<float> nd(0.f, 2.f);
  std::vector<float> raw(static_cast<size_t>(c.M) * c.K), q(raw.size()), s(static_cast<size_t>((c.K + 127) / 128));
  for (auto& v : raw) v = nd(rng) * (nd(rng) > 3 ? 1e-3f : 1.0f);
  for (int m = 0; m < c.M; ++m) {
    act_quant_fp8(raw.data() + static_cast<size_t>(m) * c.K, c.K, 128, q.data() + static_cast<size_t>(m) * c.K, s.data());
    for (int k = 0; k < c.K; ++k) q[static_cast<size_t>(m) * c.K + k] *= s[static_cast<size_t>(k / 128)];
  }
  std::vector<uint16_t> a(xp.size()), b(xp.size());
  bf16_pack_act(w.w, q.data(), c.M, c.K, a.data());
  bf16_quant_pack_act(w.w, raw.data(), c.M, c.K, b.data());
  for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(a[i], b[i]) << "packed element " << i;
  }
}

TEST_P(Bf16Kernels, RowDecoderIsExact) {
  if (!bf16_dot_available()) GTEST_SKIP() << "no AVX-512 BF16 on this CPU";
  const Case c = GetParam();
  for (bool lut : decoder_settings()) {
  SCOPED_TRACE(lut ? "table decoders" : "arithmetic decoders");
  LutSetting setting(lut);
  std::mt19937 rng(5 + c.K);
  auto w = make_weight(c.f, c.N, c.K, rng);
  const int Kp = bf16_padded_k(w.w);
  std::vector<float> ref(static_cast<size_t>(c.K));
  std::vector<uint16_t> got(static_cast<size_t>(Kp));
  for (int n : {0, c.N / 2, c.N - 1}) {
    w.w.dequant_row(n, ref.data());
    bf16_decode_row(w.w, n, got.data());
    for (int p = 0; p < Kp; ++p) {
      const int k = bf16_kernel_k(w.w, p);
      if (k >= c.K) continue;
      ASSERT_EQ(bf16_to_f32(got[static_cast<size_t>(p)]), ref[static_cast<size_t>(k)]) << "row " << n << " col " << k;
    }
  }
  }
}

INSTANTIATE_TEST_SUITE_P(Formats, Bf16Kernels,
                         ::testing::Values(Case{WFormat::FP8, 131, 259, 7}, Case{WFormat::FP8, 5, 1000, 13},
                                           Case{WFormat::FP8, 257, 130, 1}, Case{WFormat::FP8, 70, 4100, 3},
                                           Case{WFormat::FP4, 67, 96, 3}, Case{WFormat::FP4, 130, 320, 1},
                                           Case{WFormat::FP4, 37, 4128, 17}, Case{WFormat::FP4, 19, 32, 9},
                                           Case{WFormat::FP8, 70, 300, 40}, Case{WFormat::FP4, 33, 96, 16},
                                           Case{WFormat::FP8, 45, 390, 2}, Case{WFormat::FP4, 40, 128, 2},
                                           Case{WFormat::FP8, 133, 256, 1}, Case{WFormat::FP4, 9, 4096, 1},
                                           // Row-decode tile path (FP4) over several 32-row groups
                                           // (double buffer, L2 prefetch) with a 32-column tail.
                                           Case{WFormat::FP4, 101, 2208, 6}, Case{WFormat::FP4, 70, 1088, 32},
                                           // FP8 rows of <= 4096 columns on that path too (scale
                                           // blocks of 128 rows across its 32-row groups, tails).
                                           Case{WFormat::FP8, 300, 1000, 8}, Case{WFormat::FP8, 97, 1024, 20},
                                           Case{WFormat::FP8, 161, 2100, 5}, Case{WFormat::FP8, 45, 4096, 24},
                                           Case{WFormat::FP8, 33, 3000, 2}));

TEST(Bf16Kernels, OnlyExactFormatsQualify) {
  std::mt19937 rng(3);
  auto w = make_weight(WFormat::FP8, 40, 256, rng);
  w.scale[1] = 250;  // a block whose scaled weights would leave the normal BF16 range
  EXPECT_FALSE(bf16_weight_ok(w.w));
  auto v = make_weight(WFormat::FP4, 40, 256, rng);
  v.w.scale_format = ScaleFormat::F32;
  EXPECT_FALSE(bf16_weight_ok(v.w));
  LinearWeight b;  // BF16 weights qualify (with split activations, see below)
  b.format = WFormat::BF16;
  b.data = v.data.data();
  EXPECT_TRUE(bf16_weight_ok(b));
  LinearWeight f;
  f.format = WFormat::F32;
  f.data = v.data.data();
  EXPECT_FALSE(bf16_weight_ok(f));
}

}  // namespace

namespace {

// BF16 weights times FP32 activations split exactly into three BF16 parts: the float32 products.
TEST(Bf16Kernels, SplitActivationsGiveTheFloat32Products) {
  if (!bf16_dot_available()) GTEST_SKIP() << "no AVX-512 BF16 on this CPU";
  std::mt19937 rng(21);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (bool lut : decoder_settings())
  for (WFormat f : {WFormat::BF16, WFormat::FP8})
  for (auto [N, K, M] : {std::tuple{70, 259, 1}, std::tuple{33, 4100, 7}, std::tuple{129, 96, 20}, std::tuple{40, 512, 2}}) {
    SCOPED_TRACE(std::string(lut ? "table" : "arithmetic") + (f == WFormat::FP8 ? " FP8" : " BF16"));
    LutSetting setting(lut);
    std::vector<uint16_t> wd(static_cast<size_t>(N) * K);
    for (auto& v : wd) v = f32_to_bf16(nd(rng));
    LinearWeight w;
    w.format = WFormat::BF16;
    w.rows = N;
    w.cols = K;
    w.data = wd.data();
    test::OwnedWeight w8 = make_weight(WFormat::FP8, N, K, rng);
    if (f == WFormat::FP8) w = w8.w;
    ASSERT_TRUE(bf16_weight_ok(w));
    std::vector<float> x(static_cast<size_t>(M) * K), ref(static_cast<size_t>(M) * N), got(ref.size()), one(static_cast<size_t>(N));
    for (auto& v : x) v = nd(rng) * 10.f;
    linear_ref(w, x.data(), M, ref.data());
    linear_bf16_split(w, x.data(), M, got.data());
    EXPECT_LT(rel_err(got, ref), 2e-6) << N << "x" << K << " M=" << M;
    // One token where the tiles run the batches: one FMA pass over the widened weights.
    for (int m = 0; m < M; ++m) {
      linear_bf16_split(w, x.data() + static_cast<size_t>(m) * K, 1, one.data());
      std::vector<float> r1(ref.begin() + static_cast<ptrdiff_t>(m) * N, ref.begin() + static_cast<ptrdiff_t>(m + 1) * N);
      ASSERT_LT(rel_err(one, r1), 2e-6) << "token " << m;
    }
    set_amx_disabled(true);
    linear_bf16_split(w, x.data(), M, got.data());
    for (int m = 0; m < M; ++m) {
      linear_bf16_split(w, x.data() + static_cast<size_t>(m) * K, 1, one.data());
      for (int n = 0; n < N; ++n)
        ASSERT_EQ(std::bit_cast<uint32_t>(one[static_cast<size_t>(n)]), std::bit_cast<uint32_t>(got[static_cast<size_t>(m) * N + n]));
    }
    set_amx_disabled(false);
    EXPECT_LT(rel_err(got, ref), 2e-6);
  }
}

}  // namespace

namespace {

// The tile path gives a (token, row) the same bits whatever the number of tokens in the call:
// one token (a tile one column wide), a few (the decode-step path, up to 32 tokens) and many
// (prefill, accumulators stored between k blocks) all sum the same tile products in k order.
TEST(Bf16Kernels, TilePathIsIndependentOfTheTokenCount) {
  if (!amx_available()) GTEST_SKIP() << "no AMX tiles on this CPU (or not granted by the OS)";
  std::mt19937 rng(91);
  const int prev = amx_min_tokens();
  set_amx_min_tokens(1);
  for (auto [f, N, K] : {std::tuple{WFormat::FP8, 75, 1300}, std::tuple{WFormat::FP4, 66, 576}, std::tuple{WFormat::FP8, 150, 1000},
                         std::tuple{WFormat::BF16, 75, 1312}, std::tuple{WFormat::FP4, 45, 4224},
                         // several 64-row superblocks of the many-token path, the last ones partial
                         std::tuple{WFormat::FP8, 2100, 300}, std::tuple{WFormat::FP4, 530, 576}}) {
    auto w = make_weight(f, N, K, rng);
    const int M = 41, Kp = bf16_padded_k(w.w);
    auto x = make_act(M, K, rng);
    std::vector<uint16_t> xp(static_cast<size_t>(M) * Kp);
    bf16_pack_act(w.w, x.data(), M, K, xp.data());
    std::vector<float> ref(static_cast<size_t>(M) * N), all(ref.size()), part(ref.size());
    linear_ref(w.w, x.data(), M, ref.data());
    linear_bf16(w.w, xp.data(), M, all.data());
    EXPECT_LT(rel_err(all, ref), 2e-6);
    for (int len : {1, 3, 16, 17, 32}) {
      for (int m0 = 0; m0 < M; m0 += len) {
        const int n = std::min(len, M - m0);
        linear_bf16(w.w, xp.data() + static_cast<size_t>(m0) * Kp, n, part.data() + static_cast<size_t>(m0) * N);
      }
      for (size_t i = 0; i < all.size(); ++i)
        ASSERT_EQ(std::bit_cast<uint32_t>(all[i]), std::bit_cast<uint32_t>(part[i])) << "calls of " << len << ", element " << i;
    }
  }
  set_amx_min_tokens(prev);
}

// BF16 rows on the tiles (up to 32 tokens): where K is a multiple of 32 the A tiles are loaded
// from the weight rows in place, a last group of fewer than 32 rows (and other K) from a copy.
// Against the float32 reference on awkward sizes: several 32-row groups with a short last one,
// one or two token blocks, rows longer than the prefetch distance, a copied K.
TEST(Bf16Kernels, Bf16RowsOnTheTiles) {
  if (!amx_available()) GTEST_SKIP() << "no AMX tiles on this CPU (or not granted by the OS)";
  std::mt19937 rng(33);
  for (auto [N, K, M] : {std::tuple{75, 1312, 8}, std::tuple{33, 4096, 2}, std::tuple{64, 96, 24}, std::tuple{100, 1000, 5},
                         std::tuple{97, 288, 32}, std::tuple{31, 640, 3}}) {
    auto w = make_weight(WFormat::BF16, N, K, rng);
    auto x = make_act(M, K, rng);
    const int Kp = bf16_padded_k(w.w);
    std::vector<uint16_t> xp(static_cast<size_t>(M) * Kp);
    bf16_pack_act(w.w, x.data(), M, K, xp.data());
    std::vector<float> ref(static_cast<size_t>(M) * N), got(ref.size());
    linear_ref(w.w, x.data(), M, ref.data());
    linear_bf16(w.w, xp.data(), M, got.data());
    EXPECT_LT(rel_err(got, ref), 2e-6) << N << "x" << K << " M=" << M;
  }
}

}  // namespace

namespace {

// A caller-threaded row range may start anywhere: FP8 decode rows that straddle a 128-row scale
// block boundary still get their own block's scale (same bits as the whole-matrix call).
TEST(Bf16Kernels, DecodeRowRangesStartingAnywhere) {
  if (!bf16_dot_available()) GTEST_SKIP() << "no AVX-512 BF16 on this CPU";
  std::mt19937 rng(17);
  auto w = make_weight(WFormat::FP8, 300, 200, rng);
  auto x = make_act(1, 200, rng);
  std::vector<uint16_t> xp(static_cast<size_t>(bf16_padded_k(w.w)));
  bf16_pack_act(w.w, x.data(), 1, 200, xp.data());
  std::vector<float> ref(300), all(300), part(300);
  linear_ref(w.w, x.data(), 1, ref.data());
  linear_bf16(w.w, xp.data(), 1, all.data());
  EXPECT_LT(rel_err(all, ref), 2e-6);
  for (int n0 : {0, 2, 125, 126, 127, 253}) {
    linear_bf16_rows(w.w, xp.data(), 1, part.data(), 300, n0, 300);
    for (int n = n0; n < 300; ++n)
      ASSERT_EQ(std::bit_cast<uint32_t>(all[static_cast<size_t>(n)]), std::bit_cast<uint32_t>(part[static_cast<size_t>(n)]))
          << "from " << n0 << ", row " << n;
  }
}

}  // namespace

namespace {

// Several one-token projections in one parallel call: each row is computed by its single call's
// row kernel, so the results are bit-identical to the calls one by one (and, as they are,
// within float32 rounding of the reference), for every job kind mixed in one call.
TEST(Bf16Kernels, OneTokenJobsInOneCallMatchTheSingleCalls) {
  if (!bf16_dot_available()) GTEST_SKIP() << "no AVX-512 BF16 on this CPU";
  std::mt19937 rng(57);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (bool lut : decoder_settings()) {
    SCOPED_TRACE(lut ? "table" : "arithmetic");
    LutSetting setting(lut);
    // Packed FP8 / FP4 activations (awkward sizes, rows straddling scale blocks), FP32
    // activations through FP8 and BF16 weights, one part and three.
    auto w8 = make_weight(WFormat::FP8, 301, 1000, rng), w4 = make_weight(WFormat::FP4, 203, 576, rng),
         s8 = make_weight(WFormat::FP8, 70, 259, rng), w4b = make_weight(WFormat::FP4, 45, 4128, rng);
    std::vector<uint16_t> bd(static_cast<size_t>(129) * 96);
    for (auto& v : bd) v = f32_to_bf16(nd(rng));
    LinearWeight wb;
    wb.format = WFormat::BF16;
    wb.rows = 129;
    wb.cols = 96;
    wb.data = bd.data();
    struct Spec {
      const LinearWeight* w;
      bool packed;
      int parts;
    };
    const std::vector<Spec> specs = {{&w8.w, true, 3}, {&w4.w, true, 3}, {&s8.w, false, 3}, {&wb, false, 1},
                                     {&w4b.w, true, 3}, {&wb, false, 3}};
    std::vector<std::vector<float>> xs, refs, got, single;
    std::vector<std::vector<uint16_t>> xps;
    std::vector<OneTokenJob> jobs;
    for (const Spec& sp : specs) {
      const LinearWeight& w = *sp.w;
      std::vector<float> x = sp.packed ? make_act(1, w.cols, rng) : std::vector<float>(static_cast<size_t>(w.cols));
      if (!sp.packed)
        for (auto& v : x) v = nd(rng) * 10.f;
      std::vector<float> xr = x;
      if (sp.parts == 1)
        for (auto& v : xr) v = bf16_to_f32(f32_to_bf16(v));
      std::vector<float> ref(static_cast<size_t>(w.rows));
      linear_ref(w, xr.data(), 1, ref.data());
      std::vector<uint16_t> xp;
      if (sp.packed) {
        xp.resize(static_cast<size_t>(bf16_padded_k(w)));
        bf16_pack_act(w, x.data(), 1, w.cols, xp.data());
      }
      xs.push_back(std::move(x));
      xps.push_back(std::move(xp));
      refs.push_back(std::move(ref));
      got.emplace_back(static_cast<size_t>(w.rows), -1.f);
      single.emplace_back(static_cast<size_t>(w.rows), -2.f);
    }
    for (size_t i = 0; i < specs.size(); ++i) {
      OneTokenJob j;
      j.w = specs[i].w;
      if (specs[i].packed) j.xp = xps[i].data();
      else j.x = xs[i].data();
      j.parts = specs[i].parts;
      j.y = got[i].data();
      jobs.push_back(j);
      if (specs[i].packed) linear_bf16(*j.w, j.xp, 1, single[i].data());
      else linear_bf16_split(*j.w, j.x, 1, single[i].data(), 0, 0, j.parts);
    }
    linear_one_token(jobs.data(), static_cast<int>(jobs.size()));
    for (size_t i = 0; i < specs.size(); ++i) {
      SCOPED_TRACE("job " + std::to_string(i));
      EXPECT_LT(rel_err(got[i], refs[i]), 2e-6);
      for (size_t r = 0; r < got[i].size(); ++r)
        ASSERT_EQ(std::bit_cast<uint32_t>(got[i][r]), std::bit_cast<uint32_t>(single[i][r])) << "row " << r;
    }
  }
}

// One-token FP4 on the integer dot-product units (where VNNI and AMX are present) and the FMA
// path it falls back to, against the float32 reference: awkward row counts, K with and without
// trailing 32-column groups (and K < 128: no whole block), an all-zero activation block, wide
// activation ranges inside one block, and activations that are not FP8 values times a block
// scale (any BF16 values: the VNNI layout cannot hold them exactly, so the FMA path must run).
TEST(Bf16Kernels, OneTokenFp4IntegerDotPathMatchesFloat32Reference) {
  if (!bf16_dot_available()) GTEST_SKIP() << "no AVX-512 BF16 on this CPU";
  if (!fp4_vnni_available()) GTEST_SKIP() << "no AVX-512 VNNI + AMX here: the one-token FP4 path is the FMA or vdpbf16ps one";
  for (bool lut : decoder_settings()) {
  SCOPED_TRACE(lut ? "table decoders' order" : "arithmetic decoders' order");
  LutSetting setting(lut);
  std::mt19937 rng(91);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (auto [N, K] : {std::pair{37, 4128}, std::pair{45, 4096}, std::pair{9, 128}, std::pair{203, 576}, std::pair{19, 32},
                      std::pair{70, 1088}, std::pair{130, 2048}}) {
    SCOPED_TRACE("N " + std::to_string(N) + " K " + std::to_string(K));
    auto w = make_weight(WFormat::FP4, N, K, rng);
    ASSERT_TRUE(bf16_weight_ok(w.w));
    for (int kind = 0; kind < 3; ++kind) {
      SCOPED_TRACE(kind == 0 ? "FP8 activations" : kind == 1 ? "FP8, a zero block, wide ranges" : "any BF16 values");
      std::vector<float> x = make_act(1, K, rng);
      if (kind == 1) {
        if (K >= 256)
          for (int k = 0; k < 128; ++k) x[static_cast<size_t>(k)] = 0.f;
        std::vector<float> raw(static_cast<size_t>(K)), s(static_cast<size_t>((K + 127) / 128));
        for (auto& v : raw) v = nd(rng) * std::ldexp(1.f, static_cast<int>(rng() % 40) - 20);
        act_quant_fp8(raw.data(), K, 128, raw.data(), s.data());
        for (int k = 128; k < K; ++k) x[static_cast<size_t>(k)] = raw[static_cast<size_t>(k)] * s[static_cast<size_t>(k / 128)];
      } else if (kind == 2) {
        for (auto& v : x) v = bf16_to_f32(f32_to_bf16(nd(rng) * std::ldexp(1.f, static_cast<int>(rng() % 30) - 15)));
      }
      std::vector<float> ref(static_cast<size_t>(N)), vnni(ref.size()), fma(ref.size());
      linear_ref(w.w, x.data(), 1, ref.data());
      std::vector<uint16_t> xp(static_cast<size_t>(bf16_padded_k(w.w)));
      bf16_pack_act(w.w, x.data(), 1, K, xp.data());
      linear_bf16(w.w, xp.data(), 1, vnni.data());
      set_fp4_vnni_disabled(true);
      linear_bf16(w.w, xp.data(), 1, fma.data());
      set_fp4_vnni_disabled(false);
      EXPECT_LT(rel_err(vnni, ref), 2e-6);
      EXPECT_LT(rel_err(fma, ref), 2e-6);
      // Per row, within FP32 summation rounding of the row's terms (products exact).
      std::vector<float> wr(static_cast<size_t>(K));
      for (int n = 0; n < N; ++n) {
        w.w.dequant_row(n, wr.data());
        double mag = 0;
        for (int k = 0; k < K; ++k) mag += std::fabs(static_cast<double>(wr[static_cast<size_t>(k)]) * x[static_cast<size_t>(k)]);
        ASSERT_LE(std::fabs(vnni[static_cast<size_t>(n)] - ref[static_cast<size_t>(n)]), 1e-6 * mag + 1e-30) << "row " << n;
      }
    }
  }
  // Several FP4 jobs on the same activations (a layer's experts' w1 and w3) share one layout in
  // linear_one_token and keep the single calls' bits.
  auto a = make_weight(WFormat::FP4, 67, 1024, rng), b = make_weight(WFormat::FP4, 33, 1024, rng), c = make_weight(WFormat::FP4, 21, 4128, rng);
  std::vector<float> x = make_act(1, 1024, rng), x2 = make_act(1, 4128, rng);
  std::vector<uint16_t> xp(static_cast<size_t>(bf16_padded_k(a.w))), xp2(static_cast<size_t>(bf16_padded_k(c.w)));
  bf16_pack_act(a.w, x.data(), 1, 1024, xp.data());
  bf16_pack_act(c.w, x2.data(), 1, 4128, xp2.data());
  std::vector<float> ya(67), yb(33), yc(21), sa(67), sb(33), sc(21), ra(67), rb(33);
  std::vector<OneTokenJob> jobs(3);
  jobs[0].w = &a.w, jobs[0].xp = xp.data(), jobs[0].y = ya.data();
  jobs[1].w = &c.w, jobs[1].xp = xp2.data(), jobs[1].y = yc.data();
  jobs[2].w = &b.w, jobs[2].xp = xp.data(), jobs[2].y = yb.data();
  linear_one_token(jobs.data(), 3);
  linear_bf16(a.w, xp.data(), 1, sa.data());
  linear_bf16(b.w, xp.data(), 1, sb.data());
  linear_bf16(c.w, xp2.data(), 1, sc.data());
  linear_ref(a.w, x.data(), 1, ra.data());
  linear_ref(b.w, x.data(), 1, rb.data());
  EXPECT_LT(rel_err(ya, ra), 2e-6);
  EXPECT_LT(rel_err(yb, rb), 2e-6);
  for (int r = 0; r < 67; ++r) ASSERT_EQ(std::bit_cast<uint32_t>(ya[static_cast<size_t>(r)]), std::bit_cast<uint32_t>(sa[static_cast<size_t>(r)]));
  for (int r = 0; r < 33; ++r) ASSERT_EQ(std::bit_cast<uint32_t>(yb[static_cast<size_t>(r)]), std::bit_cast<uint32_t>(sb[static_cast<size_t>(r)]));
  for (int r = 0; r < 21; ++r) ASSERT_EQ(std::bit_cast<uint32_t>(yc[static_cast<size_t>(r)]), std::bit_cast<uint32_t>(sc[static_cast<size_t>(r)]));
  }
}

}  // namespace


namespace {

// One-token FP8 on the fixed tables (where AMX runs the batches): every code, a few zeros and
// subnormals (the blocks summed again exactly), or none, against the float32 reference and the
// scaled-table path, for packed FP8 activations and for FP32 activations (the split path).
TEST(Bf16Kernels, OneTokenFp8FixedTablesMatchFloat32Reference) {
  if (!bf16_dot_available()) GTEST_SKIP() << "no AVX-512 BF16 on this CPU";
  if (!fp8_fixed_available()) GTEST_SKIP() << "no AMX + VBMI here: the one-token FP8 path is the scaled-table one";
  std::mt19937 rng(123);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  for (auto [N, K] : {std::pair{37, 4096}, std::pair{131, 576}, std::pair{200, 64}, std::pair{257, 1088}, std::pair{9, 1024}}) {
    for (int codes = 0; codes < 3; ++codes) {
      SCOPED_TRACE("N " + std::to_string(N) + " K " + std::to_string(K) +
                   (codes == 0 ? ", every code" : codes == 1 ? ", 1 in 1000 zero or subnormal" : ", no zero or subnormal"));
      auto w = make_weight(WFormat::FP8, N, K, rng);
      for (auto& c : w.data) {
        if (codes > 0 && (c & 0x78) == 0) c |= 0x08;
        if (codes == 1 && u(rng) < 1e-3) c &= 0x87;
      }
      ASSERT_TRUE(bf16_weight_ok(w.w));
      std::vector<float> x = make_act(1, K, rng), ref(static_cast<size_t>(N)), fixed(ref.size()), scaled(ref.size());
      linear_ref(w.w, x.data(), 1, ref.data());
      std::vector<uint16_t> xp(static_cast<size_t>(bf16_padded_k(w.w)));
      bf16_pack_act(w.w, x.data(), 1, K, xp.data());
      linear_bf16(w.w, xp.data(), 1, fixed.data());
      set_fp8_fixed_disabled(true);
      linear_bf16(w.w, xp.data(), 1, scaled.data());
      set_fp8_fixed_disabled(false);
      EXPECT_LT(rel_err(fixed, ref), 2e-6);
      EXPECT_LT(rel_err(scaled, ref), 2e-6);
      // FP32 activations (wo_a at one token): FP32 products, another summation order.
      std::vector<float> xf(static_cast<size_t>(K)), reff(ref.size()), split(ref.size());
      for (auto& v : xf) v = nd(rng) * std::ldexp(1.f, static_cast<int>(rng() % 20) - 10);
      linear_ref(w.w, xf.data(), 1, reff.data());
      linear_bf16_split(w.w, xf.data(), 1, split.data());
      EXPECT_LT(rel_err(split, reff), 2e-6);
      // Per row, within FP32 summation rounding of the row's terms.
      std::vector<float> wr(static_cast<size_t>(K));
      for (int n = 0; n < N; ++n) {
        w.w.dequant_row(n, wr.data());
        double mag = 0, magf = 0;
        for (int k = 0; k < K; ++k) {
          mag += std::fabs(static_cast<double>(wr[static_cast<size_t>(k)]) * x[static_cast<size_t>(k)]);
          magf += std::fabs(static_cast<double>(wr[static_cast<size_t>(k)]) * xf[static_cast<size_t>(k)]);
        }
        ASSERT_LE(std::fabs(fixed[static_cast<size_t>(n)] - ref[static_cast<size_t>(n)]), 1e-6 * mag + 1e-30) << "row " << n;
        // FP32 products are rounded here, in the reference too: a looser bound (the scaled-table
        // path's rows are up to ~1.5e-6 of it off the reference as well).
        ASSERT_LE(std::fabs(split[static_cast<size_t>(n)] - reff[static_cast<size_t>(n)]), 1e-5 * magf + 1e-30) << "row " << n;
      }
    }
  }
  // In a gather of several projections the rows keep the single calls' bits.
  auto a = make_weight(WFormat::FP8, 150, 1024, rng), b = make_weight(WFormat::FP8, 40, 1024, rng);
  std::vector<float> x = make_act(1, 1024, rng), xf(1024);
  for (auto& v : xf) v = nd(rng);
  std::vector<uint16_t> xp(static_cast<size_t>(bf16_padded_k(a.w)));
  bf16_pack_act(a.w, x.data(), 1, 1024, xp.data());
  std::vector<float> ya(150), yb(40), sa(150), sb(40);
  std::vector<OneTokenJob> jobs(2);
  jobs[0].w = &a.w, jobs[0].xp = xp.data(), jobs[0].y = ya.data();
  jobs[1].w = &b.w, jobs[1].x = xf.data(), jobs[1].y = yb.data();
  linear_one_token(jobs.data(), 2);
  linear_bf16(a.w, xp.data(), 1, sa.data());
  linear_bf16_split(b.w, xf.data(), 1, sb.data());
  for (int r = 0; r < 150; ++r) ASSERT_EQ(std::bit_cast<uint32_t>(ya[static_cast<size_t>(r)]), std::bit_cast<uint32_t>(sa[static_cast<size_t>(r)]));
  for (int r = 0; r < 40; ++r) ASSERT_EQ(std::bit_cast<uint32_t>(yb[static_cast<size_t>(r)]), std::bit_cast<uint32_t>(sb[static_cast<size_t>(r)]));
}

}  // namespace
