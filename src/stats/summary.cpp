#include "stats/summary.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

namespace v4::stats {

double mean(const std::vector<double>& x) {
  if (x.empty()) return std::numeric_limits<double>::quiet_NaN();
  // Kahan-compensated sum: latency samples span 6+ orders of magnitude.
  double s = 0, c = 0;
  for (double v : x) {
    double y = v - c, t = s + y;
    c = (t - s) - y;
    s = t;
  }
  return s / static_cast<double>(x.size());
}

double stddev(const std::vector<double>& x) {
  if (x.empty()) return std::numeric_limits<double>::quiet_NaN();
  double m = mean(x), ss = 0;
  for (double v : x) ss += (v - m) * (v - m);
  return std::sqrt(ss / static_cast<double>(x.size()));
}

double percentile_sorted(const std::vector<double>& s, double q) {
  if (s.empty()) return std::numeric_limits<double>::quiet_NaN();
  q = std::clamp(q, 0.0, 100.0);
  double h = (static_cast<double>(s.size()) - 1) * q / 100.0;
  size_t lo = static_cast<size_t>(std::floor(h));
  size_t hi = std::min(lo + 1, s.size() - 1);
  return s[lo] + (h - static_cast<double>(lo)) * (s[hi] - s[lo]);
}

double percentile(std::vector<double> x, double q) {
  std::sort(x.begin(), x.end());
  return percentile_sorted(x, q);
}

double Summary::of(const std::vector<double>& s, const std::string& stat) {
  if (stat == "mean") return stats::mean(s);
  if (stat == "std") return stats::stddev(s);
  if (stat == "min") return s.empty() ? std::numeric_limits<double>::quiet_NaN() : s.front();
  if (stat == "max") return s.empty() ? std::numeric_limits<double>::quiet_NaN() : s.back();
  if (stat == "median") return percentile_sorted(s, 50);
  if (stat.size() >= 2 && stat[0] == 'p') {
    size_t pos = 0;
    double q = 0;
    try {
      q = std::stod(stat.substr(1), &pos);
    } catch (const std::exception&) {
      pos = 0;
    }
    if (pos == stat.size() - 1 && q >= 0 && q <= 100) return percentile_sorted(s, q);
  }
  throw std::invalid_argument("unknown statistic '" + stat + "' (use mean, std, min, max, median or pNN)");
}

Summary summarize(std::vector<double> x) {
  Summary r;
  if (x.empty()) return r;
  std::sort(x.begin(), x.end());
  r.count = x.size();
  r.mean = mean(x);
  r.std = stddev(x);
  r.min = x.front();
  r.max = x.back();
  r.p50 = percentile_sorted(x, 50);
  r.p90 = percentile_sorted(x, 90);
  r.p95 = percentile_sorted(x, 95);
  r.p99 = percentile_sorted(x, 99);
  return r;
}

}  // namespace v4::stats
