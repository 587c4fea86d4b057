// Two tokens and more on the AMX tiles: the activations in VNNI layout as B tiles, the weight
// rows decoded to BF16 into L1 / L2 buffers as A tiles.
#include "kernels/linear_bf16_internal.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/thread_pool.h"

namespace v4::bf16 {

// ---- AMX (tile) path for calls of at least amx_min_tokens() tokens.
namespace {

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

// `n` 4-byte elements of `v` from its first 64-byte line: a vector's buffer is only 16-byte
// aligned, and a 64-byte tile row that straddles two cache lines loads slower (the B tiles' loop
// 3-7 % in a scratch harness).
template <class T>
T* line_aligned(std::vector<T>& v, size_t n) {
  static_assert(sizeof(T) == 4);
  v.resize(n + 15);
  return v.data() + (16 - (reinterpret_cast<uintptr_t>(v.data()) / 4) % 16) % 16;
}
}  // namespace

const uint32_t* pack_vnni(const uint16_t* xp, int M, int Kp, std::vector<uint32_t>& out) {
  const int W = vnni_width(M), TB = (M + 15) / 16, KC = Kp / 32;
  const uint32_t* src = reinterpret_cast<const uint32_t*>(xp);
  uint32_t* dst = line_aligned(out, static_cast<size_t>(TB) * KC * 16 * W);
  if (TB == 1) pack_vnni_block(src, M, Kp, 0, dst);
  else
    parallel_for(static_cast<size_t>(TB), 1, [&](size_t b, size_t e) {
      for (size_t tb = b; tb < e; ++tb) pack_vnni_block(src, M, Kp, static_cast<int>(tb), dst);
    });
  return dst;
}

// C^T[n, m] = W · X^T on the tiles, 32 output rows at a time: the rows are decoded to BF16 in
// k blocks (an L1-resident buffer the A tiles load from), the B tiles come from the
// VNNI-packed activations. Every output sums its 32-wide tile products in k order from
// zero (accumulators kept in tiles, or stored and reloaded exactly between k blocks), so a
// (token, row) gets the same bits whatever the number of tokens in the call, tile width
// included (each element of a tile product depends only on its own row and column).

namespace {

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
// 1 KB rows per block). FP8 rows up to 4096 columns too: over the mapped checkpoint (every
// layer's tensors of a kind streamed from the page cache, two threads, 6 tokens, alternated in
// one process, load 1.8-2.1) the shared experts (2048x4096) 7.6-7.7 -> 12.9-13.2 GB/s, wq_a
// (1024x4096) 8.0-8.4 -> 12.2-12.3, wkv (512x4096) 9.0 -> 12.9-13.2, wo_a (8 groups of 1024x4096,
// 8 tokens split in three: 24 tile columns) 4.8 -> 5.9; at 8 and 16 tokens the shared experts
// 7.0-10.0 -> 11.4-12.5. (A 384 MB buffer, mostly L3-resident, had measured the two paths equal
// at 4096 columns.) At 8192 columns (wo_b) the stream path was +9 % at 6 tokens and -10 to +2 %
// at 8 and 16, so those rows keep rows_amx_few.
constexpr int kStreamFp8K = 4096;
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
  // FP4: fp4_tab and fp4_lut128 written out with their constants held in registers across the
  // row and the four chunks stored as they are made (through fp4_lut128's array the compiler
  // stored each chunk to the stack and copied it: eight stores per 64 bytes instead of four),
  // and the row's scales 8 rows ahead prefetched as its codes are (they are read from another
  // array; one line per 2048 columns). One thread, 1 GB of 2048x4096 FP4 weights at 6 tokens,
  // CPU time, min of 2-5 interleaved passes: 4.4-4.6 -> 5.4-5.5 GB/s (4096x2048: 3.7-4.5 ->
  // 5.3-5.7); the two changes about equally.
  const uint8_t* p = static_cast<const uint8_t*>(w.data) + static_cast<size_t>(n) * (K / 2);
  const uint8_t* s = static_cast<const uint8_t*>(w.scale) + static_cast<size_t>(n) * (K / 32);
  const Fp4LutConst& kc = fp4_lut_const();
  const __m512i lane = _mm512_load_si512(kc.lane), spread = _mm512_load_si512(kc.spread), ev = _mm512_load_si512(kc.ev),
                sign = _mm512_load_si512(kc.sign), mant = _mm512_load_si512(kc.mant);
  const __m512i m7f = _mm512_set1_epi8(0x7F), m80 = _mm512_set1_epi8(static_cast<char>(0x80)), nib = _mm512_set1_epi8(0x0F);
  const __mmask64 nz = kc.nonzero;
  const ptrdiff_t scale_ahead = ahead / 16;  // K/32 scale bytes per row against K/2 code bytes
  for (size_t k = 0; k < K128; k += 128) {
    if (ahead) {
      _mm_prefetch(reinterpret_cast<const char*>(p + k / 2) + ahead, _MM_HINT_T1);
      if (k % 2048 == 0) _mm_prefetch(reinterpret_cast<const char*>(s + k / 32) + scale_ahead, _MM_HINT_T1);
    }
    // The table pair of these four 32-column groups (fp4_tab).
    uint32_t s4;
    std::memcpy(&s4, s + k / 32, 4);
    const __m512i e = _mm512_shuffle_epi8(_mm512_set1_epi32(static_cast<int>(s4)), spread);
    const __m512i sum = _mm512_maskz_add_epi8(nz, ev, e);
    const __m512i th = _mm512_ternarylogic_epi32(_mm512_srli_epi16(sum, 1), m7f, sign, 0xEA);
    const __m512i tl = _mm512_ternarylogic_epi32(_mm512_slli_epi16(sum, 7), m80, mant, 0xEA);
    // The 128 codes (fp4_lut128).
    const __m512i x = _mm512_loadu_si512(p + k / 2);
    const __m512i il = _mm512_ternarylogic_epi32(x, nib, lane, 0xEA);
    const __m512i ih = _mm512_ternarylogic_epi32(_mm512_srli_epi16(x, 4), nib, lane, 0xEA);
    const __m512i hl = _mm512_permutexvar_epi8(il, th), ll = _mm512_permutexvar_epi8(il, tl);
    const __m512i hh = _mm512_permutexvar_epi8(ih, th), lh = _mm512_permutexvar_epi8(ih, tl);
    _mm512_storeu_si512(out + k, _mm512_unpacklo_epi8(ll, hl));
    _mm512_storeu_si512(out + k + 32, _mm512_unpackhi_epi8(ll, hl));
    _mm512_storeu_si512(out + k + 64, _mm512_unpacklo_epi8(lh, hh));
    _mm512_storeu_si512(out + k + 96, _mm512_unpackhi_epi8(lh, hh));
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

// BF16 rows with K a multiple of 32 (the caller checks), M <= 32: the A tiles are loaded from the
// weight rows in place (rows_amx_few copied each 256-column block into its L1 buffer first); a
// last group of fewer than 32 rows of the matrix from a copy (a tile reads 16 whole rows). The
// rows' lines 8 chunks ahead are prefetched into L2 (into L1 they measured the same: 32 rows
// 8 KB apart share a few L1 sets). The same tile products in the same order as the copy, so the
// same bits. One thread, 16384x4096 (the LM head's shape) at 8 tokens split in three parts (24
// tile columns), CPU time, min of 5 interleaved passes, load 3.5: 4.6-4.7 -> 6.2-6.7 GB/s.
V4_AMX void rows_amx_bf16(const LinearWeight& w, const uint32_t* xv, int M, float* y, int ldy, int n0, int n1) {
  const int K = w.cols, KC = K / 32, TB = (M + 15) / 16, W = vnni_width(M);
  constexpr int kAhead = 8;
  amx_config(W);
  alignas(64) float cbuf[4 * 256];
  thread_local std::vector<uint16_t> last;
  const size_t blk = static_cast<size_t>(KC) * 16 * W, ldk = static_cast<size_t>(K);
  const uint16_t* wd = static_cast<const uint16_t*>(w.data);
  for (int nb = n0; nb < n1; nb += 32) {
    const bool in_place = nb + 32 <= w.rows;
    const uint16_t* a = wd + static_cast<size_t>(nb) * ldk;
    if (!in_place) {
      last.resize(32 * ldk);
      for (int r = 0; r < 32; ++r)
        std::memcpy(last.data() + r * ldk, wd + static_cast<size_t>(std::min(nb + r, w.rows - 1)) * ldk, ldk * 2);
      a = last.data();
    }
    amx_zero4();
    for (int kc = 0; kc < KC; ++kc) {
      // Chunk kc + kAhead of these rows, or of the next 32 (where they are whole rows of w).
      const int kq = kc + kAhead < KC ? kc + kAhead : kc + kAhead - KC, rb = kc + kAhead < KC ? 0 : 32;
      if (in_place && nb + rb + 32 <= w.rows) {
        const uint16_t* pa = a + static_cast<size_t>(rb) * ldk + static_cast<size_t>(kq) * 32;
        for (int r = 0; r < 32; ++r) _mm_prefetch(reinterpret_cast<const char*>(pa + r * ldk), _MM_HINT_T1);
      }
      amx_step32(a + kc * 32, K, xv + static_cast<size_t>(kc) * 16 * W, blk, W, TB);
    }
    amx_store4(cbuf);
    amx_scatter(cbuf, nb, std::min(32, n1 - nb), 0, TB, M, y, ldy);
  }
  _tile_release();
}

// More tokens (prefill): the decode is amortised and the tile loads of the activations are the
// cost. Blocks of 64 rows (four accumulator tiles, one per 16 rows, share each activation tile:
// four products per activation load) are decoded per k block and multiplied with every token
// block, the accumulators stored per token block between k blocks.
// The next k block's weight bytes (64 rows, 128-256 B of each; or the next 64 rows' first block)
// are prefetched into L2 while the tiles work on this one, a share per token block: the rows are
// far apart in memory and come from DRAM, which the decode otherwise waits for
// (V4HOST_NO_MANY_PREFETCH=1 turns it off).
constexpr int kManyKB = 256, kManyLD = kManyKB + 32;
const bool g_many_prefetch = std::getenv("V4HOST_NO_MANY_PREFETCH") == nullptr;
V4_AMX void rows_amx_many(const LinearWeight& w, const uint32_t* xv, int M, float* y, int ldy, int n0, int n1) {
  const int Kp = bf16_padded_k(w), KC = Kp / 32, TB = (M + 15) / 16;
  amx_config(16);
  alignas(64) uint16_t wbuf[64 * kManyLD];
  thread_local std::vector<float> cmem_store;
  float* const cmem = line_aligned(cmem_store, static_cast<size_t>(TB) * 1024);  // a tile row per cache line
  const size_t blk = static_cast<size_t>(KC) * 256;
  // Bytes per two weights and per row (FP4 / FP8 / BF16).
  const int b2 = w.format == WFormat::FP4 ? 1 : w.format == WFormat::FP8 ? 2 : 4;
  const size_t row_bytes = static_cast<size_t>(w.cols) * b2 / 2;
  const char* wdata = static_cast<const char*>(w.data);
  const bool pf = g_many_prefetch && w.format != WFormat::F32;
  for (int nb = n0; nb < n1; nb += 64) {
    for (int c0 = 0; c0 < Kp; c0 += kManyKB) {
      const int c1 = std::min(Kp, c0 + kManyKB), kc0 = c0 / 32, kc1 = (c1 + 31) / 32;
      decode_rows(w, nb, 0, 64, n1, c0, c1, wbuf, kManyLD);
      // What to prefetch: the same rows' next k block, or the next row block's first.
      const int pnb = c1 < Kp ? nb : nb + 64, pc0 = c1 < Kp ? c1 : 0;
      const int prows = pf && pnb < n1 ? std::min(64, n1 - pnb) : 0;
      const size_t pb0 = static_cast<size_t>(std::min(pc0, w.cols)) * b2 / 2,
                   pb1 = static_cast<size_t>(std::min(pc0 + kManyKB, w.cols)) * b2 / 2;
      const int plines = pb1 > pb0 ? static_cast<int>((pb1 - pb0 + 63) / 64) : 0, ptotal = prows * plines;
      if (w.format == WFormat::FP4 && pc0 < w.cols) {  // their block scales, one byte per 32 columns
        const char* sp = static_cast<const char*>(w.scale) + static_cast<size_t>(pc0 / 32);
        for (int r = 0; r < prows; ++r) _mm_prefetch(sp + static_cast<size_t>(pnb + r) * (w.cols / 32), _MM_HINT_T1);
      }
      for (int tb = 0; tb < TB; ++tb) {
        for (int i = ptotal * tb / TB, e = ptotal * (tb + 1) / TB; i < e; ++i)
          _mm_prefetch(wdata + static_cast<size_t>(pnb + i / plines) * row_bytes + pb0 + static_cast<size_t>(i % plines) * 64, _MM_HINT_T1);
        float* cm = cmem + static_cast<size_t>(tb) * 1024;
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
      const float* ct = cmem + static_cast<size_t>(m / 16) * 1024 + m % 16;
      float* ym = y + static_cast<size_t>(m) * ldy + nb;
      for (int r = 0; r < nr; ++r) ym[r] = ct[(r / 16) * 256 + (r % 16) * 16];
    }
  }
  _tile_release();
}

}  // namespace

V4_AMX void rows_amx(const LinearWeight& w, const uint32_t* xv, int M, float* y, int ldy, int n0, int n1) {
  const bool stream = w.format == WFormat::FP4 || (w.format == WFormat::FP8 && w.cols <= kStreamFp8K);
  if (M <= 32 && w.format == WFormat::BF16 && w.cols % 32 == 0) rows_amx_bf16(w, xv, M, y, ldy, n0, n1);
  else if (M <= 32 && stream && bf16_lut_available()) rows_amx_stream(w, xv, M, y, ldy, n0, n1);
  else if (M <= 32) rows_amx_few(w, xv, M, y, ldy, n0, n1);
  else rows_amx_many(w, xv, M, y, ldy, n0, n1);
}

}  // namespace v4::bf16
