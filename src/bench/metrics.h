// Metric definitions (with both naming conventions), SLOs, and the per-point summary of a run.
//
// Per request (ms from the request's start):
//   ttft       first generated token of any kind (reasoning or answer)      vLLM ttft  | AIPerf ttft
//   ttfa       first answer token (content / tool call, after reasoning)    —          | AIPerf ttfo
//   reasoning  ttfa - ttft (reasoning phase)                                —          | —
//   tpot       (e2e - ttft) / (N - 1), N = output tokens                    vLLM tpot  | AIPerf inter_token_latency
//   itl        gaps between consecutive streamed pieces (pooled)            vLLM itl   | AIPerf inter_chunk_latency
//   e2e        request start -> last byte                                   vLLM e2el  | AIPerf request_latency
//   output_tps N / e2e                                                      —          | (AIPerf: 1/ITL per user)
// Aggregates: requests/s, input/output/total tokens/s over the measured wall time (first start ->
// last end), goodput = requests meeting every SLO per second (DistServe / vLLM --goodput).
#pragma once
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench/record.h"
#include "bench/runner.h"

namespace v4::bench {

using json = nlohmann::json;

struct MetricDef {
  std::string key;     // ttft_ms, ...
  std::string title;   // human title
  std::string vllm;    // vLLM / SGLang name
  std::string aiperf;  // AIPerf / GenAI-Perf name
  std::string formula;
  bool lower_is_better = true;
};
const std::vector<MetricDef>& metric_defs();
const MetricDef* find_metric(const std::string& key_or_alias);

// "ttft=2s,tpot=50ms" (keys ttft, ttfa, tpot, e2e|e2el, reasoning; units us, ms, s, min; a bare
// number is ms). Throws InputError naming --slo and the bad part.
std::map<std::string, double> parse_slo(const std::string& s);
bool meets_slo(const RequestRecord& r, const std::map<std::string, double>& slo);

// Per-request values of a metric ("ttft_ms", "itl_ms" pooled over requests, ...), successful
// requests only.
std::vector<double> metric_values(const std::vector<RequestRecord>& recs, const std::string& key);

json record_to_json(const RequestRecord& r);
RequestRecord record_from_json(const json& j);

struct SummaryOptions {
  std::map<std::string, double> slo;
  uint64_t seed = 0;
  int bootstrap_iterations = 1000;
  double confidence = 0.95;
};
json summarize_point(const RunResult& res, const LoadSpec& load, const SummaryOptions& o);

}  // namespace v4::bench
