// `v4host bench compare A.json B.json`: every latency metric's difference B - A (absolute and
// relative) with a seeded bootstrap confidence interval over the two runs' per-request samples —
// paired when both runs sent the same request sequence (same workload and seed: requests matched
// by workload unit and turn, resampled jointly), else as independent samples —
// throughput differences, regressions flagged (a latency whose interval lies wholly above zero, a
// throughput that fell), and `--fail-on` thresholds for CI jobs.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "bench/record.h"
#include "stats/bootstrap.h"

namespace v4::bench {

using json = nlohmann::json;

// One threshold: "p99_ttft>+10%", "mean_tpot>+2ms", "output_throughput<-5%".
struct FailOn {
  std::string text;
  std::string stat;    // mean, p50, ..., or empty for throughput metrics
  std::string metric;  // ttft_ms, ..., or output_tokens_per_s / requests_per_s / goodput_rps
  char op = '>';
  double value = 0;
  bool relative = true;  // % (fraction stored) vs absolute (ms or the metric's unit)
};
std::vector<FailOn> parse_fail_on(const std::string& s);  // throws InputError naming --fail-on

struct CompareOptions {
  uint64_t seed = 1;
  int iterations = 1000;
  double confidence = 0.95;
  std::vector<FailOn> fail_on;
};

// Which requests of two runs are the same request: both runs must record the same workload (kind,
// lengths, seed, ...); then request (unit, turn) of A pairs with (unit, turn) of B when both
// succeeded. A pair whose max_tokens or local input length differ means the sequences are not
// the same after all: no pairing.
struct Pairing {
  bool paired = false;
  std::string why;                               // what was decided, for the output
  std::vector<std::pair<size_t, size_t>> pairs;  // (index in A's records, index in B's)
};
Pairing pair_requests(const json& a, const json& b, const std::vector<RequestRecord>& ra, const std::vector<RequestRecord>& rb);

// Paired bootstrap of stat(B) - stat(A) for each named statistic: a[i] and b[i] are the values of
// pair i (one value, or several such as ITL gaps, pooled); pairs are resampled jointly. Pairs
// missing the metric on either side are left out.
struct PairedDiff {
  std::vector<double> a, b;                 // the statistic over the pooled paired values
  std::vector<stats::Interval> diff, rel;   // B - A, and (B - A) / A, with intervals
  size_t pairs = 0;
};
PairedDiff paired_bootstrap(const std::vector<std::vector<double>>& a, const std::vector<std::vector<double>>& b,
                            const std::vector<std::string>& stats_names, const stats::BootstrapOptions& o);

struct CompareResult {
  json rows = json::array();  // {point, metric, stat, a, b, diff, rel, rel_ci, verdict, mode[, pairs, diff_ci]}
  json pairing = json::array();  // per point: {point, mode: paired|unpaired, why, pairs}
  std::vector<std::string> failures;  // crossed --fail-on thresholds, described
  std::string text;                   // terminal table
};

CompareResult compare_results(const json& a, const json& b, const CompareOptions& o);

}  // namespace v4::bench
