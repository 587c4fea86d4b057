#include "stats/bootstrap.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "stats/summary.h"

namespace v4::stats {

SortedStatistic named_statistic(const std::string& name) {
  (void)Summary::of({1.0}, name);  // validates the name (throws std::invalid_argument)
  return [name](const std::vector<double>& s) { return Summary::of(s, name); };
}

size_t min_samples_for_percentile_ci(double q, double confidence) {
  q = std::clamp(q / 100.0, 1e-9, 1 - 1e-9);
  double alpha = 1 - confidence;
  // Both the upper tail (q) and the lower tail (1-q) must be able to exclude alpha/2.
  double qq = std::max(q, 1 - q);
  return static_cast<size_t>(std::ceil(std::log(alpha / 2) / std::log(qq)));
}

bool ci_supported(const std::string& stat, size_t n, double confidence) {
  if (stat.size() >= 2 && stat[0] == 'p') {
    double q = std::atof(stat.c_str() + 1);
    return n >= min_samples_for_percentile_ci(q, confidence);
  }
  if (stat == "median") return n >= min_samples_for_percentile_ci(50, confidence);
  if (stat == "min" || stat == "max") return false;  // the bootstrap cannot bound an extreme
  return n >= 2;
}

namespace {

std::vector<double> sorted_copy(const std::vector<double>& x) {
  std::vector<double> s = x;
  std::sort(s.begin(), s.end());
  return s;
}

void resample(const std::vector<double>& x, SplitMix64& rng, std::vector<double>& out) {
  out.resize(x.size());
  for (auto& v : out) v = x[rng.below(x.size())];
  std::sort(out.begin(), out.end());
}

Interval from_replicates(double est, std::vector<double>& reps, double confidence, bool valid) {
  Interval r;
  r.estimate = est;
  reps.erase(std::remove_if(reps.begin(), reps.end(), [](double v) { return !std::isfinite(v); }), reps.end());
  if (reps.empty()) return r;
  std::sort(reps.begin(), reps.end());
  double a = (1 - confidence) / 2 * 100;
  r.lo = percentile_sorted(reps, a);
  r.hi = percentile_sorted(reps, 100 - a);
  r.valid = valid;
  return r;
}

}  // namespace

Interval bootstrap_ci(const std::vector<double>& x, const SortedStatistic& f, BootstrapOptions o, bool valid) {
  Interval r;
  if (x.empty()) {
    r.estimate = std::numeric_limits<double>::quiet_NaN();
    return r;
  }
  auto s = sorted_copy(x);
  double est = f(s);
  SplitMix64 rng(o.seed);
  std::vector<double> reps, buf;
  reps.reserve(o.iterations);
  for (int i = 0; i < o.iterations; ++i) {
    resample(x, rng, buf);
    reps.push_back(f(buf));
  }
  return from_replicates(est, reps, o.confidence, valid && x.size() >= 2);
}

Interval bootstrap_ci(const std::vector<double>& x, const std::string& stat, BootstrapOptions o) {
  return bootstrap_ci(x, named_statistic(stat), o, ci_supported(stat, x.size(), o.confidence));
}

static Interval diff_impl(const std::vector<double>& a, const std::vector<double>& b, const std::string& stat, BootstrapOptions o,
                          bool relative) {
  Interval r;
  auto f = named_statistic(stat);
  if (a.empty() || b.empty()) {
    r.estimate = std::numeric_limits<double>::quiet_NaN();
    return r;
  }
  auto sa = sorted_copy(a), sb = sorted_copy(b);
  auto d = [relative](double va, double vb) { return relative ? (va != 0 ? (vb - va) / va : std::numeric_limits<double>::quiet_NaN()) : vb - va; };
  double est = d(f(sa), f(sb));
  SplitMix64 rng(o.seed);
  std::vector<double> reps, ba, bb;
  reps.reserve(o.iterations);
  for (int i = 0; i < o.iterations; ++i) {
    resample(a, rng, ba);
    resample(b, rng, bb);
    reps.push_back(d(f(ba), f(bb)));
  }
  bool valid = ci_supported(stat, a.size(), o.confidence) && ci_supported(stat, b.size(), o.confidence);
  return from_replicates(est, reps, o.confidence, valid);
}

Interval bootstrap_diff_ci(const std::vector<double>& a, const std::vector<double>& b, const std::string& stat, BootstrapOptions o) {
  return diff_impl(a, b, stat, o, false);
}

Interval bootstrap_rel_diff_ci(const std::vector<double>& a, const std::vector<double>& b, const std::string& stat, BootstrapOptions o) {
  return diff_impl(a, b, stat, o, true);
}

}  // namespace v4::stats
