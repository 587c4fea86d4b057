// V4 mixture of experts (spec §3.8): sqrt-softplus scores, hash (tid2eid) or biased top-k
// selection, weights from the unbiased scores normalised and scaled, SwiGLU with the one-sided
// gate clamp, routing weight applied before w2, plus the shared expert.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/thread_pool.h"
#include "engine/internal.h"

namespace v4::detail {

namespace {

// g = silu(min(g, lim)) ⊙ clamp(u, ±lim) ⊙ wt over one token's I values.
void swiglu(float* gt, const float* ut, int I, float lim, float wt) {
  for (int i = 0; i < I; ++i) {
    float gv = lim > 0 ? std::min(gt[i], lim) : gt[i];
    float uv = lim > 0 ? std::clamp(ut[i], -lim, lim) : ut[i];
    gt[i] = silu(gv) * uv * wt;
  }
}

// out[n, D] (+)= w2 · (silu(min(w1·x, lim)) ⊙ clamp(w3·x, ±lim) ⊙ weight)
void expert_forward(const Ctx& c, const ExpertWeights& e, const float* x, int n, const float* weights, float* out) {
  const int I = e.w1.rows;
  const float lim = c.cfg.swiglu_limit;
  // Kept per thread (reused by every expert and layer instead of page-faulting fresh buffers);
  // bound to references so the pool's threads see the caller's.
  thread_local std::vector<float> tl_g, tl_u;
  std::vector<float>&g = tl_g, &u = tl_u;
  g.resize(static_cast<size_t>(n) * I);
  u.resize(static_cast<size_t>(n) * I);
  linear_act2(c, e.w1, e.w3, x, n, g.data(), u.data());
  parallel_for(static_cast<size_t>(n), 4, [&](size_t t0, size_t t1) {
    for (size_t t = t0; t < t1; ++t) swiglu(g.data() + t * I, u.data() + t * I, I, lim, weights ? weights[t] : 1.0f);
  });
  linear_act(c, e.w2, g.data(), n, out);
}

// One token (batch-1 decode), each chosen expert once: the shared and routed experts' w1 and w3
// in one parallel call, their w2 in another (two fork/joins instead of four per expert), then
// the routed outputs added in expert order: the same sums as the per-expert path below.
void moe_one_token(const Ctx& c, const FfnWeights& F, const float* x, const int32_t* idx, const float* wsel, int K, float* out) {
  const int D = c.cfg.dim;
  const float lim = c.cfg.swiglu_limit;
  std::vector<int> order(static_cast<size_t>(K));
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int a, int b) { return idx[a] < idx[b]; });
  // The chosen experts and their routing weights in expert order.
  std::vector<const ExpertWeights*> ex(static_cast<size_t>(K));
  std::vector<float> wt(static_cast<size_t>(K));
  int Ir = 0;
  for (int i = 0; i < K; ++i) {
    const int k = order[static_cast<size_t>(i)];
    ex[static_cast<size_t>(i)] = &F.experts[static_cast<size_t>(idx[k])];
    wt[static_cast<size_t>(i)] = wsel[k];
    Ir = std::max(Ir, ex[static_cast<size_t>(i)]->w1.rows);
  }
  const int Is = F.shared.w1.rows;
  thread_local std::vector<float> tl_gu, tl_ye;
  std::vector<float>&gu = tl_gu, &ye = tl_ye;
  gu.resize(2 * (static_cast<size_t>(Is) + static_cast<size_t>(K) * Ir));
  ye.resize(static_cast<size_t>(K) * D);
  float* gs = gu.data();
  float* us = gs + Is;
  auto g_of = [&](int i) { return gu.data() + 2 * static_cast<size_t>(Is) + 2 * static_cast<size_t>(i) * Ir; };
  OneTokenCalls up(c);
  up.act(F.shared.w1, x, gs);
  up.act(F.shared.w3, x, us);
  for (int i = 0; i < K; ++i) {
    up.act(ex[static_cast<size_t>(i)]->w1, x, g_of(i));
    up.act(ex[static_cast<size_t>(i)]->w3, x, g_of(i) + Ir);
  }
  up.run();
  swiglu(gs, us, Is, lim, 1.0f);
  for (int i = 0; i < K; ++i) swiglu(g_of(i), g_of(i) + Ir, ex[static_cast<size_t>(i)]->w1.rows, lim, wt[static_cast<size_t>(i)]);
  OneTokenCalls down(c);
  down.act(F.shared.w2, gs, out);
  for (int i = 0; i < K; ++i) down.act(ex[static_cast<size_t>(i)]->w2, g_of(i), ye.data() + static_cast<size_t>(i) * D);
  down.run();
  for (int i = 0; i < K; ++i) {
    const float* y = ye.data() + static_cast<size_t>(i) * D;
    for (int d = 0; d < D; ++d) out[d] += y[d];
  }
}

}  // namespace

void moe(const Ctx& c, const BlockWeights& b, const float* x, int M, const int32_t* tokens, std::vector<SegCtx>& segs,
         float* out) {
  const ModelConfig& cfg = c.cfg;
  const FfnWeights& F = b.ffn;
  const int E = cfg.n_routed_experts, K = cfg.n_activated, D = cfg.dim;
  std::vector<float> scores(static_cast<size_t>(M) * E);
  linear_w(c, F.gate, x, M, scores.data());
  std::vector<int32_t> idx(static_cast<size_t>(M) * K);
  std::vector<float> wsel(static_cast<size_t>(M) * K);
  std::vector<int32_t> order(static_cast<size_t>(E));
  std::vector<float> biased(static_cast<size_t>(E));
  for (int t = 0; t < M; ++t) {
    float* s = scores.data() + static_cast<size_t>(t) * E;
    for (int e = 0; e < E; ++e) s[e] = std::sqrt(softplus(s[e]));
    int32_t* it = idx.data() + static_cast<size_t>(t) * K;
    if (F.hash) {
      const int32_t tok = tokens[t];
      std::copy_n(F.tid2eid.data() + static_cast<size_t>(tok) * K, K, it);
    } else {
      for (int e = 0; e < E; ++e) biased[static_cast<size_t>(e)] = s[e] + F.bias[static_cast<size_t>(e)];
      std::iota(order.begin(), order.end(), 0);
      std::partial_sort(order.begin(), order.begin() + K, order.end(), [&](int32_t a, int32_t bb) {
        return biased[static_cast<size_t>(a)] > biased[static_cast<size_t>(bb)];
      });
      std::copy_n(order.begin(), K, it);
    }
    float sum = 0;
    for (int k = 0; k < K; ++k) sum += s[it[k]];
    for (int k = 0; k < K; ++k) wsel[static_cast<size_t>(t) * K + k] = s[it[k]] / sum * cfg.route_scale;
  }
  if (c.trace && c.trace->routes && c.trace_seg0 && !segs.empty()) {
    const SegCtx& s0 = segs[0];
    auto& ex = c.trace->route_experts[b.layer_id];
    auto& wt = c.trace->route_weights[b.layer_id];
    ex.resize(static_cast<size_t>(s0.n) * K);
    wt.resize(static_cast<size_t>(s0.n) * K);
    for (int t = 0; t < s0.n; ++t) {
      std::vector<std::pair<int32_t, float>> pr;
      for (int k = 0; k < K; ++k)
        pr.push_back({idx[static_cast<size_t>(s0.off + t) * K + k], wsel[static_cast<size_t>(s0.off + t) * K + k]});
      std::sort(pr.begin(), pr.end());
      for (int k = 0; k < K; ++k) {
        ex[static_cast<size_t>(t) * K + k] = pr[static_cast<size_t>(k)].first;
        wt[static_cast<size_t>(t) * K + k] = pr[static_cast<size_t>(k)].second;
      }
    }
  }

  if (M == 1) {
    bool distinct = true;
    for (int k = 0; k < K; ++k)
      for (int j = 0; j < k; ++j) distinct = distinct && idx[static_cast<size_t>(k)] != idx[static_cast<size_t>(j)];
    if (distinct) {
      moe_one_token(c, F, x, idx.data(), wsel.data(), K, out);
      return;
    }
  }
  // Shared expert on every token, then each routed expert on the tokens that chose it.
  expert_forward(c, F.shared, x, M, nullptr, out);
  std::vector<std::vector<std::pair<int, float>>> by_expert(static_cast<size_t>(E));
  for (int t = 0; t < M; ++t)
    for (int k = 0; k < K; ++k)
      by_expert[static_cast<size_t>(idx[static_cast<size_t>(t) * K + k])].push_back({t, wsel[static_cast<size_t>(t) * K + k]});
  thread_local std::vector<float> tl_xe, tl_we, tl_ye;
  std::vector<float>&xe = tl_xe, &we = tl_we, &ye = tl_ye;
  for (int e = 0; e < E; ++e) {
    const auto& list = by_expert[static_cast<size_t>(e)];
    if (list.empty()) continue;
    const int n = static_cast<int>(list.size());
    xe.resize(static_cast<size_t>(n) * D);
    we.resize(static_cast<size_t>(n));
    ye.resize(static_cast<size_t>(n) * D);
    for (int i = 0; i < n; ++i) we[static_cast<size_t>(i)] = list[static_cast<size_t>(i)].second;
    parallel_for(static_cast<size_t>(n), 8, [&](size_t i0, size_t i1) {
      for (size_t i = i0; i < i1; ++i) std::copy_n(x + static_cast<size_t>(list[i].first) * D, D, xe.data() + i * D);
    });
    expert_forward(c, F.experts[static_cast<size_t>(e)], xe.data(), n, we.data(), ye.data());
    // Split by columns, tokens in list order: the same sums in the same order as one thread,
    // even if a (hash-routed) token listed an expert twice.
    parallel_for(static_cast<size_t>(D), 512, [&](size_t d0, size_t d1) {
      for (int i = 0; i < n; ++i) {
        float* o = out + static_cast<size_t>(list[static_cast<size_t>(i)].first) * D;
        const float* y = ye.data() + static_cast<size_t>(i) * D;
        for (size_t d = d0; d < d1; ++d) o[d] += y[d];
      }
    });
  }
}

}  // namespace v4::detail
