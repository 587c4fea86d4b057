#include "kernels/linear_bf16.h"

// GCC 12 reports false "uninitialized" warnings inside its own AVX-512 intrinsic headers when
// they are used from target-attributed functions; the intrinsics are correct.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <tuple>
#include <utility>
#include <vector>

#include "core/cpu.h"
#include "core/thread_pool.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <cstdlib>

#define V4_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma")))
#define V4_LUT __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx512vbmi,fma")))
#define V4_AMX __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma,amx-tile,amx-bf16")))

namespace v4 {

bool bf16_dot_available() { return use_avx512() && cpu_features().avx512bf16; }

namespace {
std::atomic<bool> g_no_amx{false};
std::atomic<int> g_amx_min{kAmxMinTokens};
bool amx_disabled_for_tests() { return g_no_amx.load(); }
}  // namespace

void set_amx_disabled(bool off) { g_no_amx = off; }

namespace {
// Asked per row by the decoders: one relaxed load.
bool lut_hardware() {
  static const bool hw = [] {
    const char* off = std::getenv("V4HOST_NO_LUT");
    return cpu_features().avx512vbmi && bf16_dot_available() && !(off && *off && *off != '0');
  }();
  return hw;
}
std::atomic<bool> g_lut{lut_hardware()};
}  // namespace

bool bf16_lut_available() { return g_lut.load(std::memory_order_relaxed); }
void set_bf16_lut_disabled(bool off) { g_lut = !off && lut_hardware(); }

namespace {

// Scale ranges in which every scaled weight is a normal BF16 number (vdpbf16ps treats BF16
// denormals as zero): FP4 values 0.5..6 times 2^(e-127); FP8 e4m3 normals 2^-6..448 and
// subnormals down to 2^-9 times 2^(e-127).
bool scale_in_range(WFormat f, uint8_t e) { return f == WFormat::FP4 ? (e >= 2 && e <= 252) : (e >= 10 && e <= 246); }

}  // namespace

bool bf16_weight_ok(const LinearWeight& w) {
  if (w.format == WFormat::BF16) return w.data != nullptr;
  if ((w.format != WFormat::FP8 && w.format != WFormat::FP4) || w.scale_format != ScaleFormat::E8M0 || !w.scale)
    return false;
  if (w.format == WFormat::FP4 && w.cols % 32) return false;
  const size_t n = w.format == WFormat::FP8 ? ((static_cast<size_t>(w.rows) + 127) / 128) * ((static_cast<size_t>(w.cols) + 127) / 128)
                                            : static_cast<size_t>(w.rows) * static_cast<size_t>(w.cols / 32);
  const uint8_t* s = static_cast<const uint8_t*>(w.scale);
  for (size_t i = 0; i < n; ++i)
    if (!scale_in_range(w.format, s[i])) return false;
  return true;
}

int bf16_padded_k(const LinearWeight& w) { return w.format == WFormat::FP4 ? w.cols : (w.cols + 31) / 32 * 32; }

int bf16_kernel_k(const LinearWeight& w, int p) {
  if ((w.format == WFormat::FP8 || w.format == WFormat::FP4) && bf16_lut_available()) {
    // Table decoders: a 64-byte load gives 64 (FP8) or 128 (FP4) weights whose BF16 halves are
    // interleaved by unpacklo/unpackhi within 128-bit lanes: chunk c, word i holds byte
    // 16*(i/8) + 8*(c%2) + i%8 of the block (FP4: its low nibble for c < 2, high for c >= 2).
    if (w.format == WFormat::FP8) {
      const int K64 = w.cols / 64 * 64;
      if (p >= K64) return p;
      const int b = p / 64 * 64, j = p - b, c = j / 32, i = j % 32;
      return b + 16 * (i / 8) + 8 * c + i % 8;
    }
    const int K128 = w.cols / 128 * 128;
    if (p < K128) {
      const int b = p / 128 * 128, j = p - b, c = j / 32, i = j % 32;
      return b + 2 * (16 * (i / 8) + 8 * (c % 2) + i % 8) + c / 2;
    }
  }
  if (w.format != WFormat::FP4) return p;
  // FP4: 64-column blocks decode as [low nibbles of the 32 bytes, high nibbles]; a trailing
  // 32-column group as [low nibbles of its 16 bytes, high nibbles].
  const int K64 = w.cols / 64 * 64;
  if (p < K64) {
    const int b = p / 64 * 64, j = p - b, hi = j / 32, wj = j % 32;
    return wj < 16 ? b + 2 * wj + hi : b + 32 + 2 * (wj - 16) + hi;
  }
  const int wj = p - K64;
  return wj < 16 ? K64 + 2 * wj : K64 + 2 * (wj - 16) + 1;
}

void bf16_pack_act(const LinearWeight& w, const float* x, int M, int ldx, uint16_t* out) {
  const int Kp = bf16_padded_k(w), K = w.cols;
  thread_local std::vector<int> perm;
  thread_local int perm_k = -1;
  thread_local WFormat perm_f = WFormat::F32;
  thread_local bool perm_lut = false;
  const bool lut = bf16_lut_available();
  if (perm_k != K || perm_f != w.format || perm_lut != lut) {
    perm_lut = lut;
    perm.resize(static_cast<size_t>(Kp));
    for (int p = 0; p < Kp; ++p) perm[static_cast<size_t>(p)] = bf16_kernel_k(w, p);
    perm_k = K;
    perm_f = w.format;
  }
  for (int m = 0; m < M; ++m) {
    const float* xm = x + static_cast<size_t>(m) * ldx;
    uint16_t* o = out + static_cast<size_t>(m) * Kp;
    for (int p = 0; p < Kp; ++p) {
      const int k = perm[static_cast<size_t>(p)];
      o[p] = k < K ? f32_to_bf16(xm[k]) : 0;
    }
  }
}

namespace {

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
const Fp8LutTables& fp8_lut_tables() {
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
const Fp4LutConst& fp4_lut_const() {
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

// Table-decoder version of decode_range (same contract; c0 a multiple of 128).
V4_LUT void decode_range_lut(const LinearWeight& w, int n, int c0, int c1, uint16_t* out) {
  const size_t K = static_cast<size_t>(w.cols);
  const uint8_t* sp = static_cast<const uint8_t*>(w.scale);
  if (w.format == WFormat::FP4) {
    const uint8_t* p = static_cast<const uint8_t*>(w.data) + static_cast<size_t>(n) * (K / 2);
    const uint8_t* s = sp + static_cast<size_t>(n) * (K / 32);
    const Fp4LutConst& kc = fp4_lut_const();
    const __m512i lane = _mm512_load_si512(kc.lane);
    const int K128 = static_cast<int>(K / 128 * 128), e = std::min(c1, K128);
    for (int k = c0; k < e; k += 128) {
      __m512i wv[4];
      fp4_lut128(_mm512_loadu_si512(p + k / 2), fp4_tab(s + k / 32, kc), lane, wv);
      for (int j = 0; j < 4; ++j) _mm512_storeu_si512(out + (k - c0) + 32 * j, wv[j]);
    }
    const __m512i base = fp4_base();
    const int K64 = static_cast<int>(K / 64 * 64);
    for (int k = std::max(c0, K128); k < std::min(c1, K64); k += 64) {
      __m512i a, b;
      fp4_decode64(p + k / 2, fp4_table(base, s[k / 32], s[k / 32 + 1]), a, b);
      _mm512_storeu_si512(out + (k - c0), a);
      _mm512_storeu_si512(out + (k - c0) + 32, b);
    }
    if (K64 < static_cast<int>(K) && c0 <= K64 && K64 < c1)
      _mm512_storeu_si512(out + (K64 - c0), fp4_decode32(p + K64 / 2, fp4_table(base, s[K64 / 32], s[K64 / 32])));
    return;
  }
  const uint8_t* p = static_cast<const uint8_t*>(w.data) + static_cast<size_t>(n) * K;
  const size_t kb = (K + 127) / 128;
  const uint8_t* s = sp + static_cast<size_t>(n / 128) * kb;
  const int K64 = static_cast<int>(K / 64 * 64), e = std::min(c1, K64);
  Fp8Tab t{};
  for (int k = c0; k < e; k += 64) {
    if (k == c0 || k % 128 == 0) t = fp8_tab(s[k / 128]);
    __m512i a, b;
    fp8_lut64(_mm512_loadu_si512(p + k), t, a, b);
    _mm512_storeu_si512(out + (k - c0), a);
    _mm512_storeu_si512(out + (k - c0) + 32, b);
  }
  for (int k = std::max(c0, K64); k < c1; k += 32)
    _mm512_storeu_si512(out + (k - c0), fp8_decode32(fp8_load32(p, static_cast<size_t>(k), K), fp8_block(s[k / 128])));
}

// Rows nb+r0 .. nb+r1-1 (clamped to nmax-1) over kernel positions [c0, c1) into
// out + r·ld: one call per tile block with the tables built once per 128 columns (FP8: shared by
// the rows of one 128-row scale block) instead of one decode_range call per row.
V4_LUT void decode_rows_lut(const LinearWeight& w, int nb, int r0, int r1, int nmax, int c0, int c1, uint16_t* out, int ld) {
  const size_t K = static_cast<size_t>(w.cols);
  const uint8_t* sp = static_cast<const uint8_t*>(w.scale);
  const uint8_t* data = static_cast<const uint8_t*>(w.data);
  if (w.format == WFormat::FP4) {
    const int K128 = static_cast<int>(K / 128 * 128), e = std::min(c1, K128);
    const Fp4LutConst& kc = fp4_lut_const();
    const __m512i lane = _mm512_load_si512(kc.lane);
    for (int k = c0; k < e; k += 128)
      for (int r = r0; r < r1; ++r) {
        const size_t n = static_cast<size_t>(std::min(nb + r, nmax - 1));
        __m512i wv[4];
        fp4_lut128(_mm512_loadu_si512(data + n * (K / 2) + k / 2), fp4_tab(sp + n * (K / 32) + k / 32, kc), lane, wv);
        uint16_t* o = out + static_cast<size_t>(r) * ld + (k - c0);
        for (int j = 0; j < 4; ++j) _mm512_storeu_si512(o + 32 * j, wv[j]);
      }
    if (e < c1)
      for (int r = r0; r < r1; ++r)
        decode_range_lut(w, std::min(nb + r, nmax - 1), std::max(c0, K128), c1, out + static_cast<size_t>(r) * ld + (std::max(c0, K128) - c0));
    return;
  }
  const size_t kb = (K + 127) / 128;
  const int K64 = static_cast<int>(K / 64 * 64), e = std::min(c1, K64);
  // The tables of up to 8 column blocks, rebuilt when a row enters another 128-row block.
  constexpr int kMaxBlocks = 8;
  Fp8Tab tabs[kMaxBlocks];
  int tab_block = -1;
  for (int r = r0; r < r1; ++r) {
    const int n = std::min(nb + r, nmax - 1);
    const uint8_t* p = data + static_cast<size_t>(n) * K;
    uint16_t* o = out + static_cast<size_t>(r) * ld;
    for (int k0 = c0; k0 < e; k0 += 128 * kMaxBlocks) {
      const int k1 = std::min(e, k0 + 128 * kMaxBlocks);
      if (n / 128 != tab_block || c0 + 128 * kMaxBlocks < e) {
        tab_block = n / 128;
        for (int k = k0, i = 0; k < k1; k += 128, ++i) tabs[i] = fp8_tab(sp[static_cast<size_t>(tab_block) * kb + static_cast<size_t>(k / 128)]);
      }
      for (int k = k0; k < k1; k += 64) {
        __m512i a, b;
        fp8_lut64(_mm512_loadu_si512(p + k), tabs[(k - k0) / 128], a, b);
        _mm512_storeu_si512(o + (k - c0), a);
        _mm512_storeu_si512(o + (k - c0) + 32, b);
      }
    }
  }
  if (e < c1)
    for (int r = r0; r < r1; ++r)
      decode_range_lut(w, std::min(nb + r, nmax - 1), std::max(c0, K64), c1, out + static_cast<size_t>(r) * ld + (std::max(c0, K64) - c0));
}

// Decodes kernel positions [c0, c1) of row n into out[0 .. c1-c0). c0 is a multiple of 128 (of
// 64 for FP4, 32 for BF16) and c1 is either such a multiple or the padded row length.
V4_BF16 void decode_range(const LinearWeight& w, int n, int c0, int c1, uint16_t* out) {
  const size_t K = static_cast<size_t>(w.cols);
  if (w.format != WFormat::BF16 && bf16_lut_available()) {
    decode_range_lut(w, n, c0, c1, out);
    return;
  }
  if (w.format == WFormat::BF16) {
    const uint16_t* p = static_cast<const uint16_t*>(w.data) + static_cast<size_t>(n) * K;
    const int e = std::min<int>(c1, static_cast<int>(K));
    if (e > c0) std::memcpy(out, p + c0, static_cast<size_t>(e - c0) * 2);
    for (int k = std::max(e, c0); k < c1; ++k) out[k - c0] = 0;
    return;
  }
  const uint8_t* sp = static_cast<const uint8_t*>(w.scale);
  if (w.format == WFormat::FP4) {
    const uint8_t* p = static_cast<const uint8_t*>(w.data) + static_cast<size_t>(n) * (K / 2);
    const uint8_t* s = sp + static_cast<size_t>(n) * (K / 32);
    const __m512i base = fp4_base();
    const int K64 = static_cast<int>(K / 64 * 64);
    const int e = std::min(c1, K64);
    for (int k = c0; k < e; k += 64) {
      __m512i a, b;
      fp4_decode64(p + k / 2, fp4_table(base, s[k / 32], s[k / 32 + 1]), a, b);
      _mm512_storeu_si512(out + (k - c0), a);
      _mm512_storeu_si512(out + (k - c0) + 32, b);
    }
    if (K64 < static_cast<int>(K) && c0 <= K64 && K64 < c1)
      _mm512_storeu_si512(out + (K64 - c0), fp4_decode32(p + K64 / 2, fp4_table(base, s[K64 / 32], s[K64 / 32])));
    return;
  }
  const uint8_t* p = static_cast<const uint8_t*>(w.data) + static_cast<size_t>(n) * K;
  const size_t kb = (K + 127) / 128;
  const uint8_t* s = sp + static_cast<size_t>(n / 128) * kb;
  for (int k0 = c0; k0 < c1; k0 += 128) {
    const Fp8Block blk = fp8_block(s[k0 / 128]);
    const int k1 = std::min(c1, k0 + 128);
    for (int k = k0; k < k1; k += 32) _mm512_storeu_si512(out + (k - c0), fp8_decode32(fp8_load32(p, static_cast<size_t>(k), K), blk));
  }
}

V4_BF16 void decode_rows(const LinearWeight& w, int nb, int r0, int r1, int nmax, int c0, int c1, uint16_t* out, int ld) {
  if (w.format != WFormat::BF16 && bf16_lut_available()) {
    decode_rows_lut(w, nb, r0, r1, nmax, c0, c1, out, ld);
    return;
  }
  for (int r = r0; r < r1; ++r) decode_range(w, std::min(nb + r, nmax - 1), c0, c1, out + static_cast<size_t>(r) * ld);
}

V4_BF16 void decode_row_impl(const LinearWeight& w, int n, uint16_t* out) { decode_range(w, n, 0, bf16_padded_k(w), out); }

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

V4_LUT void rows_m1_lut(const LinearWeight& w, const uint16_t* xp, float* y, int n0, int n1) {
  const ptrdiff_t row_bytes = w.format == WFormat::FP4 ? w.cols / 2 : w.cols;
  int n = n0;
  for (; n + 4 <= n1; n += 4) {
    // Two row groups ahead, into L2: prefetches to L1 hold the core's few L1 fill buffers for a
    // whole memory latency and capped what one core streamed (FP8 9.6-18 -> 12-20 GB/s of 1 GB
    // of weights on 2 threads, 3 of 3 interleaved repetitions; FP4 2 of 3).
    const ptrdiff_t ahead = n + 12 <= n1 ? 8 * row_bytes : 0;
    if (w.format == WFormat::FP4) fp4_rows_m1_lut<4>(w, xp, y, n, ahead);
    else if ((n & 127) <= 124) fp8_rows_m1_lut<4>(w, xp, y, n, ahead);
    else
      for (int r = 0; r < 4; ++r) fp8_rows_m1_lut<1>(w, xp, y, n + r, 0);  // straddles two scale blocks
  }
  for (; n < n1; ++n) {
    if (w.format == WFormat::FP4) fp4_rows_m1_lut<1>(w, xp, y, n, 0);
    else fp8_rows_m1_lut<1>(w, xp, y, n, 0);
  }
}

V4_BF16 void rows_m1(const LinearWeight& w, const uint16_t* xp, float* y, int n0, int n1) {
  const ptrdiff_t row_bytes = w.format == WFormat::FP4 ? w.cols / 2 : w.cols;
  int n = n0;
  for (; n + 4 <= n1; n += 4) {
    const ptrdiff_t ahead = n + 8 <= n1 ? 4 * row_bytes : 0;
    if (w.format == WFormat::FP4) fp4_rows_m1<4>(w, xp, y, n, ahead);
    else if ((n & 127) <= 124) fp8_rows_m1<4>(w, xp, y, n, ahead);
    else
      for (int r = 0; r < 4; ++r) fp8_rows_m1<1>(w, xp, y, n + r, 0);  // straddles two scale blocks
  }
  for (; n < n1; ++n) {
    if (w.format == WFormat::FP4) fp4_rows_m1<1>(w, xp, y, n, 0);
    else fp8_rows_m1<1>(w, xp, y, n, 0);
  }
}

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

V4_BF16 void rows_m1_fp4_fma(const LinearWeight& w, const float* xf, float* y, int n0, int n1) {
  const ptrdiff_t row_bytes = w.cols / 2;
  int n = n0;
  for (; n + 4 <= n1; n += 4) fp4_rows_m1_fma<4>(w, xf, y, n, n + 12 <= n1 ? 8 * row_bytes : 0);
  for (; n < n1; ++n) fp4_rows_m1_fma<1>(w, xf, y, n, 0);
}

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
  static const bool on = [] {
    const char* off = std::getenv("V4HOST_NO_FP4_FMA");
    return !(off && *off && *off != '0');
  }();
  return on && amx_available();
}

// ---- batched (M > 1): RB rows decoded once into a buffer, then MT tokens x 4 rows register
// tiles over k blocks of KB columns (the x tile and the weight block stay in L1); accumulators
// are carried between k blocks in memory, so each (token, row) sees exactly the decode path's
// sequence of dot-product steps.
constexpr int RB = 16, KB = 512, MT = 6;

template <int T>
V4_BF16 void tile(const uint16_t* const* wr, const uint16_t* xp, size_t Kp, int c0, int c1, float* acc, bool first) {
  __m512 a[T][4];
  for (int t = 0; t < T; ++t)
    for (int r = 0; r < 4; ++r) a[t][r] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(acc + (t * 4 + r) * 16);
  for (int c = c0; c < c1; c += 32) {
    const __m512i w0 = ldx(wr[0] + c), w1 = ldx(wr[1] + c), w2 = ldx(wr[2] + c), w3 = ldx(wr[3] + c);
    for (int t = 0; t < T; ++t) {
      const __m512i xv = ldx(xp + static_cast<size_t>(t) * Kp + c);
      a[t][0] = dp(a[t][0], w0, xv);
      a[t][1] = dp(a[t][1], w1, xv);
      a[t][2] = dp(a[t][2], w2, xv);
      a[t][3] = dp(a[t][3], w3, xv);
    }
  }
  for (int t = 0; t < T; ++t)
    for (int r = 0; r < 4; ++r) _mm512_storeu_ps(acc + (t * 4 + r) * 16, a[t][r]);
}

V4_BF16 void rows_batched(const LinearWeight& w, const uint16_t* xp, int M, float* y, int ldy, int n0, int n1) {
  const size_t Kp = static_cast<size_t>(bf16_padded_k(w));
  thread_local std::vector<uint16_t> wbuf;
  thread_local std::vector<float> accbuf;
  wbuf.resize(RB * Kp);
  accbuf.resize(static_cast<size_t>(M + MT) * 4 * 16 * (RB / 4));
  for (int nb = n0; nb < n1; nb += RB) {
    const int nr = std::min(RB, n1 - nb);
    for (int r = 0; r < nr; ++r) decode_row_impl(w, nb + r, wbuf.data() + static_cast<size_t>(r) * Kp);
    const int groups = (nr + 3) / 4;
    for (int c0 = 0; c0 < static_cast<int>(Kp); c0 += KB) {
      const int c1 = std::min(static_cast<int>(Kp), c0 + KB);
      for (int m0 = 0; m0 < M; m0 += MT) {
        const int mt = std::min(MT, M - m0);
        const uint16_t* xm = xp + static_cast<size_t>(m0) * Kp;
        for (int g = 0; g < groups; ++g) {
          const uint16_t* wr[4];
          for (int r = 0; r < 4; ++r) wr[r] = wbuf.data() + static_cast<size_t>(std::min(g * 4 + r, nr - 1)) * Kp;
          float* acc = accbuf.data() + (static_cast<size_t>(g) * (M + MT) + static_cast<size_t>(m0)) * 4 * 16;
          switch (mt) {
            case 6: tile<6>(wr, xm, Kp, c0, c1, acc, c0 == 0); break;
            case 5: tile<5>(wr, xm, Kp, c0, c1, acc, c0 == 0); break;
            case 4: tile<4>(wr, xm, Kp, c0, c1, acc, c0 == 0); break;
            case 3: tile<3>(wr, xm, Kp, c0, c1, acc, c0 == 0); break;
            case 2: tile<2>(wr, xm, Kp, c0, c1, acc, c0 == 0); break;
            default: tile<1>(wr, xm, Kp, c0, c1, acc, c0 == 0); break;
          }
        }
      }
    }
    for (int g = 0; g < groups; ++g)
      for (int m = 0; m < M; ++m)
        for (int r = 0; r < 4 && g * 4 + r < nr; ++r)
          y[static_cast<size_t>(m) * ldy + nb + g * 4 + r] =
              _mm512_reduce_add_ps(_mm512_loadu_ps(accbuf.data() + ((static_cast<size_t>(g) * (M + MT) + m) * 4 + r) * 16));
  }
}

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

// ---- AMX (tile) path for calls of at least amx_min_tokens() tokens.
struct TileConfig {
  uint8_t palette = 1, start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// X rows (M x Kp, kernel order) -> the VNNI layout of the B tiles: pairs (x[m][2i], x[m][2i+1])
// as 32-bit words, [token block][Kp/32][16 k-pairs][width tokens]. Up to 16 tokens form one
// block exactly M wide (a decode step reads no padding); more tokens go in blocks of 16,
// zero-padded.
int vnni_width(int M) { return M <= 16 ? M : 16; }
// (Only on the AMX path, so AVX-512 is there: a full block of 16 tokens is gathered 16 words at
// a time, written in order; token blocks across the pool.)
V4_BF16 void pack_vnni_block(const uint32_t* src, int M, int Kp, int tb, uint32_t* dst) {
  const int W = vnni_width(M), KC = Kp / 32, half = Kp / 2;
  const int mn = std::min(W, M - tb * 16);
  const uint32_t* s0 = src + static_cast<size_t>(tb) * 16 * half;
  uint32_t* d0 = dst + static_cast<size_t>(tb) * KC * 16 * W;
  if (mn == 16) {
    const __m512i idx = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                           _mm512_set1_epi32(half));
    for (int kc = 0; kc < KC; ++kc)
      for (int r = 0; r < 16; ++r)
        _mm512_storeu_si512(d0 + (kc * 16 + r) * 16, _mm512_i32gather_epi32(idx, s0 + kc * 16 + r, 4));
    return;
  }
  for (int kc = 0; kc < KC; ++kc)
    for (int r = 0; r < 16; ++r) {
      uint32_t* d = d0 + (kc * 16 + r) * W;
      for (int tm = 0; tm < mn; ++tm) d[tm] = s0[static_cast<size_t>(tm) * half + kc * 16 + r];
      for (int tm = mn; tm < W; ++tm) d[tm] = 0;
    }
}
void pack_vnni(const uint16_t* xp, int M, int Kp, std::vector<uint32_t>& out) {
  const int W = vnni_width(M), TB = (M + 15) / 16, KC = Kp / 32;
  out.resize(static_cast<size_t>(TB) * KC * 16 * W);
  const uint32_t* src = reinterpret_cast<const uint32_t*>(xp);
  uint32_t* dst = out.data();
  if (TB == 1) pack_vnni_block(src, M, Kp, 0, dst);
  else
    parallel_for(static_cast<size_t>(TB), 1, [&](size_t b, size_t e) {
      for (size_t tb = b; tb < e; ++tb) pack_vnni_block(src, M, Kp, static_cast<int>(tb), dst);
    });
}

// C^T[n, m] = W · X^T on the tiles, 32 output rows at a time: the rows are decoded to BF16 in
// k blocks (an L1-resident buffer the A tiles load from), the B tiles come from the
// VNNI-packed activations. Every output sums its 32-wide tile products in k order from
// zero (accumulators kept in tiles, or stored and reloaded exactly between k blocks), so a
// (token, row) gets the same bits whatever the number of tokens in the call, tile width
// included (each element of a tile product depends only on its own row and column).

V4_AMX inline void amx_config(int W) {
  TileConfig cfg;
  for (int t = 0; t < 8; ++t) cfg.rows[t] = 16;
  for (int t : {0, 1, 2, 3, 6, 7}) cfg.colsb[t] = static_cast<uint16_t>(4 * W);
  cfg.colsb[4] = cfg.colsb[5] = 64;
  _tile_loadconfig(&cfg);
}

V4_AMX inline void amx_zero4() {
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
}

// The 4 accumulator tiles to c[0, 1024) (tile t at c + 256·t, 16 rows of 16 floats).
V4_AMX inline void amx_store4(float* c) {
  _tile_stored(0, c, 64);
  _tile_stored(1, c + 256, 64);
  _tile_stored(2, c + 512, 64);
  _tile_stored(3, c + 768, 64);
}

// One 32-column k chunk of the few-token paths: weight rows 0-15 and 16-31 of `a` (`ld`
// elements apart, BF16) times the chunk's activation tile `xk` of token block 0 and, with
// TB = 2, the one `blk` further of token block 1, into accumulators 2·(row half) + token block.
V4_AMX inline void amx_step32(const uint16_t* a, int ld, const uint32_t* xk, size_t blk, int W, int TB) {
  _tile_loadd(4, a, ld * 2);
  _tile_loadd(5, a + 16 * ld, ld * 2);
  _tile_loadd(6, xk, 4 * W);
  _tile_dpbf16ps(0, 4, 6);
  _tile_dpbf16ps(2, 5, 6);
  if (TB == 2) {
    _tile_loadd(7, xk + blk, 4 * W);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(3, 5, 7);
  }
}

// Scatter of the 4 accumulator tiles (t = 2·(row half) + token block; [row][token], 16x16
// floats apart) of rows nb.. (nr valid) and token blocks tb0, tb0+1 (nblk of them).
inline void amx_scatter(const float* c, int nb, int nr, int tb0, int nblk, int M, float* y, int ldy) {
  // Token by token: each a run of consecutive rows of y.
  for (int tk = 0; tk < nblk; ++tk)
    for (int j = 0; j < 16; ++j) {
      const int m = (tb0 + tk) * 16 + j;
      if (m >= M) break;
      float* ym = y + static_cast<size_t>(m) * ldy + nb;
      for (int r = 0; r < nr; ++r) ym[r] = c[(2 * (r / 16) + tk) * 256 + (r % 16) * 16 + j];
    }
}

// Up to 32 tokens (decode steps, small experts): the weight decode is the cost, the tile
// products are cheap but long-latency. 32 rows are decoded in k blocks of kAmxKB columns into
// one of two L1-resident buffers (rows a cache line apart from a power-of-two stride) while the
// tile products run over the other: the decode of the next block is interleaved with the
// products of the current one, so the two overlap instead of alternating. 256 columns: the two
// buffers (37 KB) stay in a 48 KB L1 (at 512 they were 69 KB and the decoder's stores spilled
// to L2; with the table decoders the stores are most of the decode).
constexpr int kAmxKB = 256;
V4_AMX void rows_amx_few(const LinearWeight& w, const uint32_t* xv, int M, float* y, int ldy, int n0, int n1) {
  const int Kp = bf16_padded_k(w), KC = Kp / 32, TB = (M + 15) / 16, W = vnni_width(M);
  amx_config(W);
  constexpr int LDB = kAmxKB + 32;
  alignas(64) uint16_t wbuf[2][32 * LDB];
  alignas(64) float cbuf[4 * 256];
  const size_t blk = static_cast<size_t>(KC) * 16 * W;
  const int NB = (Kp + kAmxKB - 1) / kAmxKB, NR = (n1 - n0 + 31) / 32, S = NB * NR;
  auto decode_part = [&](int s, int r0, int r1) {
    const int nb = n0 + (s / NB) * 32, c0 = (s % NB) * kAmxKB, c1 = std::min(Kp, c0 + kAmxKB);
    decode_rows(w, nb, r0, r1, n1, c0, c1, wbuf[s & 1], LDB);
  };
  // The weight bytes of the block after next, fetched while this one's products run (the
  // decoder otherwise waits on them: 32 rows are read in short pieces at once). 1 GB streamed
  // by 2 threads at 8 tokens, min of 5 interleaved passes at load 1.7-2: FP8 80.3 -> 66.9 ms,
  // FP4 181 -> 172 ms.
  const uint8_t* wd = static_cast<const uint8_t*>(w.data);
  const int fb = w.format == WFormat::FP8 ? 2 : w.format == WFormat::FP4 ? 1 : 4;  // half-bytes per weight
  const size_t row_hb = static_cast<size_t>(w.cols) * fb;
  auto prefetch_part = [&](int s2, int r0, int r1) {
    const int nb = n0 + (s2 / NB) * 32, c0 = (s2 % NB) * kAmxKB, c1 = std::min(w.cols, c0 + kAmxKB);
    if (c0 >= c1) return;
    for (int r = r0; r < r1; ++r) {
      const char* p = reinterpret_cast<const char*>(wd + (std::min(nb + r, n1 - 1) * row_hb + static_cast<size_t>(c0) * fb) / 2);
      const size_t bytes = static_cast<size_t>(c1 - c0) * fb / 2;
      for (size_t b = 0; b < bytes; b += 64) _mm_prefetch(p + b, _MM_HINT_T0);
    }
  };
  decode_part(0, 0, 32);
  for (int s = 0; s < S; ++s) {
    const int nb = n0 + (s / NB) * 32, j = s % NB, kc0 = j * kAmxKB / 32, kc1 = std::min(KC, kc0 + kAmxKB / 32);
    if (j == 0) {
      amx_zero4();
    }
    const uint16_t* cur = wbuf[s & 1];
    const int steps = kc1 - kc0;
    for (int kc = kc0; kc < kc1; ++kc) {
      amx_step32(cur + (kc - kc0) * 32, LDB, xv + static_cast<size_t>(kc) * 16 * W, blk, W, TB);
      if (s + 1 < S) {
        const int i = kc - kc0;
        decode_part(s + 1, i * 32 / steps, (i + 1) * 32 / steps);
      }
      if (s + 2 < S) {
        const int i = kc - kc0;
        prefetch_part(s + 2, i * 32 / steps, (i + 1) * 32 / steps);
      }
    }
    if (j == NB - 1) {
      amx_store4(cbuf);
      amx_scatter(cbuf, nb, std::min(32, n1 - nb), 0, TB, M, y, ldy);
    }
  }
  _tile_release();
}

// FP4 (table decoders): whole rows decoded one after another into an L2-resident buffer of
// 32 rows x Kp (double buffer: the next 32 rows decoded between the tile products of the
// current ones). Each row's codes and its scales are then read front to back (32 rows of an
// expert matrix are one contiguous range), the rows 8 ahead prefetched into L2 as on the
// one-token path, instead of 32 rows read in 128-byte pieces at once by rows_amx_few, where the
// decoder waited on the scale loads (a profile of a batch-8 step: 40 % of the decoder's samples
// on the scale broadcast). One thread, 1 GB of 2048x4096 FP4 weights, 8 tokens, min of 5-6
// interleaved passes (CPU time, load 3-9): 3.2-4.4 -> 4.7-5.5 GB/s in four runs. FP8 with
// short rows too (wq_b, 32768x1024: two threads, 1 GB, 8 tokens, min of 5, load 1.6-3:
// 4.0-4.7 -> 7.5-7.7 GB/s in three pairs, where rows_amx_few reads 4 lines of each of 32
// 1 KB rows per block); at 4096 columns the two measured equal and at 8192 rows_amx_few is
// faster (16.4 against 13.4 GB/s), so longer FP8 rows keep it.
constexpr int kStreamFp8K = 1024;
V4_LUT void decode_row_stream(const LinearWeight& w, int n, uint16_t* out, ptrdiff_t ahead) {
  const size_t K = static_cast<size_t>(w.cols), K128 = K / 128 * 128;
  if (w.format == WFormat::FP8) {
    const uint8_t* p = static_cast<const uint8_t*>(w.data) + static_cast<size_t>(n) * K;
    const uint8_t* s = static_cast<const uint8_t*>(w.scale) + static_cast<size_t>(n / 128) * ((K + 127) / 128);
    for (size_t k = 0; k < K128; k += 128) {
      if (ahead) {
        _mm_prefetch(reinterpret_cast<const char*>(p + k) + ahead, _MM_HINT_T1);
        _mm_prefetch(reinterpret_cast<const char*>(p + k + 64) + ahead, _MM_HINT_T1);
      }
      const Fp8Tab t = fp8_tab(s[k / 128]);
      __m512i a, b, c, d;
      fp8_lut64(_mm512_loadu_si512(p + k), t, a, b);
      fp8_lut64(_mm512_loadu_si512(p + k + 64), t, c, d);
      _mm512_storeu_si512(out + k, a);
      _mm512_storeu_si512(out + k + 32, b);
      _mm512_storeu_si512(out + k + 64, c);
      _mm512_storeu_si512(out + k + 96, d);
    }
    if (K128 < K) decode_range_lut(w, n, static_cast<int>(K128), bf16_padded_k(w), out + K128);
    return;
  }
  const uint8_t* p = static_cast<const uint8_t*>(w.data) + static_cast<size_t>(n) * (K / 2);
  const uint8_t* s = static_cast<const uint8_t*>(w.scale) + static_cast<size_t>(n) * (K / 32);
  const Fp4LutConst& kc = fp4_lut_const();
  const __m512i lane = _mm512_load_si512(kc.lane);
  for (size_t k = 0; k < K128; k += 128) {
    if (ahead) _mm_prefetch(reinterpret_cast<const char*>(p + k / 2) + ahead, _MM_HINT_T1);
    __m512i wv[4];
    fp4_lut128(_mm512_loadu_si512(p + k / 2), fp4_tab(s + k / 32, kc), lane, wv);
    for (int j = 0; j < 4; ++j) _mm512_storeu_si512(out + k + 32 * j, wv[j]);
  }
  if (K128 < K) decode_range_lut(w, n, static_cast<int>(K128), bf16_padded_k(w), out + K128);
}

// FP4, or FP8 with rows of at most kStreamFp8K columns (the caller checks); M <= 32.
V4_AMX void rows_amx_stream(const LinearWeight& w, const uint32_t* xv, int M, float* y, int ldy, int n0, int n1) {
  const int Kp = bf16_padded_k(w), KC = Kp / 32, TB = (M + 15) / 16, W = vnni_width(M);
  amx_config(W);
  const int LD = Kp + 32;
  thread_local std::vector<uint16_t> mem;
  mem.resize(static_cast<size_t>(2) * 32 * LD + 32);
  uint16_t* base = reinterpret_cast<uint16_t*>((reinterpret_cast<uintptr_t>(mem.data()) + 63) & ~uintptr_t{63});
  uint16_t* buf[2] = {base, base + static_cast<size_t>(32) * LD};
  alignas(64) float cbuf[4 * 256];
  const size_t blk = static_cast<size_t>(KC) * 16 * W;
  const ptrdiff_t row_bytes = w.format == WFormat::FP4 ? w.cols / 2 : w.cols;
  auto decode = [&](int nb, int r, uint16_t* b) {
    const int n = std::min(nb + r, n1 - 1);
    decode_row_stream(w, n, b + static_cast<size_t>(r) * LD, n + 8 < n1 ? 8 * row_bytes : 0);
  };
  for (int r = 0; r < 32; ++r) decode(n0, r, buf[0]);
  int g = 0;
  for (int nb = n0; nb < n1; nb += 32, ++g) {
    const uint16_t* cur = buf[g & 1];
    uint16_t* nxt = buf[(g + 1) & 1];
    const bool more = nb + 32 < n1;
    amx_zero4();
    int done = 0;
    for (int kc = 0; kc < KC; ++kc) {
      amx_step32(cur + kc * 32, LD, xv + static_cast<size_t>(kc) * 16 * W, blk, W, TB);
      if (more)
        for (const int until = (kc + 1) * 32 / KC; done < until; ++done) decode(nb + 32, done, nxt);
    }
    if (more)
      for (; done < 32; ++done) decode(nb + 32, done, nxt);
    amx_store4(cbuf);
    amx_scatter(cbuf, nb, std::min(32, n1 - nb), 0, TB, M, y, ldy);
  }
  _tile_release();
}

// More tokens (prefill): the decode is amortised and the tile loads of the activations are the
// cost. Blocks of 64 rows (four accumulator tiles, one per 16 rows, share each activation tile:
// four products per activation load) are decoded per k block and multiplied with every token
// block, the accumulators stored per token block between k blocks.
constexpr int kManyKB = 256, kManyLD = kManyKB + 32;
V4_AMX void rows_amx_many(const LinearWeight& w, const uint32_t* xv, int M, float* y, int ldy, int n0, int n1) {
  const int Kp = bf16_padded_k(w), KC = Kp / 32, TB = (M + 15) / 16;
  amx_config(16);
  alignas(64) uint16_t wbuf[64 * kManyLD];
  thread_local std::vector<float> cmem;
  cmem.resize(static_cast<size_t>(TB) * 1024);
  const size_t blk = static_cast<size_t>(KC) * 256;
  for (int nb = n0; nb < n1; nb += 64) {
    for (int c0 = 0; c0 < Kp; c0 += kManyKB) {
      const int c1 = std::min(Kp, c0 + kManyKB), kc0 = c0 / 32, kc1 = (c1 + 31) / 32;
      decode_rows(w, nb, 0, 64, n1, c0, c1, wbuf, kManyLD);
      for (int tb = 0; tb < TB; ++tb) {
        float* cm = cmem.data() + static_cast<size_t>(tb) * 1024;
        if (c0 == 0) {
          amx_zero4();
        } else {
          _tile_loadd(0, cm, 64);
          _tile_loadd(1, cm + 256, 64);
          _tile_loadd(2, cm + 512, 64);
          _tile_loadd(3, cm + 768, 64);
        }
        const uint32_t* b0 = xv + static_cast<size_t>(tb) * blk;
        // (Prefetching the next token block's B tiles and accumulators, and 128-column k
        // blocks, measured no better: min of 6 interleaved runs, one thread, load 5-6.)
        for (int kc = kc0; kc < kc1; ++kc) {
          const uint16_t* a = wbuf + (kc - kc0) * 32;
          _tile_loadd(7, b0 + static_cast<size_t>(kc) * 256, 64);
          _tile_loadd(4, a, kManyLD * 2);
          _tile_dpbf16ps(0, 4, 7);
          _tile_loadd(5, a + 16 * kManyLD, kManyLD * 2);
          _tile_dpbf16ps(1, 5, 7);
          _tile_loadd(6, a + 32 * kManyLD, kManyLD * 2);
          _tile_dpbf16ps(2, 6, 7);
          _tile_loadd(4, a + 48 * kManyLD, kManyLD * 2);
          _tile_dpbf16ps(3, 4, 7);
        }
        amx_store4(cm);
      }
    }
    // Tile q holds rows nb + 16q.. of token block tb: [row][token].
    // Written token by token (each a run of consecutive rows of y).
    const int nr = std::min(64, n1 - nb);
    for (int m = 0; m < M; ++m) {
      const float* ct = cmem.data() + static_cast<size_t>(m / 16) * 1024 + m % 16;
      float* ym = y + static_cast<size_t>(m) * ldy + nb;
      for (int r = 0; r < nr; ++r) ym[r] = ct[(r / 16) * 256 + (r % 16) * 16];
    }
  }
  _tile_release();
}

V4_AMX void rows_amx(const LinearWeight& w, const uint32_t* xv, int M, float* y, int ldy, int n0, int n1) {
  const bool stream = w.format == WFormat::FP4 || (w.format == WFormat::FP8 && w.cols <= kStreamFp8K);
  if (M <= 32 && stream && bf16_lut_available()) rows_amx_stream(w, xv, M, y, ldy, n0, n1);
  else if (M <= 32) rows_amx_few(w, xv, M, y, ldy, n0, n1);
  else rows_amx_many(w, xv, M, y, ldy, n0, n1);
}

}  // namespace

void bf16_quant_pack_act(const LinearWeight& w, const float* x, int M, int ldx, uint16_t* out) {
  parallel_for(static_cast<size_t>(M), 8, [&](size_t b, size_t e) {
    quant_pack_rows(w, x, ldx, static_cast<int>(b), static_cast<int>(e), out);
  });
}

void bf16_decode_row(const LinearWeight& w, int n, uint16_t* out) { decode_row_impl(w, n, out); }

namespace {
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
}  // namespace

bool amx_available();

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

V4_BF16 void split_rows_m1(const LinearWeight& w, const float* xf, float* y, int n0, int n1) {
  const bool fp8 = w.format == WFormat::FP8 && bf16_lut_available();
  const bool bf16 = w.format == WFormat::BF16 && w.cols % 32 == 0;
  if (!fp8 && !bf16) {
    split_rows_m1_fma(w, xf, y, n0, n1);
    return;
  }
  const ptrdiff_t row_bytes = fp8 ? w.cols : 2 * static_cast<ptrdiff_t>(w.cols);
  int n = n0;
  for (; n + 4 <= n1; n += 4) {
    const ptrdiff_t ahead = n + 12 <= n1 ? 8 * row_bytes : 0;
    if (bf16) bf16_split_rows_m1<4>(w, xf, y, n, ahead);
    else if ((n & 127) <= 124) fp8_split_rows_m1<4>(w, xf, y, n, ahead);
    else
      for (int r = 0; r < 4; ++r) fp8_split_rows_m1<1>(w, xf, y, n + r, 0);  // straddles two scale blocks
  }
  for (; n < n1; ++n) {
    if (bf16) bf16_split_rows_m1<1>(w, xf, y, n, 0);
    else fp8_split_rows_m1<1>(w, xf, y, n, 0);
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
}  // namespace

void linear_bf16_split(const LinearWeight& w, const float* x, int M, float* y, int ldx, int ldy, int parts) {
  parts = parts == 1 ? 1 : 3;
  const int K = w.cols, Kp = bf16_padded_k(w), N = w.rows;
  if (ldx <= 0) ldx = K;
  if (ldy <= 0) ldy = N;
  if (M == 1 && amx_available()) {
    thread_local std::vector<float> xf;
    split_m1_act(w, x, parts, xf);
    const float* xfp = xf.data();
    parallel_for(static_cast<size_t>(N), split_m1_grain(w), [&](size_t b, size_t e) {
      split_rows_m1(w, xfp, y, static_cast<int>(b), static_cast<int>(e));
    });
    return;
  }
  thread_local std::vector<uint16_t> xs;
  thread_local std::vector<float> ys;
  xs.resize(static_cast<size_t>(parts * M) * Kp);
  if (parts == 1) {
    split_rows(w.format, x, M, ldx, K, Kp, 1, xs.data());
    linear_bf16(w, xs.data(), M, y, ldy);
    return;
  }
  ys.resize(static_cast<size_t>(3 * M) * N);
  split_rows(w.format, x, M, ldx, K, Kp, 3, xs.data());
  linear_bf16(w, xs.data(), 3 * M, ys.data());
  for (int m = 0; m < M; ++m) {
    const float* a = ys.data() + static_cast<size_t>(3 * m) * N;
    float* o = y + static_cast<size_t>(m) * ldy;
    for (int n = 0; n < N; ++n) o[n] = (a[n] + a[N + n]) + a[2 * N + n];
  }
}

void linear_bf16_rows(const LinearWeight& w, const uint16_t* xp, int M, float* y, int ldy, int n0, int n1) {
  if (M == 1 && w.format != WFormat::BF16) {
    if (bf16_lut_available()) rows_m1_lut(w, xp, y, n0, n1);
    else rows_m1(w, xp, y, n0, n1);
  }
  else rows_batched(w, xp, M, y, ldy, n0, n1);
}

bool amx_available() {
  static const bool ok = [] {
    const char* off = std::getenv("V4HOST_NO_AMX");
    if (off && *off && *off != '0') return false;
#if defined(__x86_64__) && __GNUC__ >= 12
    if (!cpu_features().amx_tile || !__builtin_cpu_supports("amx-bf16")) return false;
    // Linux hands out the tile state only on request (ARCH_REQ_XCOMP_PERM, XTILEDATA).
    return syscall(SYS_arch_prctl, 0x1023, 18) == 0;
#else
    return false;
#endif
  }();
  return ok && bf16_dot_available() && !amx_disabled_for_tests();
}

int amx_min_tokens() { return g_amx_min.load(); }
void set_amx_min_tokens(int m) { g_amx_min = std::max(1, m); }

void linear_bf16(const LinearWeight& w, const uint16_t* xp, int M, float* y, int ldy) {
  if (M <= 0 || w.rows <= 0) return;
  if (ldy <= 0) ldy = w.rows;
  // Few tokens: bandwidth-bound, tasks stream a few hundred KB of weights each.
  const size_t row_bytes = std::max<size_t>(1, w.bytes() / static_cast<size_t>(w.rows));
  const size_t stream_grain = std::max<size_t>(16, (256u << 10) / row_bytes);
  if (M >= amx_min_tokens() && amx_available()) {
    thread_local std::vector<uint32_t> xv;
    pack_vnni(xp, M, bf16_padded_k(w), xv);
    const uint32_t* xvp = xv.data();
    const size_t grain = M <= 32 ? (stream_grain + 31) / 32 * 32 : 64;
    parallel_for(static_cast<size_t>(w.rows), grain, [&](size_t b, size_t e) {
      rows_amx(w, xvp, M, y, ldy, static_cast<int>(b), static_cast<int>(e));
    });
    return;
  }
  if (M == 1 && w.format == WFormat::FP4 && fp4_fma_enabled()) {
    thread_local std::vector<float> xf;
    fp4_fma_act(w, xp, xf);
    const float* xfp = xf.data();
    parallel_for(static_cast<size_t>(w.rows), (stream_grain + 15) / 16 * 16, [&](size_t b, size_t e) {
      rows_m1_fp4_fma(w, xfp, y, static_cast<int>(b), static_cast<int>(e));
    });
    return;
  }
  size_t grain = M == 1 ? stream_grain : RB;
  grain = (grain + 15) / 16 * 16;
  parallel_for(static_cast<size_t>(w.rows), grain, [&](size_t b, size_t e) {
    linear_bf16_rows(w, xp, M, y, ldy, static_cast<int>(b), static_cast<int>(e));
  });
}

namespace {
std::atomic<bool> g_no_gather{[] {
  const char* e = std::getenv("V4HOST_NO_GATHER");
  return e && *e && *e != '0';
}()};
}  // namespace

void set_one_token_gather_disabled(bool off) { g_no_gather = off; }

void linear_one_token(const OneTokenJob* jobs, int n) {
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
  enum Kind : uint8_t { Split, Fp4Fma, Packed };
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
  for (int i = 0; i < n; ++i) {
    const OneTokenJob& j = jobs[i];
    Kind& k = kinds[static_cast<size_t>(i)];
    if (j.x) {
      k = Split;
      split_m1_act(*j.w, j.x, j.parts == 1 ? 1 : 3, acts[static_cast<size_t>(i)]);
    } else if (j.w->format == WFormat::FP4 && fp4_fma) {
      k = Fp4Fma;
      fp4_fma_act(*j.w, j.xp, acts[static_cast<size_t>(i)]);
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
  parallel_each(pieces.size(), [&](size_t i) {
    const Piece& q = pc[i];
    const OneTokenJob& j = jobs[q.job];
    switch (kd[q.job]) {
      case Split: split_rows_m1(*j.w, ac[q.job].data(), j.y, q.n0, q.n1); break;
      case Fp4Fma: rows_m1_fp4_fma(*j.w, ac[q.job].data(), j.y, q.n0, q.n1); break;
      case Packed: linear_bf16_rows(*j.w, j.xp, 1, j.y, 0, q.n0, q.n1); break;
    }
  });
}

}  // namespace v4
