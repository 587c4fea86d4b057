// Activations for the BF16 kernels: the official FP8 quantisation fused with the packing into
// kernel order, and FP32 activations split exactly into BF16 parts.
#include "kernels/linear_bf16_internal.h"

#include <algorithm>

namespace v4::bf16 {

namespace {

// FP8 e4m3 round-to-nearest-even with saturation (the values of f32_to_e4m3), 16 lanes: normal
// range by rounding the float's mantissa to 3 bits, subnormal range (|v| < 2^-6) on the 2^-9 grid.
V4_BF16 inline __m512 round_e4m3_ps(__m512 v) {
  const __m512 a = _mm512_min_ps(_mm512_abs_ps(v), _mm512_set1_ps(448.0f));
  __m512i u = _mm512_castps_si512(a);
  u = _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7FFFF), _mm512_and_si512(_mm512_srli_epi32(u, 20), _mm512_set1_epi32(1))));
  __m512 n = _mm512_castsi512_ps(_mm512_and_si512(u, _mm512_set1_epi32(static_cast<int>(0xFFF00000u))));
  const __m512 sub = _mm512_mul_ps(_mm512_roundscale_ps(_mm512_mul_ps(a, _mm512_set1_ps(512.0f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC),
                                   _mm512_set1_ps(1.0f / 512.0f));
  n = _mm512_mask_mov_ps(n, _mm512_cmp_ps_mask(a, _mm512_set1_ps(1.0f / 64.0f), _CMP_LT_OQ), sub);
  return _mm512_or_ps(n, _mm512_and_ps(v, _mm512_castsi512_ps(_mm512_set1_epi32(static_cast<int>(0x80000000u)))));
}

V4_BF16 void quant_row(const float* x, int K, int Kp, float* q) {
  for (int b0 = 0; b0 < K; b0 += 128) {
    const int b1 = std::min(K, b0 + 128);
    __m512 am = _mm512_set1_ps(1e-4f);
    for (int k = b0; k < b1; k += 16) {
      const __mmask16 m = k + 16 <= b1 ? 0xFFFF : static_cast<__mmask16>((1u << (b1 - k)) - 1);
      am = _mm512_max_ps(am, _mm512_abs_ps(_mm512_maskz_loadu_ps(m, x + k)));
    }
    const float s = pow2_ceil(_mm512_reduce_max_ps(am) * (1.0f / 448.0f));
    const __m512 vs = _mm512_set1_ps(s), vi = _mm512_set1_ps(1.0f / s);
    for (int k = b0; k < b1; k += 16) {
      const __mmask16 m = k + 16 <= b1 ? 0xFFFF : static_cast<__mmask16>((1u << (b1 - k)) - 1);
      _mm512_mask_storeu_ps(q + k, m, _mm512_mul_ps(round_e4m3_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + k), vi)), vs));
    }
  }
  for (int k = K; k < Kp; ++k) q[k] = 0.f;
}

}  // namespace

V4_BF16 inline __m512i cvt2(__m512 lo, __m512 hi) {
  __m512bh r = _mm512_cvtne2ps_pbh(hi, lo);
  return reinterpret_cast<__m512i&>(r);
}

// Packs one row of float values (padded to Kp, exact in BF16) into kernel order.
V4_BF16 void pack_row(WFormat f, const float* q, int K, int Kp, uint16_t* out) {
  // Table-decoder order: of 64 values, words 16L+t (t < 8) form the first chunk, 16L+8+t the second.
  const bool lut = (f == WFormat::FP8 || f == WFormat::FP4) && bf16_lut_available();
  if (f != WFormat::FP4) {
    int k = 0;
    if (lut)
      for (; k < K / 64 * 64; k += 64) {
        const __m512 v0 = _mm512_loadu_ps(q + k), v1 = _mm512_loadu_ps(q + k + 16), v2 = _mm512_loadu_ps(q + k + 32),
                     v3 = _mm512_loadu_ps(q + k + 48);
        _mm512_storeu_si512(out + k, cvt2(_mm512_shuffle_f32x4(v0, v1, 0x44), _mm512_shuffle_f32x4(v2, v3, 0x44)));
        _mm512_storeu_si512(out + k + 32, cvt2(_mm512_shuffle_f32x4(v0, v1, 0xEE), _mm512_shuffle_f32x4(v2, v3, 0xEE)));
      }
    for (; k < Kp; k += 32) _mm512_storeu_si512(out + k, cvt2(_mm512_loadu_ps(q + k), _mm512_loadu_ps(q + k + 16)));
    return;
  }
  const __m512i ev = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
  const __m512i od = _mm512_add_epi32(ev, _mm512_set1_epi32(1));
  int k = 0;
  if (lut)
    for (; k < K / 128 * 128; k += 128) {
      __m512 e[4], o[4];
      for (int j = 0; j < 4; ++j) {
        const __m512 a = _mm512_loadu_ps(q + k + 32 * j), b = _mm512_loadu_ps(q + k + 32 * j + 16);
        e[j] = _mm512_permutex2var_ps(a, ev, b);  // the low nibbles' columns (even)
        o[j] = _mm512_permutex2var_ps(a, od, b);
      }
      _mm512_storeu_si512(out + k, cvt2(_mm512_shuffle_f32x4(e[0], e[1], 0x44), _mm512_shuffle_f32x4(e[2], e[3], 0x44)));
      _mm512_storeu_si512(out + k + 32, cvt2(_mm512_shuffle_f32x4(e[0], e[1], 0xEE), _mm512_shuffle_f32x4(e[2], e[3], 0xEE)));
      _mm512_storeu_si512(out + k + 64, cvt2(_mm512_shuffle_f32x4(o[0], o[1], 0x44), _mm512_shuffle_f32x4(o[2], o[3], 0x44)));
      _mm512_storeu_si512(out + k + 96, cvt2(_mm512_shuffle_f32x4(o[0], o[1], 0xEE), _mm512_shuffle_f32x4(o[2], o[3], 0xEE)));
    }
  const int K64 = Kp / 64 * 64;
  for (; k < K64; k += 64) {
    const __m512 v0 = _mm512_loadu_ps(q + k), v1 = _mm512_loadu_ps(q + k + 16), v2 = _mm512_loadu_ps(q + k + 32),
                 v3 = _mm512_loadu_ps(q + k + 48);
    _mm512_storeu_si512(out + k, cvt2(_mm512_permutex2var_ps(v0, ev, v1), _mm512_permutex2var_ps(v2, ev, v3)));
    _mm512_storeu_si512(out + k + 32, cvt2(_mm512_permutex2var_ps(v0, od, v1), _mm512_permutex2var_ps(v2, od, v3)));
  }
  if (K64 < Kp) {
    const __m512 v0 = _mm512_loadu_ps(q + K64), v1 = _mm512_loadu_ps(q + K64 + 16);
    _mm512_storeu_si512(out + K64, cvt2(_mm512_permutex2var_ps(v0, ev, v1), _mm512_permutex2var_ps(v0, od, v1)));
  }
}

V4_BF16 void quant_pack_rows(const LinearWeight& w, const float* x, int ldx, int m0, int m1, uint16_t* out) {
  const int K = w.cols, Kp = bf16_padded_k(w);
  thread_local std::vector<float> q;
  q.resize(static_cast<size_t>(Kp));
  for (int m = m0; m < m1; ++m) {
    quant_row(x + static_cast<size_t>(m) * ldx, K, Kp, q.data());
    pack_row(w.format, q.data(), K, Kp, out + static_cast<size_t>(m) * Kp);
  }
}

// x = h1 + h2 + h3 exactly (BF16 keeps 8 of FP32's 24 significant bits; each remainder is exact
// in FP32 and has at most 16, then 8, significant bits). With parts = 1 only h1 = bf16(x).
V4_BF16 void split_rows(WFormat f, const float* x, int M, int ldx, int K, int Kp, int parts, uint16_t* out) {
  thread_local std::vector<float> part;
  part.resize(static_cast<size_t>(3) * Kp);
  for (int m = 0; m < M; ++m) {
    const float* xm = x + static_cast<size_t>(m) * ldx;
    for (int k = 0; k < Kp; k += 16) {
      const __mmask16 mk = k + 16 <= K ? 0xFFFF : k < K ? static_cast<__mmask16>((1u << (K - k)) - 1) : 0;
      __m512 r = _mm512_maskz_loadu_ps(mk, xm + k);
      for (int i = 0; i < parts; ++i) {
        const __m256bh h = _mm512_cvtneps_pbh(r);
        const __m512 hv = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(reinterpret_cast<const __m256i&>(h)), 16));
        _mm512_storeu_ps(part.data() + static_cast<size_t>(i) * Kp + k, hv);
        r = _mm512_sub_ps(r, hv);
      }
    }
    // Each part is exact in BF16; packed in the weight format's kernel order.
    for (int i = 0; i < parts; ++i)
      pack_row(f, part.data() + static_cast<size_t>(i) * Kp, K, Kp, out + static_cast<size_t>(parts * m + i) * Kp);
  }
}

}  // namespace v4::bf16
