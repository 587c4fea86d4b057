#include <gtest/gtest.h>

#include <cmath>

#include "core/float_formats.h"

using namespace v4;

TEST(FloatFormats, E4m3DecodeEncodeRoundTripsEveryCode) {
  for (int b = 0; b < 256; ++b) {
    if ((b & 0x7f) == 0x7f) continue;  // NaN
    float v = e4m3_to_f32(static_cast<uint8_t>(b));
    uint8_t back = f32_to_e4m3(v);
    if (v == 0.0f) EXPECT_EQ(back & 0x7f, 0) << b;
    else EXPECT_EQ(back, b) << "code " << b << " value " << v;
  }
}

TEST(FloatFormats, E4m3KnownValues) {
  EXPECT_EQ(e4m3_to_f32(0x7e), 448.0f);
  EXPECT_EQ(e4m3_to_f32(0x01), std::ldexp(1.0f, -9));
  EXPECT_EQ(e4m3_to_f32(0x38), 1.0f);
  EXPECT_EQ(round_e4m3(1000.0f), 448.0f);    // saturates
  EXPECT_EQ(round_e4m3(-1000.0f), -448.0f);
  EXPECT_EQ(round_e4m3(1.0625f), 1.0f);      // tie between 1 and 1.125 -> even mantissa (1.0)
  EXPECT_EQ(round_e4m3(1.1875f), 1.25f);     // tie between 1.125 and 1.25 -> 1.25 (even)
  EXPECT_EQ(round_e4m3(1.07f), 1.125f);
}

TEST(FloatFormats, E2m1) {
  EXPECT_EQ(round_e2m1(0.25f), 0.0f);   // tie 0 / 0.5 -> 0 (even)
  EXPECT_EQ(round_e2m1(0.75f), 1.0f);   // tie 0.5 / 1 -> 1 (even code 2)
  EXPECT_EQ(round_e2m1(2.5f), 2.0f);    // tie 2 / 3 -> 2 (code 4)
  EXPECT_EQ(round_e2m1(5.0f), 4.0f);    // tie 4 / 6 -> 4 (code 6)
  EXPECT_EQ(round_e2m1(-7.0f), -6.0f);
  for (int c = 0; c < 16; ++c) EXPECT_EQ(round_e2m1(e2m1_to_f32(static_cast<uint8_t>(c))), e2m1_to_f32(static_cast<uint8_t>(c)));
}

TEST(FloatFormats, Bf16AndScales) {
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.5f)), 1.5f);
  EXPECT_EQ(round_bf16(1.0f + 1.0f / 512), 1.0f);  // tie to even
  EXPECT_EQ(e8m0_to_f32(127), 1.0f);
  EXPECT_EQ(e8m0_to_f32(130), 8.0f);
  EXPECT_EQ(pow2_ceil(3.0f), 4.0f);
  EXPECT_EQ(pow2_ceil(4.0f), 4.0f);
  EXPECT_EQ(f32_pow2_to_e8m0(0.25f), 125);
}
