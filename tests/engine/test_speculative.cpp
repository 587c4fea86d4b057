// Speculative decoding with the MTP module: greedy output identical to plain greedy decoding
// (with drafts that are sometimes right, so both the accept and the reject paths run), and
// rejection sampling that leaves the sampled distribution exactly the target's (chi-square).
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

TEST(Speculative, GreedyOutputIsIdenticalToPlainDecoding) {
  for (Numerics num : {Numerics::Exact, Numerics::Official}) {
    Engine eng(*model().w, num);
    ASSERT_TRUE(eng.has_mtp());
    const std::vector<int32_t> prompt = {3, 77, 200, 5, 19, 401, 88, 7, 250, 1, 64};
    const int N = 40;
    auto ref = plain_greedy(eng, prompt, N);
    for (int mode = 0; mode < 2; ++mode) {
      auto st = eng.new_sequence(true);
      SpeculativeDecoder sd(eng, *st, SamplingParams{});
      if (mode == 1) {
        // Drafts right two times in three (the plain run's token), else the MTP's own guess.
        sd.draft_override = [&](int64_t pos, float* q) {
          const int64_t i = pos - static_cast<int64_t>(prompt.size());
          if (i >= 0 && i < N && pos % 3 != 0) q[ref[static_cast<size_t>(i)]] = 1e9f;
        };
      }
      sd.start(prompt.data(), static_cast<int>(prompt.size()));
      std::vector<int32_t> got;
      sd.generate(N, [&](int32_t t) {
        got.push_back(t);
        return true;
      });
      EXPECT_EQ(got, ref) << "mode " << mode << " numerics " << static_cast<int>(num);
      EXPECT_EQ(sd.stats().tokens, N);
      if (mode == 1) {
        EXPECT_GT(sd.stats().accepted, 0);
        EXPECT_LT(sd.stats().accepted, sd.stats().drafts);
        EXPECT_GT(sd.stats().tokens_per_step(), 1.2);
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
