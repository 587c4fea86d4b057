// One token (decode, batch 1): weights decoded in registers and multiplied with one activation
// row, R rows at a time sharing the activation loads. On AMX machines (where the tiles take the
// batches, so one token need not give the vdpbf16ps path's bits) FP4 runs on the integer
// dot-product units (VNNI) or else the FMA units, FP32 activations (the split path) in one exact
// pass, and a step's independent projections in one parallel call (linear_one_token).
#include "kernels/linear_bf16_internal.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <tuple>
#include <utility>

#include "core/cpu.h"
#include "core/thread_pool.h"

namespace v4 {
namespace bf16 {

namespace {

// The row-group driver every one-token kernel shares: rows n0..n1 in groups of 4 sharing the
// activation loads, the group `dist` rows on prefetched (its bytes, while that many rows remain),
// one row at a time at the end and, with `scale_blocks` (FP8: one scale per 128 rows), where a
// group would straddle two scale blocks. `rows.template operator()<R>(n, ahead)` runs R rows.
template <class Rows>
inline void row_groups(int n0, int n1, ptrdiff_t row_bytes, int dist, bool scale_blocks, Rows&& rows) {
  int n = n0;
  for (; n + 4 <= n1; n += 4) {
    const ptrdiff_t ahead = n + 4 + dist <= n1 ? dist * row_bytes : 0;
    if (!scale_blocks || (n & 127) <= 124) rows.template operator()<4>(n, ahead);
    else
      for (int r = 0; r < 4; ++r) rows.template operator()<1>(n + r, 0);
  }
  for (; n < n1; ++n) rows.template operator()<1>(n, 0);
}


// ---- decode (M = 1): weights decoded in registers, R rows at a time sharing the x chunks.
template <int R>
V4_BF16 void fp4_rows_m1(const LinearWeight& w, const uint16_t* xp, float* y, int n, ptrdiff_t ahead) {
  const size_t K = static_cast<size_t>(w.cols), K64 = K / 64 * 64;
  const uint8_t* base_p = static_cast<const uint8_t*>(w.data);
  const uint8_t* base_s = static_cast<const uint8_t*>(w.scale);
  const __m512i base = fp4_base();
  const uint8_t* p[R];
  const uint8_t* s[R];
  __m512 acc[R];
  for (int r = 0; r < R; ++r) {
    p[r] = base_p + static_cast<size_t>(n + r) * (K / 2);
    s[r] = base_s + static_cast<size_t>(n + r) * (K / 32);
    acc[r] = _mm512_setzero_ps();
  }
  for (size_t k = 0; k < K64; k += 64) {
    const __m512i xa = ldx(xp + k), xb = ldx(xp + k + 32);
    if (ahead && k % 128 == 0)
      for (int r = 0; r < R; ++r) _mm_prefetch(reinterpret_cast<const char*>(p[r] + k / 2) + ahead, _MM_HINT_T0);
    for (int r = 0; r < R; ++r) {
      __m512i a, b;
      fp4_decode64(p[r] + k / 2, fp4_table(base, s[r][k / 32], s[r][k / 32 + 1]), a, b);
      acc[r] = dp(acc[r], a, xa);
      acc[r] = dp(acc[r], b, xb);
    }
  }
  if (K64 < K) {
    const __m512i xa = ldx(xp + K64);
    for (int r = 0; r < R; ++r)
      acc[r] = dp(acc[r], fp4_decode32(p[r] + K64 / 2, fp4_table(base, s[r][K64 / 32], s[r][K64 / 32])), xa);
  }
  for (int r = 0; r < R; ++r) y[n + r] = _mm512_reduce_add_ps(acc[r]);
}

// Rows n..n+R-1 lie in one 128-row scale block (the caller checks), so they share each block's
// decode constants; the rows are addressed from one pointer (a pointer and a scale
// table per row made the compiler spill the accumulators in the inner loop).
template <int R>
V4_BF16 void fp8_rows_m1(const LinearWeight& w, const uint16_t* xp, float* y, int n, ptrdiff_t ahead) {
  const size_t K = static_cast<size_t>(w.cols), kb = (K + 127) / 128;
  const uint8_t* p = static_cast<const uint8_t*>(w.data) + static_cast<size_t>(n) * K;
  const uint8_t* s = static_cast<const uint8_t*>(w.scale) + static_cast<size_t>(n / 128) * kb;
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  for (size_t k0 = 0; k0 < K; k0 += 128) {
    const Fp8Block blk = fp8_block(s[k0 / 128]);
    const size_t k1 = std::min(K, k0 + 128);
    for (size_t k = k0; k < k1; k += 32) {
      if (ahead && k % 64 == 0)
        for (int r = 0; r < R; ++r) _mm_prefetch(reinterpret_cast<const char*>(p + r * K + k) + ahead, _MM_HINT_T0);
      const __m512i xa = ldx(xp + k);
      for (int r = 0; r < R; ++r) acc[r] = dp(acc[r], fp8_decode32(fp8_load32(p + r * K, k, K), blk), xa);
    }
  }
  for (int r = 0; r < R; ++r) y[n + r] = _mm512_reduce_add_ps(acc[r]);
}

// Table-decoder versions (same accumulation: one chain per row over the chunks in kernel order).
template <int R>
V4_LUT void fp4_rows_m1_lut(const LinearWeight& w, const uint16_t* xp, float* y, int n, ptrdiff_t ahead) {
  const size_t K = static_cast<size_t>(w.cols), K128 = K / 128 * 128, K64 = K / 64 * 64;
  const uint8_t* p = static_cast<const uint8_t*>(w.data) + static_cast<size_t>(n) * (K / 2);
  const uint8_t* s = static_cast<const uint8_t*>(w.scale) + static_cast<size_t>(n) * (K / 32);
  const size_t rp = K / 2, rs = K / 32;
  const Fp4LutConst& kc = fp4_lut_const();
  const __m512i lane = _mm512_load_si512(kc.lane);
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  for (size_t k = 0; k < K128; k += 128) {
    const __m512i x0 = ldx(xp + k), x1 = ldx(xp + k + 32), x2 = ldx(xp + k + 64), x3 = ldx(xp + k + 96);
    for (int r = 0; r < R; ++r) {
      if (ahead) _mm_prefetch(reinterpret_cast<const char*>(p + r * rp + k / 2) + ahead, _MM_HINT_T1);
      __m512i wv[4];
      fp4_lut128(_mm512_loadu_si512(p + r * rp + k / 2), fp4_tab(s + r * rs + k / 32, kc), lane, wv);
      acc[r] = dp(acc[r], wv[0], x0);
      acc[r] = dp(acc[r], wv[1], x1);
      acc[r] = dp(acc[r], wv[2], x2);
      acc[r] = dp(acc[r], wv[3], x3);
    }
  }
  if (K128 < K) {
    const __m512i base = fp4_base();
    for (size_t k = K128; k < K64; k += 64) {
      const __m512i xa = ldx(xp + k), xb = ldx(xp + k + 32);
      for (int r = 0; r < R; ++r) {
        __m512i a, b;
        fp4_decode64(p + r * rp + k / 2, fp4_table(base, s[r * rs + k / 32], s[r * rs + k / 32 + 1]), a, b);
        acc[r] = dp(acc[r], a, xa);
        acc[r] = dp(acc[r], b, xb);
      }
    }
    if (K64 < K) {
      const __m512i xa = ldx(xp + K64);
      for (int r = 0; r < R; ++r)
        acc[r] = dp(acc[r], fp4_decode32(p + r * rp + K64 / 2, fp4_table(base, s[r * rs + K64 / 32], s[r * rs + K64 / 32])), xa);
    }
  }
  for (int r = 0; r < R; ++r) y[n + r] = _mm512_reduce_add_ps(acc[r]);
}

// Rows n..n+R-1 in one 128-row scale block (the caller checks): one table set per k block.
template <int R>
V4_LUT void fp8_rows_m1_lut(const LinearWeight& w, const uint16_t* xp, float* y, int n, ptrdiff_t ahead) {
  const size_t K = static_cast<size_t>(w.cols), kb = (K + 127) / 128, K64 = K / 64 * 64;
  const size_t Kp = static_cast<size_t>(bf16_padded_k(w));
  const uint8_t* p = static_cast<const uint8_t*>(w.data) + static_cast<size_t>(n) * K;
  const uint8_t* s = static_cast<const uint8_t*>(w.scale) + static_cast<size_t>(n / 128) * kb;
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  for (size_t k0 = 0; k0 < K64; k0 += 128) {
    const Fp8Tab t = fp8_tab(s[k0 / 128]);
    const size_t k1 = std::min(K64, k0 + 128);
    for (size_t k = k0; k < k1; k += 64) {
      const __m512i xa = ldx(xp + k), xb = ldx(xp + k + 32);
      for (int r = 0; r < R; ++r) {
        if (ahead) _mm_prefetch(reinterpret_cast<const char*>(p + r * K + k) + ahead, _MM_HINT_T1);
        __m512i a, b;
        fp8_lut64(_mm512_loadu_si512(p + r * K + k), t, a, b);
        acc[r] = dp(acc[r], a, xa);
        acc[r] = dp(acc[r], b, xb);
      }
    }
  }
  for (size_t k = K64; k < Kp; k += 32) {
    const Fp8Block blk = fp8_block(s[k / 128]);
    const __m512i xa = ldx(xp + k);
    for (int r = 0; r < R; ++r) acc[r] = dp(acc[r], fp8_decode32(fp8_load32(p + r * K, k, K), blk), xa);
  }
  for (int r = 0; r < R; ++r) y[n + r] = _mm512_reduce_add_ps(acc[r]);
}

// ---- FP8, one token, where AMX runs the batches (so one token need not give the batched
// vdpbf16ps path's bits): the table decoder with fixed tables and one vpermb per byte half
// instead of the scaled 128-entry tables and two vpermi2b. Each code is looked up as twice its
// unscaled value, whose BF16 exponent field is E = e + 121 for exponent bits e >= 1: the low byte
// ((E & 1) << 7 | m << 4, E & 1 = !e0) depends on e0 and the mantissa m only (vpermb reads the
// code's low 6 bits), the high byte (sign | E >> 1) on the sign and e (vpermb on the code shifted
// right by 3; the bit shifted in from the next byte lands on index bit 5, the table repeats).
// Codes with e = 0 (zeros, subnormals: about 1 in 10^4 of real weights) get the high byte
// 0x7F | sign and so E = 0xFF, an infinity or NaN, which no sum can turn finite: each row sums
// its products per 128-column block, and a block sum that is not finite is summed again exactly
// by the scaled table decoder (tables for 2^1, the same doubled values). The block sum times
// 2^(s-128) (the block scale, exact) is added: exact products, another summation order than
// the batched path's. Per 64 codes 2 vpermb, a shift and 2 unpacks (the scaled decoder: 2
// vpermi2b, which cost twice a vpermb here, a ternlog, 2 unpacks, and its tables rebuilt per
// block).
struct Fp8FixedTables {
  alignas(64) uint8_t hi[64];
  alignas(64) uint8_t lo[64];
};
const Fp8FixedTables& fp8_fixed_tables() {
  static const Fp8FixedTables t = [] {
    Fp8FixedTables r{};
    for (int i = 0; i < 64; ++i) {
      const int sign = (i >> 4) & 1, e = i & 15;
      r.hi[i] = static_cast<uint8_t>((sign << 7) | (e ? (e + 121) >> 1 : 0x7F));
      const int e0 = (i >> 3) & 1, m = i & 7;
      r.lo[i] = static_cast<uint8_t>(((e0 ^ 1) << 7) | (m << 4));
    }
    return r;
  }();
  return t;
}

// 64 FP8 codes -> two chunks of 32 BF16 weights (twice the unscaled values, kernel order) by the
// fixed tables: the low byte from the code's low 6 bits, the high byte from the code shifted.
V4_LUT inline void fp8_fixed64(__m512i d, __m512i tlo, __m512i thi, __m512i& wa, __m512i& wb) {
  const __m512i lo = _mm512_permutexvar_epi8(d, tlo);
  const __m512i hi = _mm512_permutexvar_epi8(_mm512_srli_epi16(d, 3), thi);
  wa = _mm512_unpacklo_epi8(lo, hi);
  wb = _mm512_unpackhi_epi8(lo, hi);
}

// Rows n..n+R-1 in one 128-row scale block (the caller checks); K % 64 == 0.
template <int R>
V4_LUT void fp8_rows_m1_fixed(const LinearWeight& w, const uint16_t* xp, float* y, int n, ptrdiff_t ahead, const Fp8Tab& exact) {
  const size_t K = static_cast<size_t>(w.cols), kb = (K + 127) / 128;
  const uint8_t* p = static_cast<const uint8_t*>(w.data) + static_cast<size_t>(n) * K;
  const uint8_t* s = static_cast<const uint8_t*>(w.scale) + static_cast<size_t>(n / 128) * kb;
  const Fp8FixedTables& ft = fp8_fixed_tables();
  const __m512i thi = _mm512_load_si512(ft.hi), tlo = _mm512_load_si512(ft.lo);
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  for (size_t k0 = 0; k0 < K; k0 += 128) {
    const size_t k1 = std::min(K, k0 + 128);
    __m512 bs[R];
    for (int r = 0; r < R; ++r) bs[r] = _mm512_setzero_ps();
    for (size_t k = k0; k < k1; k += 64) {
      const __m512i xa = ldx(xp + k), xb = ldx(xp + k + 32);
      for (int r = 0; r < R; ++r) {
        if (ahead) _mm_prefetch(reinterpret_cast<const char*>(p + r * K + k) + ahead, _MM_HINT_T1);
        __m512i wa, wb;
        fp8_fixed64(_mm512_loadu_si512(p + r * K + k), tlo, thi, wa, wb);
        bs[r] = dp(bs[r], wa, xa);
        bs[r] = dp(bs[r], wb, xb);
      }
    }
    __m512 any = bs[0];
    for (int r = 1; r < R; ++r) any = _mm512_add_ps(any, bs[r]);
    if (__builtin_expect(_mm512_fpclass_ps_mask(any, 0x99) != 0, 0)) {  // a NaN or infinity: e = 0 codes
      for (int r = 0; r < R; ++r) {
        if (!_mm512_fpclass_ps_mask(bs[r], 0x99)) continue;
        bs[r] = _mm512_setzero_ps();
        for (size_t k = k0; k < k1; k += 64) {
          __m512i a, b;
          fp8_lut64(_mm512_loadu_si512(p + r * K + k), exact, a, b);
          bs[r] = dp(bs[r], a, ldx(xp + k));
          bs[r] = dp(bs[r], b, ldx(xp + k + 32));
        }
      }
    }
    const __m512 f = _mm512_castsi512_ps(_mm512_set1_epi32((static_cast<int>(s[k0 / 128]) - 1) << 23));  // 2^(s-128)
    for (int r = 0; r < R; ++r) acc[r] = _mm512_fmadd_ps(bs[r], f, acc[r]);
  }
  for (int r = 0; r < R; ++r) y[n + r] = _mm512_reduce_add_ps(acc[r]);
}

std::atomic<bool> g_no_fp8_fixed{env_flag("V4HOST_NO_FP8_FIXED")};

}  // namespace

bool fp8_fixed_enabled() { return !g_no_fp8_fixed.load(std::memory_order_relaxed) && amx_available(); }

V4_LUT void rows_m1_lut(const LinearWeight& w, const uint16_t* xp, float* y, int n0, int n1) {
  const bool fp4 = w.format == WFormat::FP4;
  const ptrdiff_t row_bytes = fp4 ? w.cols / 2 : w.cols;
  // Two row groups ahead, into L2: prefetches to L1 hold the core's few L1 fill buffers for a
  // whole memory latency and capped what one core streamed (FP8 9.6-18 -> 12-20 GB/s of 1 GB
  // of weights on 2 threads, 3 of 3 interleaved repetitions; FP4 2 of 3).
  if (!fp4 && w.cols % 64 == 0 && fp8_fixed_enabled()) {
    const Fp8Tab exact = fp8_tab(128);  // the fixed tables' doubled values, every code exact
    row_groups(n0, n1, row_bytes, 8, true, [&]<int R>(int n, ptrdiff_t ahead) { fp8_rows_m1_fixed<R>(w, xp, y, n, ahead, exact); });
  } else if (fp4) {
    row_groups(n0, n1, row_bytes, 8, false, [&]<int R>(int n, ptrdiff_t ahead) { fp4_rows_m1_lut<R>(w, xp, y, n, ahead); });
  } else {
    row_groups(n0, n1, row_bytes, 8, true, [&]<int R>(int n, ptrdiff_t ahead) { fp8_rows_m1_lut<R>(w, xp, y, n, ahead); });
  }
}

V4_BF16 void rows_m1(const LinearWeight& w, const uint16_t* xp, float* y, int n0, int n1) {
  if (w.format == WFormat::FP4)
    row_groups(n0, n1, w.cols / 2, 4, false, [&]<int R>(int n, ptrdiff_t ahead) { fp4_rows_m1<R>(w, xp, y, n, ahead); });
  else
    row_groups(n0, n1, w.cols, 4, true, [&]<int R>(int n, ptrdiff_t ahead) { fp8_rows_m1<R>(w, xp, y, n, ahead); });
}

namespace {

// ---- FP4, one token, on the FMA units (used where AMX runs the batches, so the one-token path
// need not give the vdpbf16ps path's bits). 64 bytes of a row (128 columns, four 32-column
// scale groups) are loaded once as 16 dwords; vpermps reads only the low 4 bits of each index,
// so the dword shifted right by 4j looks up its nibble j (column 8d + j of dword d) in the 16
// unscaled e2m1 values: eight shifts and eight lookups per 64 bytes and no byte spreading or
// per-group table. The eight exact products per lane are summed unscaled, then multiplied by
// the lane's group scale 2^(e-127) (lanes 4g..4g+3 hold group g; exact) and added: exact
// products and another summation order, as on the BF16 units. Activations in FP32, per 128
// columns as [j][d] = column 8d + j (fp4_fma_act); a trailing group of 32 as 16 even, 16 odd.
alignas(64) const float kFp4Vals[16] = {0.f, 0.5f, 1.f, 1.5f, 2.f, 3.f, 4.f, 6.f, -0.f, -0.5f, -1.f, -1.5f, -2.f, -3.f, -4.f, -6.f};
alignas(64) const uint8_t kLaneByte[64] = {0, 128, 128, 128, 0, 128, 128, 128, 0, 128, 128, 128, 0, 128, 128, 128,
                                           1, 128, 128, 128, 1, 128, 128, 128, 1, 128, 128, 128, 1, 128, 128, 128,
                                           2, 128, 128, 128, 2, 128, 128, 128, 2, 128, 128, 128, 2, 128, 128, 128,
                                           3, 128, 128, 128, 3, 128, 128, 128, 3, 128, 128, 128, 3, 128, 128, 128};
// 2f + 12 for the 16 e2m1 codes f, four times (vpermb reads 6 index bits): the VNNI path's u8 weights.
#define V4_FP4_U8 12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0
alignas(64) const uint8_t kFp4U8[64] = {V4_FP4_U8, V4_FP4_U8, V4_FP4_U8, V4_FP4_U8};
#undef V4_FP4_U8

template <int R>
V4_BF16 void fp4_rows_m1_fma(const LinearWeight& w, const float* xf, float* y, int n, ptrdiff_t ahead) {
  const size_t K = static_cast<size_t>(w.cols), G = K / 32, B = K / 128, rp = K / 2;
  const uint8_t* p = static_cast<const uint8_t*>(w.data) + static_cast<size_t>(n) * rp;
  const uint8_t* s = static_cast<const uint8_t*>(w.scale) + static_cast<size_t>(n) * G;
  const __m512 vals = _mm512_load_ps(kFp4Vals);
  const __m512i spread = _mm512_load_si512(kLaneByte);
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  for (size_t b = 0; b < B; ++b) {
    const float* xb = xf + b * 128;
    __m512 x[8];
    for (int j = 0; j < 8; ++j) x[j] = _mm512_loadu_ps(xb + 16 * j);
    for (int r = 0; r < R; ++r) {
      if (ahead) _mm_prefetch(reinterpret_cast<const char*>(p + r * rp + b * 64) + ahead, _MM_HINT_T1);
      const __m512i v = _mm512_loadu_si512(p + r * rp + b * 64);
      __m512 t = _mm512_mul_ps(_mm512_permutexvar_ps(v, vals), x[0]);
      t = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), vals), x[1], t);
      t = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v, 8), vals), x[2], t);
      t = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v, 12), vals), x[3], t);
      t = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v, 16), vals), x[4], t);
      t = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v, 20), vals), x[5], t);
      t = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v, 24), vals), x[6], t);
      t = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v, 28), vals), x[7], t);
      uint32_t s4;
      std::memcpy(&s4, s + r * G + b * 4, 4);
      const __m512 sc = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_shuffle_epi8(_mm512_set1_epi32(static_cast<int>(s4)), spread), 23));
      acc[r] = _mm512_fmadd_ps(t, sc, acc[r]);
    }
  }
  if (B * 4 < G) {
    // Trailing groups of 32 columns: 16 bytes spread to dwords, the low and the high nibble
    // looked up in the values scaled by the group's 2^(e-127) (exact).
    __m512 a1[R];
    for (int r = 0; r < R; ++r) a1[r] = _mm512_setzero_ps();
    for (size_t g = B * 4; g < G; ++g) {
      const __m512 xe = _mm512_loadu_ps(xf + g * 32), xo = _mm512_loadu_ps(xf + g * 32 + 16);
      for (int r = 0; r < R; ++r) {
        const __m512 t = _mm512_mul_ps(vals, _mm512_castsi512_ps(_mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(s[r * G + g]) << 23))));
        const __m512i idx = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + r * rp + g * 16)));
        acc[r] = _mm512_fmadd_ps(_mm512_permutexvar_ps(idx, t), xe, acc[r]);
        a1[r] = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(idx, 4), t), xo, a1[r]);
      }
    }
    for (int r = 0; r < R; ++r) acc[r] = _mm512_add_ps(acc[r], a1[r]);
  }
  for (int r = 0; r < R; ++r) y[n + r] = _mm512_reduce_add_ps(acc[r]);
}

}  // namespace

namespace {

// ---- FP4, one token, on the integer dot-product units (AVX-512 VNNI `vpdpbusd`), where the
// activations are FP8 values times a power-of-two block scale (the official numerics): per
// 128-column block every x is then an integer multiple of 2^t (t = floor(log2 max|x|) - 18) below
// 2^19 in magnitude, split exactly into three signed 7-bit digits x/2^t = d0 + 128 d1 + 16384 d2.
// A weight's code looks up 2f + 12 (0..24; f the e2m1 value) with one vpermb per 64 codes, and
// vpdpbusd sums four exact u8 x s8 products per int32 lane, so a lane (8 columns of one 32-column
// group, as in the FMA path) gets its 8 products' sum exactly as an integer: the +12 offset is
// removed by starting the d0 accumulator at -12 Σ x/2^t over its columns (per token, shared by
// every row), the digits are combined by two shifts and adds, the exact integer converted once to
// FP32 (one rounding, where the FMA path rounds after each of the 8 FMAs), multiplied by 2^(t-1)
// and the group's 2^(e-127) (exact) and added. Exact products, another summation order: per 64
// bytes 3 decode instructions and 6 vpdpbusd instead of 7 shifts, 8 vpermps and 8 FMAs
// (≈ 18 instead of ≈ 26 on the two vector ports). Layout (fp4_vnni_act): per 128-column block 448
// bytes (d0 of the low nibbles' columns 2i, of the high nibbles' 2i+1, then d1, d2; the 16 lane
// corrections), then the B factors 2^(t-1), then the trailing 32-column groups as FP32 in the FMA
// path's layout.
constexpr size_t kVnniBlockFloats = 112;  // 448 bytes

template <int R>
V4_VNNI void fp4_rows_m1_vnni(const LinearWeight& w, const float* xa, float* y, int n, ptrdiff_t ahead) {
  const size_t K = static_cast<size_t>(w.cols), G = K / 32, B = K / 128, rp = K / 2;
  const uint8_t* p = static_cast<const uint8_t*>(w.data) + static_cast<size_t>(n) * rp;
  const uint8_t* s = static_cast<const uint8_t*>(w.scale) + static_cast<size_t>(n) * G;
  const float* fb = xa + B * kVnniBlockFloats;
  const __m512i tbl = _mm512_load_si512(kFp4U8);
  const __m512i spread = _mm512_load_si512(kLaneByte);
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  for (size_t b = 0; b < B; ++b) {
    const char* xb = reinterpret_cast<const char*>(xa + b * kVnniBlockFloats);
    const __m512i l0 = _mm512_loadu_si512(xb), h0 = _mm512_loadu_si512(xb + 64), l1 = _mm512_loadu_si512(xb + 128),
                  h1 = _mm512_loadu_si512(xb + 192), l2 = _mm512_loadu_si512(xb + 256), h2 = _mm512_loadu_si512(xb + 320),
                  corr = _mm512_loadu_si512(xb + 384);
    const __m512 f = _mm512_set1_ps(fb[b]);
    for (int r = 0; r < R; ++r) {
      if (ahead) _mm_prefetch(reinterpret_cast<const char*>(p + r * rp + b * 64) + ahead, _MM_HINT_T1);
      const __m512i v = _mm512_loadu_si512(p + r * rp + b * 64);
      // vpermb reads 6 index bits and the table repeats every 16 bytes: no masking of the nibbles.
      const __m512i wl = _mm512_permutexvar_epi8(v, tbl);
      const __m512i wh = _mm512_permutexvar_epi8(_mm512_srli_epi16(v, 4), tbl);
      __m512i a0 = _mm512_dpbusd_epi32(corr, wl, l0);
      a0 = _mm512_dpbusd_epi32(a0, wh, h0);
      __m512i a1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wl, l1);
      a1 = _mm512_dpbusd_epi32(a1, wh, h1);
      __m512i a2 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wl, l2);
      a2 = _mm512_dpbusd_epi32(a2, wh, h2);
      a1 = _mm512_add_epi32(a1, _mm512_slli_epi32(a2, 7));
      a0 = _mm512_add_epi32(a0, _mm512_slli_epi32(a1, 7));
      uint32_t s4;
      std::memcpy(&s4, s + r * G + b * 4, 4);
      const __m512 sc = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_shuffle_epi8(_mm512_set1_epi32(static_cast<int>(s4)), spread), 23));
      acc[r] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(a0), f), sc, acc[r]);
    }
  }
  if (B * 4 < G) {
    // Trailing 32-column groups: as the FMA path (FP32 values scaled by the group's 2^(e-127)).
    const float* xt = fb + B;  // group g's 32 values at xt + (g - 4B) * 32
    const __m512 vals = _mm512_load_ps(kFp4Vals);
    __m512 a1[R];
    for (int r = 0; r < R; ++r) a1[r] = _mm512_setzero_ps();
    for (size_t g = B * 4; g < G; ++g) {
      const __m512 xe = _mm512_loadu_ps(xt + (g - B * 4) * 32), xo = _mm512_loadu_ps(xt + (g - B * 4) * 32 + 16);
      for (int r = 0; r < R; ++r) {
        const __m512 t = _mm512_mul_ps(vals, _mm512_castsi512_ps(_mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(s[r * G + g]) << 23))));
        const __m512i idx = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + r * rp + g * 16)));
        acc[r] = _mm512_fmadd_ps(_mm512_permutexvar_ps(idx, t), xe, acc[r]);
        a1[r] = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(idx, 4), t), xo, a1[r]);
      }
    }
    for (int r = 0; r < R; ++r) acc[r] = _mm512_add_ps(acc[r], a1[r]);
  }
  for (int r = 0; r < R; ++r) y[n + r] = _mm512_reduce_add_ps(acc[r]);
}

}  // namespace

V4_VNNI void rows_m1_fp4_vnni(const LinearWeight& w, const float* xa, float* y, int n0, int n1) {
  row_groups(n0, n1, w.cols / 2, 8, false, [&]<int R>(int n, ptrdiff_t ahead) { fp4_rows_m1_vnni<R>(w, xa, y, n, ahead); });
}

V4_BF16 void rows_m1_fp4_fma(const LinearWeight& w, const float* xf, float* y, int n0, int n1) {
  row_groups(n0, n1, w.cols / 2, 8, false, [&]<int R>(int n, ptrdiff_t ahead) { fp4_rows_m1_fma<R>(w, xf, y, n, ahead); });
}

namespace {

// A one-token activation gather order per key, built once per thread and kept: a decode step
// switches between a few matrix shapes many times, and rebuilding the order on every switch
// showed in the profile. The reference is valid until this call site's next call on the thread.
template <class Key, class Build>
const std::vector<int>& cached_order(const Key& key, Build build) {
  thread_local std::vector<std::pair<Key, std::vector<int>>> cache;
  for (auto& [k, v] : cache)
    if (k == key) return v;
  cache.emplace_back(key, build());
  return cache.back().second;
}

}  // namespace

// Packed activations (kernel order) -> the FP32 layout of fp4_rows_m1_fma.
void fp4_fma_act(const LinearWeight& w, const uint16_t* xp, std::vector<float>& xf) {
  const int K = w.cols, Kp = bf16_padded_k(w), K128 = K / 128 * 128;
  // Per (K, decoder set): a decode step alternates between the experts' K (w1/w3 and w2).
  const bool lut = bf16_lut_available();
  const std::vector<int>& order = cached_order(std::tuple(K, lut), [&] {
    std::vector<int> inv(static_cast<size_t>(K), 0);
    for (int q = 0; q < Kp; ++q) {
      const int k = bf16_kernel_k(w, q);
      if (k < K) inv[static_cast<size_t>(k)] = q;
    }
    std::vector<int> src(static_cast<size_t>(K));
    for (int q = 0; q < K; ++q) {
      int col;
      if (q < K128) {
        const int j = (q % 128) / 16, d = q % 16;
        col = q / 128 * 128 + 8 * d + j;
      } else {
        const int i = q % 32;
        col = q / 32 * 32 + (i < 16 ? 2 * i : 2 * (i - 16) + 1);
      }
      src[static_cast<size_t>(q)] = inv[static_cast<size_t>(col)];
    }
    return src;
  });
  const int* src = order.data();
  xf.resize(static_cast<size_t>(K));
  for (int q = 0; q < K; ++q) xf[static_cast<size_t>(q)] = bf16_to_f32(xp[src[q]]);
}

bool fp4_fma_enabled() {
  static const bool on = !env_flag("V4HOST_NO_FP4_FMA");
  return on && amx_available();
}

namespace {
std::atomic<bool> g_no_fp4_vnni{env_flag("V4HOST_NO_FP4_VNNI")};
}  // namespace

bool fp4_vnni_enabled() {
  return cpu_features().avx512vnni && cpu_features().avx512vbmi && !g_no_fp4_vnni.load(std::memory_order_relaxed) && fp4_fma_enabled();
}

namespace {

// fp4_vnni_act's blocks, vectorised: per 128 packed activations (kernel order) the scale 2^t from
// the block maximum, the exactness check, the three digits (in packed order, then moved into
// byte order by one two-source byte permute per digit and nibble) and the lane corrections
// (-12 Σ x/2^t over each lane's 8 columns: the digits summed per lane by vpdpbusd against ones).
V4_VNNI bool vnni_act_blocks(const uint16_t* xp, int B, const int* perm, int8_t* out, float* fb) {
  alignas(64) uint8_t pidx[128];
  for (int i = 0; i < 128; ++i) pidx[i] = static_cast<uint8_t>(perm[i]);
  const __m512i i0 = _mm512_load_si512(pidx), i1 = _mm512_load_si512(pidx + 64);
  const __m512i c64 = _mm512_set1_epi32(64), c127 = _mm512_set1_epi32(127), ones = _mm512_set1_epi8(1);
  for (int b = 0; b < B; ++b) {
    const uint16_t* xb = xp + 128 * static_cast<size_t>(b);
    __m512 v[8];
    __m512 am = _mm512_setzero_ps();
    for (int i = 0; i < 8; ++i) {
      v[i] = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb + 16 * i))), 16));
      am = _mm512_max_ps(am, _mm512_abs_ps(v[i]));
    }
    const float amax = _mm512_reduce_max_ps(am);
    const int t = amax > 0.f ? std::ilogb(amax) - 18 : 0;
    if (t - 1 < -126 || t - 1 > 127) return false;
    fb[b] = std::ldexp(1.0f, t - 1);
    const __m512 nt = _mm512_set1_ps(static_cast<float>(-t));
    alignas(64) int8_t dig[3][128];
    __mmask16 bad = 0;
    for (int i = 0; i < 8; ++i) {
      const __m512 q = _mm512_scalef_ps(v[i], nt);  // x / 2^t, exact
      const __m512 r = _mm512_roundscale_ps(q, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      bad |= _mm512_cmp_ps_mask(q, r, _CMP_NEQ_UQ);
      const __m512i xi = _mm512_cvtps_epi32(r);  // |xi| < 2^19
      const __m512i d0 = _mm512_sub_epi32(_mm512_and_si512(_mm512_add_epi32(xi, c64), c127), c64);
      const __m512i x1 = _mm512_srai_epi32(_mm512_sub_epi32(xi, d0), 7);
      const __m512i d1 = _mm512_sub_epi32(_mm512_and_si512(_mm512_add_epi32(x1, c64), c127), c64);
      const __m512i d2 = _mm512_srai_epi32(_mm512_sub_epi32(x1, d1), 7);
      _mm_store_si128(reinterpret_cast<__m128i*>(dig[0] + 16 * i), _mm512_cvtepi32_epi8(d0));
      _mm_store_si128(reinterpret_cast<__m128i*>(dig[1] + 16 * i), _mm512_cvtepi32_epi8(d1));
      _mm_store_si128(reinterpret_cast<__m128i*>(dig[2] + 16 * i), _mm512_cvtepi32_epi8(d2));
    }
    if (bad) return false;
    int8_t* o = out + 448 * static_cast<size_t>(b);
    __m512i sum = _mm512_setzero_si512();
    for (int p = 2; p >= 0; --p) {
      const __m512i lo = _mm512_load_si512(dig[p]), hi = _mm512_load_si512(dig[p] + 64);
      const __m512i xl = _mm512_permutex2var_epi8(lo, i0, hi), xh = _mm512_permutex2var_epi8(lo, i1, hi);
      _mm512_storeu_si512(o + 128 * p, xl);
      _mm512_storeu_si512(o + 128 * p + 64, xh);
      const __m512i ds = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, xl), ones, xh);
      sum = _mm512_add_epi32(_mm512_slli_epi32(sum, 7), ds);  // Σ over the lane's columns of x / 2^t
    }
    _mm512_storeu_si512(o + 384, _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_add_epi32(_mm512_slli_epi32(sum, 3), _mm512_slli_epi32(sum, 2))));
  }
  return true;
}

}  // namespace

// Packed activations -> the layout of fp4_rows_m1_vnni; false (xa unspecified) where a 128-column
// block is not integer multiples of 2^t below 2^19 (activations that are not FP8 values times a
// block scale) or 2^(t-1) is not a normal float: those calls take the FMA path.
bool fp4_vnni_act(const LinearWeight& w, const uint16_t* xp, std::vector<float>& xa) {
  const int K = w.cols, Kp = bf16_padded_k(w), B = K / 128;
  const bool lut = bf16_lut_available();
  // Packed position of each column (per K and decoder set, like fp4_fma_act's order).
  const std::vector<int>& inv = cached_order(std::tuple(K, lut), [&] {
    std::vector<int> r(static_cast<size_t>(K), 0);
    for (int q = 0; q < Kp; ++q) {
      const int k = bf16_kernel_k(w, q);
      if (k < K) r[static_cast<size_t>(k)] = q;
    }
    return r;
  });
  const int* pos = inv.data();
  xa.resize(static_cast<size_t>(B) * kVnniBlockFloats + static_cast<size_t>(B) + static_cast<size_t>(K - 128 * B));
  float* fb = xa.data() + static_cast<size_t>(B) * kVnniBlockFloats;
  // Byte i of nibble h's digit vector takes the block's packed position perm[64h + i] (the same
  // in every block in both decoder orders; checked, else the FMA path).
  const std::vector<int>& perm = cached_order(std::tuple(K, lut, 0), [&] {
    std::vector<int> r(128, -1);
    for (int h = 0; h < 2 && B > 0; ++h)
      for (int i = 0; i < 64; ++i) r[static_cast<size_t>(64 * h + i)] = pos[2 * i + h];
    for (int v : r)
      if (v < 0 || v > 127) return std::vector<int>(128, -1);
    for (int b = 1; b < B; ++b)
      for (int k = 0; k < 128; ++k)
        if (pos[128 * b + k] - 128 * b != r[static_cast<size_t>(64 * (k & 1) + k / 2)]) r.assign(128, -1);
    return r;
  });
  if (B > 0 && (perm[0] < 0 || !vnni_act_blocks(xp, B, perm.data(), reinterpret_cast<int8_t*>(xa.data()), fb))) return false;
  // Trailing 32-column groups: FP32, 16 even then 16 odd columns (the FMA path's tail layout).
  float* xt = fb + B;
  for (int c = 128 * B; c < K; ++c) {
    const int i = (c - 128 * B) % 32, g = (c - 128 * B) / 32;
    xt[32 * g + (i % 2 ? 16 + i / 2 : i / 2)] = bf16_to_f32(xp[pos[c]]);
  }
  return true;
}

bool fp4_one_token_act(const LinearWeight& w, const uint16_t* xp, std::vector<float>& xa) {
  if (fp4_vnni_enabled() && fp4_vnni_act(w, xp, xa)) return true;
  fp4_fma_act(w, xp, xa);
  return false;
}

void rows_m1_fp4(const LinearWeight& w, const float* xa, bool vnni, float* y, int n0, int n1) {
  if (vnni) rows_m1_fp4_vnni(w, xa, y, n0, n1);
  else rows_m1_fp4_fma(w, xa, y, n0, n1);
}


namespace {

// One token of FP32 activations (wo_a, BF16 projections) where the tiles run the batches: each
// row is decoded to BF16 in kernel order into an L1 buffer, widened to FP32 by a shift (even
// words) and a mask (odd words), and multiplied with FMAs: the FP32 products exactly, as the
// split path, in one pass instead of three (another summation order).
V4_BF16 void split_rows_m1_fma(const LinearWeight& w, const float* xf, float* y, int n0, int n1) {
  const int Kp = bf16_padded_k(w);
  thread_local std::vector<uint16_t> buf;
  buf.resize(static_cast<size_t>(Kp));
  const __m512i hi_mask = _mm512_set1_epi32(static_cast<int>(0xFFFF0000u));
  for (int n = n0; n < n1; ++n) {
    const uint16_t* wr;
    if (w.format == WFormat::BF16 && w.cols % 32 == 0) {
      wr = static_cast<const uint16_t*>(w.data) + static_cast<size_t>(n) * w.cols;
    } else {
      decode_row_impl(w, n, buf.data());
      wr = buf.data();
    }
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    for (int p = 0; p < Kp; p += 32) {
      const __m512i v = _mm512_loadu_si512(wr + p);
      a0 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(v, 16)), _mm512_loadu_ps(xf + p), a0);
      a1 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(v, hi_mask)), _mm512_loadu_ps(xf + p + 16), a1);
    }
    y[n] = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
  }
}

// The same sums (per row: even words into one accumulator, odd words into the other, chunks in
// kernel order), R rows at a time sharing the activation loads, with the next rows prefetched
// into L2; FP8 rows decoded in registers by the table decoder (the buffered version above wrote
// and re-read every decoded row: half the FP8 path's rate in the decode profile). Rows
// n..n+R-1 of FP8 lie in one 128-row scale block (the caller checks).
V4_BF16 inline void fma_words(__m512i v, const float* x, __m512& a0, __m512& a1) {
  a0 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(v, 16)), _mm512_loadu_ps(x), a0);
  a1 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32(static_cast<int>(0xFFFF0000u)))), _mm512_loadu_ps(x + 16), a1);
}

template <int R>
V4_LUT void fp8_split_rows_m1(const LinearWeight& w, const float* xf, float* y, int n, ptrdiff_t ahead) {
  const size_t K = static_cast<size_t>(w.cols), kb = (K + 127) / 128, K64 = K / 64 * 64;
  const size_t Kp = static_cast<size_t>(bf16_padded_k(w));
  const uint8_t* p = static_cast<const uint8_t*>(w.data) + static_cast<size_t>(n) * K;
  const uint8_t* s = static_cast<const uint8_t*>(w.scale) + static_cast<size_t>(n / 128) * kb;
  __m512 a0[R], a1[R];
  for (int r = 0; r < R; ++r) a0[r] = a1[r] = _mm512_setzero_ps();
  for (size_t k0 = 0; k0 < K64; k0 += 128) {
    const Fp8Tab t = fp8_tab(s[k0 / 128]);
    const size_t k1 = std::min(K64, k0 + 128);
    for (size_t k = k0; k < k1; k += 64)
      for (int r = 0; r < R; ++r) {
        if (ahead) _mm_prefetch(reinterpret_cast<const char*>(p + r * K + k) + ahead, _MM_HINT_T1);
        __m512i a, b;
        fp8_lut64(_mm512_loadu_si512(p + r * K + k), t, a, b);
        fma_words(a, xf + k, a0[r], a1[r]);
        fma_words(b, xf + k + 32, a0[r], a1[r]);
      }
  }
  for (size_t k = K64; k < Kp; k += 32) {
    const Fp8Block blk = fp8_block(s[k / 128]);
    for (int r = 0; r < R; ++r) fma_words(fp8_decode32(fp8_load32(p + r * K, k, K), blk), xf + k, a0[r], a1[r]);
  }
  for (int r = 0; r < R; ++r) y[n + r] = _mm512_reduce_add_ps(_mm512_add_ps(a0[r], a1[r]));
}

// The same with the fixed tables of fp8_rows_m1_fixed (K % 64 == 0): per 128-column block each
// row's even- and odd-word sums, a block whose sum is not finite (e = 0 codes) summed again by
// the scaled decoder (tables for 2^1), the block times 2^(s-128) added.
template <int R>
V4_LUT void fp8_split_rows_m1_fixed(const LinearWeight& w, const float* xf, float* y, int n, ptrdiff_t ahead, const Fp8Tab& exact) {
  const size_t K = static_cast<size_t>(w.cols), kb = (K + 127) / 128;
  const uint8_t* p = static_cast<const uint8_t*>(w.data) + static_cast<size_t>(n) * K;
  const uint8_t* s = static_cast<const uint8_t*>(w.scale) + static_cast<size_t>(n / 128) * kb;
  const Fp8FixedTables& ft = fp8_fixed_tables();
  const __m512i thi = _mm512_load_si512(ft.hi), tlo = _mm512_load_si512(ft.lo);
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  for (size_t k0 = 0; k0 < K; k0 += 128) {
    const size_t k1 = std::min(K, k0 + 128);
    __m512 a0[R], a1[R];
    for (int r = 0; r < R; ++r) a0[r] = a1[r] = _mm512_setzero_ps();
    for (size_t k = k0; k < k1; k += 64)
      for (int r = 0; r < R; ++r) {
        if (ahead) _mm_prefetch(reinterpret_cast<const char*>(p + r * K + k) + ahead, _MM_HINT_T1);
        __m512i wa, wb;
        fp8_fixed64(_mm512_loadu_si512(p + r * K + k), tlo, thi, wa, wb);
        fma_words(wa, xf + k, a0[r], a1[r]);
        fma_words(wb, xf + k + 32, a0[r], a1[r]);
      }
    __m512 bs[R];
    for (int r = 0; r < R; ++r) bs[r] = _mm512_add_ps(a0[r], a1[r]);
    __m512 any = bs[0];
    for (int r = 1; r < R; ++r) any = _mm512_add_ps(any, bs[r]);
    if (__builtin_expect(_mm512_fpclass_ps_mask(any, 0x99) != 0, 0)) {  // a NaN or infinity: e = 0 codes
      for (int r = 0; r < R; ++r) {
        if (!_mm512_fpclass_ps_mask(bs[r], 0x99)) continue;
        __m512 e0 = _mm512_setzero_ps(), e1 = _mm512_setzero_ps();
        for (size_t k = k0; k < k1; k += 64) {
          __m512i a, b;
          fp8_lut64(_mm512_loadu_si512(p + r * K + k), exact, a, b);
          fma_words(a, xf + k, e0, e1);
          fma_words(b, xf + k + 32, e0, e1);
        }
        bs[r] = _mm512_add_ps(e0, e1);
      }
    }
    const __m512 f = _mm512_castsi512_ps(_mm512_set1_epi32((static_cast<int>(s[k0 / 128]) - 1) << 23));  // 2^(s-128)
    for (int r = 0; r < R; ++r) acc[r] = _mm512_fmadd_ps(bs[r], f, acc[r]);
  }
  for (int r = 0; r < R; ++r) y[n + r] = _mm512_reduce_add_ps(acc[r]);
}

template <int R>
V4_BF16 void bf16_split_rows_m1(const LinearWeight& w, const float* xf, float* y, int n, ptrdiff_t ahead) {
  const size_t K = static_cast<size_t>(w.cols);  // a multiple of 32 (the caller checks)
  const uint16_t* p = static_cast<const uint16_t*>(w.data) + static_cast<size_t>(n) * K;
  __m512 a0[R], a1[R];
  for (int r = 0; r < R; ++r) a0[r] = a1[r] = _mm512_setzero_ps();
  for (size_t k = 0; k < K; k += 32)
    for (int r = 0; r < R; ++r) {
      if (ahead) _mm_prefetch(reinterpret_cast<const char*>(p + r * K + k) + ahead, _MM_HINT_T1);
      fma_words(_mm512_loadu_si512(p + r * K + k), xf + k, a0[r], a1[r]);
    }
  for (int r = 0; r < R; ++r) y[n + r] = _mm512_reduce_add_ps(_mm512_add_ps(a0[r], a1[r]));
}

}  // namespace

V4_BF16 void split_rows_m1(const LinearWeight& w, const float* xf, float* y, int n0, int n1) {
  const bool fp8 = w.format == WFormat::FP8 && bf16_lut_available();
  const bool bf16 = w.format == WFormat::BF16 && w.cols % 32 == 0;
  if (!fp8 && !bf16) {
    split_rows_m1_fma(w, xf, y, n0, n1);
    return;
  }
  const ptrdiff_t row_bytes = fp8 ? w.cols : 2 * static_cast<ptrdiff_t>(w.cols);
  if (fp8 && w.cols % 64 == 0 && fp8_fixed_enabled()) {
    const Fp8Tab exact = fp8_tab(128);  // the fixed tables' doubled values, every code exact
    row_groups(n0, n1, row_bytes, 8, true, [&]<int R>(int n, ptrdiff_t ahead) { fp8_split_rows_m1_fixed<R>(w, xf, y, n, ahead, exact); });
  } else if (bf16) {
    row_groups(n0, n1, row_bytes, 8, false, [&]<int R>(int n, ptrdiff_t ahead) { bf16_split_rows_m1<R>(w, xf, y, n, ahead); });
  } else {
    row_groups(n0, n1, row_bytes, 8, true, [&]<int R>(int n, ptrdiff_t ahead) { fp8_split_rows_m1<R>(w, xf, y, n, ahead); });
  }
}

// Activations of the one-token split path: kernel order, each 32-word chunk as its 16 even then
// its 16 odd positions (rounded once to BF16 with parts = 1).
void split_m1_act(const LinearWeight& w, const float* x, int parts, std::vector<float>& xf) {
  const int K = w.cols, Kp = bf16_padded_k(w);
  // Per (K, format, decoder set): a layer alternates FP8 wo_a and BF16 compressor projections.
  const std::vector<int>& order = cached_order(std::tuple(K, w.format, bf16_lut_available()), [&] {
    std::vector<int> src(static_cast<size_t>(Kp));
    for (int p = 0; p < Kp; ++p)
      src[static_cast<size_t>(p)] = bf16_kernel_k(w, p / 32 * 32 + (p % 32 < 16 ? 2 * (p % 16) : 2 * (p % 16) + 1));
    return src;
  });
  const int* src = order.data();
  xf.resize(static_cast<size_t>(Kp));
  for (int p = 0; p < Kp; ++p) {
    const int k = src[p];
    xf[static_cast<size_t>(p)] = k < K ? (parts == 1 ? bf16_to_f32(f32_to_bf16(x[k])) : x[k]) : 0.f;
  }
}

size_t split_m1_grain(const LinearWeight& w) {
  const size_t row_bytes = std::max<size_t>(1, w.bytes() / static_cast<size_t>(w.rows));
  return std::max<size_t>(16, (256u << 10) / row_bytes);
}

}  // namespace bf16

namespace {
std::atomic<bool> g_no_gather{env_flag("V4HOST_NO_GATHER")};
}  // namespace

void set_one_token_gather_disabled(bool off) { g_no_gather = off; }

bool fp4_vnni_available() { return bf16::fp4_vnni_enabled(); }
void set_fp4_vnni_disabled(bool off) { bf16::g_no_fp4_vnni = off; }
bool fp8_fixed_available() { return bf16::fp8_fixed_enabled(); }
void set_fp8_fixed_disabled(bool off) { bf16::g_no_fp8_fixed = off; }

void linear_one_token(const OneTokenJob* jobs, int n) {
  using namespace bf16;
  if (n <= 0) return;
  // The register paths of the single calls: the split path's one-token version and the FP4
  // FMA path run where AMX is present; packed activations stay off the tiles at one token.
  bool fused = n > 1 && amx_available() && amx_min_tokens() > 1 && !g_no_gather.load(std::memory_order_relaxed);
  for (int i = 0; i < n && fused; ++i) {
    const OneTokenJob& j = jobs[i];
    fused = j.w && j.w->rows > 0 && j.y && ((j.x && !j.xp) || (j.xp && !j.x && j.w->format != WFormat::BF16));
  }
  if (!fused) {
    for (int i = 0; i < n; ++i) {
      const OneTokenJob& j = jobs[i];
      if (j.x) linear_bf16_split(*j.w, j.x, 1, j.y, 0, 0, j.parts);
      else linear_bf16(*j.w, j.xp, 1, j.y);
    }
    return;
  }
  enum Kind : uint8_t { Split, Fp4Fma, Fp4Vnni, Packed };
  struct Piece {
    int job, n0, n1;
  };
  thread_local std::vector<std::vector<float>> acts;
  thread_local std::vector<Kind> kinds;
  thread_local std::vector<Piece> pieces;
  if (acts.size() < static_cast<size_t>(n)) acts.resize(static_cast<size_t>(n));
  kinds.resize(static_cast<size_t>(n));
  pieces.clear();
  const bool fp4_fma = fp4_fma_enabled();
  int most = 0;
  std::vector<int> grain(static_cast<size_t>(n));
  // The job whose activation layout a job reads (itself unless shared).
  std::vector<int> src(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    const OneTokenJob& j = jobs[i];
    Kind& k = kinds[static_cast<size_t>(i)];
    src[static_cast<size_t>(i)] = i;
    if (j.x) {
      k = Split;
      split_m1_act(*j.w, j.x, j.parts == 1 ? 1 : 3, acts[static_cast<size_t>(i)]);
    } else if (j.w->format == WFormat::FP4 && fp4_fma) {
      // Jobs on the same activations and K (a layer's experts' w1 and w3) share one layout.
      for (int e = 0; e < i; ++e)
        if ((kinds[static_cast<size_t>(e)] == Fp4Fma || kinds[static_cast<size_t>(e)] == Fp4Vnni) && jobs[e].xp == j.xp &&
            jobs[e].w->cols == j.w->cols) {
          src[static_cast<size_t>(i)] = src[static_cast<size_t>(e)];
          k = kinds[static_cast<size_t>(e)];
          break;
        }
      if (src[static_cast<size_t>(i)] == i) k = fp4_one_token_act(*j.w, j.xp, acts[static_cast<size_t>(i)]) ? Fp4Vnni : Fp4Fma;
    } else {
      k = Packed;
    }
    // The single calls' task size (about 256 KB of weights), a multiple of 16 rows so FP8 row
    // groups stay inside their 128-row scale blocks.
    const size_t g = (split_m1_grain(*j.w) + 15) / 16 * 16;
    grain[static_cast<size_t>(i)] = static_cast<int>(g);
    most = std::max(most, static_cast<int>((static_cast<size_t>(j.w->rows) + g - 1) / g));
  }
  // Interleaved: the p-th piece of every job, then the (p+1)-th.
  for (int p = 0; p < most; ++p)
    for (int i = 0; i < n; ++i) {
      const int g = grain[static_cast<size_t>(i)], n0 = p * g, N = jobs[i].w->rows;
      if (n0 < N) pieces.push_back({i, n0, std::min(N, n0 + g)});
    }
  const Piece* pc = pieces.data();
  const Kind* kd = kinds.data();
  const std::vector<float>* ac = acts.data();
  const int* as = src.data();
  parallel_each(pieces.size(), [&](size_t i) {
    const Piece& q = pc[i];
    const OneTokenJob& j = jobs[q.job];
    const float* a = ac[as[q.job]].data();
    switch (kd[q.job]) {
      case Split: split_rows_m1(*j.w, a, j.y, q.n0, q.n1); break;
      case Fp4Fma:
      case Fp4Vnni: rows_m1_fp4(*j.w, a, kd[q.job] == Fp4Vnni, j.y, q.n0, q.n1); break;
      case Packed: linear_bf16_rows(*j.w, j.xp, 1, j.y, 0, q.n0, q.n1); break;
    }
  });
}


}  // namespace v4
