// V4 attention (spec §3.4–3.6): shared-KV MQA over the sliding window plus compressed entries
// (CSA: chosen by the lightning indexer; HCA: all visible), with an attention sink, output
// de-rotation and the grouped low-rank output projection.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/thread_pool.h"
#include "engine/internal.h"
#include "kernels/attn.h"
#include "kernels/linear_bf16.h"

namespace v4::detail {

namespace {

// Pools one compressed entry from the state's rows (per-channel softmax over window positions).
void pool_entry(const CompressorState& s, int d, float* out) {
  const int m = s.ratio;
  const bool ov = s.prev_a.size() > 0;
  for (int ch = 0; ch < d; ++ch) {
    float mx = -INFINITY;
    // Overlap: previous window contributes its first half, the current window its second half.
    auto prev_g = [&](int r) { return s.prev_g[static_cast<size_t>(r) * s.width + ch]; };
    auto cur_g = [&](int r) { return s.cur_g[static_cast<size_t>(r) * s.width + (ov ? d : 0) + ch]; };
    if (ov && s.has_prev)
      for (int r = 0; r < m; ++r) mx = std::max(mx, prev_g(r));
    for (int r = 0; r < m; ++r) mx = std::max(mx, cur_g(r));
    float den = 0, num = 0;
    if (ov && s.has_prev)
      for (int r = 0; r < m; ++r) {
        float e = std::exp(prev_g(r) - mx);
        den += e;
        num += e * s.prev_a[static_cast<size_t>(r) * s.width + ch];
      }
    for (int r = 0; r < m; ++r) {
      float e = std::exp(cur_g(r) - mx);
      den += e;
      num += e * s.cur_a[static_cast<size_t>(r) * s.width + (ov ? d : 0) + ch];
    }
    out[ch] = num / den;
  }
}

// Feeds the projected rows of one token; returns true (and writes the raw pooled entry) when the
// token completes a window.
bool feed(CompressorState& s, const float* a, const float* g, const float* ape_row, int d, float* entry) {
  const size_t w = static_cast<size_t>(s.width);
  float* ca = s.cur_a.data() + static_cast<size_t>(s.cur_count) * w;
  float* cg = s.cur_g.data() + static_cast<size_t>(s.cur_count) * w;
  for (size_t i = 0; i < w; ++i) {
    ca[i] = a[i];
    cg[i] = g[i] + ape_row[i];
  }
  if (++s.cur_count < s.ratio) return false;
  pool_entry(s, d, entry);
  if (!s.prev_a.empty()) {
    std::swap(s.prev_a, s.cur_a);
    std::swap(s.prev_g, s.cur_g);
    s.has_prev = true;
  }
  s.cur_count = 0;
  return true;
}

// Runs a compressor over the batch rows of every segment, appending finished entries.
// `ag`: the two projections already computed (one token: gathered with the layer's others), or
// null.
void run_compressor(const Ctx& c, const CompressorWeights& cw, const float* x, int M, std::vector<SegCtx>& segs,
                    bool indexer, const RopeTable& rope, std::vector<float>* ag = nullptr) {
  const int W = cw.wkv.rows, d = cw.dim, rd = c.cfg.rope_dim;
  std::vector<float> a, g, entry(static_cast<size_t>(d)), normed(static_cast<size_t>(d));
  if (ag) {
    a.swap(ag[0]);
    g.swap(ag[1]);
  } else {
    a.resize(static_cast<size_t>(M) * W);
    g.resize(static_cast<size_t>(M) * W);
    linear_w(c, cw.wkv, x, M, a.data(), /*fast_part=*/true);
    linear_w(c, cw.wgate, x, M, g.data(), /*fast_part=*/true);
  }
  for (auto& s : segs) {
    CompressorState& st = indexer ? s.ls->idx_state : s.ls->comp_state;
    for (int t = 0; t < s.n; ++t) {
      const int64_t p = s.p0 + t;
      const size_t row = static_cast<size_t>(s.off + t) * W;
      const float* ape = cw.ape.data() + static_cast<size_t>(p % cw.ratio) * W;
      if (!feed(st, a.data() + row, g.data() + row, ape, d, entry.data())) continue;
      const int64_t j = p / cw.ratio;
      rmsnorm(entry.data(), cw.norm.data(), d, c.cfg.norm_eps, normed.data());
      rope.apply(normed.data() + (d - rd), j * cw.ratio);
      if (indexer) {
        hadamard(normed.data(), d);
        if (c.cache_quant) fakequant_fp4(normed.data(), d, 32);
      } else if (c.cache_quant) {
        fakequant_fp8(normed.data(), d - rd, 64);
      }
      if (indexer) s.ls->idx_keys.append(normed.data());
      else s.ls->comp.insert(s.ls->comp.end(), normed.begin(), normed.end());
    }
  }
}

}  // namespace

void attention(const Ctx& c, const BlockWeights& b, const float* x, int M, std::vector<SegCtx>& segs, float* out) {
  const ModelConfig& cfg = c.cfg;
  const AttentionWeights& A = b.attn;
  const int H = cfg.n_heads, hd = cfg.head_dim, rd = cfg.rope_dim, nd = hd - rd, qlr = cfg.q_lora_rank;
  const RopeTable& rope = c.rope(b.ratio);
  const float eps = cfg.norm_eps;

  // Query latent, queries (per-head RMS-normalised, rotated), shared KV.
  // The large per-call buffers are kept per thread: fresh vectors of tens of MB come from mmap
  // and page-fault (and are zeroed) again in every layer. Every element is written before use.
  // (Bound to references: a lambda running on a pool thread must see this thread's buffers.)
  thread_local std::vector<float> tl_qr, tl_q, tl_kv, tl_o;
  std::vector<float>&qr = tl_qr, &q = tl_q, &kv = tl_kv, &o = tl_o;
  qr.resize(static_cast<size_t>(M) * qlr);
  q.resize(static_cast<size_t>(M) * H * hd);
  kv.resize(static_cast<size_t>(M) * hd);
  const IndexerWeights* ix = A.indexer ? &*A.indexer : nullptr;
  const int nIH = cfg.index_n_heads, ihd = cfg.index_head_dim;
  std::vector<float> qi, wts;
  if (ix) {
    qi.resize(static_cast<size_t>(M) * nIH * ihd);
    wts.resize(static_cast<size_t>(M) * nIH);
  }
  // One token: the projections of x in one parallel call, then those of the query latent in
  // another (instead of one call each); the compressors get theirs precomputed.
  std::vector<float> comp_ag[2], idx_ag[2];
  const bool one = M == 1;
  if (one) {
    OneTokenCalls in(c);
    in.act(A.wq_a, x, qr.data());
    in.act(A.wkv, x, kv.data());
    auto comp = [&](const CompressorWeights& cw, std::vector<float>* ag) {
      ag[0].resize(static_cast<size_t>(cw.wkv.rows));
      ag[1].resize(static_cast<size_t>(cw.wgate.rows));
      in.w(cw.wkv, x, ag[0].data(), /*fast_part=*/true);
      in.w(cw.wgate, x, ag[1].data(), /*fast_part=*/true);
    };
    if (A.comp) comp(*A.comp, comp_ag);
    if (ix) {
      comp(ix->comp, idx_ag);
      in.w(ix->weights_proj, x, wts.data());
    }
    in.run();
  } else {
    linear_act(c, A.wq_a, x, M, qr.data());
  }
  for (int t = 0; t < M; ++t) rmsnorm(qr.data() + static_cast<size_t>(t) * qlr, A.q_norm.data(), qlr, eps, qr.data() + static_cast<size_t>(t) * qlr);
  if (one) {
    OneTokenCalls lat(c);
    lat.act(A.wq_b, qr.data(), q.data());
    if (ix) lat.act(ix->wq_b, qr.data(), qi.data());
    lat.run();
  } else {
    linear_act(c, A.wq_b, qr.data(), M, q.data());
    linear_act(c, A.wkv, x, M, kv.data());
  }
  // Per token and independent: across the pool (a prefill has hundreds of tokens).
  for (auto& s : segs)
    parallel_for(static_cast<size_t>(s.n), 4, [&](size_t t0, size_t t1) {
      for (size_t t = t0; t < t1; ++t) {
        const int64_t p = s.p0 + static_cast<int64_t>(t);
        const size_t r = static_cast<size_t>(s.off) + t;
        for (int h = 0; h < H; ++h) rms_normalize(q.data() + (r * H + h) * hd, hd, eps);
        rope.apply_heads(q.data() + r * H * hd + nd, H, hd, p);  // one cos/sin table for the heads
        float* k = kv.data() + r * hd;
        rmsnorm(k, A.kv_norm.data(), hd, eps, k);
        rope.apply(k + nd, p);
        if (c.cache_quant) fakequant_fp8(k, nd, 64);
      }
    });

  // Compressed entries (and indexer keys) are produced before attention: the token that
  // completes a window already sees its entry.
  if (A.comp) run_compressor(c, *A.comp, x, M, segs, false, rope, one ? comp_ag : nullptr);
  if (ix) {
    run_compressor(c, ix->comp, x, M, segs, true, rope, one ? idx_ag : nullptr);
    if (!one) {
      linear_act(c, ix->wq_b, qr.data(), M, qi.data());
      linear_w(c, ix->weights_proj, x, M, wts.data());
    }
    const float wscale = 1.0f / std::sqrt(static_cast<float>(ihd)) / std::sqrt(static_cast<float>(nIH));
    for (auto& s : segs)
      parallel_for(static_cast<size_t>(s.n), 4, [&](size_t t0, size_t t1) {
        for (size_t t = t0; t < t1; ++t) {
          const size_t r = static_cast<size_t>(s.off) + t;
          rope.apply_heads(qi.data() + r * nIH * ihd + (ihd - rd), nIH, ihd, s.p0 + static_cast<int64_t>(t));
          for (int h = 0; h < nIH; ++h) {
            float* qh = qi.data() + (r * nIH + h) * ihd;
            hadamard(qh, ihd);
            if (c.cache_quant) fakequant_fp4(qh, ihd, 32);
          }
          for (int h = 0; h < nIH; ++h) wts[r * nIH + h] *= wscale;
        }
      });
  }

  o.resize(static_cast<size_t>(M) * H * hd);
  const int win = cfg.window;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  for (size_t si = 0; si < segs.size(); ++si) {
    SegCtx& s = segs[si];
    LayerState& ls = *s.ls;
    // Local window buffer: up to win-1 earlier positions from the ring, then this chunk's rows.
    const int64_t first = std::max<int64_t>(0, s.p0 - (win - 1));
    const int nprev = static_cast<int>(s.p0 - first);
    std::vector<float> local(static_cast<size_t>(nprev + s.n) * hd);
    for (int i = 0; i < nprev; ++i) {
      const int64_t p = first + i;
      std::copy_n(ls.ring.data() + static_cast<size_t>(p % win) * hd, hd, local.data() + static_cast<size_t>(i) * hd);
    }
    std::copy_n(kv.data() + static_cast<size_t>(s.off) * hd, static_cast<size_t>(s.n) * hd, local.data() + static_cast<size_t>(nprev) * hd);
    const float* comp = ls.comp.data();
    const int64_t ncomp = ls.n_comp(hd);
    const bool trace_ix = c.trace && c.trace->indexer && c.trace_seg0 && si == 0 && ix;
    std::vector<int32_t>* tix = nullptr;
    if (trace_ix) {
      tix = &c.trace->indexer_topk[b.layer_id];
      tix->assign(static_cast<size_t>(s.n) * cfg.index_topk, -1);
    }

    parallel_for(static_cast<size_t>(s.n), 1, [&](size_t t0, size_t t1) {
      std::vector<float> score, scratch;
      std::vector<int32_t> sel;
      std::vector<const float*> keys;
      for (size_t t = t0; t < t1; ++t) {
        const int64_t p = s.p0 + static_cast<int64_t>(t);
        const size_t r = static_cast<size_t>(s.off) + t;
        // Window keys: positions max(0, p-win+1)..p, as rows of `local`.
        const int64_t wfirst = std::max<int64_t>(0, p - (win - 1));
        const int wb = static_cast<int>(wfirst - first), we = nprev + static_cast<int>(t) + 1;
        // Compressed keys: the indexer's top-k (CSA) or every visible entry (HCA). The scoring
        // is the only work that grows with the context: blocked over 16 keys, top-k linear.
        sel.clear();
        if (b.ratio > 0) {
          const int64_t vis = std::min<int64_t>(ncomp, (p + 1) / b.ratio);
          if (ix && vis > cfg.index_topk) {
            score.resize(static_cast<size_t>((vis + 15) / 16 * 16));
            indexer_scores(qi.data() + r * nIH * ihd, wts.data() + r * nIH, nIH, ls.idx_keys, vis, score.data());
            top_k_indices(score.data(), vis, cfg.index_topk, sel);
          } else {
            for (int64_t j = 0; j < vis; ++j) sel.push_back(static_cast<int32_t>(j));
          }
          if (tix) {
            std::vector<int32_t> sorted = sel;
            std::sort(sorted.begin(), sorted.end());
            if (ix) std::copy(sorted.begin(), sorted.end(), tix->begin() + static_cast<long>(t * cfg.index_topk));
          }
        }
        keys.clear();
        for (int i = wb; i < we; ++i) keys.push_back(local.data() + static_cast<size_t>(i) * hd);
        for (int32_t j : sel) keys.push_back(comp + static_cast<size_t>(j) * hd);
        float* ot = o.data() + r * H * hd;
        mqa_attend(q.data() + r * H * hd, H, hd, keys.data(), static_cast<int>(keys.size()), A.sink.data(), scale, ot, scratch);
        rope.apply_heads(ot + nd, H, hd, p, /*inverse=*/true);
      }
    });
    // Keep the last `win` raw KV rows in the ring.
    for (int t = std::max(0, s.n - win); t < s.n; ++t) {
      const int64_t p = s.p0 + t;
      std::copy_n(kv.data() + static_cast<size_t>(s.off + t) * hd, hd, ls.ring.data() + static_cast<size_t>(p % win) * hd);
    }
  }

  // Grouped low-rank output projection: group g's heads through rows g·olr.. of wo_a, then wo_b.
  const int G = cfg.o_groups, olr = cfg.o_lora_rank, gK = H / G * hd;
  std::vector<float> z(static_cast<size_t>(M) * G * olr);
  // `official` on the BF16 units: wo_a's products (FP32 activations, FP8 or BF16 weights) run
  // on the tiles with exactly split activations (the same products as the float32 kernel).
  const WFormat fa = A.wo_a.format;
  if (c.act_quant && c.bf16 && c.bf16->enabled && (fa == WFormat::BF16 || (fa == WFormat::FP8 && olr % 128 == 0)) &&
      (fa == WFormat::BF16 || c.bf16->usable(A.wo_a))) {
    const size_t kb = (static_cast<size_t>(gK) + 127) / 128;
    std::vector<LinearWeight> views(static_cast<size_t>(G), A.wo_a);
    OneTokenCalls groups(c);  // one token: the groups in one parallel call
    for (int g = 0; g < G; ++g) {
      LinearWeight& v = views[static_cast<size_t>(g)];
      v.rows = olr;
      const size_t r0 = static_cast<size_t>(g) * olr;
      v.data = static_cast<const uint8_t*>(A.wo_a.data) + r0 * gK * (fa == WFormat::BF16 ? 2 : 1);
      if (fa == WFormat::FP8) v.scale = static_cast<const uint8_t*>(A.wo_a.scale) + r0 / 128 * kb;
      if (one) groups.split(v, o.data() + static_cast<size_t>(g) * gK, z.data() + r0, c.bf16->one_part ? 1 : 3);
      else linear_bf16_split(v, o.data() + static_cast<size_t>(g) * gK, M, z.data() + r0, H * hd, G * olr, c.bf16->one_part ? 1 : 3);
    }
    if (one) groups.run();
    linear_act(c, A.wo_b, z.data(), M, out);
    return;
  }
  parallel_for(static_cast<size_t>(G * olr), 16, [&](size_t n0, size_t n1) {
    for (int g = 0; g < G; ++g) {
      const int lo = std::max<int>(static_cast<int>(n0), g * olr), hi = std::min<int>(static_cast<int>(n1), (g + 1) * olr);
      if (lo >= hi) continue;
      linear_rows(A.wo_a, o.data() + static_cast<size_t>(g) * gK, M, z.data(), H * hd, G * olr, lo, hi);
    }
  });
  linear_act(c, A.wo_b, z.data(), M, out);
}

}  // namespace v4::detail
