#include <gtest/gtest.h>

#include <cmath>

#include "stats/bootstrap.h"
#include "stats/summary.h"

using namespace v4::stats;

TEST(Summary, PercentilesMatchNumpyLinear) {
  std::vector<double> x = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  // numpy.percentile(range(1,11), [0, 50, 90, 99, 100]) = 1, 5.5, 9.1, 9.91, 10
  EXPECT_DOUBLE_EQ(percentile(x, 0), 1);
  EXPECT_DOUBLE_EQ(percentile(x, 50), 5.5);
  EXPECT_NEAR(percentile(x, 90), 9.1, 1e-12);
  EXPECT_NEAR(percentile(x, 99), 9.91, 1e-12);
  EXPECT_DOUBLE_EQ(percentile(x, 100), 10);
  EXPECT_DOUBLE_EQ(percentile({42}, 99), 42);
  EXPECT_TRUE(std::isnan(percentile({}, 50)));
  auto s = summarize({5, 1, 3});
  EXPECT_EQ(s.count, 3u);
  EXPECT_DOUBLE_EQ(s.mean, 3);
  EXPECT_DOUBLE_EQ(s.min, 1);
  EXPECT_DOUBLE_EQ(s.max, 5);
  EXPECT_DOUBLE_EQ(s.p50, 3);
  EXPECT_NEAR(s.std, std::sqrt(8.0 / 3), 1e-12);
  EXPECT_EQ(summarize({}).count, 0u);
}

TEST(Summary, NamedStatistics) {
  std::vector<double> s = {1, 2, 3, 4};
  EXPECT_DOUBLE_EQ(Summary::of(s, "mean"), 2.5);
  EXPECT_DOUBLE_EQ(Summary::of(s, "median"), 2.5);
  EXPECT_DOUBLE_EQ(Summary::of(s, "p100"), 4);
  EXPECT_DOUBLE_EQ(Summary::of(s, "p99.9"), percentile(s, 99.9));
  EXPECT_THROW(Summary::of(s, "p"), std::invalid_argument);
  EXPECT_THROW(Summary::of(s, "p101"), std::invalid_argument);
  EXPECT_THROW(Summary::of(s, "avg"), std::invalid_argument);
}

TEST(Bootstrap, MinSamplesRule) {
  EXPECT_EQ(min_samples_for_percentile_ci(95), 72u);
  EXPECT_EQ(min_samples_for_percentile_ci(99), 368u);
  EXPECT_EQ(min_samples_for_percentile_ci(99.9), 3688u);
  EXPECT_FALSE(ci_supported("p99", 367));
  EXPECT_TRUE(ci_supported("p99", 368));
  EXPECT_TRUE(ci_supported("mean", 2));
  EXPECT_FALSE(ci_supported("max", 10000));
}

TEST(Bootstrap, MeanIntervalCoversAndIsSeeded) {
  SplitMix64 rng(7);
  std::vector<double> x;
  for (int i = 0; i < 2000; ++i) x.push_back(10 + 4 * (rng.uniform() - 0.5));  // uniform(8,12): mean 10, sd 1.155
  auto a = bootstrap_ci(x, "mean", {1000, 0.95, 42});
  auto b = bootstrap_ci(x, "mean", {1000, 0.95, 42});
  auto c = bootstrap_ci(x, "mean", {1000, 0.95, 43});
  ASSERT_TRUE(a.valid);
  EXPECT_EQ(a.lo, b.lo);
  EXPECT_EQ(a.hi, b.hi);
  EXPECT_NE(a.lo, c.lo);
  EXPECT_LT(a.lo, a.estimate);
  EXPECT_GT(a.hi, a.estimate);
  // Half-width ~ 1.96 * 1.155 / sqrt(2000) = 0.0506
  EXPECT_NEAR((a.hi - a.lo) / 2, 0.0506, 0.012);
  EXPECT_LT(a.lo, 10.06);
  EXPECT_GT(a.hi, 9.94);
}

TEST(Bootstrap, DifferenceOfShiftedSamples) {
  SplitMix64 rng(1);
  std::vector<double> a, b;
  for (int i = 0; i < 1000; ++i) {
    double v = rng.uniform();
    a.push_back(100 + v * 10);
    b.push_back(110 + rng.uniform() * 10);  // +10 shift
  }
  auto d = bootstrap_diff_ci(a, b, "p50", {500, 0.95, 3});
  ASSERT_TRUE(d.valid);
  EXPECT_NEAR(d.estimate, 10, 1);
  EXPECT_LT(d.lo, d.estimate);
  EXPECT_GT(d.hi, d.estimate);
  EXPECT_GT(d.lo, 8);
  auto r = bootstrap_rel_diff_ci(a, b, "mean", {500, 0.95, 3});
  EXPECT_NEAR(r.estimate, 10.0 / 105, 0.01);
  // Too few samples for a p99 interval: estimate only.
  std::vector<double> small(a.begin(), a.begin() + 100);
  auto s = bootstrap_diff_ci(small, small, "p99");
  EXPECT_FALSE(s.valid);
  EXPECT_DOUBLE_EQ(s.estimate, 0);
}
