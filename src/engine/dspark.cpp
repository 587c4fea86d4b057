// The DSpark drafter of V4-Flash-0731 / V4-Pro-0813 (docs/checkpoints.md says what is confirmed
// and from where). Per sequence it keeps, for each draft stage, a sliding window of context KV
// rows projected from the target model: main_x = main_norm(main_proj(concat over the target
// layers of the hc-mean streams)), kv = rope(kv_norm(wkv_stage(main_x))). A draft block is the
// anchor token (the last sampled one) followed by noise tokens at the next positions; it runs
// through the stages as full V4 blocks whose attention is non-causal: every block token sees the
// whole window of context rows and every block token. The output head (hc_head, norm, shared LM
// head) gives base logits per block position; the Markov head's bias w2·w1[prev] is added token
// by token by the sampler (engine/speculative.cpp), which makes the block semi-autoregressive.
// Drafts are verified exactly, so any deviation from the trained recipe lowers acceptance only.
#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/thread_pool.h"
#include "engine/engine.h"
#include "engine/internal.h"
#include "kernels/attn.h"

namespace v4 {

using detail::Ctx;
using detail::SegCtx;

namespace {

const DSparkWeights& drafter(const ModelWeights& w) {
  if (!w.dspark) throw InputError("this checkpoint has no DSpark drafter (mtp.0..2 of the 0731/0813 layout)");
  return *w.dspark;
}

// Projected, normalised, rotated KV of rows x [M, D] (the attention's own wkv path).
void project_kv(const Ctx& c, const AttentionWeights& A, const float* x, int M, const int64_t* pos, float* kv) {
  const ModelConfig& cfg = c.cfg;
  const int hd = cfg.head_dim, nd = hd - cfg.rope_dim;
  detail::linear_act(c, A.wkv, x, M, kv);
  for (int t = 0; t < M; ++t) {
    float* k = kv + static_cast<size_t>(t) * hd;
    rmsnorm(k, A.kv_norm.data(), hd, cfg.norm_eps, k);
    c.rope_plain.apply(k + nd, pos[t]);
    if (c.cache_quant) fakequant_fp8(k, nd, 64);
  }
}

// Non-causal draft attention of the blocks (segment i = drafts[i], B rows each).
void draft_attention(const Ctx& c, const BlockWeights& b, int stage, const float* x, int M, std::span<DSparkDraft> drafts,
                     int B, float* out) {
  const ModelConfig& cfg = c.cfg;
  const AttentionWeights& A = b.attn;
  const int H = cfg.n_heads, hd = cfg.head_dim, nd = hd - cfg.rope_dim, qlr = cfg.q_lora_rank, win = cfg.window;
  const float eps = cfg.norm_eps;
  std::vector<int64_t> pos(static_cast<size_t>(M));
  for (size_t i = 0; i < drafts.size(); ++i)
    for (int t = 0; t < B; ++t) pos[i * static_cast<size_t>(B) + static_cast<size_t>(t)] = drafts[i].pos + t;
  std::vector<float> qr(static_cast<size_t>(M) * qlr), q(static_cast<size_t>(M) * H * hd), kv(static_cast<size_t>(M) * hd);
  detail::linear_act(c, A.wq_a, x, M, qr.data());
  for (int t = 0; t < M; ++t) rmsnorm(qr.data() + static_cast<size_t>(t) * qlr, A.q_norm.data(), qlr, eps, qr.data() + static_cast<size_t>(t) * qlr);
  detail::linear_act(c, A.wq_b, qr.data(), M, q.data());
  for (int t = 0; t < M; ++t) {
    for (int h = 0; h < H; ++h) rms_normalize(q.data() + (static_cast<size_t>(t) * H + h) * hd, hd, eps);
    c.rope_plain.apply_heads(q.data() + static_cast<size_t>(t) * H * hd + nd, H, hd, pos[static_cast<size_t>(t)]);
  }
  project_kv(c, A, x, M, pos.data(), kv.data());

  std::vector<float> o(static_cast<size_t>(M) * H * hd);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  for (size_t i = 0; i < drafts.size(); ++i) {
    const DSparkState& st = *drafts[i].state;
    const int64_t p0 = drafts[i].pos;
    // Context rows of the window before the block, as far as the state holds them.
    const int64_t lo = std::max(st.first, p0 - win), hi = std::min(st.end, p0);
    std::vector<const float*> keys;
    for (int64_t p = lo; p < hi; ++p) keys.push_back(st.ring[static_cast<size_t>(stage)].data() + static_cast<size_t>(p % win) * hd);
    for (int t = 0; t < B; ++t) keys.push_back(kv.data() + (i * static_cast<size_t>(B) + static_cast<size_t>(t)) * hd);
    parallel_for(static_cast<size_t>(B), 1, [&](size_t t0, size_t t1) {
      std::vector<float> scratch;
      for (size_t t = t0; t < t1; ++t) {
        const size_t r = i * static_cast<size_t>(B) + t;
        float* ot = o.data() + r * H * hd;
        mqa_attend(q.data() + r * H * hd, H, hd, keys.data(), static_cast<int>(keys.size()), A.sink.data(), scale, ot, scratch);
        c.rope_plain.apply_heads(ot + nd, H, hd, pos[r], /*inverse=*/true);
      }
    });
  }
  // Grouped low-rank output projection, as in the main blocks.
  const int G = cfg.o_groups, olr = cfg.o_lora_rank, gK = H / G * hd;
  std::vector<float> z(static_cast<size_t>(M) * G * olr);
  parallel_for(static_cast<size_t>(G * olr), 16, [&](size_t n0, size_t n1) {
    for (int g = 0; g < G; ++g) {
      const int lo = std::max<int>(static_cast<int>(n0), g * olr), hi = std::min<int>(static_cast<int>(n1), (g + 1) * olr);
      if (lo >= hi) continue;
      linear_rows(A.wo_a, o.data() + static_cast<size_t>(g) * gK, M, z.data(), H * hd, G * olr, lo, hi);
    }
  });
  detail::linear_act(c, A.wo_b, z.data(), M, out);
}

}  // namespace

DSparkState Engine::new_dspark_state() const {
  const DSparkWeights& w = drafter(w_);
  DSparkState s;
  s.ring.assign(w.stages.size(), std::vector<float>(static_cast<size_t>(w_.cfg.window) * w_.cfg.head_dim, 0.f));
  return s;
}

void Engine::dspark_context(DSparkState& st, const float* aux, int64_t first, int n) {
  const DSparkWeights& w = drafter(w_);
  if (n <= 0) return;
  const ModelConfig& cfg = w_.cfg;
  const int D = cfg.dim, hd = cfg.head_dim, win = cfg.window, T = static_cast<int>(cfg.dspark.target_layer_ids.size());
  if (first != st.end || st.end == st.first) st.first = st.end = first;  // not a continuation: restart the window
  // Only the last `win` rows can be attended.
  const int skip = std::max(0, n - win), m = n - skip;
  const Ctx c = drafter_ctx();
  std::vector<float> mx(static_cast<size_t>(m) * D), kv(static_cast<size_t>(m) * hd);
  std::vector<int64_t> pos(static_cast<size_t>(m));
  for (int t = 0; t < m; ++t) pos[static_cast<size_t>(t)] = first + skip + t;
  detail::linear_act(c, w.main_proj, aux + static_cast<size_t>(skip) * T * D, m, mx.data());
  for (int t = 0; t < m; ++t) rmsnorm(mx.data() + static_cast<size_t>(t) * D, w.main_norm.data(), D, cfg.norm_eps, mx.data() + static_cast<size_t>(t) * D);
  for (size_t s = 0; s < w.stages.size(); ++s) {
    project_kv(c, w.stages[s].attn, mx.data(), m, pos.data(), kv.data());
    for (int t = 0; t < m; ++t)
      std::copy_n(kv.data() + static_cast<size_t>(t) * hd, hd, st.ring[s].data() + static_cast<size_t>(pos[static_cast<size_t>(t)] % win) * hd);
  }
  st.end = first + n;
  st.first = std::max(st.first, st.end - win);
}

void Engine::dspark_draft(std::span<DSparkDraft> drafts) {
  const DSparkWeights& w = drafter(w_);
  const ModelConfig& cfg = w_.cfg;
  const int hc = cfg.hc_mult, D = cfg.dim, V = cfg.vocab_size, B = cfg.dspark.block_size;
  const int M = static_cast<int>(drafts.size()) * B;
  if (M == 0) return;
  std::vector<int32_t> tokens(static_cast<size_t>(M), cfg.dspark.noise_token_id);
  std::vector<SegCtx> segs;
  for (size_t i = 0; i < drafts.size(); ++i) {
    if (!drafts[i].state || drafts[i].anchor < 0 || drafts[i].anchor >= V) throw InputError("dspark_draft: bad draft");
    tokens[i * static_cast<size_t>(B)] = drafts[i].anchor;
    SegCtx sc;
    sc.p0 = drafts[i].pos;
    sc.off = static_cast<int>(i) * B;
    sc.n = B;
    segs.push_back(sc);
  }
  const Ctx c = drafter_ctx();
  std::vector<float> X(static_cast<size_t>(M) * hc * D);
  for (int t = 0; t < M; ++t) {
    float* xt = X.data() + static_cast<size_t>(t) * hc * D;
    w_.embed.dequant_row(tokens[static_cast<size_t>(t)], xt);
    for (int s = 1; s < hc; ++s) std::copy_n(xt, D, xt + static_cast<size_t>(s) * D);
  }
  for (size_t s = 0; s < w.stages.size(); ++s) {
    const BlockWeights& b = w.stages[s];
    detail::run_block_with(c, b, X.data(), M, tokens.data(), segs,
                           [&](const float* x, float* out) { draft_attention(c, b, static_cast<int>(s), x, M, drafts, B, out); });
  }
  std::vector<int> rows;
  std::vector<float*> outs;
  for (size_t i = 0; i < drafts.size(); ++i)
    for (int t = 0; t < B; ++t) {
      rows.push_back(static_cast<int>(i) * B + t);
      outs.push_back(drafts[i].logits ? drafts[i].logits + static_cast<size_t>(t) * V : nullptr);
    }
  detail::head_rows(c, w.head, w_.lm_head, X.data(), rows, outs.data());
}

void Engine::dspark_markov_bias(int32_t prev, float* bias) const {
  const DSparkWeights& w = drafter(w_);
  std::vector<float> e(static_cast<size_t>(w_.cfg.dspark.markov_rank));
  w.markov_w1.dequant_row(prev, e.data());
  const Ctx c = drafter_ctx();
  detail::linear_w(c, w.markov_w2, e.data(), 1, bias);
}

}  // namespace v4
