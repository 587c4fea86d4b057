// Engine: block loop with manifold-constrained hyper-connections (spec §3.1–3.3), final head
// reduction and logits, chunking of long segments, and the MTP module (§3.9).
#include "engine/engine.h"

#include <algorithm>
#include <cmath>

#include "core/cpu.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "engine/internal.h"
#include "kernels/linear_bf16.h"

namespace v4 {

using detail::Ctx;
using detail::SegCtx;

const char* numerics_name(Numerics n) {
  switch (n) {
    case Numerics::Exact: return "exact";
    case Numerics::Official: return "official";
    case Numerics::CacheSim: return "cachesim";
    case Numerics::Fast: return "fast";
  }
  return "exact";
}

bool parse_numerics(const std::string& s, Numerics* out) {
  for (Numerics n : {Numerics::Exact, Numerics::Official, Numerics::CacheSim, Numerics::Fast})
    if (s == numerics_name(n)) {
      *out = n;
      return true;
    }
  return false;
}

struct Engine::Impl {
  RopeTable rope_plain, rope_comp;
  detail::Bf16Choice bf16;
};

Engine::Engine(const ModelWeights& w, Numerics numerics) : w_(w), numerics_(numerics), impl_(std::make_unique<Impl>()) {
  const ModelConfig& c = w.cfg;
  impl_->rope_plain.init(c.rope_dim, c.rope_theta, false, 1, c.original_seq_len, c.beta_fast, c.beta_slow);
  impl_->rope_comp.init(c.rope_dim, c.compress_rope_theta, true, c.rope_factor, c.original_seq_len, c.beta_fast, c.beta_slow);
  const bool quant = numerics == Numerics::Official || numerics == Numerics::Fast;
  impl_->bf16.enabled = quant && bf16_dot_available() && !env_flag("V4HOST_NO_BF16");
  impl_->bf16.one_part = numerics == Numerics::Fast;
}

bool Engine::bf16_dot() const { return impl_->bf16.enabled; }

Engine::~Engine() = default;

std::unique_ptr<SequenceState> Engine::new_sequence(bool with_mtp) const {
  return std::make_unique<SequenceState>(w_.cfg, with_mtp && has_mtp());
}

namespace {

// Residual streams X [M, hc, D] through one block (attention then MoE sub-layer).
struct HcMix {
  std::vector<float> post, comb;  // [M, hc], [M, hc, hc]
};

void hc_pre(const ModelConfig& cfg, const HcWeights& hw, const float* X, int M, float* x_in, HcMix& mix) {
  const int hc = cfg.hc_mult, D = cfg.dim, nmix = cfg.hc_mix();
  std::vector<float> m(static_cast<size_t>(M) * nmix);
  linear(hw.fn, X, M, m.data());
  mix.post.resize(static_cast<size_t>(M) * hc);
  mix.comb.resize(static_cast<size_t>(M) * hc * hc);
  parallel_for(static_cast<size_t>(M), 4, [&](size_t t0, size_t t1) {
    std::vector<float> pre(static_cast<size_t>(hc));
    for (size_t t = t0; t < t1; ++t) {
      const float* v = X + t * hc * D;
      const float r = inv_rms(v, hc * D, cfg.norm_eps);
      float* mt = m.data() + t * nmix;
      for (int i = 0; i < nmix; ++i) mt[i] *= r;
      hc_split_sinkhorn(mt, hw.scale.data(), hw.base.data(), hc, cfg.hc_sinkhorn_iters, cfg.hc_eps, pre.data(),
                        mix.post.data() + t * hc, mix.comb.data() + t * hc * hc);
      float* xo = x_in + t * D;
      std::fill(xo, xo + D, 0.f);
      for (int i = 0; i < hc; ++i)
        for (int d = 0; d < D; ++d) xo[d] += pre[static_cast<size_t>(i)] * v[static_cast<size_t>(i) * D + d];
    }
  });
}

void hc_post(const ModelConfig& cfg, const float* f, float* X, int M, const HcMix& mix) {
  const int hc = cfg.hc_mult, D = cfg.dim;
  parallel_for(static_cast<size_t>(M), 4, [&](size_t t0, size_t t1) {
    std::vector<float> res(static_cast<size_t>(hc) * D);
    for (size_t t = t0; t < t1; ++t) {
      float* x = X + t * hc * D;
      std::copy_n(x, hc * D, res.data());
      const float* post = mix.post.data() + t * hc;
      const float* comb = mix.comb.data() + t * hc * hc;
      for (int k = 0; k < hc; ++k) {
        float* xk = x + static_cast<size_t>(k) * D;
        for (int d = 0; d < D; ++d) xk[d] = post[k] * f[t * D + d];
        for (int j = 0; j < hc; ++j) {
          const float cjk = comb[j * hc + k];
          const float* rj = res.data() + static_cast<size_t>(j) * D;
          for (int d = 0; d < D; ++d) xk[d] += cjk * rj[d];
        }
      }
    }
  });
}

// DSpark context rows: after target block l (the k-th of dspark.target_layer_ids), the mean over
// the hc streams of every token of the segments that asked for them (Segment::aux).
void capture_aux(const ModelConfig& cfg, int l, const float* X, std::span<Segment> segs, const std::vector<SegCtx>& ctx,
                 const std::vector<size_t>& which, const std::vector<int>& done) {
  const auto& tl = cfg.dspark.target_layer_ids;
  const auto it = std::find(tl.begin(), tl.end(), l);
  if (it == tl.end()) return;
  const int hc = cfg.hc_mult, D = cfg.dim, T = static_cast<int>(tl.size()), k = static_cast<int>(it - tl.begin());
  for (size_t j = 0; j < ctx.size(); ++j) {
    float* aux = segs[which[j]].aux;
    if (!aux) continue;
    for (int t = 0; t < ctx[j].n; ++t) {
      const float* x = X + static_cast<size_t>(ctx[j].off + t) * hc * D;
      float* o = aux + (static_cast<size_t>(done[which[j]] + t) * T + k) * D;
      for (int d = 0; d < D; ++d) {
        float acc = 0;
        for (int s = 0; s < hc; ++s) acc += x[static_cast<size_t>(s) * D + d];
        o[d] = acc / static_cast<float>(hc);
      }
    }
  }
}

}  // namespace

// One block with the attention sub-layer supplied (the main and MTP blocks use
// detail::attention; the DSpark draft blocks their non-causal window attention).
void detail::run_block_with(const Ctx& c, const BlockWeights& b, float* X, int M, const int32_t* tokens, std::vector<SegCtx>& segs,
                            const AttentionFn& attn) {
  const ModelConfig& cfg = c.cfg;
  const int D = cfg.dim;
  std::vector<float> x(static_cast<size_t>(M) * D), f(static_cast<size_t>(M) * D);
  HcMix mix;
  hc_pre(cfg, b.hc_attn, X, M, x.data(), mix);
  for (int t = 0; t < M; ++t) rmsnorm(x.data() + static_cast<size_t>(t) * D, b.attn_norm.data(), D, cfg.norm_eps, x.data() + static_cast<size_t>(t) * D);
  attn(x.data(), f.data());
  hc_post(cfg, f.data(), X, M, mix);
  hc_pre(cfg, b.hc_ffn, X, M, x.data(), mix);
  for (int t = 0; t < M; ++t) rmsnorm(x.data() + static_cast<size_t>(t) * D, b.ffn_norm.data(), D, cfg.norm_eps, x.data() + static_cast<size_t>(t) * D);
  detail::moe(c, b, x.data(), M, tokens, segs, f.data());
  hc_post(cfg, f.data(), X, M, mix);
}

namespace {

void run_block(const Ctx& c, const BlockWeights& b, float* X, int M, const int32_t* tokens, std::vector<SegCtx>& segs) {
  detail::run_block_with(c, b, X, M, tokens, segs, [&](const float* x, float* out) { detail::attention(c, b, x, M, segs, out); });
}

// hc_head reduction, final norm and logits for up to 256 selected rows of X.
void head_logits_block(const Ctx& c, const ModelConfig& cfg, const HeadWeights& hw, const LinearWeight& lm, const float* X,
                       const std::vector<int>& rows, float* const* outs) {
  const int hc = cfg.hc_mult, D = cfg.dim, R = static_cast<int>(rows.size());
  if (R == 0) return;
  std::vector<float> xs(static_cast<size_t>(R) * hc * D), m(static_cast<size_t>(R) * hc), y(static_cast<size_t>(R) * D);
  for (int i = 0; i < R; ++i) std::copy_n(X + static_cast<size_t>(rows[static_cast<size_t>(i)]) * hc * D, hc * D, xs.data() + static_cast<size_t>(i) * hc * D);
  linear(hw.hc_fn, xs.data(), R, m.data());
  for (int i = 0; i < R; ++i) {
    const float* v = xs.data() + static_cast<size_t>(i) * hc * D;
    const float r = inv_rms(v, hc * D, cfg.norm_eps);
    float* yi = y.data() + static_cast<size_t>(i) * D;
    std::fill(yi, yi + D, 0.f);
    for (int s = 0; s < hc; ++s) {
      const float w = sigmoidf(m[static_cast<size_t>(i) * hc + s] * r * hw.hc_scale[0] + hw.hc_base[static_cast<size_t>(s)]) + cfg.hc_eps;
      for (int d = 0; d < D; ++d) yi[d] += w * v[static_cast<size_t>(s) * D + d];
    }
    rmsnorm(yi, hw.norm.data(), D, cfg.norm_eps, yi);
  }
  std::vector<float> logits(static_cast<size_t>(R) * cfg.vocab_size);
  detail::linear_w(c, lm, y.data(), R, logits.data());
  for (int i = 0; i < R; ++i)
    if (outs[i]) std::copy_n(logits.data() + static_cast<size_t>(i) * cfg.vocab_size, cfg.vocab_size, outs[i]);
}

// Logits for the selected rows of X, in blocks so long all-logits segments need a bounded buffer.
void head_logits(const Ctx& c, const ModelConfig& cfg, const HeadWeights& hw, const LinearWeight& lm, const float* X,
                 const std::vector<int>& rows, float* const* outs) {
  for (size_t i = 0; i < rows.size(); i += 256) {
    const size_t e = std::min(rows.size(), i + 256);
    head_logits_block(c, cfg, hw, lm, X, std::vector<int>(rows.begin() + static_cast<long>(i), rows.begin() + static_cast<long>(e)),
                      outs + i);
  }
}

}  // namespace

void Engine::forward(std::span<Segment> segs, Trace* trace) {
  const ModelConfig& cfg = w_.cfg;
  const int hc = cfg.hc_mult, D = cfg.dim, V = cfg.vocab_size;
  for (auto& s : segs) {
    if (!s.state || s.n < 0 || (s.n > 0 && !s.tokens)) throw InputError("forward: bad segment");
    for (int t = 0; t < s.n; ++t)
      if (s.tokens[t] < 0 || s.tokens[t] >= V)
        throw InputError("token id " + std::to_string(s.tokens[t]) + " is outside the vocabulary [0, " + std::to_string(V) + ")");
  }
  // Rounds of at most max_chunk tokens per segment; a segment's logits rows land in place.
  std::vector<int> done(segs.size(), 0);
  for (bool first_round = true;; first_round = false) {
    std::vector<SegCtx> ctx;
    std::vector<size_t> which;
    std::vector<int32_t> tokens;
    int M = 0;
    for (size_t i = 0; i < segs.size(); ++i) {
      const int left = segs[i].n - done[i];
      if (left <= 0) continue;
      const int n = std::min(left, std::max(1, max_chunk));
      SegCtx sc;
      sc.p0 = segs[i].state->pos;
      sc.off = M;
      sc.n = n;
      ctx.push_back(sc);
      which.push_back(i);
      tokens.insert(tokens.end(), segs[i].tokens + done[i], segs[i].tokens + done[i] + n);
      M += n;
    }
    if (M == 0) break;
    const bool trace_seg0 = trace && which[0] == 0 && first_round;
    Ctx c{cfg, act_quant(), numerics_ != Numerics::Exact, impl_->rope_plain, impl_->rope_comp,
          trace_seg0 ? trace : nullptr, trace_seg0, &impl_->bf16};
    std::vector<float> X(static_cast<size_t>(M) * hc * D);
    parallel_for(static_cast<size_t>(M), 16, [&](size_t t0, size_t t1) {
      for (size_t t = t0; t < t1; ++t) {
        float* xt = X.data() + t * hc * D;
        w_.embed.dequant_row(tokens[t], xt);
        for (int s = 1; s < hc; ++s) std::copy_n(xt, D, xt + static_cast<size_t>(s) * D);
      }
    });
    for (int l = 0; l < cfg.n_layers; ++l) {
      for (size_t k = 0; k < ctx.size(); ++k) ctx[k].ls = &segs[which[k]].state->layers[static_cast<size_t>(l)];
      run_block(c, w_.layers[static_cast<size_t>(l)], X.data(), M, tokens.data(), ctx);
      if (trace_seg0 && std::find(trace->hidden_layers.begin(), trace->hidden_layers.end(), l) != trace->hidden_layers.end())
        trace->hidden[l].assign(X.begin(), X.begin() + static_cast<long>(ctx[0].n) * hc * D);
      capture_aux(cfg, l, X.data(), segs, ctx, which, done);
    }
    // Logits rows and final streams.
    std::vector<int> rows;
    std::vector<float*> outs;
    for (size_t k = 0; k < ctx.size(); ++k) {
      Segment& s = segs[which[k]];
      const int base = done[which[k]];
      if (s.hidden)
        std::copy_n(X.data() + static_cast<size_t>(ctx[k].off) * hc * D, static_cast<size_t>(ctx[k].n) * hc * D,
                    s.hidden + static_cast<size_t>(base) * hc * D);
      if (!s.logits) continue;
      if (s.all_logits) {
        for (int t = std::max(0, s.logits_from - base); t < ctx[k].n; ++t) {
          rows.push_back(ctx[k].off + t);
          outs.push_back(s.logits + static_cast<size_t>(base + t - s.logits_from) * V);
        }
      } else if (base + ctx[k].n == s.n) {
        rows.push_back(ctx[k].off + ctx[k].n - 1);
        outs.push_back(s.logits);
      }
    }
    head_logits(c, cfg, w_.head, w_.lm_head, X.data(), rows, outs.data());
    for (size_t k = 0; k < ctx.size(); ++k) {
      segs[which[k]].state->pos += ctx[k].n;
      done[which[k]] += ctx[k].n;
    }
  }
}

void Engine::forward_mtp(std::span<MtpSegment> segs) {
  if (!w_.mtp) throw InputError("this checkpoint has no MTP (mtp.0.*) weights");
  const ModelConfig& cfg = w_.cfg;
  const MtpWeights& mt = *w_.mtp;
  const int hc = cfg.hc_mult, D = cfg.dim, V = cfg.vocab_size;
  std::vector<SegCtx> ctx;
  std::vector<int32_t> tokens;
  int M = 0;
  for (auto& s : segs) {
    if (!s.state || !s.state->has_mtp) throw InputError("forward_mtp: sequence was created without MTP state");
    for (int t = 0; t < s.n; ++t)
      if (s.next_tokens[t] < 0 || s.next_tokens[t] >= V) throw InputError("token id out of range in MTP input");
    SegCtx sc;
    sc.ls = &s.state->mtp;
    sc.p0 = s.state->mtp_pos;
    sc.off = M;
    sc.n = s.n;
    ctx.push_back(sc);
    tokens.insert(tokens.end(), s.next_tokens, s.next_tokens + s.n);
    M += s.n;
  }
  if (M == 0) return;
  Ctx c{cfg, act_quant(), numerics_ != Numerics::Exact, impl_->rope_plain, impl_->rope_comp, nullptr, false, &impl_->bf16};
  // e = e_proj(enorm(embed[t_{i+1}])) broadcast over streams; h = h_proj(hnorm(H_prev[s])).
  std::vector<float> e(static_cast<size_t>(M) * D), ep(static_cast<size_t>(M) * D), h(static_cast<size_t>(M) * hc * D),
      X(static_cast<size_t>(M) * hc * D);
  for (int t = 0; t < M; ++t) {
    float* et = e.data() + static_cast<size_t>(t) * D;
    w_.embed.dequant_row(tokens[static_cast<size_t>(t)], et);
    rmsnorm(et, mt.enorm.data(), D, cfg.norm_eps, et);
  }
  size_t row = 0;
  for (auto& s : segs)
    for (int t = 0; t < s.n; ++t, ++row)
      for (int k = 0; k < hc; ++k)
        rmsnorm(s.hidden + (static_cast<size_t>(t) * hc + k) * D, mt.hnorm.data(), D, cfg.norm_eps,
                h.data() + (row * hc + k) * D);
  detail::linear_act(c, mt.e_proj, e.data(), M, ep.data());
  detail::linear_act(c, mt.h_proj, h.data(), M * hc, X.data());
  for (int t = 0; t < M; ++t)
    for (int k = 0; k < hc; ++k) {
      float* x = X.data() + (static_cast<size_t>(t) * hc + k) * D;
      const float* a = ep.data() + static_cast<size_t>(t) * D;
      for (int d = 0; d < D; ++d) x[d] += a[d];
    }
  run_block(c, mt.block, X.data(), M, tokens.data(), ctx);
  std::vector<int> rows;
  std::vector<float*> outs;
  for (size_t k = 0; k < ctx.size(); ++k) {
    MtpSegment& s = segs[k];
    if (s.logits) {
      if (s.all_logits)
        for (int t = 0; t < s.n; ++t) {
          rows.push_back(ctx[k].off + t);
          outs.push_back(s.logits + static_cast<size_t>(t) * V);
        }
      else if (s.n > 0) {
        rows.push_back(ctx[k].off + s.n - 1);
        outs.push_back(s.logits);
      }
    }
    s.state->mtp_pos += s.n;
  }
  head_logits(c, cfg, mt.head, w_.lm_head, X.data(), rows, outs.data());
}

detail::Ctx Engine::drafter_ctx() const {
  return Ctx{w_.cfg, act_quant(), numerics_ != Numerics::Exact, impl_->rope_plain, impl_->rope_comp, nullptr, false, &impl_->bf16};
}

void detail::head_rows(const Ctx& c, const HeadWeights& hw, const LinearWeight& lm, const float* X, const std::vector<int>& rows,
                       float* const* outs) {
  head_logits(c, c.cfg, hw, lm, X, rows, outs);
}

}  // namespace v4
