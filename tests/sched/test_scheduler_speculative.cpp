// Speculative decoding in the scheduler's batches, with the MTP head (preview layout) and the
// DSpark drafter (0731 layout): greedy output of concurrent requests identical with and without
// speculation (with drafts forced right most of the time, so accepted blocks, partial blocks and
// rejections are verified together in shared forwards), sampled output distributed as without
// (two-sample chi-square), /metrics counters present and consistent, auto mode turning drafting
// off where drafts are not accepted and keeping it where they are, constrained requests not
// drafting, seeded sampling reproducible under auto.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <map>
#include <random>

#include "../common/scheduler_run.h"
#include "../common/synth_model.h"
#include "core/prometheus.h"
#include "sched/scheduler.h"

using namespace v4;
using namespace std::chrono_literals;
using test::collect;
using test::greedy;
using test::prompt;
using test::Result;

namespace {

test::SynthModel& model(int which) {
  static test::SynthModel mtp("sched-spec-preview", 21, true, "preview", 4), dspark("sched-spec-0731", 21, true, "0731", 4);
  return which == 0 ? mtp : dspark;
}


// Prompts of several lengths (beyond the window too, so the drafter's rows come from chunked
// prefills) generated concurrently.
std::vector<Result> run_batch(Engine& eng, const SchedulerOptions& opt, Metrics* m, int n) {
  Scheduler s(eng, opt, m);
  std::vector<std::shared_ptr<RequestHandle>> hs;
  for (int i = 0; i < 6; ++i) hs.push_back(s.submit(greedy(prompt(5 + 41 * i, 100 + i), n)));
  std::vector<Result> out;
  for (auto& h : hs) out.push_back(collect(h));
  return out;
}

SchedulerOptions base_options() {
  SchedulerOptions o;
  o.prefix_cache_bytes = 0;
  o.prefill_chunk = 48;
  return o;
}

TEST(SchedulerSpeculative, GreedyOutputIsIdenticalWithAndWithoutSpeculation) {
  for (int which = 0; which < 2; ++which) {
    Engine eng(*model(which).w);
    const int N = 20;
    SchedulerOptions off = base_options();
    const auto ref = run_batch(eng, off, nullptr, N);
    // Reference continuation of each prompt, to force drafts right except at every 5th position.
    std::map<size_t, std::vector<int32_t>> cont;
    for (int i = 0; i < 6; ++i) cont[static_cast<size_t>(5 + 41 * i)] = ref[static_cast<size_t>(i)].tokens;
    for (int forced = 0; forced < 2; ++forced) {
      SchedulerOptions on = base_options();
      on.speculative = SpecMode::On;
      if (forced)
        on.spec_draft_override = [&](const std::vector<int32_t>& p, int64_t pos, float* q) {
          const auto& c = cont.at(p.size());
          const int64_t j = pos - static_cast<int64_t>(p.size());
          if (j >= 0 && j < static_cast<int64_t>(c.size()) && pos % 5 != 0) q[c[static_cast<size_t>(j)]] = 1e9f;
        };
      Metrics m;
      const auto got = run_batch(eng, on, &m, N);
      for (int i = 0; i < 6; ++i) {
        const auto &a = ref[static_cast<size_t>(i)], &b = got[static_cast<size_t>(i)];
        EXPECT_EQ(a.tokens, b.tokens) << "drafter " << which << " forced " << forced << " request " << i;
        EXPECT_EQ(a.reason, b.reason);
        ASSERT_EQ(a.logprobs.size(), b.logprobs.size());
        for (size_t t = 0; t < a.logprobs.size(); ++t) EXPECT_NEAR(a.logprobs[t], b.logprobs[t], 1e-4) << i << " " << t;
      }
      const double drafted = m.value("v4host_spec_draft_tokens_total"), accepted = m.value("v4host_spec_accepted_tokens_total"),
                   steps = m.value("v4host_spec_verify_steps_total"), emitted = m.value("v4host_spec_emitted_tokens_total");
      EXPECT_GT(drafted, 0);
      EXPECT_LE(accepted, drafted);
      EXPECT_GE(emitted, steps);
      EXPECT_LE(emitted, accepted + steps);
      EXPECT_LE(emitted, m.value("v4host_generated_tokens_total"));
      if (forced) {
        EXPECT_GT(accepted, drafted / 3) << which;
        EXPECT_GT(emitted / steps, 1.5) << which;
        // Speculation took fewer batched forwards than tokens.
        EXPECT_LT(m.value("v4host_forward_steps_total"), m.value("v4host_generated_tokens_total"));
      }
      EXPECT_NEAR(m.value("v4host_spec_acceptance_ratio"), accepted / drafted, 1e-9);
      EXPECT_NEAR(m.value("v4host_spec_tokens_per_step"), emitted / steps, 1e-9);
      const std::string text = m.render();
      for (const char* name : {"v4host_spec_draft_tokens_total", "v4host_spec_accepted_tokens_total", "v4host_spec_verify_steps_total",
                               "v4host_spec_emitted_tokens_total", "v4host_spec_acceptance_ratio", "v4host_spec_tokens_per_step",
                               "v4host_spec_drafting_sequences"})
        EXPECT_NE(text.find(name), std::string::npos) << name;
    }
  }
}

// Sampled requests through the scheduler: the tokens after the first follow the same
// distribution with and without speculation.
TEST(SchedulerSpeculative, SampledOutputIsDistributedAsWithoutSpeculation) {
  const int runs = 160, N = 3, buckets = 8;
  const auto p = prompt(9, 7);
  for (int which = 0; which < 2; ++which) {
    Engine eng(*model(which).w);
    std::vector<std::vector<int>> hist[2];
    Metrics m;
    for (int spec = 0; spec < 2; ++spec) {
      hist[spec].assign(N, std::vector<int>(buckets, 0));
      SchedulerOptions o = base_options();
      o.speculative = spec ? SpecMode::On : SpecMode::Off;
      o.queue_limit = runs;
      Scheduler s(eng, o, spec ? &m : nullptr);
      std::vector<std::shared_ptr<RequestHandle>> hs;
      for (int r = 0; r < runs; ++r) {
        GenRequest g = greedy(p, N);
        g.sampling.temperature = 1.5f;
        g.sampling.seed = 5000 + static_cast<uint64_t>(r) + 100000 * static_cast<uint64_t>(spec);
        g.stop_ids = {-1};  // no stop token but the model's EOS
        hs.push_back(s.submit(g));
      }
      for (auto& h : hs) {
        Result r = collect(h);
        for (size_t i = 0; i < r.tokens.size() && i < static_cast<size_t>(N); ++i) ++hist[spec][i][static_cast<size_t>(r.tokens[i] % buckets)];
      }
    }
    EXPECT_GT(m.value("v4host_spec_accepted_tokens_total"), m.value("v4host_spec_draft_tokens_total") / 20) << which;
    for (int i = 1; i < N; ++i) {
      double chi2 = 0;
      for (int b = 0; b < buckets; ++b) {
        const double a = hist[0][static_cast<size_t>(i)][static_cast<size_t>(b)], c = hist[1][static_cast<size_t>(i)][static_cast<size_t>(b)];
        if (a + c > 0) chi2 += (a - c) * (a - c) / (a + c);
      }
      EXPECT_LT(chi2, 24.3) << "drafter " << which << " token " << i;  // 7 dof, P = 0.001
    }
  }
}

// auto: random drafters are (almost) never right for greedy requests, so drafting stops after
// a few steps and only probes; with drafts that are right it keeps drafting.
TEST(SchedulerSpeculative, AutoStopsDraftingWhereItDoesNotPay) {
  Engine eng(*model(0).w);
  const int N = 48;
  {
    SchedulerOptions o = base_options();
    o.speculative = SpecMode::Auto;
    Metrics m;
    run_batch(eng, o, &m, N);
    const double drafted = m.value("v4host_spec_draft_tokens_total"), generated = m.value("v4host_generated_tokens_total");
    EXPECT_GT(drafted, 0);
    EXPECT_LT(drafted, 0.3 * generated) << drafted << " drafts for " << generated << " tokens";
  }
  {
    const auto ref = run_batch(eng, base_options(), nullptr, N);
    std::map<size_t, std::vector<int32_t>> cont;
    for (int i = 0; i < 6; ++i) cont[static_cast<size_t>(5 + 41 * i)] = ref[static_cast<size_t>(i)].tokens;
    SchedulerOptions o = base_options();
    o.speculative = SpecMode::Auto;
    o.spec_draft_override = [&](const std::vector<int32_t>& p, int64_t pos, float* q) {
      const auto& c = cont.at(p.size());
      const int64_t j = pos - static_cast<int64_t>(p.size());
      if (j >= 0 && j < static_cast<int64_t>(c.size())) q[c[static_cast<size_t>(j)]] = 1e9f;
    };
    Metrics m;
    const auto got = run_batch(eng, o, &m, N);
    for (int i = 0; i < 6; ++i) EXPECT_EQ(got[static_cast<size_t>(i)].tokens, ref[static_cast<size_t>(i)].tokens);
    EXPECT_GT(m.value("v4host_spec_acceptance_ratio"), 0.9);
    EXPECT_GT(m.value("v4host_spec_tokens_per_step"), 1.9);
  }
}

// A seeded sampled request gives the same tokens whatever the server served before (auto mode's
// drafting pattern depends only on the request's own history).
TEST(SchedulerSpeculative, SeededSamplingIsReproducibleUnderAuto) {
  Engine eng(*model(1).w);
  SchedulerOptions o = base_options();
  o.speculative = SpecMode::Auto;
  Metrics m;
  Scheduler s(eng, o, &m);
  GenRequest g = greedy(prompt(30, 4), 24);
  g.sampling.temperature = 0.8f;
  g.sampling.seed = 77;
  const Result first = collect(s.submit(g));
  for (int i = 0; i < 3; ++i) collect(s.submit(greedy(prompt(20 + i, 50 + i), 30)));
  EXPECT_EQ(collect(s.submit(g)).tokens, first.tokens);
  EXPECT_GT(m.value("v4host_spec_draft_tokens_total"), 0);
}

// A grammar-constrained request never drafts (its mask applies to the sampled token only).
struct EvenTokens : TokenConstraint {
  bool mask(std::vector<uint8_t>& allowed) override {
    for (size_t i = 2; i < allowed.size(); i += 2) allowed[i] = 1;
    return true;
  }
  void accept(int32_t) override {}
};

TEST(SchedulerSpeculative, ConstrainedRequestsDoNotDraft) {
  Engine eng(*model(1).w);
  SchedulerOptions o = base_options();
  o.speculative = SpecMode::On;
  Metrics m;
  Scheduler s(eng, o, &m);
  GenRequest g = greedy(prompt(12, 3), 10);
  g.constraint = std::make_shared<EvenTokens>();
  Result r = collect(s.submit(g));
  ASSERT_EQ(r.tokens.size(), 10u);
  for (int32_t t : r.tokens) EXPECT_EQ(t % 2, 0);
  EXPECT_EQ(m.value("v4host_spec_draft_tokens_total"), 0);
  Result r2 = collect(s.submit(greedy(prompt(12, 3), 10)));
  EXPECT_GT(m.value("v4host_spec_draft_tokens_total"), 0);
}

}  // namespace
