#include <cstdlib>

#include "engine/internal.h"
#include "kernels/linear_bf16.h"

namespace v4::detail {

bool Bf16Choice::usable(const LinearWeight& w) {
  if (!enabled || (w.format != WFormat::FP8 && w.format != WFormat::FP4)) return false;
  std::lock_guard<std::mutex> lk(mu);
  auto it = ok.find(&w);
  if (it == ok.end()) it = ok.emplace(&w, bf16_weight_ok(w)).first;
  return it->second;
}

namespace {

// Float path: quantise each row per 128-element block to e4m3 with a power-of-two scale, then
// run the float GEMM on the dequantised values: equal to the reference's blockwise FP8 GEMM up
// to the order of float accumulation.
void linear_act_f32(const LinearWeight& w, const float* x, int M, float* y) {
  const int K = w.cols;
  std::vector<float> q(static_cast<size_t>(M) * K), s(static_cast<size_t>((K + 127) / 128));
  for (int m = 0; m < M; ++m) {
    float* qm = q.data() + static_cast<size_t>(m) * K;
    act_quant_fp8(x + static_cast<size_t>(m) * K, K, 128, qm, s.data());
    for (int k = 0; k < K; ++k) qm[k] *= s[static_cast<size_t>(k / 128)];
  }
  linear(w, q.data(), M, y);
}

bool quantised(const Ctx& c, const LinearWeight& w) {
  return c.act_quant && (w.format == WFormat::FP8 || w.format == WFormat::FP4);
}

}  // namespace

void linear_w(const Ctx& c, const LinearWeight& w, const float* x, int M, float* y, bool fast_part) {
  if (c.act_quant && c.bf16 && c.bf16->enabled && w.format == WFormat::BF16)
    linear_bf16_split(w, x, M, y, 0, 0, fast_part && c.bf16->one_part ? 1 : 3);
  else linear(w, x, M, y);
}

void linear_act(const Ctx& c, const LinearWeight& w, const float* x, int M, float* y) {
  if (!quantised(c, w)) {
    linear_w(c, w, x, M, y);
    return;
  }
  if (c.bf16 && c.bf16->usable(w)) {
    // The same FP8 values on the BF16 dot-product units (exact products, FP32 accumulation).
    thread_local std::vector<uint16_t> xp;
    xp.resize(static_cast<size_t>(M) * bf16_padded_k(w));
    bf16_quant_pack_act(w, x, M, w.cols, xp.data());
    linear_bf16(w, xp.data(), M, y);
    return;
  }
  linear_act_f32(w, x, M, y);
}

void linear_act2(const Ctx& c, const LinearWeight& w1, const LinearWeight& w3, const float* x, int M, float* y1, float* y3) {
  if (quantised(c, w1) && c.bf16 && w1.format == w3.format && w1.cols == w3.cols && c.bf16->usable(w1) &&
      c.bf16->usable(w3)) {
    thread_local std::vector<uint16_t> xp;
    xp.resize(static_cast<size_t>(M) * bf16_padded_k(w1));
    bf16_quant_pack_act(w1, x, M, w1.cols, xp.data());
    linear_bf16(w1, xp.data(), M, y1);
    linear_bf16(w3, xp.data(), M, y3);
    return;
  }
  linear_act(c, w1, x, M, y1);
  linear_act(c, w3, x, M, y3);
}

void OneTokenCalls::run() {
  std::vector<OneTokenJob> jobs;
  std::vector<size_t> packed_of(calls_.size(), SIZE_MAX);
  // Packed activations, one per (input, format, width): the experts' w1 and w3 share theirs.
  thread_local std::vector<std::vector<uint16_t>> packs;
  struct PackKey {
    const float* x;
    WFormat f;
    int cols;
  };
  std::vector<PackKey> keys;
  for (size_t i = 0; i < calls_.size(); ++i) {
    const Call& k = calls_[i];
    const LinearWeight& w = *k.w;
    OneTokenJob j;
    j.w = &w;
    j.y = k.y;
    if (k.split_parts > 0) {
      j.x = k.x;
      j.parts = k.split_parts;
    } else if (k.act && quantised(c_, w) && c_.bf16 && c_.bf16->usable(w)) {
      size_t p = 0;
      while (p < keys.size() && !(keys[p].x == k.x && keys[p].f == w.format && keys[p].cols == w.cols)) ++p;
      if (p == keys.size()) {
        keys.push_back({k.x, w.format, w.cols});
        if (packs.size() < keys.size()) packs.resize(keys.size());
        packs[p].resize(static_cast<size_t>(bf16_padded_k(w)));
        bf16_quant_pack_act(w, k.x, 1, w.cols, packs[p].data());
      }
      j.xp = packs[p].data();
    } else if (!k.act && c_.act_quant && c_.bf16 && c_.bf16->enabled && w.format == WFormat::BF16) {
      j.x = k.x;
      j.parts = k.fast_part && c_.bf16->one_part ? 1 : 3;
    } else {
      if (k.act) linear_act(c_, w, k.x, 1, k.y);
      else linear_w(c_, w, k.x, 1, k.y, k.fast_part);
      continue;
    }
    jobs.push_back(j);
  }
  linear_one_token(jobs.data(), static_cast<int>(jobs.size()));
  calls_.clear();
}

}  // namespace v4::detail
