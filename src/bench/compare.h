// `v4host bench compare A.json B.json`: every latency metric's difference B - A (absolute and
// relative) with a seeded bootstrap confidence interval over the two runs' per-request samples,
// throughput differences, regressions flagged (a latency whose interval lies wholly above zero, a
// throughput that fell), and `--fail-on` thresholds for CI jobs.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

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

struct CompareResult {
  json rows = json::array();  // {point, metric, stat, a, b, diff, rel, rel_ci, verdict}
  std::vector<std::string> failures;  // crossed --fail-on thresholds, described
  std::string text;                   // terminal table
};

CompareResult compare_results(const json& a, const json& b, const CompareOptions& o);

}  // namespace v4::bench
