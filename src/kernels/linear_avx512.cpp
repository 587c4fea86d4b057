#include "kernels/linear_avx512.h"

// GCC 12 reports false "uninitialized" warnings inside its own AVX-512 intrinsic headers when
// they are used from target-attributed functions; the intrinsics are correct.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/float_formats.h"

#define V4_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,f16c,fma")))

namespace v4 {

namespace {

V4_AVX512 inline __m512 load_scale_block(float s) { return _mm512_set1_ps(s); }

// e4m3 bytes -> fp16 bits (value * 2^-8), then to float: exact for every finite code.
V4_AVX512 inline __m512 e4m3x16_to_ps(const uint8_t* p) {
  __m256i v = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  __m256i sign = _mm256_slli_epi16(_mm256_and_si256(v, _mm256_set1_epi16(0x80)), 8);
  __m256i mag = _mm256_slli_epi16(_mm256_and_si256(v, _mm256_set1_epi16(0x7f)), 7);
  return _mm512_cvtph_ps(_mm256_or_si256(sign, mag));
}

V4_AVX512 void dequant_row_impl(const LinearWeight& w, int n, float* out) {
  const size_t K = static_cast<size_t>(w.cols);
  switch (w.format) {
    case WFormat::F32:
      std::memcpy(out, static_cast<const float*>(w.data) + n * K, K * 4);
      return;
    case WFormat::BF16: {
      const uint16_t* p = static_cast<const uint16_t*>(w.data) + n * K;
      size_t k = 0;
      for (; k + 16 <= K; k += 16) {
        __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + k)));
        _mm512_storeu_ps(out + k, _mm512_castsi512_ps(_mm512_slli_epi32(v, 16)));
      }
      for (; k < K; ++k) out[k] = bf16_to_f32(p[k]);
      return;
    }
    case WFormat::FP8: {
      const uint8_t* p = static_cast<const uint8_t*>(w.data) + n * K;
      for (size_t k0 = 0; k0 < K; k0 += 128) {
        const float s = w.scale_at(n, static_cast<int>(k0));
        const __m512 vs = load_scale_block(s * 256.0f);  // undo the 2^-8 of the fp16 trick
        const size_t k1 = std::min(K, k0 + 128);
        size_t k = k0;
        for (; k + 16 <= k1; k += 16) _mm512_storeu_ps(out + k, _mm512_mul_ps(e4m3x16_to_ps(p + k), vs));
        for (; k < k1; ++k) out[k] = e4m3_to_f32(p[k]) * s;
      }
      return;
    }
    case WFormat::FP4: {
      static const float kLut[16] = {0.f, 0.5f, 1.f, 1.5f, 2.f, 3.f, 4.f, 6.f,
                                     -0.f, -0.5f, -1.f, -1.5f, -2.f, -3.f, -4.f, -6.f};
      const __m512 lut = _mm512_loadu_ps(kLut);
      const uint8_t* p = static_cast<const uint8_t*>(w.data) + n * (K / 2);
      const uint8_t* sp = static_cast<const uint8_t*>(w.scale);
      const float* spf = static_cast<const float*>(w.scale);
      const size_t groups = K / 32;
      for (size_t g = 0; g < groups; ++g) {
        float s = w.scale_format == ScaleFormat::F32 ? spf[n * groups + g] : e8m0_to_f32(sp[n * groups + g]);
        __m512 vs = _mm512_set1_ps(s);
        __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + g * 16));
        __m128i lo = _mm_and_si128(b, _mm_set1_epi8(0x0f));
        __m128i hi = _mm_and_si128(_mm_srli_epi16(b, 4), _mm_set1_epi8(0x0f));
        __m128i c0 = _mm_unpacklo_epi8(lo, hi);  // codes 0..15 (element 2j = low nibble)
        __m128i c1 = _mm_unpackhi_epi8(lo, hi);  // codes 16..31
        __m512 v0 = _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(c0), lut);
        __m512 v1 = _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(c1), lut);
        _mm512_storeu_ps(out + g * 32, _mm512_mul_ps(v0, vs));
        _mm512_storeu_ps(out + g * 32 + 16, _mm512_mul_ps(v1, vs));
      }
      return;
    }
  }
}

V4_AVX512 inline float hsum(__m512 v) { return _mm512_reduce_add_ps(v); }

// Dots of 2 tokens x 4 rows; tail of K handled with masks.
V4_AVX512 void dot_2x4(const float* x0, const float* x1, const float* w, size_t K, float* r0, float* r1) {
  __m512 a00 = _mm512_setzero_ps(), a01 = a00, a02 = a00, a03 = a00;
  __m512 a10 = a00, a11 = a00, a12 = a00, a13 = a00;
  const float *w0 = w, *w1 = w + K, *w2 = w + 2 * K, *w3 = w + 3 * K;
  size_t k = 0;
  for (; k + 16 <= K; k += 16) {
    __m512 xa = _mm512_loadu_ps(x0 + k), xb = _mm512_loadu_ps(x1 + k);
    __m512 v0 = _mm512_loadu_ps(w0 + k), v1 = _mm512_loadu_ps(w1 + k);
    __m512 v2 = _mm512_loadu_ps(w2 + k), v3 = _mm512_loadu_ps(w3 + k);
    a00 = _mm512_fmadd_ps(xa, v0, a00); a01 = _mm512_fmadd_ps(xa, v1, a01);
    a02 = _mm512_fmadd_ps(xa, v2, a02); a03 = _mm512_fmadd_ps(xa, v3, a03);
    a10 = _mm512_fmadd_ps(xb, v0, a10); a11 = _mm512_fmadd_ps(xb, v1, a11);
    a12 = _mm512_fmadd_ps(xb, v2, a12); a13 = _mm512_fmadd_ps(xb, v3, a13);
  }
  if (k < K) {
    __mmask16 m = static_cast<__mmask16>((1u << (K - k)) - 1);
    __m512 xa = _mm512_maskz_loadu_ps(m, x0 + k), xb = _mm512_maskz_loadu_ps(m, x1 + k);
    __m512 v0 = _mm512_maskz_loadu_ps(m, w0 + k), v1 = _mm512_maskz_loadu_ps(m, w1 + k);
    __m512 v2 = _mm512_maskz_loadu_ps(m, w2 + k), v3 = _mm512_maskz_loadu_ps(m, w3 + k);
    a00 = _mm512_fmadd_ps(xa, v0, a00); a01 = _mm512_fmadd_ps(xa, v1, a01);
    a02 = _mm512_fmadd_ps(xa, v2, a02); a03 = _mm512_fmadd_ps(xa, v3, a03);
    a10 = _mm512_fmadd_ps(xb, v0, a10); a11 = _mm512_fmadd_ps(xb, v1, a11);
    a12 = _mm512_fmadd_ps(xb, v2, a12); a13 = _mm512_fmadd_ps(xb, v3, a13);
  }
  r0[0] = hsum(a00); r0[1] = hsum(a01); r0[2] = hsum(a02); r0[3] = hsum(a03);
  r1[0] = hsum(a10); r1[1] = hsum(a11); r1[2] = hsum(a12); r1[3] = hsum(a13);
}

// One token x 4 rows, with exactly the per-row accumulation order of dot_2x4, so a row's result
// does not depend on how many tokens are batched together (batching is bit-exact).
V4_AVX512 void dot_1x4(const float* x0, const float* w, size_t K, float* r0) {
  __m512 a00 = _mm512_setzero_ps(), a01 = a00, a02 = a00, a03 = a00;
  const float *w0 = w, *w1 = w + K, *w2 = w + 2 * K, *w3 = w + 3 * K;
  size_t k = 0;
  for (; k + 16 <= K; k += 16) {
    __m512 xa = _mm512_loadu_ps(x0 + k);
    a00 = _mm512_fmadd_ps(xa, _mm512_loadu_ps(w0 + k), a00);
    a01 = _mm512_fmadd_ps(xa, _mm512_loadu_ps(w1 + k), a01);
    a02 = _mm512_fmadd_ps(xa, _mm512_loadu_ps(w2 + k), a02);
    a03 = _mm512_fmadd_ps(xa, _mm512_loadu_ps(w3 + k), a03);
  }
  if (k < K) {
    __mmask16 m = static_cast<__mmask16>((1u << (K - k)) - 1);
    __m512 xa = _mm512_maskz_loadu_ps(m, x0 + k);
    a00 = _mm512_fmadd_ps(xa, _mm512_maskz_loadu_ps(m, w0 + k), a00);
    a01 = _mm512_fmadd_ps(xa, _mm512_maskz_loadu_ps(m, w1 + k), a01);
    a02 = _mm512_fmadd_ps(xa, _mm512_maskz_loadu_ps(m, w2 + k), a02);
    a03 = _mm512_fmadd_ps(xa, _mm512_maskz_loadu_ps(m, w3 + k), a03);
  }
  r0[0] = hsum(a00); r0[1] = hsum(a01); r0[2] = hsum(a02); r0[3] = hsum(a03);
}

// Single row, same order as above (used for the last rows when N is not a multiple of 4).
V4_AVX512 float dot1(const float* x, const float* w, size_t K) {
  __m512 a = _mm512_setzero_ps();
  size_t k = 0;
  for (; k + 16 <= K; k += 16) a = _mm512_fmadd_ps(_mm512_loadu_ps(x + k), _mm512_loadu_ps(w + k), a);
  if (k < K) {
    __mmask16 m = static_cast<__mmask16>((1u << (K - k)) - 1);
    a = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + k), _mm512_maskz_loadu_ps(m, w + k), a);
  }
  return hsum(a);
}

// ---- decode (M = 1): weights are decoded into registers and used at once, without the row
// buffer. Per row the arithmetic is exactly the buffered path's (same values, same FMA order),
// so results do not depend on the batch size.
// Row decoders: `block(k)` is per-block state fetched once per scale block by the caller (the
// scale, or for FP4 the 16-entry value table already multiplied by it), `at(k, b)` the 16 weights
// at k with the scale applied — the same values as dequant_row_impl produces.
struct DecF32 {
  const float* p;
  static constexpr size_t kBlock = 1u << 30;
  static constexpr size_t kBytesPer16 = 64;
  const void* addr(size_t k) const { return p + k; }
  V4_AVX512 __m512 block(size_t) const { return _mm512_setzero_ps(); }
  V4_AVX512 __m512 at(size_t k, __m512) const { return _mm512_loadu_ps(p + k); }
};
struct DecBF16 {
  const uint16_t* p;
  static constexpr size_t kBlock = 1u << 30;
  static constexpr size_t kBytesPer16 = 32;
  const void* addr(size_t k) const { return p + k; }
  V4_AVX512 __m512 block(size_t) const { return _mm512_setzero_ps(); }
  V4_AVX512 __m512 at(size_t k, __m512) const {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + k))), 16));
  }
};
struct DecFP8 {
  const uint8_t* p;
  const LinearWeight* w;
  int n;
  static constexpr size_t kBlock = 128;
  static constexpr size_t kBytesPer16 = 16;
  const void* addr(size_t k) const { return p + k; }
  V4_AVX512 __m512 block(size_t k) const { return _mm512_set1_ps(w->scale_at(n, static_cast<int>(k)) * 256.0f); }
  V4_AVX512 __m512 at(size_t k, __m512 s) const { return _mm512_mul_ps(e4m3x16_to_ps(p + k), s); }
};
struct DecFP4 {
  const uint8_t* p;
  const LinearWeight* w;
  int n;
  static constexpr size_t kBlock = 32;
  static constexpr size_t kBytesPer16 = 8;
  const void* addr(size_t k) const { return p + k / 2; }
  // The e2m1 value table times the group's scale: a permute then yields e2m1(code)·scale directly
  // (one multiply per 32 weights instead of one per 16; the products are the same floats).
  V4_AVX512 __m512 block(size_t k) const {
    static const float kLut[16] = {0.f, 0.5f, 1.f, 1.5f, 2.f, 3.f, 4.f, 6.f,
                                   -0.f, -0.5f, -1.f, -1.5f, -2.f, -3.f, -4.f, -6.f};
    return _mm512_mul_ps(_mm512_loadu_ps(kLut), _mm512_set1_ps(w->scale_at(n, static_cast<int>(k))));
  }
  V4_AVX512 __m512 at(size_t k, __m512 lut) const {
    __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + k / 2));
    __m128i lo = _mm_and_si128(b, _mm_set1_epi8(0x0f));
    __m128i hi = _mm_and_si128(_mm_srli_epi16(b, 4), _mm_set1_epi8(0x0f));
    return _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(_mm_unpacklo_epi8(lo, hi)), lut);
  }
};

// One token, rows [n, n+R): accumulators per row over 16-wide chunks in k order (the buffered
// path's order), the K tail through the dequantised row.
template <int R, class Dec>
V4_AVX512 inline void rows_m1(const LinearWeight& w, const Dec* d, const float* x, float* y, int n, ptrdiff_t ahead) {
  const size_t K = static_cast<size_t>(w.cols), K16 = K / 16 * 16;
  // Software prefetch of the next row block (`ahead` bytes further), one cache line at a time:
  // rows are short (1–8 KB), too short for the hardware prefetcher to ramp up on its own.
  constexpr size_t kLine = 64 / Dec::kBytesPer16 * 16;  // weights per cache line
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  for (size_t k0 = 0; k0 < K16; k0 += Dec::kBlock) {
    __m512 sc[R];
    for (int r = 0; r < R; ++r) sc[r] = d[r].block(k0);
    const size_t k1 = std::min(K16, k0 + Dec::kBlock);
    for (size_t k = k0; k < k1; k += 16) {
      if (ahead && k % kLine == 0)
        for (int r = 0; r < R; ++r) _mm_prefetch(static_cast<const char*>(d[r].addr(k)) + ahead, _MM_HINT_T0);
      const __m512 xa = _mm512_loadu_ps(x + k);
      for (int r = 0; r < R; ++r) acc[r] = _mm512_fmadd_ps(xa, d[r].at(k, sc[r]), acc[r]);
    }
  }
  if (K16 < K) {
    const __mmask16 tm = static_cast<__mmask16>((1u << (K - K16)) - 1);
    thread_local std::vector<float> row;
    row.resize(K);
    const __m512 xa = _mm512_maskz_loadu_ps(tm, x + K16);
    for (int r = 0; r < R; ++r) {
      dequant_row_impl(w, n + r, row.data());
      acc[r] = _mm512_fmadd_ps(xa, _mm512_maskz_loadu_ps(tm, row.data() + K16), acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) y[n + r] = hsum(acc[r]);
}

template <class Make>
V4_AVX512 void rows_m1_all(const LinearWeight& w, const float* x, float* y, int n0, int n1, Make make) {
  using Dec = decltype(make(0));
  const ptrdiff_t row_bytes = static_cast<ptrdiff_t>(w.cols / 16) * static_cast<ptrdiff_t>(Dec::kBytesPer16);
  int n = n0;
  for (; n + 4 <= n1; n += 4) {
    const Dec d[4] = {make(n), make(n + 1), make(n + 2), make(n + 3)};
    rows_m1<4>(w, d, x, y, n, n + 8 <= n1 ? 4 * row_bytes : 0);
  }
  for (; n < n1; ++n) {
    const Dec d[1] = {make(n)};
    rows_m1<1>(w, d, x, y, n, 0);
  }
}

V4_AVX512 void linear_rows_m1(const LinearWeight& w, const float* x, float* y, int n0, int n1) {
  const size_t K = static_cast<size_t>(w.cols);
  switch (w.format) {
    case WFormat::F32:
      rows_m1_all(w, x, y, n0, n1, [&](int n) { return DecF32{static_cast<const float*>(w.data) + n * K}; });
      return;
    case WFormat::BF16:
      rows_m1_all(w, x, y, n0, n1, [&](int n) { return DecBF16{static_cast<const uint16_t*>(w.data) + n * K}; });
      return;
    case WFormat::FP8:
      rows_m1_all(w, x, y, n0, n1, [&](int n) { return DecFP8{static_cast<const uint8_t*>(w.data) + n * K, &w, n}; });
      return;
    case WFormat::FP4:
      rows_m1_all(w, x, y, n0, n1, [&](int n) { return DecFP4{static_cast<const uint8_t*>(w.data) + n * (K / 2), &w, n}; });
      return;
  }
}

}  // namespace

void dequant_row_avx512(const LinearWeight& w, int n, float* out) { dequant_row_impl(w, n, out); }

V4_AVX512 void linear_rows_avx512(const LinearWeight& w, const float* x, int M, float* y, int ldx, int ldy, int n0,
                                  int n1) {
  if (M == 1) {
    linear_rows_m1(w, x, y, n0, n1);
    return;
  }
  constexpr int RB = 4;
  const size_t K = static_cast<size_t>(w.cols);
  thread_local std::vector<float> buf;
  buf.resize(RB * K);
  float* wb = buf.data();
  for (int nb = n0; nb < n1; nb += RB) {
    const int nr = std::min(RB, n1 - nb);
    for (int r = 0; r < nr; ++r) dequant_row_impl(w, nb + r, wb + r * K);
    if (nr == RB) {
      int m = 0;
      for (; m + 2 <= M; m += 2) {
        float r0[4], r1[4];
        dot_2x4(x + static_cast<size_t>(m) * ldx, x + static_cast<size_t>(m + 1) * ldx, wb, K, r0, r1);
        std::memcpy(y + static_cast<size_t>(m) * ldy + nb, r0, sizeof r0);
        std::memcpy(y + static_cast<size_t>(m + 1) * ldy + nb, r1, sizeof r1);
      }
      for (; m < M; ++m) dot_1x4(x + static_cast<size_t>(m) * ldx, wb, K, y + static_cast<size_t>(m) * ldy + nb);
    } else {
      for (int m = 0; m < M; ++m)
        for (int r = 0; r < nr; ++r) y[static_cast<size_t>(m) * ldy + nb + r] = dot1(x + static_cast<size_t>(m) * ldx, wb + r * K, K);
    }
  }
}

}  // namespace v4
