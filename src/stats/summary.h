// Descriptive statistics over samples of doubles: mean, standard deviation, percentiles, and a
// Summary (count, mean, std, min, p50, p90, p95, p99, max) used by bench reports.
//
// Percentiles use linear interpolation between closest ranks (NumPy's default "linear" method,
// which is what vLLM's and SGLang's benchmark scripts report): for sorted x[0..n-1] and q in
// [0,100], h = (n-1)·q/100, value = x[floor h] + (h - floor h)·(x[ceil h] - x[floor h]).
#pragma once
#include <cstddef>
#include <string>
#include <vector>

namespace v4::stats {

double mean(const std::vector<double>& x);                 // NaN for an empty sample
double stddev(const std::vector<double>& x);               // population (ddof=0, like NumPy); NaN if empty
double percentile_sorted(const std::vector<double>& sorted, double q);  // NaN if empty
double percentile(std::vector<double> x, double q);        // sorts a copy

struct Summary {
  size_t count = 0;
  double mean = 0, std = 0, min = 0, p50 = 0, p90 = 0, p95 = 0, p99 = 0, max = 0;
  // Value of a named statistic: "mean", "std", "min", "max", "median", or "pNN" / "pNN.N" (any q).
  // Throws std::invalid_argument for an unknown name.
  static double of(const std::vector<double>& sorted, const std::string& stat);
};
// All fields NaN-free only for a non-empty sample; count == 0 marks an empty one (fields 0).
Summary summarize(std::vector<double> x);

}  // namespace v4::stats
