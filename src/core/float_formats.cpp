#include "core/float_formats.h"

#include <algorithm>

namespace v4 {

uint8_t f32_to_e4m3(float f) {
  const uint8_t sign = std::signbit(f) ? 0x80 : 0x00;
  float a = std::fabs(f);
  if (std::isnan(f)) return 0x7f;
  if (a >= 448.0f) return sign | 0x7e;  // saturate
  // Find the candidate grid spacing: for a in [2^e, 2^(e+1)) with e >= -6 spacing 2^(e-3),
  // below 2^-6 (subnormals) spacing 2^-9.
  int e;
  std::frexp(a, &e);  // a = m * 2^e, m in [0.5, 1)
  int exp = e - 1;     // a in [2^exp, 2^(exp+1))
  if (exp < -6) exp = -6;
  const float ulp = std::ldexp(1.0f, exp - 3);
  float q = std::nearbyint(a / ulp) * ulp;  // default rounding mode is nearest-even
  if (q > 448.0f) q = 448.0f;
  // Encode q exactly.
  if (q == 0.0f) return sign;
  int qe;
  float qm = std::frexp(q, &qe);  // q = qm * 2^qe
  int be = qe - 1 + 7;             // biased exponent of 1.xxx form
  if (be <= 0) {                   // subnormal: q = m * 2^-9
    int m = static_cast<int>(std::lround(q / std::ldexp(1.0f, -9)));
    return sign | static_cast<uint8_t>(m);
  }
  int m = static_cast<int>(std::lround((qm * 2.0f - 1.0f) * 8.0f));
  return sign | static_cast<uint8_t>((be << 3) | m);
}

}  // namespace v4
