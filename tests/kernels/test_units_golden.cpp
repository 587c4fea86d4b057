// Numeric building blocks against the unit golden data (../shared/golden/units).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "core/npy.h"
#include "core/shared_paths.h"
#include "kernels/ops.h"

using namespace v4;

namespace {

std::string units() {
  std::string g = golden_dir(V4_SHARED_DEFAULT);
  return g.empty() || !std::filesystem::exists(g + "/units") ? std::string() : g + "/units";
}
#define NEED_UNITS()                                                                                    \
  std::string U = units();                                                                              \
  if (U.empty()) GTEST_SKIP() << "golden data not found: set V4HOST_GOLDEN or provide ../shared/golden"

std::vector<float> f32(const std::string& p) { return read_npy(p).as_f32(); }

TEST(UnitsGolden, Fp8ActivationQuantBlock128BitExact) {
  NEED_UNITS();
  auto in = f32(U + "/fp8_act_in.npy"), q = f32(U + "/fp8_act_b128_q.npy"), sc = f32(U + "/fp8_act_b128_scale.npy");
  const int rows = static_cast<int>(in.size() / 256);
  std::vector<float> got(256), gs(2);
  for (int r = 0; r < rows; ++r) {
    act_quant_fp8(in.data() + r * 256, 256, 128, got.data(), gs.data());
    for (int i = 0; i < 256; ++i) ASSERT_EQ(got[i], q[r * 256 + i]) << "row " << r << " col " << i;
    for (int b = 0; b < 2; ++b) ASSERT_EQ(gs[b], sc[r * 2 + b]) << "row " << r;
  }
}

TEST(UnitsGolden, Fp8KvFakeQuantBlock64BitExact) {
  NEED_UNITS();
  auto in = f32(U + "/fp8_act_in.npy"), ref = f32(U + "/fp8_act_b64_dequant.npy");
  for (size_t r = 0; r < in.size() / 256; ++r) {
    std::vector<float> x(in.begin() + static_cast<long>(r * 256), in.begin() + static_cast<long>(r * 256 + 256));
    fakequant_fp8(x.data(), 256, 64);
    for (int i = 0; i < 256; ++i) ASSERT_EQ(x[i], ref[r * 256 + i]) << "row " << r << " col " << i;
  }
}

TEST(UnitsGolden, Fp4FakeQuantBlock32BitExact) {
  NEED_UNITS();
  auto in = f32(U + "/fp4_act_in.npy"), ref = f32(U + "/fp4_act_b32_dequant.npy");
  for (size_t r = 0; r < in.size() / 128; ++r) {
    std::vector<float> x(in.begin() + static_cast<long>(r * 128), in.begin() + static_cast<long>(r * 128 + 128));
    fakequant_fp4(x.data(), 128, 32);
    for (int i = 0; i < 128; ++i) ASSERT_EQ(x[i], ref[r * 128 + i]) << "row " << r << " col " << i;
  }
}

TEST(UnitsGolden, Hadamard128) {
  NEED_UNITS();
  auto in = f32(U + "/hadamard_in.npy"), ref = f32(U + "/hadamard_out.npy");
  for (size_t r = 0; r < in.size() / 128; ++r) {
    std::vector<float> x(in.begin() + static_cast<long>(r * 128), in.begin() + static_cast<long>(r * 128 + 128));
    hadamard(x.data(), 128);
    for (int i = 0; i < 128; ++i) EXPECT_NEAR(x[i], ref[r * 128 + i], 1e-5);
  }
}

TEST(UnitsGolden, HyperConnectionSinkhorn) {
  NEED_UNITS();
  auto mixes = f32(U + "/hc_mixes.npy"), scale = f32(U + "/hc_scale.npy"), base = f32(U + "/hc_base.npy");
  auto pre = f32(U + "/hc_pre.npy"), post = f32(U + "/hc_post.npy"), comb = f32(U + "/hc_comb.npy");
  for (size_t r = 0; r < mixes.size() / 24; ++r) {
    float p[4], q[4], c[16];
    hc_split_sinkhorn(mixes.data() + r * 24, scale.data(), base.data(), 4, 20, 1e-6f, p, q, c);
    for (int i = 0; i < 4; ++i) {
      EXPECT_NEAR(p[i], pre[r * 4 + i], 1e-6);
      EXPECT_NEAR(q[i], post[r * 4 + i], 1e-6);
    }
    for (int i = 0; i < 16; ++i) EXPECT_NEAR(c[i], comb[r * 16 + i], 1e-6);
  }
}

void check_rope(const std::string& U, const char* name, float theta, bool yarn) {
  auto cs = f32(U + "/rope_" + name + "_cos.npy"), sn = f32(U + "/rope_" + name + "_sin.npy");
  RopeTable t;
  t.init(64, theta, yarn, 16.0f, 65536, 32.0f, 1.0f);
  double mx = 0;
  for (int p = 0; p < 4096; ++p)
    for (int i = 0; i < 32; ++i) {
      float c, s;
      t.cos_sin(p, i, &c, &s);
      mx = std::max({mx, std::fabs(static_cast<double>(c) - cs[p * 32 + i]), std::fabs(static_cast<double>(s) - sn[p * 32 + i])});
    }
  EXPECT_LE(mx, 1e-6) << name;
}

TEST(UnitsGolden, RopeTablesPlainAndYarn) {
  NEED_UNITS();
  check_rope(U, "plain_theta10000", 10000.0f, false);
  check_rope(U, "yarn_theta160000", 160000.0f, true);
}

}  // namespace
