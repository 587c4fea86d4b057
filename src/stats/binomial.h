// Statistics for pass/fail evaluations: the Wilson score interval for a pass rate, the exact
// McNemar test for two runs over the same items, a paired bootstrap for score differences, and
// the unbiased pass@k estimator (Chen et al. 2021, "Evaluating Large Language Models Trained on
// Code"). Everything is deterministic: the bootstrap takes an explicit seed.
#pragma once
#include <cstdint>
#include <vector>

namespace v4::stats {

// A two-sided interval [lo, hi]. (Not bootstrap.h's Interval, which also carries the estimate:
// two types of one name in one namespace would break the one-definition rule.)
struct Bounds {
  double lo = 0, hi = 0;
};

// z for a two-sided 95% interval.
inline constexpr double kZ95 = 1.959963984540054;

// Wilson score interval for `passed` successes out of `n` trials; n == 0 gives [0, 1].
Bounds wilson_interval(long passed, long n, double z = kZ95);

// Two-sided exact binomial test of `k` successes in `n` trials at p = 1/2:
// min(1, 2 * P(X <= min(k, n - k))). n == 0 gives 1.
double binomial_two_sided_half(long k, long n);

// Exact McNemar test on the discordant pairs: b items only A passed, c items only B passed.
// The p-value of the two-sided binomial test of b out of b + c at 1/2.
inline double mcnemar_exact(long b, long c) { return binomial_two_sided_half(b, b + c); }

struct PairedBootstrap {
  double mean_diff = 0;  // mean of (b - a) over the pairs
  Bounds ci;           // percentile interval of the resampled mean difference
  int iterations = 0;
};

// Paired bootstrap of mean(b[i] - a[i]): resamples the pair indices with replacement `iters`
// times (seeded), returns the observed mean difference and the (1 - alpha) percentile interval.
// a and b must have the same length; an empty input gives zeros.
PairedBootstrap paired_bootstrap(const std::vector<double>& a, const std::vector<double>& b, int iters = 10000,
                                 uint64_t seed = 1, double alpha = 0.05);

// Unbiased pass@k for one problem with n samples of which c passed: 1 - C(n-c, k) / C(n, k),
// computed as a product (no overflow). Requires 0 <= c <= n and 1 <= k <= n.
double pass_at_k(long n, long c, long k);

}  // namespace v4::stats
