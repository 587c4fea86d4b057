// Scalar conversions for the storage formats of V4 checkpoints: BF16, FP8 e4m3 (OCP, "fn"),
// FP4 e2m1 and the UE8M0 power-of-two scale. Decoding is exact; encoding rounds to nearest even.
#pragma once
#include <bit>
#include <cmath>
#include <cstdint>

namespace v4 {

inline float bf16_to_f32(uint16_t h) { return std::bit_cast<float>(static_cast<uint32_t>(h) << 16); }

inline uint16_t f32_to_bf16(float f) {
  uint32_t u = std::bit_cast<uint32_t>(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

inline float round_bf16(float f) { return bf16_to_f32(f32_to_bf16(f)); }

// e4m3fn: bias 7, no infinities, 0x7f/0xff = NaN, max finite 448.
inline float e4m3_to_f32(uint8_t b) {
  const int s = b >> 7, e = (b >> 3) & 0xf, m = b & 7;
  float v;
  if (e == 0xf && m == 7) return std::nanf("");
  if (e == 0) v = std::ldexp(static_cast<float>(m), -9);  // subnormal: m/8 * 2^-6
  else v = std::ldexp(1.0f + m / 8.0f, e - 7);
  return s ? -v : v;
}

// Round-to-nearest-even to the e4m3 grid with saturation to +-448 (CUDA cvt.rn.satfinite).
uint8_t f32_to_e4m3(float f);
// Value of f rounded to e4m3 (as float).
inline float round_e4m3(float f) { return e4m3_to_f32(f32_to_e4m3(f)); }

// e2m1: code bit3 = sign; magnitudes 0, .5, 1, 1.5, 2, 3, 4, 6.
inline float e2m1_to_f32(uint8_t code) {
  static constexpr float kMag[8] = {0.f, 0.5f, 1.f, 1.5f, 2.f, 3.f, 4.f, 6.f};
  float v = kMag[code & 7];
  return (code & 8) ? -v : v;
}
// Round-to-nearest-even to the e2m1 grid, saturating to +-6 (NaN to 6, keeping its sign bit).
// Returns the 4-bit code. Ties go to the even code: the thresholds are the midpoints, inclusive
// where the lower neighbour's code is even. Inline and branch-light: the indexer's FP4
// simulation runs it on every query element (the former search over the 8 magnitudes gave the
// same code for every one of the 2^32 floats, checked exhaustively).
inline uint8_t f32_to_e2m1(float f) {
  const uint8_t sign = std::signbit(f) ? 8 : 0;
  const float a = std::isnan(f) ? 6.0f : std::fabs(f);
  const uint8_t c = a <= 0.25f ? 0 : a < 0.75f ? 1 : a <= 1.25f ? 2 : a < 1.75f ? 3 : a <= 2.5f ? 4 : a < 3.5f ? 5 : a <= 5.0f ? 6 : 7;
  return static_cast<uint8_t>(sign | c);
}
inline float round_e2m1(float f) { return e2m1_to_f32(f32_to_e2m1(f)); }

// UE8M0 scale byte b => 2^(b-127); 0xff is NaN.
inline float e8m0_to_f32(uint8_t b) {
  // Built from the bits (on the hot path of every FP8/FP4 block): exponent field b, or the
  // subnormal 2^-127 for b == 0.
  if (b == 0xff) return std::bit_cast<float>(0x7fc00000u);
  if (b == 0) return std::bit_cast<float>(0x00400000u);
  return std::bit_cast<float>(static_cast<uint32_t>(b) << 23);
}
// Exponent byte of a power of two (caller guarantees p is a normal power of two).
inline uint8_t f32_pow2_to_e8m0(float p) {
  return static_cast<uint8_t>((std::bit_cast<uint32_t>(p) >> 23) & 0xff);
}

// Power-of-two scale 2^ceil(log2(x)) computed from the float bits like the reference
// `fast_round_scale` (exponent, plus one when the mantissa is non-zero). x > 0, normal.
inline float pow2_ceil(float x) {
  uint32_t u = std::bit_cast<uint32_t>(x);
  uint32_t e = (u >> 23) & 0xff;
  if (u & 0x7fffffu) e += 1;
  return std::bit_cast<float>(e << 23);
}

}  // namespace v4
