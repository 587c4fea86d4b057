// Wilson intervals, exact McNemar, paired bootstrap and pass@k against hand-computed values, and
// the paired comparison of two results files.
#include <gtest/gtest.h>

#include "eval/compare.h"
#include "stats/binomial.h"

using namespace v4;

TEST(EvalStats, WilsonMatchesHandComputedValues) {
  // 8/10: centre (0.8 + 1.9208/10) / 1.38415 = 0.71674, half 1.41600 * sqrt(0.016 + 0.0096037) = 0.22658.
  auto a = stats::wilson_interval(8, 10);
  EXPECT_NEAR(a.lo, 0.49016, 1e-4);
  EXPECT_NEAR(a.hi, 0.94331, 1e-4);
  auto b = stats::wilson_interval(0, 10);
  EXPECT_DOUBLE_EQ(b.lo, 0.0);
  EXPECT_NEAR(b.hi, 0.27753, 1e-4);
  auto c = stats::wilson_interval(10, 10);
  EXPECT_NEAR(c.lo, 0.72247, 1e-4);
  EXPECT_DOUBLE_EQ(c.hi, 1.0);
  auto e = stats::wilson_interval(0, 0);
  EXPECT_EQ(e.lo, 0.0);
  EXPECT_EQ(e.hi, 1.0);
}

TEST(EvalStats, ExactMcNemarMatchesHandComputedValues) {
  // p = 2 * P(X <= min(b, c)), X ~ Bin(b + c, 1/2).
  EXPECT_DOUBLE_EQ(stats::mcnemar_exact(1, 9), 2.0 * (1 + 10) / 1024);    // 0.021484375
  EXPECT_DOUBLE_EQ(stats::mcnemar_exact(9, 1), 2.0 * (1 + 10) / 1024);
  EXPECT_DOUBLE_EQ(stats::mcnemar_exact(0, 6), 2.0 / 64);                  // 0.03125
  EXPECT_DOUBLE_EQ(stats::mcnemar_exact(2, 8), 2.0 * (1 + 10 + 45) / 1024);  // 0.109375
  EXPECT_DOUBLE_EQ(stats::mcnemar_exact(1, 7), 2.0 * (1 + 8) / 256);       // 0.0703125
  EXPECT_DOUBLE_EQ(stats::mcnemar_exact(3, 3), 1.0);
  EXPECT_DOUBLE_EQ(stats::mcnemar_exact(0, 0), 1.0);
  // Large n stays finite and symmetric: 450 vs 550 discordant pairs is p ~ 0.0017.
  double p = stats::mcnemar_exact(450, 550);
  EXPECT_GT(p, 0.001);
  EXPECT_LT(p, 0.003);
}

TEST(EvalStats, PassAtKUnbiased) {
  EXPECT_DOUBLE_EQ(stats::pass_at_k(5, 2, 1), 0.4);
  EXPECT_NEAR(stats::pass_at_k(5, 2, 2), 1.0 - 3.0 / 10.0, 1e-12);  // 1 - C(3,2)/C(5,2)
  EXPECT_DOUBLE_EQ(stats::pass_at_k(5, 4, 2), 1.0);                 // n - c < k
  EXPECT_DOUBLE_EQ(stats::pass_at_k(3, 0, 3), 0.0);
  EXPECT_NEAR(stats::pass_at_k(10, 3, 5), 1.0 - 21.0 / 252.0, 1e-12);  // 1 - C(7,5)/C(10,5)
  EXPECT_THROW(stats::pass_at_k(3, 1, 4), std::invalid_argument);
}

TEST(EvalStats, PairedBootstrapIsSeededAndCoversTheMean) {
  std::vector<double> a, b;
  for (int i = 0; i < 200; ++i) {
    a.push_back(i % 2);
    b.push_back(i % 4 != 0 ? 1 : 0);
  }
  auto r1 = stats::paired_bootstrap(a, b, 2000, 7);
  auto r2 = stats::paired_bootstrap(a, b, 2000, 7);
  EXPECT_DOUBLE_EQ(r1.mean_diff, 0.25);
  EXPECT_EQ(r1.ci.lo, r2.ci.lo);
  EXPECT_EQ(r1.ci.hi, r2.ci.hi);
  EXPECT_LT(r1.ci.lo, 0.25);
  EXPECT_GT(r1.ci.hi, 0.25);
  EXPECT_GT(r1.ci.lo, 0.1);
  // Identical runs: a zero-width interval at 0.
  auto z = stats::paired_bootstrap(a, a, 500, 1);
  EXPECT_EQ(z.ci.lo, 0.0);
  EXPECT_EQ(z.ci.hi, 0.0);
}

namespace {

// 20 items: both pass `both`, neither `neither`, only A `ao`, only B `bo`.
void make_runs(int both, int neither, int ao, int bo, std::vector<eval::Outcome>& A, std::vector<eval::Outcome>& B) {
  int id = 0;
  auto add = [&](bool pa, bool pb) {
    eval::Outcome a, b;
    a.id = b.id = "item-" + std::to_string(id++);
    a.category = b.category = id % 2 ? "odd" : "even";
    a.passed = pa;
    b.passed = pb;
    a.score = pa;
    b.score = pb;
    A.push_back(a);
    B.push_back(b);
  };
  for (int i = 0; i < both; ++i) add(true, true);
  for (int i = 0; i < neither; ++i) add(false, false);
  for (int i = 0; i < ao; ++i) add(true, false);
  for (int i = 0; i < bo; ++i) add(false, true);
}

}  // namespace

TEST(EvalCompare, CountsPValueAndVerdict) {
  std::vector<eval::Outcome> A, B;
  make_runs(8, 4, 1, 7, A, B);
  auto c = eval::compare_results(A, B);
  EXPECT_EQ(c["n_pairs"], 20);
  EXPECT_EQ(c["a_only"], 1);
  EXPECT_EQ(c["b_only"], 7);
  EXPECT_EQ(c["both_passed"], 8);
  EXPECT_EQ(c["neither"], 4);
  EXPECT_DOUBLE_EQ(c["a_pass_rate"].get<double>(), 9.0 / 20);
  EXPECT_DOUBLE_EQ(c["b_pass_rate"].get<double>(), 15.0 / 20);
  EXPECT_DOUBLE_EQ(c["p_value"].get<double>(), 0.0703125);
  EXPECT_EQ(c["verdict"], "no significant difference");
  EXPECT_NEAR(c["diff"].get<double>(), 0.3, 1e-12);
  EXPECT_LT(c["diff_ci95"][0].get<double>(), 0.3);
  EXPECT_GT(c["diff_ci95"][1].get<double>(), 0.3);

  std::vector<eval::Outcome> A2, B2;
  make_runs(8, 4, 0, 8, A2, B2);
  auto better = eval::compare_results(A2, B2);
  EXPECT_DOUBLE_EQ(better["p_value"].get<double>(), 2.0 / 256);
  EXPECT_EQ(better["verdict"], "better");
  auto worse = eval::compare_results(B2, A2);
  EXPECT_EQ(worse["verdict"], "worse");
  EXPECT_EQ(worse["a_only"], 8);
  EXPECT_EQ(worse["b_only"], 0);
}

TEST(EvalCompare, PairsOnIdsAndReportsUnpaired) {
  std::vector<eval::Outcome> A, B;
  make_runs(3, 0, 0, 0, A, B);
  B.erase(B.begin());
  eval::Outcome extra;
  extra.id = "only-in-b";
  extra.passed = true;
  B.push_back(extra);
  auto c = eval::compare_results(A, B);
  EXPECT_EQ(c["n_pairs"], 2);
  EXPECT_EQ(c["unpaired_a"], 1);
  EXPECT_EQ(c["unpaired_b"], 1);
}
