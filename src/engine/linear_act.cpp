#include "engine/internal.h"

namespace v4::detail {

void linear_act(const Ctx& c, const LinearWeight& w, const float* x, int M, float* y) {
  if (!c.act_quant || (w.format != WFormat::FP8 && w.format != WFormat::FP4)) {
    linear(w, x, M, y);
    return;
  }
  // Quantise each row per 128-element block to e4m3 with a power-of-two scale, then run the
  // float GEMM on the dequantised values: equal to the reference's blockwise FP8 GEMM up to the
  // order of float accumulation.
  const int K = w.cols;
  std::vector<float> q(static_cast<size_t>(M) * K), s(static_cast<size_t>((K + 127) / 128));
  for (int m = 0; m < M; ++m) {
    float* qm = q.data() + static_cast<size_t>(m) * K;
    act_quant_fp8(x + static_cast<size_t>(m) * K, K, 128, qm, s.data());
    for (int k = 0; k < K; ++k) qm[k] *= s[static_cast<size_t>(k / 128)];
  }
  linear(w, q.data(), M, y);
}

}  // namespace v4::detail
