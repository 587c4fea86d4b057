// A few tokens on the vdpbf16ps units (machines with AVX-512 BF16 but without AMX).
#include "kernels/linear_bf16_internal.h"

#include <algorithm>

namespace v4::bf16 {

// ---- batched (M > 1): RB rows decoded once into a buffer, then MT tokens x 4 rows register
// tiles over k blocks of KB columns (the x tile and the weight block stay in L1); accumulators
// are carried between k blocks in memory, so each (token, row) sees exactly the decode path's
// sequence of dot-product steps.
constexpr int KB = 512, MT = 6;  // RB: linear_bf16_internal.h

namespace {
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

}  // namespace

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


}  // namespace v4::bf16
