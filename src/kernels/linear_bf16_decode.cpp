// FP8 / FP4 weight rows decoded to BF16 in kernel order: the arithmetic decoders (AVX-512 BF16)
// and the table decoders (AVX-512 VBMI byte permutes), one row range or a block of rows at a time.
#include "kernels/linear_bf16_internal.h"

#include <algorithm>

namespace v4::bf16 {

V4_LUT void decode_range_lut(const LinearWeight& w, int n, int c0, int c1, uint16_t* out) {
  const size_t K = static_cast<size_t>(w.cols);
  const uint8_t* sp = static_cast<const uint8_t*>(w.scale);
  if (w.format == WFormat::FP4) {
    const uint8_t* p = static_cast<const uint8_t*>(w.data) + static_cast<size_t>(n) * (K / 2);
    const uint8_t* s = sp + static_cast<size_t>(n) * (K / 32);
    const Fp4LutConst& kc = fp4_lut_const();
    const __m512i lane = _mm512_load_si512(kc.lane);
    const int K128 = static_cast<int>(K / 128 * 128), e = std::min(c1, K128);
    for (int k = c0; k < e; k += 128) fp4_lut128_store(_mm512_loadu_si512(p + k / 2), fp4_tab(s + k / 32, kc), lane, out + (k - c0));
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
static V4_LUT void decode_rows_lut(const LinearWeight& w, int nb, int r0, int r1, int nmax, int c0, int c1, uint16_t* out, int ld) {
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
        fp4_lut128_store(_mm512_loadu_si512(data + n * (K / 2) + k / 2), fp4_tab(sp + n * (K / 32) + k / 32, kc), lane,
                         out + static_cast<size_t>(r) * ld + (k - c0));
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

}  // namespace v4::bf16
