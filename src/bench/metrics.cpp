#include "bench/metrics.h"

#include <cmath>

#include "core/error.h"
#include "stats/bootstrap.h"
#include "stats/summary.h"

namespace v4::bench {

const std::vector<MetricDef>& metric_defs() {
  static const std::vector<MetricDef> d = {
      {"ttft_ms", "Time to first token (any kind)", "ttft", "ttft (time_to_first_token)", "t(first reasoning-or-answer piece) - t(start)"},
      {"ttfa_ms", "Time to first answer token", "—", "ttfo (time_to_first_output_token)", "t(first answer/tool-call piece) - t(start)"},
      {"reasoning_ms", "Reasoning time", "—", "—", "ttfa - ttft (0 without reasoning)"},
      {"tpot_ms", "Time per output token", "tpot", "inter_token_latency", "(e2e - ttft) / (output_tokens - 1)"},
      {"itl_ms", "Inter-chunk gap", "itl", "inter_chunk_latency", "t(piece i) - t(piece i-1), pooled over requests"},
      {"e2e_ms", "End-to-end latency", "e2el", "request_latency", "t(last byte) - t(start)"},
      {"output_tps", "Output tokens/s per request", "—", "≈ output_token_throughput_per_user", "output_tokens / e2e", false},
      {"output_tokens", "Output tokens (usage)", "output_lens", "output_sequence_length", "usage.completion_tokens (incl. reasoning)", false},
      {"reasoning_tokens", "Reasoning tokens", "—", "reasoning_token_count", "usage reasoning_tokens, else local tokenizer count", false},
      {"input_tokens", "Input tokens (usage)", "input_lens", "input_sequence_length", "usage.prompt_tokens", false},
  };
  return d;
}

const MetricDef* find_metric(const std::string& k) {
  static const std::map<std::string, std::string> alias = {{"ttft", "ttft_ms"}, {"ttfa", "ttfa_ms"}, {"ttfo", "ttfa_ms"},
                                                           {"tpot", "tpot_ms"}, {"itl", "itl_ms"}, {"e2e", "e2e_ms"},
                                                           {"e2el", "e2e_ms"}, {"reasoning", "reasoning_ms"}, {"tps", "output_tps"}};
  std::string key = k;
  if (auto it = alias.find(k); it != alias.end()) key = it->second;
  for (const auto& d : metric_defs())
    if (d.key == key) return &d;
  return nullptr;
}

std::map<std::string, double> parse_slo(const std::string& s) {
  std::map<std::string, double> out;
  if (s.empty()) return out;
  size_t i = 0;
  while (i <= s.size()) {
    size_t j = s.find(',', i);
    std::string part = s.substr(i, j == std::string::npos ? std::string::npos : j - i);
    i = j == std::string::npos ? s.size() + 1 : j + 1;
    auto eq = part.find('=');
    if (eq == std::string::npos) eq = part.find(':');
    if (eq == std::string::npos) throw InputError("--slo: '" + part + "' is not KEY=VALUE (e.g. ttft=2s,tpot=50ms)");
    std::string key = part.substr(0, eq), val = part.substr(eq + 1);
    static const std::map<std::string, std::string> keys = {{"ttft", "ttft"}, {"ttfa", "ttfa"}, {"ttfo", "ttfa"}, {"tpot", "tpot"},
                                                            {"e2e", "e2e"}, {"e2el", "e2e"}, {"reasoning", "reasoning"}};
    auto k = keys.find(key);
    if (k == keys.end()) throw InputError("--slo: unknown key '" + key + "' (use ttft, ttfa, tpot, e2e or reasoning)");
    size_t pos = 0;
    double v = 0;
    try {
      v = std::stod(val, &pos);
    } catch (const std::exception&) {
      throw InputError("--slo: '" + part + "': value must be a number with a unit (us, ms, s, min)");
    }
    std::string unit = val.substr(pos);
    double mul = unit == "ms" || unit.empty() ? 1 : unit == "s" ? 1000 : unit == "us" ? 0.001 : unit == "min" ? 60000 : -1;
    if (mul < 0) throw InputError("--slo: '" + part + "': unknown unit '" + unit + "' (use us, ms, s or min)");
    if (!(v > 0) || !std::isfinite(v)) throw InputError("--slo: '" + part + "': the limit must be positive");
    out[k->second] = v * mul;
  }
  return out;
}

bool meets_slo(const RequestRecord& r, const std::map<std::string, double>& slo) {
  if (!r.ok()) return false;
  for (const auto& [k, lim] : slo) {
    // Latencies as the arriving user sees them: a wait for a free slot (open loop with
    // --max-concurrency) counts against ttft, ttfa and e2e.
    const double q = r.queue_ms();
    double v = k == "ttft" ? r.ttft() + q : k == "ttfa" ? r.ttfa() + q : k == "tpot" ? r.tpot() : k == "e2e" ? r.e2e() + q : r.reasoning_ms();
    if (k == "tpot" && std::isnan(v)) continue;  // one-token answers have no TPOT
    if (!(v <= lim)) return false;
  }
  return true;
}

std::vector<double> metric_values(const std::vector<RequestRecord>& recs, const std::string& key) {
  std::vector<double> v;
  for (const auto& r : recs) {
    if (!r.ok()) continue;
    if (key == "itl_ms") {
      auto g = r.itl();
      v.insert(v.end(), g.begin(), g.end());
      continue;
    }
    double x = key == "ttft_ms" ? r.ttft() : key == "ttfa_ms" ? r.ttfa() : key == "reasoning_ms" ? r.reasoning_ms()
             : key == "tpot_ms" ? r.tpot() : key == "e2e_ms" ? r.e2e() : key == "output_tps" ? r.output_tps()
             : key == "output_tokens" ? r.output_tokens() : key == "reasoning_tokens" ? r.reasoning_token_count()
             : key == "input_tokens" ? r.prompt_tokens : NAN;
    if (key == "input_tokens" && x < 0) x = r.input_tokens_local;
    if (std::isfinite(x) && x >= 0) v.push_back(x);
  }
  return v;
}

namespace {
json num(double v) {
  if (!std::isfinite(v)) return nullptr;
  return std::round(v * 1000) / 1000;  // microsecond resolution for ms values
}
double get(const json& j, const char* k) { return j.contains(k) && j[k].is_number() ? j[k].get<double>() : NAN; }
int geti(const json& j, const char* k) { return j.contains(k) && j[k].is_number_integer() ? j[k].get<int>() : -1; }
}  // namespace

json record_to_json(const RequestRecord& r) {
  json p = json::array();
  for (double t : r.piece_ms) p.push_back(num(t));
  json j = {{"index", r.index}, {"unit", r.unit}, {"turn", r.turn}, {"start_s", num(r.start_s)}, {"in_flight", r.in_flight},
            {"max_tokens", r.max_tokens}, {"input_tokens_local", r.input_tokens_local}, {"prompt_tokens", r.prompt_tokens},
            {"completion_tokens", r.completion_tokens}, {"reasoning_tokens", r.reasoning_tokens}, {"cached_tokens", r.cached_tokens},
            {"output_tokens_local", r.output_tokens_local}, {"reasoning_tokens_local", r.reasoning_tokens_local},
            {"reasoning_pieces", r.reasoning_pieces}, {"answer_pieces", r.answer_pieces}, {"status", r.status},
            {"finish_reason", r.finish_reason}, {"first_byte_ms", num(r.first_byte_ms)}, {"ttft_ms", num(r.ttft())},
            {"ttfa_ms", num(r.ttfa())}, {"reasoning_ms", num(r.reasoning_ms())}, {"tpot_ms", num(r.tpot())}, {"e2e_ms", num(r.e2e())},
            {"output_tps", num(r.output_tps())}, {"output_tokens", r.output_tokens()}, {"piece_ms", p}};
  if (r.scheduled_s >= 0) j["scheduled_s"] = num(r.scheduled_s), j["queue_ms"] = num(r.queue_ms());
  if (!r.ok()) j["error"] = {{"kind", r.error_kind}, {"message", r.error}};
  return j;
}

RequestRecord record_from_json(const json& j) {
  RequestRecord r;
  r.index = geti(j, "index");
  r.unit = geti(j, "unit");
  r.turn = geti(j, "turn");
  r.start_s = get(j, "start_s");
  r.scheduled_s = j.contains("scheduled_s") ? get(j, "scheduled_s") : -1;
  r.in_flight = geti(j, "in_flight");
  r.max_tokens = geti(j, "max_tokens");
  r.input_tokens_local = geti(j, "input_tokens_local");
  r.prompt_tokens = geti(j, "prompt_tokens");
  r.completion_tokens = geti(j, "completion_tokens");
  r.reasoning_tokens = geti(j, "reasoning_tokens");
  r.cached_tokens = geti(j, "cached_tokens");
  r.output_tokens_local = geti(j, "output_tokens_local");
  r.reasoning_tokens_local = geti(j, "reasoning_tokens_local");
  r.reasoning_pieces = std::max(0, geti(j, "reasoning_pieces"));
  r.answer_pieces = std::max(0, geti(j, "answer_pieces"));
  r.status = geti(j, "status");
  r.finish_reason = j.value("finish_reason", "");
  r.first_byte_ms = get(j, "first_byte_ms");
  r.first_token_ms = get(j, "ttft_ms");
  r.first_answer_ms = get(j, "ttfa_ms");
  r.end_ms = get(j, "e2e_ms");
  if (j.contains("piece_ms") && j["piece_ms"].is_array())
    for (const auto& t : j["piece_ms"]) r.piece_ms.push_back(t.is_number() ? t.get<double>() : NAN);
  if (j.contains("error") && j["error"].is_object()) {
    r.error_kind = j["error"].value("kind", "error");
    r.error = j["error"].value("message", "");
  }
  return r;
}

json summarize_point(const RunResult& res, const LoadSpec& load, const SummaryOptions& o) {
  const auto& recs = res.records;
  json s;
  long ok = 0, failed = 0;
  json errors = json::object();
  double in_tok = 0, out_tok = 0, reasoning_tok = 0, cached = 0, prompt_usage = 0;
  long cache_hit_reqs = 0, cache_known = 0, compared = 0, exact = 0;
  double abs_diff = 0, rel_diff = 0;
  int peak = 0;
  long good = 0;
  double good_tokens = 0;
  for (const auto& r : recs) {
    peak = std::max(peak, r.in_flight);
    if (!r.ok()) {
      ++failed;
      errors[r.error_kind] = errors.value(r.error_kind, 0) + 1;
      continue;
    }
    ++ok;
    int pin = r.prompt_tokens >= 0 ? r.prompt_tokens : r.input_tokens_local;
    if (pin > 0) in_tok += pin;
    if (r.prompt_tokens >= 0) prompt_usage += r.prompt_tokens;
    out_tok += r.output_tokens();
    reasoning_tok += std::max(0, r.reasoning_token_count());
    if (r.cached_tokens >= 0) {
      ++cache_known;
      cached += r.cached_tokens;
      cache_hit_reqs += r.cached_tokens > 0;
    }
    if (r.completion_tokens >= 0 && r.output_tokens_local >= 0) {
      ++compared;
      exact += r.completion_tokens == r.output_tokens_local;
      abs_diff += std::abs(r.completion_tokens - r.output_tokens_local);
      if (r.completion_tokens > 0) rel_diff += std::abs(r.completion_tokens - r.output_tokens_local) / double(r.completion_tokens);
    }
    if (!o.slo.empty() && meets_slo(r, o.slo)) {
      ++good;
      good_tokens += r.output_tokens();
    }
  }
  const double dur = res.duration_s > 0 ? res.duration_s : NAN;
  s["label"] = load.label();
  s["requests"] = {{"completed", ok}, {"failed", failed}, {"total", ok + failed}};
  s["errors"] = errors;
  s["duration_s"] = num(res.duration_s);
  s["throughput"] = {{"requests_per_s", num(ok / dur)}, {"input_tokens_per_s", num(in_tok / dur)},
                     {"output_tokens_per_s", num(out_tok / dur)}, {"total_tokens_per_s", num((in_tok + out_tok) / dur)},
                     {"peak_concurrency", peak}};
  s["tokens"] = {{"input", in_tok}, {"output", out_tok}, {"reasoning", reasoning_tok}, {"cached", cached},
                 {"prefix_cache_hit_rate", num(prompt_usage > 0 && cache_known ? cached / prompt_usage : NAN)},
                 {"requests_with_cache_hits", cache_hit_reqs},
                 {"usage_vs_local_tokenizer", {{"requests_compared", compared}, {"exact", exact},
                                               {"mean_abs_diff", num(compared ? abs_diff / compared : NAN)},
                                               {"mean_rel_diff", num(compared ? rel_diff / compared : NAN)}}}};
  if (!o.slo.empty()) {
    json lim = json::object();
    for (const auto& [k, v] : o.slo) lim[k + "_ms"] = v;
    long total = ok + failed;
    s["goodput"] = {{"slo", lim}, {"requests_meeting_slo", good}, {"attainment", num(total ? double(good) / total : NAN)},
                    {"requests_per_s", num(good / dur)}, {"output_tokens_per_s", num(good_tokens / dur)}};
  }
  stats::BootstrapOptions bo{o.bootstrap_iterations, o.confidence, o.seed ^ 0xB007};
  json m = json::object();
  for (const auto& d : metric_defs()) {
    auto v = metric_values(recs, d.key);
    auto sm = stats::summarize(v);
    json e = {{"count", sm.count}};
    if (sm.count) {
      e.update({{"mean", num(sm.mean)}, {"std", num(sm.std)}, {"min", num(sm.min)}, {"p50", num(sm.p50)}, {"p90", num(sm.p90)},
                {"p95", num(sm.p95)}, {"p99", num(sm.p99)}, {"max", num(sm.max)}});
      json ci = json::object();
      for (const char* st : {"mean", "p50", "p90", "p95", "p99"}) {
        auto iv = stats::bootstrap_ci(v, st, bo);
        ci[st] = iv.valid ? json::array({num(iv.lo), num(iv.hi)}) : json(nullptr);
      }
      e["ci"] = ci;
      if (d.key == "itl_ms") {
        // Token-weighted vs request-weighted: the pooled mean weights long answers more.
        std::vector<double> per_req;
        for (const auto& r : recs)
          if (r.ok() && r.piece_ms.size() >= 2) per_req.push_back((r.piece_ms.back() - r.piece_ms.front()) / (r.piece_ms.size() - 1));
        e["mean_request_weighted"] = num(stats::mean(per_req));
      }
    }
    m[d.key] = e;
  }
  s["metrics"] = m;
  s["confidence"] = o.confidence;
  return s;
}

}  // namespace v4::bench
