// The engine against the golden data computed by DeepSeek's official reference code
// (../shared/golden; see its MANIFEST.json for each file and tolerance).
#include <algorithm>
#include <cmath>
#include <set>

#include "engine/engine.h"
#include "golden_util.h"

using namespace v4;
using namespace v4::test;

namespace {

struct GoldenRun {
  std::unique_ptr<ModelWeights> w;
  std::unique_ptr<Engine> eng;
  std::vector<int32_t> prompt;
  int V = 0;
};

GoldenRun open(const std::string& G, Numerics num = Numerics::Exact) {
  GoldenRun r;
  r.w = ModelWeights::load(G + "/checkpoint", true, true);
  r.eng = std::make_unique<Engine>(*r.w, num);
  for (auto t : i64(G + "/prompt_ids.npy")) r.prompt.push_back(static_cast<int32_t>(t));
  r.V = r.w->cfg.vocab_size;
  return r;
}

// Feeds tokens [0, P) as prefill chunks of `chunk` then the rest one by one; all logits.
std::vector<float> run_logits(GoldenRun& r, int P, int chunk, Trace* trace = nullptr, std::vector<float>* hidden = nullptr,
                              SequenceState* st_out = nullptr) {
  const int N = static_cast<int>(r.prompt.size());
  auto st = r.eng->new_sequence(hidden != nullptr);
  std::vector<float> logits(static_cast<size_t>(N) * r.V);
  const size_t hrow = static_cast<size_t>(r.w->cfg.hc_mult) * r.w->cfg.dim;
  if (hidden) hidden->resize(static_cast<size_t>(N) * hrow);
  auto step = [&](int b, int n, Trace* tr) {
    Segment s;
    s.state = st.get();
    s.tokens = r.prompt.data() + b;
    s.n = n;
    s.all_logits = true;
    s.logits = logits.data() + static_cast<size_t>(b) * r.V;
    if (hidden) s.hidden = hidden->data() + static_cast<size_t>(b) * hrow;
    r.eng->forward(std::span<Segment>(&s, 1), tr);
  };
  for (int b = 0; b < P; b += chunk) step(b, std::min(chunk, P - b), b == 0 ? trace : nullptr);
  for (int b = P; b < N; ++b) step(b, 1, nullptr);
  if (st_out) *st_out = *st;
  return logits;
}

std::vector<int64_t> positions_or_all(const std::string& file, int n) {
  return exists(file) ? i64(file) : iota_rows(n);
}

double noaq_atol(const nlohmann::json& m, const char* key) {
  return m["recommended_tolerances"]["noaq"][key]["atol"].get<double>();
}

class Golden : public ::testing::TestWithParam<std::string> {};

TEST_P(Golden, HiddenStatesAfterFirstSwaAndFirstCsaBlock) {
  V4_REQUIRE_GOLDEN(GetParam());
  auto m = manifest(G);
  GoldenRun r = open(G);
  Trace tr;
  tr.hidden_layers = {0, 2};
  const int N = static_cast<int>(r.prompt.size());
  r.eng->max_chunk = N;  // the trace records the first chunk
  run_logits(r, N, N, &tr);
  const double atol = m["recommended_tolerances"]["noaq"]["hidden_after_layer"]["atol"].get<double>();
  auto pos = i64(G + "/noaq/hidden_positions.npy");
  const int row = r.w->cfg.hc_mult * r.w->cfg.dim;
  for (int layer : {0, 2}) {
    auto ref = f32(G + "/noaq/hidden_after_layer" + std::to_string(layer) + ".npy");
    auto& got = tr.hidden[layer];
    double mx = 0;
    for (size_t i = 0; i < pos.size(); ++i)
      for (int k = 0; k < row; ++k)
        mx = std::max(mx, std::fabs(static_cast<double>(got[static_cast<size_t>(pos[i]) * row + k]) - ref[i * row + k]));
    EXPECT_LE(mx, atol) << "hidden after layer " << layer;
  }
}

TEST_P(Golden, FullPrefillLogits) {
  V4_REQUIRE_GOLDEN(GetParam());
  auto m = manifest(G);
  GoldenRun r = open(G);
  auto got = run_logits(r, static_cast<int>(r.prompt.size()), static_cast<int>(r.prompt.size()));
  auto ref = f32(G + "/noaq/logits_prefill.npy");
  auto pos = positions_or_all(G + "/noaq/logits_positions.npy", static_cast<int>(ref.size() / r.V));
  Cmp c = compare_rows(got, pos, ref, r.V);
  EXPECT_LE(c.maxabs, noaq_atol(m, "logits_prefill"));
  EXPECT_EQ(c.argmax_agree, 1.0);
}

TEST_P(Golden, IncrementalDecodeMatchesReferenceAndFullPrefill) {
  V4_REQUIRE_GOLDEN(GetParam());
  auto m = manifest(G);
  GoldenRun r = open(G);
  const int N = static_cast<int>(r.prompt.size());
  const int split = m["summary"]["prefill_split"].get<int>();
  auto got = run_logits(r, split, split);
  auto ref = f32(G + "/noaq/logits_incremental.npy");
  auto pos = positions_or_all(G + "/noaq/logits_incremental_positions.npy", 0);
  if (pos.empty()) pos = iota_rows(N - split, split);
  Cmp c = compare_rows(got, pos, ref, r.V);
  EXPECT_LE(c.maxabs, noaq_atol(m, "logits_incremental"));
  EXPECT_EQ(c.argmax_agree, 1.0);
  // Also against one full prefill of the same prompt (all positions after the split).
  auto full = run_logits(r, N, N);
  std::vector<float> tail(full.begin() + static_cast<long>(split) * r.V, full.end());
  Cmp c2 = compare_rows(got, iota_rows(N - split, split), tail, r.V);
  EXPECT_LE(c2.maxabs, noaq_atol(m, "logits_incremental"));
  EXPECT_EQ(c2.argmax_agree, 1.0);
}

TEST_P(Golden, ChunkedPrefillSplitsMatchOnePrefill) {
  V4_REQUIRE_GOLDEN(GetParam());
  auto m = manifest(G);
  GoldenRun r = open(G);
  const int N = static_cast<int>(r.prompt.size());
  auto full = run_logits(r, N, N);
  // Awkward chunk sizes: not multiples of the window or compression ratios; prefill length
  // splits that leave partial compressor windows; then token-by-token decode.
  for (auto [P, chunk] : std::vector<std::pair<int, int>>{{3, 1}, {N / 2 + 1, 37}, {N - 5, 129}}) {
    auto got = run_logits(r, P, chunk);
    Cmp c = compare_rows(got, iota_rows(N), full, r.V);
    EXPECT_LE(c.maxabs, noaq_atol(m, "logits_incremental")) << "prefill " << P << " chunk " << chunk;
    EXPECT_EQ(c.argmax_agree, 1.0) << "prefill " << P << " chunk " << chunk;
  }
}

TEST_P(Golden, GreedyContinuation) {
  V4_REQUIRE_GOLDEN(GetParam());
  auto m = manifest(G);
  GoldenRun r = open(G);
  auto ref_tokens = i64(G + "/noaq/greedy_tokens.npy");
  auto ref_logits = f32(G + "/noaq/greedy_logits.npy");
  auto st = r.eng->new_sequence();
  std::vector<float> logits(static_cast<size_t>(r.V));
  Segment s;
  s.state = st.get();
  s.tokens = r.prompt.data();
  s.n = static_cast<int>(r.prompt.size());
  s.logits = logits.data();
  r.eng->forward(std::span<Segment>(&s, 1));
  std::vector<float> got_logits;
  int32_t tok = 0;
  for (size_t i = 0; i < ref_tokens.size(); ++i) {
    tok = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    ASSERT_EQ(tok, ref_tokens[i]) << "greedy token " << i;
    s.tokens = &tok;
    s.n = 1;
    r.eng->forward(std::span<Segment>(&s, 1));
    got_logits.insert(got_logits.end(), logits.begin(), logits.end());
  }
  Cmp c = compare_rows(got_logits, iota_rows(static_cast<int>(ref_tokens.size())), ref_logits, r.V);
  EXPECT_LE(c.maxabs, m["recommended_tolerances"]["noaq"]["greedy_logits"]["atol"].get<double>());
}

TEST_P(Golden, MtpLogits) {
  V4_REQUIRE_GOLDEN(GetParam());
  auto m = manifest(G);
  GoldenRun r = open(G);
  const int N = static_cast<int>(r.prompt.size());
  std::vector<float> hidden;
  auto st = r.eng->new_sequence(true);
  {
    std::vector<float> logits(static_cast<size_t>(r.V));
    hidden.resize(static_cast<size_t>(N) * r.w->cfg.hc_mult * r.w->cfg.dim);
    Segment s;
    s.state = st.get();
    s.tokens = r.prompt.data();
    s.n = N;
    s.logits = logits.data();
    s.hidden = hidden.data();
    r.eng->forward(std::span<Segment>(&s, 1));
  }
  std::vector<float> mlog(static_cast<size_t>(N - 1) * r.V);
  MtpSegment ms;
  ms.state = st.get();
  ms.hidden = hidden.data();
  ms.next_tokens = r.prompt.data() + 1;
  ms.n = N - 1;
  ms.logits = mlog.data();
  r.eng->forward_mtp(std::span<MtpSegment>(&ms, 1));
  auto ref = f32(G + "/noaq/mtp_logits.npy");
  Cmp c = compare_rows(mlog, i64(G + "/noaq/mtp_positions.npy"), ref, r.V);
  EXPECT_LE(c.maxabs, noaq_atol(m, "mtp_logits"));
  EXPECT_EQ(c.argmax_agree, 1.0);
}

TEST_P(Golden, RoutingAndIndexerDecisions) {
  V4_REQUIRE_GOLDEN(GetParam());
  GoldenRun r = open(G);
  Trace tr;
  tr.routes = true;
  tr.indexer = true;
  const int N = static_cast<int>(r.prompt.size());
  r.eng->max_chunk = N;
  run_logits(r, N, N, &tr);
  const int K = r.w->cfg.n_activated, T = r.w->cfg.index_topk;
  for (int l = 0; l < r.w->cfg.n_layers; ++l) {
    auto ex = i64(G + "/noaq/route_layers_" + std::to_string(l) + "_experts.npy");
    auto wt = f32(G + "/noaq/route_layers_" + std::to_string(l) + "_weights.npy");
    std::string mfile = G + "/noaq/route_margin_layers_" + std::to_string(l) + ".npy";
    std::vector<float> margin = exists(mfile) ? f32(mfile) : std::vector<float>();
    int mismatches = 0;
    double wmax = 0;
    for (int t = 0; t < N; ++t) {
      bool same = true;
      for (int k = 0; k < K; ++k) same &= tr.route_experts[l][static_cast<size_t>(t * K + k)] == ex[static_cast<size_t>(t * K + k)];
      if (!same) {
        if (margin.empty() || margin[static_cast<size_t>(t)] > 1e-4) ++mismatches;
        continue;
      }
      for (int k = 0; k < K; ++k)
        wmax = std::max(wmax, std::fabs(static_cast<double>(tr.route_weights[l][static_cast<size_t>(t * K + k)]) - wt[static_cast<size_t>(t * K + k)]));
    }
    EXPECT_EQ(mismatches, 0) << "routing, layer " << l;
    EXPECT_LE(wmax, 1e-5) << "routing weights, layer " << l;
    if (r.w->cfg.ratio(l) != 4) continue;
    auto ref = i64(G + "/noaq/indexer_topk_layers_" + std::to_string(l) + ".npy");
    auto qpos = positions_or_all(G + "/noaq/indexer_positions.npy", N);
    auto imargin = f32(G + "/noaq/indexer_margin_layers_" + std::to_string(l) + ".npy");
    int bad = 0;
    for (size_t i = 0; i < qpos.size(); ++i) {
      std::set<int64_t> a, b;
      for (int k = 0; k < T; ++k) {
        int64_t x = tr.indexer_topk[l][static_cast<size_t>(qpos[i]) * T + k], y = ref[i * T + k];
        if (x >= 0) a.insert(x);
        if (y >= 0) b.insert(y);
      }
      if (a != b && !(imargin[i] < 1e-4)) ++bad;
    }
    EXPECT_EQ(bad, 0) << "indexer selection, layer " << l;
  }
}

// Official numerics (FP8 activation quantisation + FP8 KV + FP4 indexer simulation) are
// discontinuous: compared statistically against the noise floor between two correct runs.
void statistical(const std::string& G, const std::string& mode, Numerics num) {
  auto m = manifest(G);
  if (!m["recommended_tolerances"].contains(mode)) GTEST_SKIP() << "no " << mode << " data";
  GoldenRun r = open(G, num);
  const int N = static_cast<int>(r.prompt.size());
  auto got = run_logits(r, N, N);
  auto ref = f32(G + "/" + mode + "/logits_prefill.npy");
  auto pos = positions_or_all(G + "/" + mode + "/logits_positions.npy", static_cast<int>(ref.size() / r.V));
  Cmp c = compare_rows(got, pos, ref, r.V);
  auto floor = m["recommended_tolerances"][mode]["logits_prefill"]["noise_floor_between_two_correct_runs"];
  EXPECT_GE(c.pearson, floor["pearson"].get<double>() - 0.01);
  EXPECT_LE(c.meanabs, 2 * floor["mean_abs"].get<double>() + 1e-6);
  EXPECT_GE(c.argmax_agree, floor["argmax_agreement"].get<double>() - 0.10);
  // Before the first rounding flip the runs agree tightly: the first positions match to 1e-3.
  auto ex = f32(G + "/" + mode + "/logits_prefill.npy");
  Cmp head = compare_rows(got, pos, std::vector<float>(ex.begin(), ex.begin() + 8 * r.V), r.V);
  EXPECT_LE(head.maxabs, 1e-3) << "first 8 positions";
}

TEST_P(Golden, OfficialNumericsStatistically) {
  V4_REQUIRE_GOLDEN(GetParam());
  statistical(G, "official", Numerics::Official);
}

TEST_P(Golden, CacheSimNumericsStatistically) {
  V4_REQUIRE_GOLDEN(GetParam());
  if (!exists(G + "/cachesim")) GTEST_SKIP() << GetParam() << " has no cachesim set";
  statistical(G, "cachesim", Numerics::CacheSim);
}

// The official numerics on the BF16 dot-product units against the same numerics on the float32
// kernels: top-1 agreement with `exact` and KL(exact || mode) over every position of the golden
// prompt. The products are the same, so the BF16 path must be no worse (it differs from the
// float32 path only in summation order). The figures are printed for docs/engine.md.
TEST_P(Golden, Bf16DotPathAgreesWithExactAsWellAsFloat32Official) {
  V4_REQUIRE_GOLDEN(GetParam());
  GoldenRun ex = open(G, Numerics::Exact);
  const int N = static_cast<int>(ex.prompt.size());
  auto ref = run_logits(ex, N, N);
  struct Agree {
    double top1 = 0, kl = 0;
  };
  auto agree = [&](const std::vector<float>& got) {
    Agree a;
    const int V = ex.V;
    for (int r = 0; r < N; ++r) {
      const float* p = ref.data() + static_cast<size_t>(r) * V;
      const float* q = got.data() + static_cast<size_t>(r) * V;
      double mp = -1e30, mq = -1e30, zp = 0, zq = 0;
      int ip = 0, iq = 0;
      for (int v = 0; v < V; ++v) {
        if (p[v] > p[ip]) ip = v;
        if (q[v] > q[iq]) iq = v;
        mp = std::max(mp, static_cast<double>(p[v]));
        mq = std::max(mq, static_cast<double>(q[v]));
      }
      for (int v = 0; v < V; ++v) {
        zp += std::exp(p[v] - mp);
        zq += std::exp(q[v] - mq);
      }
      double kl = 0;
      for (int v = 0; v < V; ++v) {
        const double lp = p[v] - mp - std::log(zp), lq = q[v] - mq - std::log(zq);
        kl += std::exp(lp) * (lp - lq);
      }
      a.kl += kl / N;
      a.top1 += (ip == iq) / static_cast<double>(N);
    }
    return a;
  };
  GoldenRun fast = open(G, Numerics::Official);
  if (!fast.eng->bf16_dot()) GTEST_SKIP() << "no AVX-512 BF16 on this CPU";
  auto a = agree(run_logits(fast, N, N));
  setenv("V4HOST_NO_BF16", "1", 1);
  GoldenRun slow = open(G, Numerics::Official);
  unsetenv("V4HOST_NO_BF16");
  ASSERT_FALSE(slow.eng->bf16_dot());
  auto b = agree(run_logits(slow, N, N));
  // `fast` (wo_a and the compressor projections on BF16-rounded activations, the rest as
  // official on the BF16 units): the one faster mode; its accuracy against exact is reported
  // and held to official's own. (It is a different function from the golden `official/` set's,
  // whose wo_a took FP32 activations: it misses that set's noise floor, e.g. Pearson 0.957
  // against 0.976 on tiny-all with wo_a alone on one part.)
  GoldenRun fm = open(G, Numerics::Fast);
  auto f = agree(run_logits(fm, N, N));
  std::printf("[ golden %s ] vs exact: official/bf16-dot top-1 %.4f KL %.3g; official/fp32 top-1 %.4f KL %.3g; fast top-1 %.4f KL %.3g\n",
              GetParam().c_str(), a.top1, a.kl, b.top1, b.kl, f.top1, f.kl);
  RecordProperty("bf16_top1", std::to_string(a.top1));
  RecordProperty("bf16_kl", std::to_string(a.kl));
  RecordProperty("fast_top1", std::to_string(f.top1));
  RecordProperty("fast_kl", std::to_string(f.kl));
  // Top-1 over N positions moves with every summation order (the mode is discontinuous: in the
  // reference's own report two correct runs, f32 and f64, agree on only ~85 % of the argmaxes);
  // allow two binomial standard errors of the agreement rate. KL is the tighter check.
  const double se = std::sqrt(b.top1 * (1 - b.top1) / N);
  EXPECT_GE(a.top1, b.top1 - std::max(0.02, 2 * se));
  EXPECT_LE(a.kl, 1.25 * b.kl + 1e-5);
  EXPECT_GE(f.top1, b.top1 - std::max(0.02, 2 * se)) << "fast";
  EXPECT_LE(f.kl, 1.25 * b.kl + 1e-5) << "fast";
}

INSTANTIATE_TEST_SUITE_P(Sets, Golden, ::testing::Values("tiny-all", "tiny-fp8", "tiny-real-ratios"),
                         [](const auto& info) {
                           std::string s = info.param;
                           std::replace(s.begin(), s.end(), '-', '_');
                           return s;
                         });

}  // namespace
