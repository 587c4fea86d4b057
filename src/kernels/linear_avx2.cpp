// AVX2 + FMA + F16C linear kernels (see linear_avx2.h), 8 floats per register.
//
// One summation order for every (token, row), whatever the number of tokens: one 8-lane
// accumulator, FMAs over the 8-column chunks in k order, the K % 8 tail last (masked), then the
// fixed horizontal sum `hsum8`. The few-token path (1-4 tokens, weights decoded in registers) and
// the batched path (rows decoded once into a buffer, register tiles) both follow it, so a token's
// outputs are bit-identical whether it is decoded alone or batched (tests/engine/test_batching.cpp). The
// decoders give exactly LinearWeight::dequant_row's floats, so the products are the exact FP32
// products of linear_ref; only the summation order differs from it. (F16C, part of use_avx2(), is
// not needed here: the FP8 decoder below is integer-only.)
#include "kernels/linear_avx2.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "core/float_formats.h"

#define V4_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace v4 {

namespace {

// The fixed horizontal sum: ((v0+v4)+(v2+v6)) + ((v1+v5)+(v3+v7)).
V4_AVX2 inline float hsum8(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
}

// Lanes [0, n) set, for the K tail (n in 1..7).
V4_AVX2 inline __m256i tail_mask(size_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// 8 e4m3 bytes -> the FP32 bit patterns of their values times 2^-120, exact for every finite code:
// each byte sign-extended to 32 bits and shifted left by 20 has e4m3's 4 exponent bits as the low 4
// of FP32's exponent field (bias 127 instead of 7) and its 3 mantissa bits on top of FP32's, the
// sign at bit 31 and copies of it at bits 30..27, which the mask clears. Subnormals become FP32
// subnormals of the same scaled value (the multiply that follows takes them exactly: AMD and
// Intel cores do so unless DAZ is set, which nothing in v4host does). Three operations, where the
// F16C route (the AVX-512 kernels') takes five.
V4_AVX2 inline __m256 e4m3x8_2m120(const uint8_t* p) {
  const __m256i v = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_and_si256(_mm256_slli_epi32(v, 20), _mm256_set1_epi32(static_cast<int>(0x87F00000u))));
}
constexpr float k2p120 = 0x1p120f;

// FP4: the 8 e2m1 magnitudes times the group's scale, each entry XORed with its index m << 28.
// A lane holding the code word shifted right by 4i has nibble i in its low 4 bits: vpermps reads
// the low 3 (the magnitude m), and the word shifted left by 28 is sign << 31 | m << 28, whose XOR
// with the table entry cancels the m << 28 and sets the sign. Five operations per 8 weights.
V4_AVX2 inline __m256 fp4_table(float s) {
  const __m256 mag = _mm256_setr_ps(0.f, 0.5f, 1.f, 1.5f, 2.f, 3.f, 4.f, 6.f);
  const __m256i tag = _mm256_setr_epi32(0, 1 << 28, 2 << 28, 3 << 28, 4 << 28, 5 << 28, 6 << 28, 7 << 28);
  return _mm256_xor_ps(_mm256_mul_ps(mag, _mm256_set1_ps(s)), _mm256_castsi256_ps(tag));
}

V4_AVX2 inline __m256 e2m1x8(const uint8_t* p, __m256 tab) {
  int32_t word;
  std::memcpy(&word, p, 4);  // 8 codes; column 2j is byte j's low nibble, i.e. nibble i = column i
  const __m256i r = _mm256_srlv_epi32(_mm256_set1_epi32(word), _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28));
  return _mm256_xor_ps(_mm256_permutevar8x32_ps(tab, r), _mm256_castsi256_ps(_mm256_slli_epi32(r, 28)));
}

// Row decoders. block(k) fetches per-block state at the start of each scale block (kBlock
// columns), at(k) gives the 8 weights at k (scale applied), one(k) one weight for the K tail —
// all exactly dequant_row's values.
struct DecF32 {
  const float* p;
  static constexpr size_t kBlock = size_t(1) << 40;
  static constexpr size_t kBytesPer8 = 32;
  const void* addr(size_t k) const { return p + k; }
  V4_AVX2 void block(size_t) {}
  V4_AVX2 __m256 at(size_t k) const { return _mm256_loadu_ps(p + k); }
  float one(size_t k) const { return p[k]; }
};

struct DecBF16 {
  const uint16_t* p;
  static constexpr size_t kBlock = size_t(1) << 40;
  static constexpr size_t kBytesPer8 = 16;
  const void* addr(size_t k) const { return p + k; }
  V4_AVX2 void block(size_t) {}
  V4_AVX2 __m256 at(size_t k) const {
    const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + k)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
  }
  float one(size_t k) const { return bf16_to_f32(p[k]); }
};

// FP8 where every block scale of the rows is below 2^8 (real checkpoints' are far below), so that
// scale * 2^120 is exact: one multiply gives value * scale rounded once, as dequant_row does.
struct DecFP8 {
  const uint8_t* p;
  const LinearWeight* w;
  int n;
  __m256 s;  // the block's scale times 2^120
  static constexpr size_t kBlock = 128;
  static constexpr size_t kBytesPer8 = 8;
  const void* addr(size_t k) const { return p + k; }
  V4_AVX2 void block(size_t k) { s = _mm256_set1_ps(w->scale_at(n, static_cast<int>(k)) * k2p120); }
  V4_AVX2 __m256 at(size_t k) const { return _mm256_mul_ps(e4m3x8_2m120(p + k), s); }
  float one(size_t k) const { return e4m3_to_f32(p[k]) * w->scale_at(n, static_cast<int>(k)); }
};
// Any scale: the exact value first (times 2^120), then times the scale: the same floats.
struct DecFP8Wide : DecFP8 {
  V4_AVX2 void block(size_t k) { s = _mm256_set1_ps(w->scale_at(n, static_cast<int>(k))); }
  V4_AVX2 __m256 at(size_t k) const { return _mm256_mul_ps(_mm256_mul_ps(e4m3x8_2m120(p + k), _mm256_set1_ps(k2p120)), s); }
};
// Whether the FP8 block scales of rows [n0, n1) are all below 2^8 (DecFP8 applies).
bool fp8_scales_small(const LinearWeight& w, int n0, int n1) {
  const size_t kb = (static_cast<size_t>(w.cols) + 127) / 128;
  const size_t b0 = static_cast<size_t>(n0 / 128) * kb, b1 = static_cast<size_t>((n1 - 1) / 128 + 1) * kb;
  for (size_t i = b0; i < b1; ++i) {
    const float s = w.scale_format == ScaleFormat::F32 ? static_cast<const float*>(w.scale)[i] : e8m0_to_f32(static_cast<const uint8_t*>(w.scale)[i]);
    if (!(std::fabs(s) < 256.0f)) return false;
  }
  return true;
}

// e8m0_to_f32 of every byte: one load per group instead of its compares and moves between the
// integer and vector registers (4 rows each 32 columns on the one-token path).
const struct E8M0Table {
  float v[256];
  E8M0Table() {
    for (int b = 0; b < 256; ++b) v[b] = e8m0_to_f32(static_cast<uint8_t>(b));
  }
  float operator[](uint8_t b) const { return v[b]; }
} kE8M0;

struct DecFP4 {
  const uint8_t* p;
  const uint8_t* s8;  // the row's 1x32 scales, UE8M0 ...
  const float* s32;   // ... or F32
  __m256 tab;
  static constexpr size_t kBlock = 32;
  static constexpr size_t kBytesPer8 = 4;
  const void* addr(size_t k) const { return p + k / 2; }
  float scale(size_t k) const { return s32 ? s32[k / 32] : kE8M0[s8[k / 32]]; }
  V4_AVX2 void block(size_t k) { tab = fp4_table(scale(k)); }
  V4_AVX2 __m256 at(size_t k) const { return e2m1x8(p + k / 2, tab); }
  float one(size_t k) const { return e2m1_to_f32(static_cast<uint8_t>((p[k / 2] >> (4 * (k & 1))) & 0xf)) * scale(k); }
};

V4_AVX2 DecF32 make_f32(const LinearWeight& w, int n) { return {static_cast<const float*>(w.data) + static_cast<size_t>(n) * w.cols}; }
V4_AVX2 DecBF16 make_bf16(const LinearWeight& w, int n) { return {static_cast<const uint16_t*>(w.data) + static_cast<size_t>(n) * w.cols}; }
V4_AVX2 DecFP8 make_fp8(const LinearWeight& w, int n) {
  DecFP8 d;
  d.p = static_cast<const uint8_t*>(w.data) + static_cast<size_t>(n) * w.cols;
  d.w = &w;
  d.n = n;
  d.s = _mm256_setzero_ps();
  return d;
}
V4_AVX2 DecFP8Wide make_fp8_wide(const LinearWeight& w, int n) {
  DecFP8Wide d;
  static_cast<DecFP8&>(d) = make_fp8(w, n);
  return d;
}
V4_AVX2 DecFP4 make_fp4(const LinearWeight& w, int n) {
  const size_t g = static_cast<size_t>(n) * static_cast<size_t>(w.cols / 32);
  const bool f32 = w.scale_format == ScaleFormat::F32;
  DecFP4 d;
  d.p = static_cast<const uint8_t*>(w.data) + static_cast<size_t>(n) * (w.cols / 2);
  d.s8 = f32 ? nullptr : static_cast<const uint8_t*>(w.scale) + g;
  d.s32 = f32 ? static_cast<const float*>(w.scale) + g : nullptr;
  d.tab = _mm256_setzero_ps();
  return d;
}

template <class Dec>
V4_AVX2 void dequant(Dec d, size_t K, float* out) {
  const size_t K8 = K / 8 * 8;
  for (size_t k0 = 0; k0 < K8; k0 += Dec::kBlock) {
    d.block(k0);
    const size_t k1 = std::min(K8, k0 + Dec::kBlock);
    for (size_t k = k0; k < k1; k += 8) _mm256_storeu_ps(out + k, d.at(k));
  }
  for (size_t k = K8; k < K; ++k) out[k] = d.one(k);
}

V4_AVX2 void dequant_row_impl(const LinearWeight& w, int n, float* out) {
  const size_t K = static_cast<size_t>(w.cols);
  switch (w.format) {
    case WFormat::F32: std::memcpy(out, make_f32(w, n).p, K * 4); return;
    case WFormat::BF16: dequant(make_bf16(w, n), K, out); return;
    case WFormat::FP8:
      if (fp8_scales_small(w, n, n + 1)) dequant(make_fp8(w, n), K, out);
      else dequant(make_fp8_wide(w, n), K, out);
      return;
    case WFormat::FP4: dequant(make_fp4(w, n), K, out); return;
  }
}

// ---- few tokens (decode, memory-bound): R rows decoded in registers in one pass over their
// weights, each decoded vector used by T tokens, each activation load by R rows.
// One 8-column step of rows_direct: each activation load shared by the R rows, each decoded
// weight vector by the T tokens.
template <int R, int T, class Dec>
V4_AVX2 __attribute__((always_inline)) inline void step8(const Dec* d, const float* x, size_t ldx, size_t k, __m256 (&acc)[T][R]) {
  __m256 xa[T];
  for (int t = 0; t < T; ++t) xa[t] = _mm256_loadu_ps(x + t * ldx + k);
  for (int r = 0; r < R; ++r) {
    const __m256 wv = d[r].at(k);
    for (int t = 0; t < T; ++t) acc[t][r] = _mm256_fmadd_ps(xa[t], wv, acc[t][r]);
  }
}

template <int R, int T, class Dec>
V4_AVX2 inline void rows_direct(Dec* d, const float* x, size_t ldx, size_t K, float* y, size_t ldy, ptrdiff_t ahead) {
  const size_t K8 = K / 8 * 8;
  // Software prefetch of the next group of rows (`ahead` bytes on), a cache line at a time: rows
  // are a few KB, short for the hardware prefetcher to ramp up on.
  constexpr size_t kLine = 64 / Dec::kBytesPer8 * 8;  // columns per cache line
  __m256 acc[T][R];
  for (int t = 0; t < T; ++t)
    for (int r = 0; r < R; ++r) acc[t][r] = _mm256_setzero_ps();
  auto prefetch = [&](size_t k) {
    for (int r = 0; r < R; ++r) _mm_prefetch(static_cast<const char*>(d[r].addr(k)) + ahead, _MM_HINT_T0);
  };
  for (size_t k0 = 0; k0 < K8; k0 += Dec::kBlock) {
    for (int r = 0; r < R; ++r) d[r].block(k0);
    const size_t k1 = std::min(K8, k0 + Dec::kBlock);
    if constexpr (Dec::kBlock <= 128) {
      if (k1 - k0 == Dec::kBlock) {
        // A whole scale block (FP4: 32 columns, FP8: 128) as straight-line code, in the same k
        // order: no loop or prefetch test per 8 columns (FP4 one token, L3-resident: ~25 % less
        // time with the E8M0 table above; engine-perf-notes.md).
#pragma GCC unroll 16
        for (size_t j = 0; j < Dec::kBlock; j += 8) {
          if (ahead && (k0 + j) % kLine == 0) prefetch(k0 + j);
          step8<R, T>(d, x, ldx, k0 + j, acc);
        }
        continue;
      }
    }
    for (size_t k = k0; k < k1; k += 8) {
      if (ahead && k % kLine == 0) prefetch(k);
      step8<R, T>(d, x, ldx, k, acc);
    }
  }
  if (K8 < K) {
    const __m256i tm = tail_mask(K - K8);
    for (int r = 0; r < R; ++r) {
      alignas(32) float tw[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      for (size_t k = K8; k < K; ++k) tw[k - K8] = d[r].one(k);
      for (int t = 0; t < T; ++t) acc[t][r] = _mm256_fmadd_ps(_mm256_maskload_ps(x + t * ldx + K8, tm), _mm256_load_ps(tw), acc[t][r]);
    }
  }
  for (int t = 0; t < T; ++t)
    for (int r = 0; r < R; ++r) y[t * ldy + r] = hsum8(acc[t][r]);
}

// Rows [n0, n1) for M tokens: groups of R rows (the rest one by one), tokens T at a time.
template <int R, int T, class Make>
V4_AVX2 void rows_direct_all(const LinearWeight& w, const float* x, size_t ldx, int M, float* y, size_t ldy, int n0, int n1,
                             Make make) {
  using Dec = decltype(make(0));
  const size_t K = static_cast<size_t>(w.cols);
  const ptrdiff_t row_bytes = static_cast<ptrdiff_t>(K / 8 * Dec::kBytesPer8);
  auto group = [&](Dec* d, int n, int nr, ptrdiff_t ahead) {
    auto run = [&](auto tokens, int m, ptrdiff_t a) {
      constexpr int TT = decltype(tokens)::value;
      float* ym = y + static_cast<size_t>(m) * ldy + n;
      const float* xm = x + static_cast<size_t>(m) * ldx;
      if (nr == R) rows_direct<R, TT>(d, xm, ldx, K, ym, ldy, a);
      else rows_direct<1, TT>(d, xm, ldx, K, ym, ldy, a);
    };
    int m = 0;
    // The rows are read again for each further group of tokens (from L1/L2): prefetch once.
    for (; m + T <= M; m += T) run(std::integral_constant<int, T>{}, m, m == 0 ? ahead : 0);
    const ptrdiff_t a = m == 0 ? ahead : 0;
    switch (M - m) {
      case 3: if constexpr (T > 3) run(std::integral_constant<int, 3>{}, m, a); break;
      case 2: if constexpr (T > 2) run(std::integral_constant<int, 2>{}, m, a); break;
      case 1: run(std::integral_constant<int, 1>{}, m, a); break;
      default: break;
    }
  };
  int n = n0;
  for (; n + R <= n1; n += R) {
    Dec d[R];
    for (int r = 0; r < R; ++r) d[r] = make(n + r);
    group(d, n, R, n + 2 * R <= n1 ? R * row_bytes : 0);
  }
  for (; n < n1; ++n) {
    Dec d[1] = {make(n)};
    group(d, n, 1, 0);
  }
}

// One token: 4 rows at a time. 2 to kDirectMax tokens: 2 rows x up to 4 tokens (8 accumulators),
// each weight decoded once per 4 tokens. More: the buffered tiles below. One thread, 4096 x 4096
// (engine-perf-notes.md): direct 1.8-1.9x the buffered path at 2 tokens, 1.3-1.5x at 4, even at 8,
// 0.6x at 16.
constexpr int kDirectMax = 4;

template <class Make>
V4_AVX2 void rows_direct_fmt(const LinearWeight& w, const float* x, size_t ldx, int M, float* y, size_t ldy, int n0, int n1, Make make) {
  if (M == 1) rows_direct_all<4, 1>(w, x, ldx, M, y, ldy, n0, n1, make);
  else rows_direct_all<2, 4>(w, x, ldx, M, y, ldy, n0, n1, make);
}

V4_AVX2 void linear_rows_direct(const LinearWeight& w, const float* x, size_t ldx, int M, float* y, size_t ldy, int n0, int n1) {
  auto at = [&w](auto make) { return [&w, make](int n) { return make(w, n); }; };
  switch (w.format) {
    case WFormat::F32: rows_direct_fmt(w, x, ldx, M, y, ldy, n0, n1, at(make_f32)); return;
    case WFormat::BF16: rows_direct_fmt(w, x, ldx, M, y, ldy, n0, n1, at(make_bf16)); return;
    case WFormat::FP8:
      if (fp8_scales_small(w, n0, n1)) rows_direct_fmt(w, x, ldx, M, y, ldy, n0, n1, at(make_fp8));
      else rows_direct_fmt(w, x, ldx, M, y, ldy, n0, n1, at(make_fp8_wide));
      return;
    case WFormat::FP4: rows_direct_fmt(w, x, ldx, M, y, ldy, n0, n1, at(make_fp4)); return;
  }
}

// ---- several tokens (prefill, batches: compute-bound): a block of kRows rows decoded once into a
// buffer, then T x R register tiles (T tokens, R rows: T·R accumulators, T activation registers,
// one weight register) over kChunk-column chunks, the accumulators kept in memory between chunks so
// that one chunk of the rows stays in L1 while every token's chunk streams past it.
constexpr int kRows = 4;
constexpr int kTok = 3;
constexpr size_t kChunk = 512;

template <int T, int R>
V4_AVX2 inline void tile(const float* x, size_t ldx, const float* wb, size_t ldw, size_t k0, size_t k1, float* acc) {
  __m256 a[T][R];
  for (int t = 0; t < T; ++t)
    for (int r = 0; r < R; ++r) a[t][r] = _mm256_loadu_ps(acc + (t * kRows + r) * 8);
  for (size_t k = k0; k < k1; k += 8) {
    __m256 xv[T];
    for (int t = 0; t < T; ++t) xv[t] = _mm256_loadu_ps(x + t * ldx + k);
    for (int r = 0; r < R; ++r) {
      const __m256 wv = _mm256_loadu_ps(wb + r * ldw + k);
      for (int t = 0; t < T; ++t) a[t][r] = _mm256_fmadd_ps(xv[t], wv, a[t][r]);
    }
  }
  for (int t = 0; t < T; ++t)
    for (int r = 0; r < R; ++r) _mm256_storeu_ps(acc + (t * kRows + r) * 8, a[t][r]);
}

template <int R>
V4_AVX2 void tiles(const float* x, size_t ldx, int M, const float* wb, size_t ldw, size_t k0, size_t k1, float* acc) {
  int m = 0;
  for (; m + kTok <= M; m += kTok) tile<kTok, R>(x + m * ldx, ldx, wb, ldw, k0, k1, acc + m * kRows * 8);
  if (M - m == 2) tile<2, R>(x + m * ldx, ldx, wb, ldw, k0, k1, acc + m * kRows * 8);
  else if (M - m == 1) tile<1, R>(x + m * ldx, ldx, wb, ldw, k0, k1, acc + m * kRows * 8);
}

V4_AVX2 void linear_rows_batched(const LinearWeight& w, const float* x, int M, float* y, size_t ldx, size_t ldy, int n0,
                                 int n1) {
  const size_t K = static_cast<size_t>(w.cols), K8 = K / 8 * 8;
  thread_local std::vector<float> buf, accs;
  if (w.format != WFormat::F32) buf.resize(kRows * K);
  accs.resize(static_cast<size_t>(M) * kRows * 8);
  float* acc = accs.data();
  for (int nb = n0; nb < n1; nb += kRows) {
    const int nr = std::min(kRows, n1 - nb);
    const float* wb;
    if (w.format == WFormat::F32) {
      wb = static_cast<const float*>(w.data) + static_cast<size_t>(nb) * K;  // the rows are the buffer
    } else {
      for (int r = 0; r < nr; ++r) dequant_row_impl(w, nb + r, buf.data() + r * K);
      wb = buf.data();
    }
    std::fill(accs.begin(), accs.end(), 0.f);
    for (size_t k0 = 0; k0 < K8; k0 += kChunk) {
      const size_t k1 = std::min(K8, k0 + kChunk);
      switch (nr) {
        case 4: tiles<4>(x, ldx, M, wb, K, k0, k1, acc); break;
        case 3: tiles<3>(x, ldx, M, wb, K, k0, k1, acc); break;
        case 2: tiles<2>(x, ldx, M, wb, K, k0, k1, acc); break;
        default: tiles<1>(x, ldx, M, wb, K, k0, k1, acc); break;
      }
    }
    const __m256i tm = tail_mask(std::max<size_t>(K - K8, 1));
    for (int m = 0; m < M; ++m) {
      const float* xm = x + static_cast<size_t>(m) * ldx;
      const __m256 xa = K8 < K ? _mm256_maskload_ps(xm + K8, tm) : _mm256_setzero_ps();
      for (int r = 0; r < nr; ++r) {
        __m256 a = _mm256_loadu_ps(acc + (m * kRows + r) * 8);
        if (K8 < K) a = _mm256_fmadd_ps(xa, _mm256_maskload_ps(wb + r * K + K8, tm), a);
        y[static_cast<size_t>(m) * ldy + nb + r] = hsum8(a);
      }
    }
  }
}

}  // namespace

void dequant_row_avx2(const LinearWeight& w, int n, float* out) { dequant_row_impl(w, n, out); }

void linear_rows_avx2(const LinearWeight& w, const float* x, int M, float* y, int ldx, int ldy, int n0, int n1) {
  if (M <= kDirectMax) linear_rows_direct(w, x, static_cast<size_t>(ldx), M, y, static_cast<size_t>(ldy), n0, n1);
  else linear_rows_batched(w, x, M, y, static_cast<size_t>(ldx), static_cast<size_t>(ldy), n0, n1);
}

}  // namespace v4
