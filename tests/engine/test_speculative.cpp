// Speculative decoding with the MTP module and with the DSpark drafter (0731 layout): greedy
// output identical to plain greedy decoding (with the drafters' own drafts and with drafts that
// are sometimes right, so the accept, partial-accept and reject paths all run), rejection
// sampling that leaves the sampled distribution exactly the target's (chi-square), and the
// tokens of whole speculative generations distributed as plain sampling's (two-sample
// chi-square); the state rollback restores a state exactly.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "engine/engine.h"
#include "engine/sampler.h"
#include "engine/speculative.h"
#include "../common/synth_model.h"

using namespace v4;

namespace {

test::SynthModel& model() {
  static test::SynthModel m("spec", 5, true);
  return m;
}

// The 0731 layout of the same kind of tiny model: DSpark drafter mtp.0..2 (block 5).
test::SynthModel& dspark_model() {
  static test::SynthModel m("spec-dspark", 6, true, "0731", 5);
  return m;
}

std::vector<int32_t> plain_greedy(Engine& eng, const std::vector<int32_t>& prompt, int n) {
  const int V = eng.config().vocab_size;
  auto st = eng.new_sequence();
  std::vector<float> logits(static_cast<size_t>(V));
  Segment s{st.get(), prompt.data(), static_cast<int>(prompt.size()), false, logits.data(), nullptr};
  eng.forward(std::span<Segment>(&s, 1));
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) {
    out.push_back(argmax(logits.data(), V));
    s.tokens = &out.back();
    s.n = 1;
    eng.forward(std::span<Segment>(&s, 1));
  }
  return out;
}

struct SpecRun {
  std::vector<int32_t> tokens;
  SpeculativeStats stats;
  int max_drafts = 0;
};

// Greedy speculative generation of ref.size() tokens after `prompt`. With wrong_every > 0 the
// drafts are forced to the plain run's token `ref` except at positions divisible by it (so
// whole blocks, partial blocks and rejections all happen); with 0 the drafter's own drafts.
SpecRun spec_greedy(Engine& eng, bool mtp_state, const std::vector<int32_t>& prompt, const std::vector<int32_t>& ref,
                    int wrong_every) {
  const int N = static_cast<int>(ref.size());
  auto st = eng.new_sequence(mtp_state);
  SpeculativeDecoder sd(eng, *st, SamplingParams{});
  if (wrong_every > 0) {
    sd.draft_override = [&](int64_t pos, float* q) {
      const int64_t i = pos - static_cast<int64_t>(prompt.size());
      if (i >= 0 && i < N && pos % wrong_every != 0) q[ref[static_cast<size_t>(i)]] = 1e9f;
    };
  }
  SpecRun r;
  r.max_drafts = sd.sequence().max_drafts();
  sd.start(prompt.data(), static_cast<int>(prompt.size()));
  sd.generate(N, [&](int32_t t) {
    r.tokens.push_back(t);
    return true;
  });
  r.stats = sd.stats();
  return r;
}

TEST(Speculative, GreedyOutputIsIdenticalToPlainDecoding) {
  for (Numerics num : {Numerics::Exact, Numerics::Official}) {
    Engine eng(*model().w, num);
    ASSERT_TRUE(eng.has_mtp());
    const std::vector<int32_t> prompt = {3, 77, 200, 5, 19, 401, 88, 7, 250, 1, 64};
    const int N = 40;
    auto ref = plain_greedy(eng, prompt, N);
    for (int mode = 0; mode < 2; ++mode) {
      // mode 1: drafts right two times in three (the plain run's token), else the MTP's own guess.
      const SpecRun r = spec_greedy(eng, true, prompt, ref, mode == 1 ? 3 : 0);
      EXPECT_EQ(r.tokens, ref) << "mode " << mode << " numerics " << static_cast<int>(num);
      EXPECT_EQ(r.stats.tokens, N);
      if (mode == 1) {
        EXPECT_GT(r.stats.accepted, 0);
        EXPECT_LT(r.stats.accepted, r.stats.drafts);
        EXPECT_GT(r.stats.tokens_per_step(), 1.2);
      }
    }
  }
}

TEST(Speculative, DSparkGreedyOutputIsIdenticalToPlainDecoding) {
  for (Numerics num : {Numerics::Exact, Numerics::Official}) {
    Engine eng(*dspark_model().w, num);
    ASSERT_TRUE(eng.has_dspark());
    ASSERT_EQ(drafter_of(eng), DrafterKind::DSpark);
    const int B = eng.config().dspark.block_size;
    const std::vector<int32_t> prompt = {3, 77, 200, 5, 19, 401, 88, 7, 250, 1, 64, 9, 300};
    const int N = 40;
    auto ref = plain_greedy(eng, prompt, N);
    for (int mode = 0; mode < 2; ++mode) {
      // mode 1: drafts right except at every 4th position: whole blocks, partial blocks and rejections.
      const SpecRun r = spec_greedy(eng, false, prompt, ref, mode == 1 ? 4 : 0);
      EXPECT_EQ(r.max_drafts, B);
      EXPECT_EQ(r.tokens, ref) << "mode " << mode << " numerics " << static_cast<int>(num);
      EXPECT_EQ(r.stats.tokens, N);
      EXPECT_GT(r.stats.drafts, 0);
      EXPECT_LE(r.stats.accepted, r.stats.drafts);
      if (mode == 1) {
        EXPECT_GT(r.stats.accepted, r.stats.drafts / 3);
        EXPECT_GT(r.stats.tokens_per_step(), 2.0);
      }
    }
  }
}

// The real drafter path (no override) drafts from the DSpark forward: the drafts depend on the
// context (two prompts give different blocks) and on the Markov head (the bias is not zero).
TEST(Speculative, DSparkDraftUsesContextAndMarkovHead) {
  Engine eng(*dspark_model().w, Numerics::Exact);
  const int V = eng.config().vocab_size, B = eng.config().dspark.block_size;
  auto run = [&](const std::vector<int32_t>& prompt) {
    auto st = eng.new_sequence();
    std::vector<int32_t> drafted;
    SpeculativeDecoder sd(eng, *st, SamplingParams{});
    sd.start(prompt.data(), static_cast<int>(prompt.size()));
    sd.generate(1, [](int32_t) { return true; });
    Segment s;
    sd.sequence().begin_step(s, true);
    drafted.assign(s.tokens + s.n - B, s.tokens + s.n);
    return drafted;
  };
  EXPECT_NE(run({5, 6, 7, 8, 9, 10, 11}), run({400, 300, 200, 100, 50, 25, 12}));
  std::vector<float> bias(static_cast<size_t>(V));
  eng.dspark_markov_bias(3, bias.data());
  double mag = 0;
  for (float b : bias) mag += std::fabs(b);
  EXPECT_GT(mag, 0);
}

// Whole generations: the tokens after the first (where drafts are verified) follow the same
// distribution with and without speculation (two-sample chi-square over token buckets), for
// both drafters, at a temperature where drafts are often accepted and often rejected.
TEST(Speculative, SampledGenerationsAreDistributedAsPlainSampling) {
  const std::vector<int32_t> prompt = {11, 42, 7, 300, 5};
  const int N = 3, runs = 160, buckets = 8;
  for (int which = 0; which < 2; ++which) {
    Engine eng(which == 0 ? *model().w : *dspark_model().w, Numerics::Exact);
    const int V = eng.config().vocab_size;
    // Plain: the same prompt state, Sampler only.
    auto base = eng.new_sequence();
    std::vector<float> first(static_cast<size_t>(V));
    Segment s0{base.get(), prompt.data(), static_cast<int>(prompt.size()), false, first.data(), nullptr};
    eng.forward(std::span<Segment>(&s0, 1));
    std::vector<std::vector<int>> plain(N, std::vector<int>(buckets, 0)), spec = plain;
    int64_t drafts = 0, accepted = 0;
    for (int r = 0; r < runs; ++r) {
      SamplingParams sp;
      sp.temperature = 1.5f;
      sp.seed = 1000 + static_cast<uint64_t>(r);
      {
        SequenceState st = *base;
        Sampler smp(sp);
        std::vector<float> lg = first;
        for (int i = 0; i < N; ++i) {
          int32_t t = smp.sample(lg.data(), V);
          ++plain[static_cast<size_t>(i)][static_cast<size_t>(t % buckets)];
          Segment s{&st, &t, 1, false, lg.data(), nullptr};
          eng.forward(std::span<Segment>(&s, 1));
        }
      }
      auto st = eng.new_sequence();
      SpeculativeDecoder sd(eng, *st, sp);
      sd.start(prompt.data(), static_cast<int>(prompt.size()));
      int i = 0;
      sd.generate(N, [&](int32_t t) {
        ++spec[static_cast<size_t>(i++)][static_cast<size_t>(t % buckets)];
        return true;
      });
      drafts += sd.stats().drafts;
      accepted += sd.stats().accepted;
    }
    EXPECT_GT(accepted, drafts / 20) << which;
    EXPECT_LT(accepted, drafts) << which;
    for (int i = 1; i < N; ++i) {
      double chi2 = 0;
      for (int b = 0; b < buckets; ++b) {
        const double a = plain[static_cast<size_t>(i)][static_cast<size_t>(b)], c = spec[static_cast<size_t>(i)][static_cast<size_t>(b)];
        if (a + c > 0) chi2 += (a - c) * (a - c) / (a + c);
      }
      // Two equal samples, 7 degrees of freedom: P(chi2 > 24.3) = 0.001.
      EXPECT_LT(chi2, 24.3) << "drafter " << which << " token " << i;
    }
  }
}

// mark() + rollback() restore a state exactly (window ring, compressed rows, indexer keys,
// compressor frontiers) after consuming more tokens, whatever the window phase.
TEST(Speculative, StateRollbackRestoresTheStateExactly) {
  Engine eng(*model().w, Numerics::Exact);
  const ModelConfig& c = eng.config();
  std::vector<int32_t> toks(200);
  for (size_t i = 0; i < toks.size(); ++i) toks[i] = static_cast<int32_t>((i * 37 + 11) % 500);
  for (int pre : {1, 7, 64, 130}) {
    for (int n : {1, 3, 6, 17}) {
      auto st = eng.new_sequence();
      Segment s{st.get(), toks.data(), pre, false, nullptr, nullptr};
      eng.forward(std::span<Segment>(&s, 1));
      const SequenceState before = *st;
      const StateMark m = st->mark(n, c.window, c.head_dim);
      Segment s2{st.get(), toks.data() + pre, n, true, nullptr, nullptr};
      eng.forward(std::span<Segment>(&s2, 1));
      st->rollback(m, c.window, c.head_dim);
      ASSERT_EQ(st->pos, before.pos);
      for (size_t l = 0; l < before.layers.size(); ++l) {
        const LayerState &a = before.layers[l], &b = st->layers[l];
        EXPECT_EQ(a.ring, b.ring) << pre << " " << n << " layer " << l;
        EXPECT_EQ(a.comp, b.comp) << l;
        EXPECT_EQ(a.idx_keys.n, b.idx_keys.n) << l;
        EXPECT_EQ(a.idx_keys.data, b.idx_keys.data) << l;
        EXPECT_EQ(a.comp_state.cur_a, b.comp_state.cur_a) << l;
        EXPECT_EQ(a.comp_state.cur_count, b.comp_state.cur_count) << l;
        EXPECT_EQ(a.idx_state.prev_g, b.idx_state.prev_g) << l;
      }
    }
  }
}

// Draft from q, accept or resample: the emitted token must follow p exactly.
TEST(Speculative, RejectionSamplingFollowsTheTargetDistribution) {
  std::mt19937_64 rng(42);
  std::uniform_real_distribution<double> U(0.0, 1.0);
  const int V = 12, trials = 200000;
  for (int rep = 0; rep < 3; ++rep) {
    std::vector<double> p(V), q(V);
    double sp = 0, sq = 0;
    for (int i = 0; i < V; ++i) {
      p[static_cast<size_t>(i)] = std::pow(U(rng), 2);
      q[static_cast<size_t>(i)] = i == rep ? 0 : U(rng);  // a token the drafter never proposes
      sp += p[static_cast<size_t>(i)];
      sq += q[static_cast<size_t>(i)];
    }
    for (auto& v : p) v /= sp;
    for (auto& v : q) v /= sq;
    std::vector<int> count(V, 0);
    int accepted = 0;
    for (int t = 0; t < trials; ++t) {
      double r = U(rng), acc = 0;
      int32_t d = 0;
      for (int i = 0; i < V; ++i)
        if ((acc += q[static_cast<size_t>(i)]) > r) {
          d = i;
          break;
        }
      bool ok = false;
      ++count[static_cast<size_t>(speculative_accept(p, q, d, U(rng), U(rng), &ok))];
      accepted += ok;
    }
    double chi2 = 0;
    for (int i = 0; i < V; ++i) {
      const double e = p[static_cast<size_t>(i)] * trials;
      chi2 += (count[static_cast<size_t>(i)] - e) * (count[static_cast<size_t>(i)] - e) / e;
    }
    // 11 degrees of freedom: P(chi2 > 31.3) = 0.001.
    EXPECT_LT(chi2, 31.3) << "rep " << rep;
    double overlap = 0;
    for (int i = 0; i < V; ++i) overlap += std::min(p[static_cast<size_t>(i)], q[static_cast<size_t>(i)]);
    EXPECT_NEAR(static_cast<double>(accepted) / trials, overlap, 0.01);  // acceptance = Σ min(p, q)
  }
}

// The dense distribution matches what the sampler draws (temperature, top-p, top-k).
TEST(Speculative, SamplingDistributionMatchesTheSampler) {
  std::mt19937 rng(9);
  std::normal_distribution<float> nd(0.f, 2.f);
  const int V = 30;
  std::vector<float> logits(V);
  for (auto& v : logits) v = nd(rng);
  SamplingParams sp{0.8f, 0.9f, 0.0f, 12, 7};
  std::vector<double> p;
  sampling_distribution(sp, logits.data(), V, p);
  Sampler s(sp);
  std::vector<int> count(V, 0);
  const int trials = 100000;
  for (int t = 0; t < trials; ++t) ++count[static_cast<size_t>(s.sample(logits.data(), V))];
  for (int i = 0; i < V; ++i) {
    if (p[static_cast<size_t>(i)] == 0) EXPECT_EQ(count[static_cast<size_t>(i)], 0) << i;
    else EXPECT_NEAR(count[static_cast<size_t>(i)] / static_cast<double>(trials), p[static_cast<size_t>(i)], 0.01) << i;
  }
}

}  // namespace
