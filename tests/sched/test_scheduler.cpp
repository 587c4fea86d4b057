// The continuous-batching scheduler on a synthetic model: batching is exact, prefix-cache hits
// reproduce a cold run, cancellation frees state, admission control refuses what cannot fit.
#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "core/error.h"
#include "../common/scheduler_run.h"
#include "../common/synth_model.h"
#include "sched/scheduler.h"

using namespace v4;
using namespace std::chrono_literals;
using test::collect;
using test::greedy;
using test::prompt;
using test::Result;

namespace {

test::SynthModel& model() {
  static test::SynthModel m("sched", 9, false);
  return m;
}


TEST(Scheduler, EightConcurrentRequestsGiveTheSameTokensAsOneAtATime) {
  Engine eng(*model().w);
  SchedulerOptions opt;
  opt.prefix_cache_bytes = 0;  // measure batching alone
  opt.prefill_chunk = 64;
  std::vector<Result> alone, together;
  {
    Scheduler s(eng, opt, nullptr);
    for (int i = 0; i < 8; ++i) alone.push_back(collect(s.submit(greedy(prompt(10 + 23 * i, i), 16))));
  }
  {
    Scheduler s(eng, opt, nullptr);
    std::vector<std::shared_ptr<RequestHandle>> hs;
    for (int i = 0; i < 8; ++i) hs.push_back(s.submit(greedy(prompt(10 + 23 * i, i), 16)));
    for (auto& h : hs) together.push_back(collect(h));
  }
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(alone[static_cast<size_t>(i)].tokens, together[static_cast<size_t>(i)].tokens) << "request " << i;
    EXPECT_EQ(alone[static_cast<size_t>(i)].logprobs, together[static_cast<size_t>(i)].logprobs) << "request " << i;
  }
}

TEST(Scheduler, PrefixCacheHitReproducesColdRun) {
  Engine eng(*model().w);
  auto base = prompt(300, 42);
  auto longer = base;
  auto extra = prompt(37, 43);
  longer.insert(longer.end(), extra.begin(), extra.end());
  SchedulerOptions cold_opt;
  cold_opt.prefix_cache_bytes = 0;
  Result cold;
  {
    Scheduler s(eng, cold_opt, nullptr);
    cold = collect(s.submit(greedy(longer, 12)));
    EXPECT_EQ(cold.cached, 0);
  }
  SchedulerOptions opt;
  opt.snapshot_every = 128;
  Metrics m;
  Scheduler s(eng, opt, &m);
  collect(s.submit(greedy(base, 4)));
  Result warm = collect(s.submit(greedy(longer, 12)));
  EXPECT_EQ(warm.cached, static_cast<int>(base.size()) - 1);
  EXPECT_EQ(warm.tokens, cold.tokens);
  EXPECT_EQ(warm.logprobs, cold.logprobs);  // bit-identical logits behind them
  EXPECT_GT(m.value("v4host_prefix_cache_hit_tokens_total"), 0);
  // The same prompt again hits at len-1.
  Result again = collect(s.submit(greedy(longer, 12)));
  EXPECT_EQ(again.cached, static_cast<int>(longer.size()) - 1);
  EXPECT_EQ(again.tokens, cold.tokens);
}

TEST(Scheduler, CancelFreesStateAndFinishes) {
  Engine eng(*model().w);
  SchedulerOptions opt;
  Scheduler s(eng, opt, nullptr);
  auto h = s.submit(greedy(prompt(50, 1), 100000 > opt.ctx ? 1000 : 1000));
  std::vector<TokenEvent> ev;
  while (ev.empty()) h->poll(ev, 20ms);
  h->cancel();
  while (!h->poll(ev, 20ms)) {
  }
  EXPECT_EQ(h->finish_reason(), FinishReason::Cancelled);
  for (int i = 0; i < 100 && s.running() > 0; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(s.running(), 0u);
  EXPECT_EQ(s.kv_bytes_in_use(), 0u);
}

TEST(Scheduler, MaxTokensAndStopIds) {
  Engine eng(*model().w);
  Scheduler s(eng, SchedulerOptions{}, nullptr);
  Result r = collect(s.submit(greedy(prompt(20, 2), 5)));
  EXPECT_EQ(r.tokens.size(), 5u);
  EXPECT_EQ(r.reason, FinishReason::Length);
  // Stop on the first token the model would produce.
  GenRequest g = greedy(prompt(20, 2), 5);
  g.stop_ids = {r.tokens[0]};
  Result r2 = collect(s.submit(g));
  EXPECT_TRUE(r2.tokens.empty());
  EXPECT_EQ(r2.reason, FinishReason::Stop);
}

// Submits `n` greedy requests of `max_tokens` (prompts seeded from `seed`) at once, keeping the
// accepted handles in *hs; returns how many were refused with QueueFull.
int submit_burst(Scheduler& s, int n, int seed, int max_tokens, std::vector<std::shared_ptr<RequestHandle>>* hs) {
  int refused = 0;
  for (int i = 0; i < n; ++i) {
    try {
      hs->push_back(s.submit(greedy(prompt(8, seed + i), max_tokens)));
    } catch (const QueueFull&) {
      ++refused;
    }
  }
  return refused;
}

TEST(Scheduler, AdmissionControl) {
  Engine eng(*model().w);
  SchedulerOptions opt;
  opt.ctx = 64;
  opt.queue_limit = 1;
  opt.max_seqs = 1;
  Scheduler s(eng, opt, nullptr);
  EXPECT_THROW(s.submit(greedy(prompt(80, 3), 4)), InputError);  // prompt beyond --ctx
  SchedulerOptions tight;
  tight.kv_budget = 1000;  // bytes: nothing fits
  Scheduler t(eng, tight, nullptr);
  EXPECT_THROW(t.submit(greedy(prompt(8, 3), 4)), InputError);
  // Queue of one: a burst beyond running + queued is refused with QueueFull.
  std::vector<std::shared_ptr<RequestHandle>> hs;
  EXPECT_GT(submit_burst(s, 6, 0, 40, &hs), 0);
  for (auto& h : hs) collect(h);
}

// --queue counts requests waiting beyond the free batch slots: a burst as large as batch + queue
// is accepted even when it arrives before the loop has admitted any of it (the regression: the
// burst's last requests were refused while batch slots stood free), and the burst beyond is not.
TEST(Scheduler, QueueLimitCountsRequestsBeyondFreeBatchSlots) {
  Engine eng(*model().w);
  SchedulerOptions opt;
  opt.ctx = 128;
  opt.max_seqs = 4;
  opt.queue_limit = 2;
  Scheduler s(eng, opt, nullptr);
  std::vector<std::shared_ptr<RequestHandle>> hs;
  EXPECT_EQ(submit_burst(s, opt.max_seqs + opt.queue_limit, 10, 60, &hs), 0);
  EXPECT_GT(submit_burst(s, 4, 20, 60, &hs), 0);
  for (auto& h : hs) {
    const FinishReason r = collect(h).reason;
    EXPECT_TRUE(r == FinishReason::Length || r == FinishReason::Stop) << finish_reason_name(r);
  }
}

}  // namespace
