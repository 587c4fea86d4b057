// `bench compare` on known data: paired when both runs sent the same request sequence (same
// workload and seed), unpaired otherwise, and the paired interval is what catches a small shift
// that the spread between requests hides from an unpaired comparison.
#include <gtest/gtest.h>

#include "bench/compare.h"
#include "bench/metrics.h"
#include "stats/bootstrap.h"

using namespace v4::bench;

namespace {

// A one-point result document whose request i has TTFT ttft[i] (and a stream of 10 pieces 5 ms
// apart after it), as `v4host bench --json` writes it.
json run_doc(const std::vector<double>& ttft, uint64_t seed) {
  json reqs = json::array();
  for (size_t i = 0; i < ttft.size(); ++i) {
    RequestRecord r;
    r.index = static_cast<int>(ttft.size() - 1 - i);  // start order differs from the workload order
    r.unit = static_cast<int>(i);
    r.max_tokens = 10;
    r.input_tokens_local = 100 + static_cast<int>(i % 7);
    r.status = 200;
    r.first_token_ms = r.first_answer_ms = ttft[i];
    for (int k = 0; k < 10; ++k) r.piece_ms.push_back(ttft[i] + 5 * k);
    r.end_ms = r.piece_ms.back();
    r.answer_pieces = 10;
    r.completion_tokens = 10;
    reqs.push_back(record_to_json(r));
  }
  return {{"provenance", {{"endpoint", "http://x"}, {"model", "m"}}},
          {"config", {{"workload", {{"kind", "synthetic"}, {"input", "uniform:50,150"}, {"output", "10"}, {"seed", seed}}}}},
          {"points", json::array({{{"summary", {{"label", "c=4"}}}, {"load", {{"mode", "concurrency"}}}, {"requests", reqs}}})}};
}

const json* row(const CompareResult& r, const std::string& metric, const std::string& stat) {
  for (const auto& x : r.rows)
    if (x["metric"] == metric && x["stat"] == stat) return &x;
  return nullptr;
}

}  // namespace

TEST(BenchCompare, SameSequenceIsPairedAndFindsASmallShiftUnderLargeSpread) {
  // TTFT spread widely over requests (20..980 ms, as input lengths would make it); B is A + 4 ms.
  std::vector<double> a, b;
  v4::stats::SplitMix64 g(7);
  for (int i = 0; i < 400; ++i) {
    a.push_back(20 + 960 * g.uniform());
    b.push_back(a.back() + 4);
  }
  CompareOptions o;
  auto paired = compare_results(run_doc(a, 1), run_doc(b, 1), o);
  ASSERT_EQ(paired.pairing.size(), 1u);
  EXPECT_EQ(paired.pairing[0]["mode"], "paired");
  EXPECT_EQ(paired.pairing[0]["pairs"], 400);
  EXPECT_NE(paired.text.find("paired: 400 requests paired"), std::string::npos) << paired.text;
  const json* m = row(paired, "ttft_ms", "mean");
  ASSERT_TRUE(m);
  EXPECT_EQ((*m)["mode"], "paired");
  EXPECT_NEAR((*m)["diff"].get<double>(), 4.0, 1e-9);
  // Every paired difference is exactly +4 ms: the interval of B - A collapses onto it.
  EXPECT_NEAR((*m)["diff_ci"][0].get<double>(), 4.0, 1e-9);
  EXPECT_NEAR((*m)["diff_ci"][1].get<double>(), 4.0, 1e-9);
  EXPECT_EQ((*m)["verdict"], "REGRESSION");
  // TPOT is the same in both runs.
  EXPECT_EQ((*row(paired, "tpot_ms", "mean"))["verdict"], "no significant change");

  // The same data as two unrelated runs (different seeds): independent samples, whose interval
  // (~±30 ms at this spread) cannot tell +4 ms from nothing.
  auto unpaired = compare_results(run_doc(a, 1), run_doc(b, 2), o);
  EXPECT_EQ(unpaired.pairing[0]["mode"], "unpaired");
  EXPECT_NE(unpaired.text.find("unpaired: the runs used different workloads or seeds"), std::string::npos) << unpaired.text;
  const json* u = row(unpaired, "ttft_ms", "mean");
  ASSERT_TRUE(u);
  EXPECT_EQ((*u)["mode"], "unpaired");
  EXPECT_FALSE(u->contains("diff_ci"));
  EXPECT_EQ((*u)["verdict"], "no significant change");
  EXPECT_NEAR((*u)["diff"].get<double>(), 4.0, 1e-6);  // same point estimate
}

TEST(BenchCompare, PairedBootstrapOnKnownPairs) {
  // Pairs (a, b): differences 1, 2, 3, 4 around a common level that varies a lot.
  std::vector<std::vector<double>> a = {{100}, {300}, {500}, {700}}, b = {{101}, {302}, {503}, {704}};
  v4::stats::BootstrapOptions bo;
  bo.seed = 3;
  auto d = paired_bootstrap(a, b, {"mean"}, bo);
  EXPECT_EQ(d.pairs, 4u);
  EXPECT_DOUBLE_EQ(d.a[0], 400);
  EXPECT_DOUBLE_EQ(d.b[0], 402.5);
  EXPECT_DOUBLE_EQ(d.diff[0].estimate, 2.5);
  // Every resampled mean difference is a mean of four of {1, 2, 3, 4}.
  EXPECT_TRUE(d.diff[0].valid);
  EXPECT_GE(d.diff[0].lo, 1.0);
  EXPECT_LE(d.diff[0].hi, 4.0);
  EXPECT_LT(d.diff[0].lo, 2.5);
  EXPECT_GT(d.diff[0].hi, 2.5);
  // A pair missing the metric on one side is left out; pooled values (ITL-like) stay together.
  auto p = paired_bootstrap({{1, 2}, {}, {3}}, {{2, 3}, {9}, {4}}, {"mean"}, bo);
  EXPECT_EQ(p.pairs, 2u);
  EXPECT_DOUBLE_EQ(p.a[0], 2);
  EXPECT_DOUBLE_EQ(p.b[0], 3);
}

TEST(BenchCompare, DifferingRequestsAreNotPaired) {
  std::vector<double> a(50, 10.0), b(50, 12.0);
  json da = run_doc(a, 1), db = run_doc(b, 1);
  // Same workload recorded, but one request's input length differs: not the same sequence.
  db["points"][0]["requests"][3]["input_tokens_local"] = 999;
  auto r = compare_results(da, db, {});
  EXPECT_EQ(r.pairing[0]["mode"], "unpaired");
  EXPECT_NE(r.pairing[0]["why"].get<std::string>().find("differs between the runs"), std::string::npos);
}
