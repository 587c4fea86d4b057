#include "kernels/attn.h"

#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <numeric>

#include "core/cpu.h"

#define V4_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))
#define V4_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace v4 {

void KeyBlocks::append(const float* k) {
  const size_t blk = static_cast<size_t>(n / kBlock), lane = static_cast<size_t>(n % kBlock);
  if (lane == 0) data.resize((blk + 1) * static_cast<size_t>(d) * kBlock, 0.f);
  float* b = data.data() + blk * static_cast<size_t>(d) * kBlock;
  for (int e = 0; e < d; ++e) b[static_cast<size_t>(e) * kBlock + lane] = k[e];
  ++n;
}

namespace {

void indexer_scores_portable(const float* q, const float* w, int H, const KeyBlocks& keys, int64_t n, float* out) {
  const int d = keys.d;
  constexpr int B = KeyBlocks::kBlock;
  for (int64_t jb = 0; jb * B < n; ++jb) {
    const float* kb = keys.data.data() + static_cast<size_t>(jb) * d * B;
    float s[B] = {};
    for (int h = 0; h < H; ++h) {
      float acc[B] = {};
      const float* qh = q + static_cast<size_t>(h) * d;
      for (int e = 0; e < d; ++e)
        for (int l = 0; l < B; ++l) acc[l] += qh[e] * kb[static_cast<size_t>(e) * B + l];
      for (int l = 0; l < B; ++l) s[l] += w[h] * std::max(acc[l], 0.0f);
    }
    std::copy_n(s, B, out + jb * B);
  }
}

// Two key blocks x 8 heads of accumulators per pass: 2 key loads and 8 query broadcasts per 16
// FMAs.
V4_AVX512 void indexer_scores_avx512(const float* q, const float* w, int H, const KeyBlocks& keys, int64_t n, float* out) {
  const int d = keys.d;
  constexpr int B = KeyBlocks::kBlock;
  const int64_t nb = (n + B - 1) / B;
  for (int64_t jb = 0; jb < nb; jb += 2) {
    const bool two = jb + 1 < nb;
    const float* k0 = keys.data.data() + static_cast<size_t>(jb) * d * B;
    const float* k1 = two ? k0 + static_cast<size_t>(d) * B : k0;
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    for (int h0 = 0; h0 < H; h0 += 8) {
      const int hn = std::min(8, H - h0);
      __m512 a0[8], a1[8];
      for (int h = 0; h < 8; ++h) a0[h] = a1[h] = _mm512_setzero_ps();
      for (int e = 0; e < d; ++e) {
        const __m512 v0 = _mm512_loadu_ps(k0 + static_cast<size_t>(e) * B), v1 = _mm512_loadu_ps(k1 + static_cast<size_t>(e) * B);
        for (int h = 0; h < 8; ++h) {
          if (h >= hn) break;
          const __m512 qb = _mm512_set1_ps(q[static_cast<size_t>(h0 + h) * d + e]);
          a0[h] = _mm512_fmadd_ps(qb, v0, a0[h]);
          a1[h] = _mm512_fmadd_ps(qb, v1, a1[h]);
        }
      }
      for (int h = 0; h < hn; ++h) {
        const __m512 wh = _mm512_set1_ps(w[h0 + h]);
        s0 = _mm512_fmadd_ps(wh, _mm512_max_ps(a0[h], _mm512_setzero_ps()), s0);
        s1 = _mm512_fmadd_ps(wh, _mm512_max_ps(a1[h], _mm512_setzero_ps()), s1);
      }
    }
    _mm512_storeu_ps(out + jb * B, s0);
    if (two) _mm512_storeu_ps(out + (jb + 1) * B, s1);
  }
}

V4_AVX512 float dot_avx512(const float* a, const float* b, int d) {
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  int e = 0;
  for (; e + 32 <= d; e += 32) {
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + e), _mm512_loadu_ps(b + e), s0);
    s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + e + 16), _mm512_loadu_ps(b + e + 16), s1);
  }
  for (; e < d; e += 16) {
    const __mmask16 m = e + 16 <= d ? 0xFFFF : static_cast<__mmask16>((1u << (d - e)) - 1);
    s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + e), _mm512_maskz_loadu_ps(m, b + e), s0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

// sc[h*ldsc + i] = scale · (q_h · key_i) for h in [0, hn ≤ 4), i in [0, nk): four heads share
// each key load and two keys each query load; every dot is summed exactly as dot_avx512 sums it
// (two accumulators over 32-wide steps, a masked tail into the first), so the scores are the
// same bits as one dot at a time.
V4_AVX512 void scores4_avx512(const float* q, int hn, int d, const float* const* keys, int nk, float scale, float* sc, int ldsc) {
  const int d32 = d / 32 * 32;
  const float* qh[4];
  for (int j = 0; j < 4; ++j) qh[j] = q + static_cast<size_t>(std::min(j, hn - 1)) * d;
  int i = 0;
  for (; i + 2 <= nk; i += 2) {
    const float* ka = keys[i];
    const float* kb = keys[i + 1];
    __m512 a0[4], a1[4], b0[4], b1[4];
    for (int j = 0; j < 4; ++j) a0[j] = a1[j] = b0[j] = b1[j] = _mm512_setzero_ps();
    for (int e = 0; e < d32; e += 32) {
      const __m512 ka0 = _mm512_loadu_ps(ka + e), ka1 = _mm512_loadu_ps(ka + e + 16);
      const __m512 kb0 = _mm512_loadu_ps(kb + e), kb1 = _mm512_loadu_ps(kb + e + 16);
      for (int j = 0; j < 4; ++j) {
        const __m512 q0 = _mm512_loadu_ps(qh[j] + e), q1 = _mm512_loadu_ps(qh[j] + e + 16);
        a0[j] = _mm512_fmadd_ps(q0, ka0, a0[j]);
        a1[j] = _mm512_fmadd_ps(q1, ka1, a1[j]);
        b0[j] = _mm512_fmadd_ps(q0, kb0, b0[j]);
        b1[j] = _mm512_fmadd_ps(q1, kb1, b1[j]);
      }
    }
    for (int e = d32; e < d; e += 16) {
      const __mmask16 m = e + 16 <= d ? 0xFFFF : static_cast<__mmask16>((1u << (d - e)) - 1);
      const __m512 ka0 = _mm512_maskz_loadu_ps(m, ka + e), kb0 = _mm512_maskz_loadu_ps(m, kb + e);
      for (int j = 0; j < 4; ++j) {
        const __m512 q0 = _mm512_maskz_loadu_ps(m, qh[j] + e);
        a0[j] = _mm512_fmadd_ps(q0, ka0, a0[j]);
        b0[j] = _mm512_fmadd_ps(q0, kb0, b0[j]);
      }
    }
    for (int j = 0; j < hn; ++j) {
      sc[static_cast<size_t>(j) * ldsc + i] = _mm512_reduce_add_ps(_mm512_add_ps(a0[j], a1[j])) * scale;
      sc[static_cast<size_t>(j) * ldsc + i + 1] = _mm512_reduce_add_ps(_mm512_add_ps(b0[j], b1[j])) * scale;
    }
  }
  for (; i < nk; ++i)
    for (int j = 0; j < hn; ++j) sc[static_cast<size_t>(j) * ldsc + i] = dot_avx512(qh[j], keys[i], d) * scale;
}

// o[0..d) += Σ_i p[i] · key_i, two heads at a time sharing the key loads.
V4_AVX512 void weighted_sum2_avx512(const float* p0, const float* p1, const float* const* keys, int nk, int d, float* o0, float* o1) {
  for (int c = 0; c < d; c += 128) {
    const int cn = std::min(128, d - c);
    __m512 a[8], b[8];
    for (int j = 0; j < 8; ++j) a[j] = b[j] = _mm512_setzero_ps();
    if (cn == 128) {
      for (int i = 0; i < nk; ++i) {
        const float* k = keys[i] + c;
        const __m512 x = _mm512_set1_ps(p0[i]), y = _mm512_set1_ps(p1[i]);
        for (int j = 0; j < 8; ++j) {
          const __m512 kv = _mm512_loadu_ps(k + 16 * j);
          a[j] = _mm512_fmadd_ps(x, kv, a[j]);
          b[j] = _mm512_fmadd_ps(y, kv, b[j]);
        }
      }
    } else {
      for (int i = 0; i < nk; ++i) {
        const float* k = keys[i] + c;
        const __m512 x = _mm512_set1_ps(p0[i]), y = _mm512_set1_ps(p1[i]);
        for (int j = 0; j * 16 < cn; ++j) {
          const __mmask16 m = (j + 1) * 16 <= cn ? 0xFFFF : static_cast<__mmask16>((1u << (cn - 16 * j)) - 1);
          const __m512 kv = _mm512_maskz_loadu_ps(m, k + 16 * j);
          a[j] = _mm512_fmadd_ps(x, kv, a[j]);
          b[j] = _mm512_fmadd_ps(y, kv, b[j]);
        }
      }
    }
    for (int j = 0; j * 16 < cn; ++j) {
      const __mmask16 m = (j + 1) * 16 <= cn ? 0xFFFF : static_cast<__mmask16>((1u << (cn - 16 * j)) - 1);
      _mm512_mask_storeu_ps(o0 + c + 16 * j, m, a[j]);
      _mm512_mask_storeu_ps(o1 + c + 16 * j, m, b[j]);
    }
  }
}

// AVX2 (Zen 2/3 and other CPUs without AVX-512): 16 ymm registers, so one key block at a time as
// two 8-key halves x up to 6 heads (12 accumulators, 2 key loads, 1 broadcast per 12 FMAs). The
// head count is a template argument so the last group (16 heads = 6 + 6 + 4) is unrolled too and
// keeps its accumulators in registers. Every score is summed exactly as the AVX-512 kernel sums
// it (one FMA per e in order, then the heads in order), so a key's score does not depend on n or
// on the block it shares.
template <int NH>
V4_AVX2 inline void indexer_heads_avx2(const float* qh, const float* w, int d, const float* kb, __m256& s0, __m256& s1) {
  constexpr int B = KeyBlocks::kBlock;
  __m256 a0[NH], a1[NH];
  for (int h = 0; h < NH; ++h) a0[h] = a1[h] = _mm256_setzero_ps();
  for (int e = 0; e < d; ++e) {
    const __m256 v0 = _mm256_loadu_ps(kb + static_cast<size_t>(e) * B), v1 = _mm256_loadu_ps(kb + static_cast<size_t>(e) * B + 8);
    for (int h = 0; h < NH; ++h) {
      const __m256 qb = _mm256_broadcast_ss(qh + static_cast<size_t>(h) * d + e);
      a0[h] = _mm256_fmadd_ps(qb, v0, a0[h]);
      a1[h] = _mm256_fmadd_ps(qb, v1, a1[h]);
    }
  }
  for (int h = 0; h < NH; ++h) {
    const __m256 wh = _mm256_set1_ps(w[h]);
    s0 = _mm256_fmadd_ps(wh, _mm256_max_ps(a0[h], _mm256_setzero_ps()), s0);
    s1 = _mm256_fmadd_ps(wh, _mm256_max_ps(a1[h], _mm256_setzero_ps()), s1);
  }
}

V4_AVX2 void indexer_scores_avx2(const float* q, const float* w, int H, const KeyBlocks& keys, int64_t n, float* out) {
  const int d = keys.d;
  constexpr int B = KeyBlocks::kBlock;
  constexpr int kHeads = 6;
  const int64_t nb = (n + B - 1) / B;
  for (int64_t jb = 0; jb < nb; ++jb) {
    const float* kb = keys.data.data() + static_cast<size_t>(jb) * d * B;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    for (int h0 = 0; h0 < H; h0 += kHeads) {
      const float* qh = q + static_cast<size_t>(h0) * d;
      switch (std::min(kHeads, H - h0)) {
        case 6: indexer_heads_avx2<6>(qh, w + h0, d, kb, s0, s1); break;
        case 5: indexer_heads_avx2<5>(qh, w + h0, d, kb, s0, s1); break;
        case 4: indexer_heads_avx2<4>(qh, w + h0, d, kb, s0, s1); break;
        case 3: indexer_heads_avx2<3>(qh, w + h0, d, kb, s0, s1); break;
        case 2: indexer_heads_avx2<2>(qh, w + h0, d, kb, s0, s1); break;
        default: indexer_heads_avx2<1>(qh, w + h0, d, kb, s0, s1); break;
      }
    }
    _mm256_storeu_ps(out + jb * B, s0);
    _mm256_storeu_ps(out + jb * B + 8, s1);
  }
}

// Lanes [0, r) of a ymm mask, r in [0, 8].
V4_AVX2 inline __m256i tail_mask8(int r) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(r), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// The 8 lanes summed in a fixed tree: (0+4, 1+5, 2+6, 3+7), then pairs, then the last two.
V4_AVX2 inline float hsum8(__m256 v) {
  __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  x = _mm_add_ps(x, _mm_movehl_ps(x, x));
  x = _mm_add_ss(x, _mm_movehdup_ps(x));
  return _mm_cvtss_f32(x);
}

// One accumulator over 8-wide steps, a masked tail into it, then hsum8: the order scores4_avx2
// uses for every (head, key), so a score is the same bits whichever way the heads are grouped.
V4_AVX2 float dot_avx2(const float* a, const float* b, int d) {
  __m256 s = _mm256_setzero_ps();
  int e = 0;
  for (; e + 8 <= d; e += 8) s = _mm256_fmadd_ps(_mm256_loadu_ps(a + e), _mm256_loadu_ps(b + e), s);
  if (e < d) {
    const __m256i m = tail_mask8(d - e);
    s = _mm256_fmadd_ps(_mm256_maskload_ps(a + e, m), _mm256_maskload_ps(b + e, m), s);
  }
  return hsum8(s);
}

// scores4_avx512 for AVX2: four heads x two keys = 8 independent chains (FMA latency 4 x 2 ports).
V4_AVX2 void scores4_avx2(const float* q, int hn, int d, const float* const* keys, int nk, float scale, float* sc, int ldsc) {
  const int d8 = d / 8 * 8;
  const __m256i m = tail_mask8(d - d8);
  const float* qh[4];
  for (int j = 0; j < 4; ++j) qh[j] = q + static_cast<size_t>(std::min(j, hn - 1)) * d;
  int i = 0;
  for (; i + 2 <= nk; i += 2) {
    const float* ka = keys[i];
    const float* kb = keys[i + 1];
    __m256 a[4], b[4];
    for (int j = 0; j < 4; ++j) a[j] = b[j] = _mm256_setzero_ps();
    for (int e = 0; e < d8; e += 8) {
      const __m256 va = _mm256_loadu_ps(ka + e), vb = _mm256_loadu_ps(kb + e);
      for (int j = 0; j < 4; ++j) {
        const __m256 qv = _mm256_loadu_ps(qh[j] + e);
        a[j] = _mm256_fmadd_ps(qv, va, a[j]);
        b[j] = _mm256_fmadd_ps(qv, vb, b[j]);
      }
    }
    if (d8 < d) {
      const __m256 va = _mm256_maskload_ps(ka + d8, m), vb = _mm256_maskload_ps(kb + d8, m);
      for (int j = 0; j < 4; ++j) {
        const __m256 qv = _mm256_maskload_ps(qh[j] + d8, m);
        a[j] = _mm256_fmadd_ps(qv, va, a[j]);
        b[j] = _mm256_fmadd_ps(qv, vb, b[j]);
      }
    }
    for (int j = 0; j < hn; ++j) {
      sc[static_cast<size_t>(j) * ldsc + i] = hsum8(a[j]) * scale;
      sc[static_cast<size_t>(j) * ldsc + i + 1] = hsum8(b[j]) * scale;
    }
  }
  for (; i < nk; ++i)
    for (int j = 0; j < hn; ++j) sc[static_cast<size_t>(j) * ldsc + i] = dot_avx2(qh[j], keys[i], d) * scale;
}

// o_h[0..d) = Σ_i p_h[i] · key_i for NH (1 or 2) heads sharing the key loads: 48 columns (6
// vectors x 2 heads = 12 accumulators) at a time, then 8-column (masked) steps. Every o[e] is
// summed over i in order with one FMA each, whatever chunk it falls in.
template <int NH>
V4_AVX2 void weighted_sum_avx2(const float* const* p, const float* const* keys, int nk, int d, float* const* o) {
  constexpr int kV = 6;
  int c = 0;
  for (; c + 8 * kV <= d; c += 8 * kV) {
    __m256 a[NH][kV];
    for (int h = 0; h < NH; ++h)
      for (int j = 0; j < kV; ++j) a[h][j] = _mm256_setzero_ps();
    for (int i = 0; i < nk; ++i) {
      const float* k = keys[i] + c;
      __m256 x[NH];
      for (int h = 0; h < NH; ++h) x[h] = _mm256_broadcast_ss(p[h] + i);
      for (int j = 0; j < kV; ++j) {
        const __m256 kv = _mm256_loadu_ps(k + 8 * j);
        for (int h = 0; h < NH; ++h) a[h][j] = _mm256_fmadd_ps(x[h], kv, a[h][j]);
      }
    }
    for (int h = 0; h < NH; ++h)
      for (int j = 0; j < kV; ++j) _mm256_storeu_ps(o[h] + c + 8 * j, a[h][j]);
  }
  for (; c < d; c += 8) {
    const __m256i m = tail_mask8(std::min(8, d - c));
    __m256 a[NH];
    for (int h = 0; h < NH; ++h) a[h] = _mm256_setzero_ps();
    for (int i = 0; i < nk; ++i) {
      const __m256 kv = _mm256_maskload_ps(keys[i] + c, m);
      for (int h = 0; h < NH; ++h) a[h] = _mm256_fmadd_ps(_mm256_broadcast_ss(p[h] + i), kv, a[h]);
    }
    for (int h = 0; h < NH; ++h) _mm256_maskstore_ps(o[h] + c, m, a[h]);
  }
}

float dot_portable(const float* a, const float* b, int d) {
  float acc[8] = {};
  int e = 0;
  for (; e + 8 <= d; e += 8)
    for (int j = 0; j < 8; ++j) acc[j] += a[e + j] * b[e + j];
  float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; e < d; ++e) s += a[e] * b[e];
  return s;
}

std::atomic<AttnPath> g_path{AttnPath::kDispatch};

AttnPath pick_path() {
  const AttnPath p = g_path.load(std::memory_order_relaxed);
  if (p != AttnPath::kDispatch) return p;
  return use_avx512() ? AttnPath::kAvx512 : use_avx2() ? AttnPath::kAvx2 : AttnPath::kPortable;
}

}  // namespace

void set_attn_path(AttnPath p) { g_path = p; }

bool attn_path_available(AttnPath p) {
  const CpuFeatures& f = cpu_features();
  switch (p) {
    case AttnPath::kAvx2: return f.avx2 && f.fma;
    case AttnPath::kAvx512: return f.avx512f && f.avx512bw && f.avx512vl && f.fma;
    default: return true;
  }
}

void indexer_scores(const float* q, const float* w, int H, const KeyBlocks& keys, int64_t n, float* out) {
  if (n <= 0) return;
  const AttnPath p = pick_path();
  if (p == AttnPath::kAvx512) indexer_scores_avx512(q, w, H, keys, n, out);
  else if (p == AttnPath::kAvx2) indexer_scores_avx2(q, w, H, keys, n, out);
  else indexer_scores_portable(q, w, H, keys, n, out);
}

void top_k_indices(const float* score, int64_t n, int k, std::vector<int32_t>& out) {
  out.resize(static_cast<size_t>(n));
  std::iota(out.begin(), out.end(), 0);
  if (k < n) {
    std::nth_element(out.begin(), out.begin() + k, out.end(), [&](int32_t a, int32_t b) { return score[a] > score[b]; });
    out.resize(static_cast<size_t>(k));
  }
}

void mqa_attend(const float* q, int H, int d, const float* const* keys, int nk, const float* sink, float scale, float* o,
                std::vector<float>& scratch) {
  scratch.resize(static_cast<size_t>(H) * static_cast<size_t>(std::max(nk, 1)));
  const AttnPath path = pick_path();
  const bool avx512 = path == AttnPath::kAvx512, avx2 = path == AttnPath::kAvx2, simd = avx512 || avx2;
  for (int h = 0; simd && h < H; h += 4) {
    float* sc = scratch.data() + static_cast<size_t>(h) * nk;
    if (avx512) scores4_avx512(q + static_cast<size_t>(h) * d, std::min(4, H - h), d, keys, nk, scale, sc, nk);
    else scores4_avx2(q + static_cast<size_t>(h) * d, std::min(4, H - h), d, keys, nk, scale, sc, nk);
  }
  for (int h = 0; h < H; ++h) {
    const float* qh = q + static_cast<size_t>(h) * d;
    float* sc = scratch.data() + static_cast<size_t>(h) * nk;
    float mx = -INFINITY;
    for (int i = 0; i < nk; ++i) {
      if (!simd) sc[i] = dot_portable(qh, keys[i], d) * scale;
      mx = std::max(mx, sc[i]);
    }
    float den = std::exp(sink[h] - mx);
    for (int i = 0; i < nk; ++i) den += (sc[i] = std::exp(sc[i] - mx));
    const float inv = 1.0f / den;
    for (int i = 0; i < nk; ++i) sc[i] *= inv;
  }
  int h = 0;
  if (avx2) {
    for (; h < H; h += 2) {
      const float* p[2] = {scratch.data() + static_cast<size_t>(h) * nk, scratch.data() + static_cast<size_t>(std::min(h + 1, H - 1)) * nk};
      float* oh[2] = {o + static_cast<size_t>(h) * d, o + static_cast<size_t>(h + 1) * d};
      if (h + 1 < H) weighted_sum_avx2<2>(p, keys, nk, d, oh);
      else weighted_sum_avx2<1>(p, keys, nk, d, oh);
    }
  }
  if (avx512)
    for (; h + 2 <= H; h += 2)
      weighted_sum2_avx512(scratch.data() + static_cast<size_t>(h) * nk, scratch.data() + static_cast<size_t>(h + 1) * nk, keys, nk, d,
                           o + static_cast<size_t>(h) * d, o + static_cast<size_t>(h + 1) * d);
  for (; h < H; ++h) {
    float* oh = o + static_cast<size_t>(h) * d;
    const float* p = scratch.data() + static_cast<size_t>(h) * nk;
    std::fill(oh, oh + d, 0.f);
    for (int i = 0; i < nk; ++i)
      for (int e = 0; e < d; ++e) oh[e] += p[i] * keys[i][e];
  }
}

}  // namespace v4
