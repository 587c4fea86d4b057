#pragma once
// Internals of the BF16 dot-product kernels (linear_bf16.h), shared by their files:
//   linear_bf16.cpp           availability, activation order and packing entry points, dispatch
//   linear_bf16_decode.cpp    FP8 / FP4 weights decoded to BF16 rows (arithmetic and table decoders)
//   linear_bf16_pack.cpp      activations: FP8 quantisation, BF16 packing in kernel order, 3-part split
//   linear_bf16_batched.cpp   few tokens on the vdpbf16ps units (machines without AMX)
//   linear_bf16_one_token.cpp one token (decode, batch 1): weights decoded in registers
//   linear_bf16_amx.cpp       two tokens and more on the AMX tiles
// Not a public header: only the kernels part includes it.
// GCC 12 reports false "uninitialized" warnings inside its own AVX-512 intrinsic headers when
// they are used from target-attributed functions; the intrinsics are correct.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/linear_bf16.h"

#define V4_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma")))
#define V4_LUT __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx512vbmi,fma")))
#define V4_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx512vbmi,avx512vnni,fma")))
#define V4_AMX __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma,amx-tile,amx-bf16")))

namespace v4::bf16 {

// ---- weight decoders: 32 BF16 weights (one dot-product chunk) at a time, in kernel order.

// FP4: the 16 e2m1 values as BF16 bits, twice (one copy per 32-column group of a 64 block).
V4_BF16 inline __m512i fp4_base() {
  return _mm512_set_epi16(static_cast<short>(0xC0C0), static_cast<short>(0xC080), static_cast<short>(0xC040), static_cast<short>(0xC000),
                          static_cast<short>(0xBFC0), static_cast<short>(0xBF80), static_cast<short>(0xBF00), static_cast<short>(0x8000),
                          0x40C0, 0x4080, 0x4040, 0x4000, 0x3FC0, 0x3F80, 0x3F00, 0x0000,
                          static_cast<short>(0xC0C0), static_cast<short>(0xC080), static_cast<short>(0xC040), static_cast<short>(0xC000),
                          static_cast<short>(0xBFC0), static_cast<short>(0xBF80), static_cast<short>(0xBF00), static_cast<short>(0x8000),
                          0x40C0, 0x4080, 0x4040, 0x4000, 0x3FC0, 0x3F80, 0x3F00, 0x0000);
}

// The value table scaled by 2^(e0-127) (words 0-15) and 2^(e1-127) (words 16-31): adding to the
// exponent field is exact for the non-zero entries (the scale range is checked).
V4_BF16 inline __m512i fp4_table(__m512i base, uint8_t e0, uint8_t e1) {
  const __m512i sh = _mm512_mask_set1_epi16(_mm512_set1_epi16(static_cast<short>((e0 - 127) * 128)), 0xFFFF0000u,
                                            static_cast<short>((e1 - 127) * 128));
  return _mm512_mask_add_epi16(base, 0xFEFEFEFEu, base, sh);
}

// 64 FP4 weights (32 bytes, two scale groups) -> two chunks.
V4_BF16 inline void fp4_decode64(const uint8_t* p, __m512i tbl, __m512i& a, __m512i& b) {
  const __m512i hiflag = _mm512_maskz_set1_epi16(0xFFFF0000u, 0x10);
  const __m512i w = _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  const __m512i lo = _mm512_ternarylogic_epi32(w, _mm512_set1_epi16(0x0f), hiflag, 0xEA);  // (w & 0xf) | flag
  const __m512i hi = _mm512_or_si512(_mm512_srli_epi16(w, 4), hiflag);
  a = _mm512_permutexvar_epi16(lo, tbl);
  b = _mm512_permutexvar_epi16(hi, tbl);
}

// A lone trailing 32-column FP4 group (16 bytes) -> one chunk (table in words 0-15).
V4_BF16 inline __m512i fp4_decode32(const uint8_t* p, __m512i tbl) {
  const __m256i w = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  const __m256i lo = _mm256_and_si256(w, _mm256_set1_epi16(0x0f));
  const __m256i hi = _mm256_srli_epi16(w, 4);
  return _mm512_permutexvar_epi16(_mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1), tbl);
}

// FP8 e4m3 with a UE8M0 block scale 2^(es-127): for normal codes the BF16 bits are the code's
// exponent/mantissa bits shifted into place plus (es-7)<<7 on the exponent; zeros and
// subnormals (exponent bits 0) come from an 8-entry table m·2^-9·2^(es-127); the sign is OR-ed.
struct Fp8Block {
  __m512i add, sub;
};
V4_BF16 inline Fp8Block fp8_block(uint8_t es) {
  Fp8Block b;
  b.add = _mm512_set1_epi16(static_cast<short>((es - 7) * 128));
  const __m512 m = _mm512_set_ps(0, 0, 0, 0, 0, 0, 0, 0, 7, 6, 5, 4, 3, 2, 1, 0);
  const float s = e8m0_to_f32(es) * (1.0f / 512.0f);
  __m256bh h = _mm512_cvtneps_pbh(_mm512_mul_ps(m, _mm512_set1_ps(s)));
  b.sub = _mm512_castsi256_si512(reinterpret_cast<__m256i&>(h));
  return b;
}
V4_BF16 inline __m512i fp8_decode32(__m256i bytes, const Fp8Block& blk) {
  const __m512i sx = _mm512_cvtepi8_epi16(bytes);
  __m512i r = _mm512_add_epi16(_mm512_and_si512(_mm512_slli_epi16(sx, 4), _mm512_set1_epi16(static_cast<short>(0x87F0))), blk.add);
  const __mmask32 z = _mm512_testn_epi16_mask(sx, _mm512_set1_epi16(0x0078));
  r = _mm512_mask_permutexvar_epi16(r, z, sx, blk.sub);
  return _mm512_ternarylogic_epi32(r, sx, _mm512_set1_epi16(static_cast<short>(0x8000)), 0xF8);  // r | (sx & 0x8000)
}
V4_BF16 inline __m256i fp8_load32(const uint8_t* p, size_t k, size_t K) {
  if (k + 32 <= K) return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + k));
  return _mm256_maskz_loadu_epi8(static_cast<__mmask32>((1ull << (K - k)) - 1), p + k);
}

V4_BF16 inline __m512 dp(__m512 acc, __m512i w, __m512i x) {
  return _mm512_dpbf16_ps(acc, reinterpret_cast<__m512bh&>(w), reinterpret_cast<__m512bh&>(x));
}
V4_BF16 inline __m512i ldx(const uint16_t* p) { return _mm512_loadu_si512(p); }

// ---- table decoders (AVX-512 VBMI): a byte permute looks up each code's BF16 high and low
// bytes, one unpack pair interleaves them into words. Every code (zeros and FP8 subnormals
// included) has its exact scaled BF16 value in the table, so there is no fix-up pass.

// FP8: the 128 magnitudes (bit 7, the sign, is ignored by vpermi2b and OR-ed in after). With the
// block scale 2^(es-127) a non-zero code's BF16 exponent field is E = base(c) + es; with
// es = 2q + p the high byte is floor((base + p) / 2) + q and the low byte
// ((base + p) & 1) << 7 | mantissa: two tables per parity, q added per block.
struct Fp8LutTables {
  alignas(64) uint8_t hi[2][128];
  alignas(64) uint8_t lo[2][128];
};
inline const Fp8LutTables& fp8_lut_tables() {
  static const Fp8LutTables t = [] {
    Fp8LutTables r{};
    for (int c = 1; c < 128; ++c) {
      const int e = c >> 3, m = c & 7;
      int base, mant;
      if (e > 0) {
        base = e - 7;
        mant = m << 4;
      } else {  // subnormal m * 2^-9: normalised
        const int top = m >= 4 ? 2 : m >= 2 ? 1 : 0;
        base = top - 9;
        mant = (m << (7 - top)) & 0x7F;
      }
      for (int par = 0; par < 2; ++par) {
        const int E = base + par;
        const int half = E >= 0 ? E / 2 : -((1 - E) / 2);  // floor(E / 2)
        r.hi[par][c] = static_cast<uint8_t>(half & 0xFF);
        r.lo[par][c] = static_cast<uint8_t>(((E - 2 * half) << 7) | mant);
      }
    }
    return r;
  }();
  return t;
}

struct Fp8Tab {
  __m512i h0, h1, l0, l1;
};
V4_LUT inline Fp8Tab fp8_tab(uint8_t es) {
  const Fp8LutTables& t = fp8_lut_tables();
  const int par = es & 1;
  const __m512i q = _mm512_set1_epi8(static_cast<char>(es >> 1));
  Fp8Tab r;
  const __m512i h0 = _mm512_load_si512(t.hi[par]);
  r.h0 = _mm512_mask_add_epi8(h0, ~static_cast<__mmask64>(1), h0, q);  // code 0 stays 0
  r.h1 = _mm512_add_epi8(_mm512_load_si512(t.hi[par] + 64), q);
  r.l0 = _mm512_load_si512(t.lo[par]);
  r.l1 = _mm512_load_si512(t.lo[par] + 64);
  return r;
}
// 64 FP8 codes -> two chunks of 32 BF16 weights (kernel order, see bf16_kernel_k).
V4_LUT inline void fp8_lut64(__m512i b, const Fp8Tab& t, __m512i& wa, __m512i& wb) {
  __m512i hi = _mm512_permutex2var_epi8(t.h0, b, t.h1);
  const __m512i lo = _mm512_permutex2var_epi8(t.l0, b, t.l1);
  hi = _mm512_ternarylogic_epi32(hi, b, _mm512_set1_epi8(static_cast<char>(0x80)), 0xF8);  // hi | (b & 0x80)
  wa = _mm512_unpacklo_epi8(lo, hi);
  wb = _mm512_unpackhi_epi8(lo, hi);
}

// FP4: 128 weights (64 bytes) share one table pair per row: 16 entries per 128-bit lane, lane g
// scaled by the g-th 32-column group's 2^(e-127). The index is the nibble plus 16·lane.
struct Fp4LutConst {
  alignas(64) uint8_t ev[64];    // BF16 exponent field of the value minus 127 (0 for zeros)
  alignas(64) uint8_t sign[64];  // 0x80 for the negative codes
  alignas(64) uint8_t mant[64];  // the value's 7 mantissa bits
  alignas(64) uint8_t lane[64];  // 16 * (byte / 16)
  alignas(64) uint8_t spread[64];  // vpshufb: lane g takes byte g of each dword
  uint64_t nonzero = 0;            // entries whose magnitude is not zero
};
inline const Fp4LutConst& fp4_lut_const() {
  static const Fp4LutConst t = [] {
    Fp4LutConst r{};
    static const int ev[8] = {0, 126, 127, 127, 128, 128, 129, 129};
    static const int mant[8] = {0, 0, 0, 0x40, 0, 0x40, 0, 0x40};
    for (int i = 0; i < 64; ++i) {
      const int v = i & 15, mag = v & 7;
      r.ev[i] = mag ? static_cast<uint8_t>((ev[mag] - 127) & 0xFF) : 0;
      r.sign[i] = (v & 8) ? 0x80 : 0;
      r.mant[i] = static_cast<uint8_t>(mant[mag]);
      r.lane[i] = static_cast<uint8_t>(16 * (i / 16));
      r.spread[i] = static_cast<uint8_t>(i / 16);
      if (mag) r.nonzero |= uint64_t{1} << i;
    }
    return r;
  }();
  return t;
}
struct Fp4Tab {
  __m512i hi, lo;
};
// Scales s[0..3] (the four groups of a 128-column block).
V4_LUT inline Fp4Tab fp4_tab(const uint8_t* s, const Fp4LutConst& k) {
  uint32_t s4;
  std::memcpy(&s4, s, 4);
  const __m512i e = _mm512_shuffle_epi8(_mm512_set1_epi32(static_cast<int>(s4)), _mm512_load_si512(k.spread));
  const __m512i sum = _mm512_maskz_add_epi8(k.nonzero, _mm512_load_si512(k.ev), e);  // E (1..254), 0 for zeros
  Fp4Tab t;
  t.hi = _mm512_ternarylogic_epi32(_mm512_srli_epi16(sum, 1), _mm512_set1_epi8(0x7F), _mm512_load_si512(k.sign), 0xEA);
  t.lo = _mm512_ternarylogic_epi32(_mm512_slli_epi16(sum, 7), _mm512_set1_epi8(static_cast<char>(0x80)), _mm512_load_si512(k.mant), 0xEA);
  return t;
}
// 64 bytes -> four chunks of 32 BF16 weights (kernel order).
V4_LUT inline void fp4_lut128(__m512i x, const Fp4Tab& t, __m512i lane, __m512i w[4]) {
  const __m512i nib = _mm512_set1_epi8(0x0F);
  const __m512i il = _mm512_ternarylogic_epi32(x, nib, lane, 0xEA);                         // (x & 0xF) | lane
  const __m512i ih = _mm512_ternarylogic_epi32(_mm512_srli_epi16(x, 4), nib, lane, 0xEA);  // (x >> 4 & 0xF) | lane
  const __m512i hl = _mm512_permutexvar_epi8(il, t.hi), ll = _mm512_permutexvar_epi8(il, t.lo);
  const __m512i hh = _mm512_permutexvar_epi8(ih, t.hi), lh = _mm512_permutexvar_epi8(ih, t.lo);
  w[0] = _mm512_unpacklo_epi8(ll, hl);
  w[1] = _mm512_unpackhi_epi8(ll, hl);
  w[2] = _mm512_unpacklo_epi8(lh, hh);
  w[3] = _mm512_unpackhi_epi8(lh, hh);
}
// The same four chunks stored to out[0 .. 128) as they are made (through the array above, the
// row decoders' loops stored each chunk to the stack and copied it).
V4_LUT inline void fp4_lut128_store(__m512i x, const Fp4Tab& t, __m512i lane, uint16_t* out) {
  const __m512i nib = _mm512_set1_epi8(0x0F);
  const __m512i il = _mm512_ternarylogic_epi32(x, nib, lane, 0xEA);
  const __m512i ih = _mm512_ternarylogic_epi32(_mm512_srli_epi16(x, 4), nib, lane, 0xEA);
  const __m512i hl = _mm512_permutexvar_epi8(il, t.hi), ll = _mm512_permutexvar_epi8(il, t.lo);
  const __m512i hh = _mm512_permutexvar_epi8(ih, t.hi), lh = _mm512_permutexvar_epi8(ih, t.lo);
  _mm512_storeu_si512(out, _mm512_unpacklo_epi8(ll, hl));
  _mm512_storeu_si512(out + 32, _mm512_unpackhi_epi8(ll, hl));
  _mm512_storeu_si512(out + 64, _mm512_unpacklo_epi8(lh, hh));
  _mm512_storeu_si512(out + 96, _mm512_unpackhi_epi8(lh, hh));
}

// ---- row decoders (linear_bf16_decode.cpp)

// Decodes kernel positions [c0, c1) of row n into out[0 .. c1-c0). c0 is a multiple of 128 (of
// 64 for FP4, 32 for BF16) and c1 is either such a multiple or the padded row length.
void decode_range(const LinearWeight& w, int n, int c0, int c1, uint16_t* out);
// Table-decoder version of decode_range (same contract; c0 a multiple of 128).
void decode_range_lut(const LinearWeight& w, int n, int c0, int c1, uint16_t* out);
// Rows nb+r0 .. nb+r1-1 (clamped to nmax-1) over kernel positions [c0, c1) into out + r·ld.
void decode_rows(const LinearWeight& w, int nb, int r0, int r1, int nmax, int c0, int c1, uint16_t* out, int ld);
// The whole padded row n.
void decode_row_impl(const LinearWeight& w, int n, uint16_t* out);

// ---- activations (linear_bf16_pack.cpp)

// Packs one row of float values (padded to Kp, exact in BF16) into kernel order.
void pack_row(WFormat f, const float* q, int K, int Kp, uint16_t* out);
// FP8-quantises rows m0..m1-1 of x (act_quant_fp8's values) and packs them.
void quant_pack_rows(const LinearWeight& w, const float* x, int ldx, int m0, int m1, uint16_t* out);
// x = h1 + h2 + h3 exactly in BF16 parts (parts = 1: h1 = bf16(x) only), each part packed.
void split_rows(WFormat f, const float* x, int M, int ldx, int K, int Kp, int parts, uint16_t* out);

// ---- few tokens on the vdpbf16ps units (linear_bf16_batched.cpp)

// Rows of a task of the register-tile path: decoded RB at a time into a buffer.
constexpr int RB = 16;
void rows_batched(const LinearWeight& w, const uint16_t* xp, int M, float* y, int ldy, int n0, int n1);

// ---- one token (linear_bf16_one_token.cpp)

// Packed activations, vdpbf16ps path (the arithmetic and the table decoders).
void rows_m1(const LinearWeight& w, const uint16_t* xp, float* y, int n0, int n1);
void rows_m1_lut(const LinearWeight& w, const uint16_t* xp, float* y, int n0, int n1);
// FP4 on the FMA units where AMX runs the batches (V4HOST_NO_FP4_FMA=1 turns it off), with its
// FP32 activation layout built from packed activations.
bool fp4_fma_enabled();
void fp4_fma_act(const LinearWeight& w, const uint16_t* xp, std::vector<float>& xf);
void rows_m1_fp4_fma(const LinearWeight& w, const float* xf, float* y, int n0, int n1);
// FP4 on the integer dot-product units (AVX-512 VNNI; V4HOST_NO_FP4_VNNI=1 or
// set_fp4_vnni_disabled turn it off) where the FMA path runs: its layout (false where the
// activations do not qualify) and rows.
bool fp4_vnni_enabled();
bool fp4_vnni_act(const LinearWeight& w, const uint16_t* xp, std::vector<float>& xa);
void rows_m1_fp4_vnni(const LinearWeight& w, const float* xa, float* y, int n0, int n1);
// The one-token FP4 layout of either path (true: the VNNI one), and the rows on that path.
bool fp4_one_token_act(const LinearWeight& w, const uint16_t* xp, std::vector<float>& xa);
void rows_m1_fp4(const LinearWeight& w, const float* xa, bool vnni, float* y, int n0, int n1);
// FP32 activations (the split path at one token, where AMX runs the batches): layout, rows, and
// the task size (about 256 KB of weights).
void split_m1_act(const LinearWeight& w, const float* x, int parts, std::vector<float>& xf);
void split_rows_m1(const LinearWeight& w, const float* xf, float* y, int n0, int n1);
size_t split_m1_grain(const LinearWeight& w);

// ---- AMX tiles (linear_bf16_amx.cpp)

// Packed activation rows -> the VNNI layout of the B tiles.
// Returns the packed activations' start in `out`, 64-byte aligned (a B-tile row is one cache line).
const uint32_t* pack_vnni(const uint16_t* xp, int M, int Kp, std::vector<uint32_t>& out);
// Rows [n0, n1) of M tokens on the tiles (the few-token or the many-token path).
void rows_amx(const LinearWeight& w, const uint32_t* xv, int M, float* y, int ldy, int n0, int n1);

}  // namespace v4::bf16
