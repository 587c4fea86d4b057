// The break-even table of the self-hosting checklist article, reproduced from its own inputs:
// hosted V4-Flash at $0.14 per million input tokens and $0.28 per million output tokens, against
// 2 x H200 at $7.18 an hour for the whole deployment, continuously (720 h), at 10M, 100M, 200M
// and 500M tokens a month.
//
// Assumption (the article's inputs do not fix it): the input share. The table is reproduced at
// 50% input (an even split) and at 75% input (v4host check's default); the bounds at 0% and
// 100% input show that no assumption changes the conclusion.
#include <gtest/gtest.h>

#include <cmath>

#include "plan/cost.h"

using namespace v4::plan;

namespace {

CostInput article(double input_share) {
  CostInput c;
  c.input_share = input_share;
  c.price_input = 0.14;
  c.price_output = 0.28;
  c.gpu_hourly = 7.18;
  c.hours_per_month = 720;
  return c;
}

const double kVolumes[] = {10e6, 100e6, 200e6, 500e6};

}  // namespace

TEST(PlanCost, SelfHostedMonthIsTheArticles5170) {
  CostInput c = article(0.5);
  c.tokens_per_month = 200e6;
  CostResult r = compute_cost(c, {});
  ASSERT_TRUE(r.self_hosted_usd_per_month.has_value());
  EXPECT_DOUBLE_EQ(*r.self_hosted_usd_per_month, 7.18 * 720);  // $5,169.60: the article's ~$5,170 holds
  EXPECT_NEAR(*r.self_hosted_usd_per_month, 5170, 1);
  // A calendar month is longer than 720 h: 730 h (365/12 days) gives $5,241.40, 744 h $5,341.92.
  c.hours_per_month = 730;
  EXPECT_NEAR(*compute_cost(c, {}).self_hosted_usd_per_month, 5241.40, 0.005);
}

TEST(PlanCost, ArticleTableAtEvenSplit) {
  // Hosted = V/1e6 x (0.5 x 0.14 + 0.5 x 0.28) = V/1e6 x $0.21.
  const double expected_hosted[] = {2.10, 21.00, 42.00, 105.00};
  CostInput c = article(0.5);
  CostResult r = compute_cost(c, {10e6, 100e6, 200e6, 500e6});
  ASSERT_EQ(r.sweep.size(), 5u);  // the four volumes + the break-even row
  for (int i = 0; i < 4; ++i) {
    EXPECT_DOUBLE_EQ(r.sweep[static_cast<size_t>(i)].tokens_per_month, kVolumes[i]);
    EXPECT_NEAR(r.sweep[static_cast<size_t>(i)].hosted_usd, expected_hosted[i], 1e-9);
    EXPECT_DOUBLE_EQ(*r.sweep[static_cast<size_t>(i)].self_hosted_usd, 5169.60);
    EXPECT_LT(r.sweep[static_cast<size_t>(i)].hosted_usd, *r.sweep[static_cast<size_t>(i)].self_hosted_usd);
  }
  // Break-even: 5,169.60 / 0.21 = 24,617.1M tokens a month.
  ASSERT_TRUE(r.breakeven_tokens_per_month.has_value());
  EXPECT_NEAR(*r.breakeven_tokens_per_month, 5169.60 / 0.21 * 1e6, 1);
  EXPECT_NEAR(*r.breakeven_tokens_per_month / 1e9, 24.617, 0.001);
}

TEST(PlanCost, ArticleTableAtDefaultInputShare) {
  // Hosted = V/1e6 x (0.75 x 0.14 + 0.25 x 0.28) = V/1e6 x $0.175.
  const double expected_hosted[] = {1.75, 17.50, 35.00, 87.50};
  CostInput c = article(0.75);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(hosted_usd(c, kVolumes[i]), expected_hosted[i], 1e-9);
  c.tokens_per_month = 500e6;
  CostResult r = compute_cost(c, {});
  EXPECT_NEAR(*r.breakeven_tokens_per_month / 1e9, 29.541, 0.001);  // 5,169.60 / 0.175
}

// Where the article's arithmetic does not hold: at $0.14-0.28 per million, 500M tokens cost
// $70 (all input) to $140 (all output) a month hosted, 37-74x less than the $5,169.60 of the two
// H200s; self-hosting breaks even only at 18.5B-36.9B tokens a month, 37-74x above the table's
// largest volume. No row of a 10M-500M table can show self-hosting paying off.
TEST(PlanCost, ArticleBreakEvenIsFarOutsideItsTable) {
  for (double share : {0.0, 0.25, 0.5, 0.75, 1.0}) {
    CostInput c = article(share);
    c.tokens_per_month = 500e6;
    CostResult r = compute_cost(c, {10e6, 100e6, 200e6, 500e6});
    EXPECT_GE(r.hosted_usd_per_month, 70.0 - 1e-9);
    EXPECT_LE(r.hosted_usd_per_month, 140.0 + 1e-9);
    EXPECT_GT(*r.self_hosted_usd_per_month / r.hosted_usd_per_month, 36.9);
    EXPECT_GE(*r.breakeven_tokens_per_month, 5169.60 / 0.28 * 1e6 - 1);  // 18.46B
    EXPECT_LE(*r.breakeven_tokens_per_month, 5169.60 / 0.14 * 1e6 + 1);  // 36.93B
    for (auto& row : r.sweep) {
      if (row.tokens_per_month <= 500e6) {
        EXPECT_LT(row.hosted_usd, *row.self_hosted_usd);
      }
    }
  }
}

TEST(PlanCost, CachedInputAndOffPeak) {
  CostInput c = article(0.8);
  c.cached_share = 0.5;
  c.price_cached_input = 0.014;
  // 1M tokens: 0.8 input, half cached: 0.4 x 0.14 + 0.4 x 0.014 + 0.2 x 0.28 = 0.1176.
  EXPECT_NEAR(hosted_usd_per_million(c), 0.1176, 1e-12);
  // Without a cache-hit price, cached input is charged as fresh input.
  c.price_cached_input = -1;
  EXPECT_NEAR(hosted_usd_per_million(c), 0.8 * 0.14 + 0.2 * 0.28, 1e-12);
  // Half the traffic off-peak at 50% off: x 0.75.
  c.offpeak_share = 0.5;
  c.offpeak_discount = 0.5;
  EXPECT_NEAR(hosted_usd_per_million(c), (0.8 * 0.14 + 0.2 * 0.28) * 0.75, 1e-12);
}

TEST(PlanCost, UnknownGpuPriceMeansNoBreakEven) {
  CostInput c = article(0.5);
  c.gpu_hourly = -1;
  c.tokens_per_month = 1e9;
  CostResult r = compute_cost(c, default_sweep_volumes());
  EXPECT_FALSE(r.self_hosted_usd_per_month.has_value());
  EXPECT_FALSE(r.breakeven_tokens_per_month.has_value());
  EXPECT_NEAR(r.hosted_usd_per_month, 210.0, 1e-9);
  // Zero hosted price: self-hosting never breaks even.
  CostInput z = article(0.5);
  z.price_input = z.price_output = 0;
  EXPECT_FALSE(compute_cost(z, {}).breakeven_tokens_per_month.has_value());
}

TEST(PlanCost, ReservedPriceHasItsOwnBreakEven) {
  CostInput c = article(0.5);
  c.gpu_hourly_reserved = 4.50;  // e.g. a 1-year commitment for the same two GPUs
  c.tokens_per_month = 1e9;
  CostResult r = compute_cost(c, {1e9});
  ASSERT_TRUE(r.self_hosted_reserved_usd_per_month.has_value());
  EXPECT_DOUBLE_EQ(*r.self_hosted_reserved_usd_per_month, 4.50 * 720);
  EXPECT_NEAR(*r.breakeven_reserved_tokens_per_month, 4.50 * 720 / 0.21 * 1e6, 1);
  EXPECT_DOUBLE_EQ(*r.sweep.front().self_hosted_reserved_usd, 3240.0);
}
