#include "stats/binomial.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace v4::stats {

Bounds wilson_interval(long passed, long n, double z) {
  if (n <= 0) return {0.0, 1.0};
  const double nn = static_cast<double>(n);
  const double p = static_cast<double>(passed) / nn;
  const double z2 = z * z;
  const double denom = 1.0 + z2 / nn;
  const double centre = (p + z2 / (2.0 * nn)) / denom;
  const double half = z / denom * std::sqrt(p * (1.0 - p) / nn + z2 / (4.0 * nn * nn));
  return {std::max(0.0, centre - half), std::min(1.0, centre + half)};
}

double binomial_two_sided_half(long k, long n) {
  if (n <= 0) return 1.0;
  const long m = std::min(k, n - k);
  long double tail = 0.0L;
  if (n <= 16000) {
    // Exact products: pmf(0) = 2^-n, pmf(i+1) = pmf(i) (n - i) / (i + 1); long double keeps
    // 2^-16000 representable, and small cases (11/1024, ...) come out exactly.
    long double pmf = std::ldexp(1.0L, static_cast<int>(-n));
    for (long i = 0; i <= m; ++i) {
      tail += pmf;
      pmf = pmf * static_cast<long double>(n - i) / static_cast<long double>(i + 1);
    }
  } else {
    // P(X <= m) for X ~ Bin(n, 1/2) summed in log space for very large n.
    const double ln2n = static_cast<double>(n) * std::log(2.0);
    const double lgn1 = std::lgamma(static_cast<double>(n) + 1.0);
    for (long i = 0; i <= m; ++i) {
      const double lc = lgn1 - std::lgamma(static_cast<double>(i) + 1.0) - std::lgamma(static_cast<double>(n - i) + 1.0);
      tail += std::exp(lc - ln2n);
    }
  }
  return std::min(1.0, static_cast<double>(2.0L * tail));
}

PairedBootstrap paired_bootstrap(const std::vector<double>& a, const std::vector<double>& b, int iters, uint64_t seed,
                                 double alpha) {
  if (a.size() != b.size()) throw std::invalid_argument("paired_bootstrap: a and b differ in length");
  PairedBootstrap r;
  const size_t n = a.size();
  if (n == 0 || iters <= 0) return r;
  std::vector<double> d(n);
  double sum = 0;
  for (size_t i = 0; i < n; ++i) sum += (d[i] = b[i] - a[i]);
  r.mean_diff = sum / static_cast<double>(n);
  r.iterations = iters;
  // splitmix64: a fixed generator, so the interval is the same on every platform for a seed.
  uint64_t s = seed;
  auto next = [&s] {
    uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  };
  std::vector<double> means(static_cast<size_t>(iters));
  for (int it = 0; it < iters; ++it) {
    double acc = 0;
    for (size_t i = 0; i < n; ++i) acc += d[next() % n];
    means[static_cast<size_t>(it)] = acc / static_cast<double>(n);
  }
  std::sort(means.begin(), means.end());
  auto q = [&](double p) {
    const double pos = p * static_cast<double>(iters - 1);
    const size_t lo = static_cast<size_t>(std::floor(pos));
    const size_t hi = std::min(lo + 1, means.size() - 1);
    const double f = pos - static_cast<double>(lo);
    return means[lo] * (1 - f) + means[hi] * f;
  };
  r.ci = {q(alpha / 2), q(1 - alpha / 2)};
  return r;
}

double pass_at_k(long n, long c, long k) {
  if (n <= 0 || k <= 0 || k > n || c < 0 || c > n) throw std::invalid_argument("pass_at_k: need 0 <= c <= n, 1 <= k <= n");
  if (n - c < k) return 1.0;
  double prod = 1.0;
  for (long i = n - c + 1; i <= n; ++i) prod *= 1.0 - static_cast<double>(k) / static_cast<double>(i);
  return 1.0 - prod;
}

}  // namespace v4::stats
