// Seeded bootstrap confidence intervals (percentile method) for any statistic of a sample, and for
// the difference / relative difference of a statistic between two independent samples (used by
// `v4host bench compare`). Same seed, same inputs -> same interval on every run and platform
// (own 64-bit generator, no std:: distributions).
//
// Percentile intervals need enough data: a two-sided distribution-free interval for the q-th
// quantile needs n >= ceil(log(alpha/2) / log(q)) samples (72 for p95, 368 for p99 at 95%), the
// rule GuideLLM uses; below that, percentile_ci_supported() says so and callers should print no
// interval rather than a misleadingly narrow one.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace v4::stats {

struct Interval {
  double estimate = 0;  // the statistic on the full sample
  double lo = 0, hi = 0;
  bool valid = false;   // false: too few samples (lo/hi meaningless)
};

struct BootstrapOptions {
  int iterations = 1000;
  double confidence = 0.95;
  uint64_t seed = 1;
};

// Small, fast, well-mixed PRNG (splitmix64): reproducible across platforms.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : s_(seed) {}
  uint64_t next() {
    uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, n) (Lemire's multiply-shift; bias < n/2^64).
  uint64_t below(uint64_t n) { return static_cast<uint64_t>((static_cast<unsigned __int128>(next()) * n) >> 64); }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0,1)

 private:
  uint64_t s_;
};

// Statistic over a SORTED sample.
using SortedStatistic = std::function<double(const std::vector<double>& sorted)>;
// The statistic named as in Summary::of ("mean", "p99", ...).
SortedStatistic named_statistic(const std::string& name);

// Minimum samples for a two-sided distribution-free interval on percentile q (0..100).
size_t min_samples_for_percentile_ci(double q, double confidence = 0.95);
// Whether `stat` ("p99", "mean", ...) can get an interval from n samples (means need n >= 2).
bool ci_supported(const std::string& stat, size_t n, double confidence = 0.95);

Interval bootstrap_ci(const std::vector<double>& x, const std::string& stat, BootstrapOptions o = {});
Interval bootstrap_ci(const std::vector<double>& x, const SortedStatistic& f, BootstrapOptions o = {}, bool valid = true);

// Difference stat(b) - stat(a) of two independent samples (each resampled separately).
Interval bootstrap_diff_ci(const std::vector<double>& a, const std::vector<double>& b, const std::string& stat, BootstrapOptions o = {});
// Relative difference (stat(b) - stat(a)) / stat(a), as a fraction (0.10 = +10%).
Interval bootstrap_rel_diff_ci(const std::vector<double>& a, const std::vector<double>& b, const std::string& stat, BootstrapOptions o = {});

}  // namespace v4::stats
