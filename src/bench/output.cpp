#include "bench/output.h"

#include <cmath>
#include <fstream>
#include <sstream>

#include "bench/metrics.h"
#include "core/error.h"
#include "report/html.h"
#include "report/svg_chart.h"

// GCC 12 false positive on chains of std::string operator+ (GCC bug 105329).
#pragma GCC diagnostic ignored "-Wrestrict"

namespace v4::bench {

namespace {

std::string f(const json& v, int prec = 2) {
  if (!v.is_number()) return "-";
  char b[48];
  std::snprintf(b, sizeof b, "%.*f", prec, v.get<double>());
  return b;
}

std::string pad(const std::string& s, size_t w, bool right = false) {
  // Width in code points (names contain '—' and '≈').
  size_t cps = 0;
  for (unsigned char c : s) cps += (c & 0xC0) != 0x80;
  if (cps >= w) return s;
  return right ? std::string(w - cps, ' ') + s : s + std::string(w - cps, ' ');
}

v4::report::Series mk(const std::string& name, bool line) {
  v4::report::Series s;
  s.name = name;
  s.line = line;
  s.markers = true;
  return s;
}

}  // namespace

std::string metric_definitions_text() {
  std::string o = pad("metric", 18) + pad("vLLM/SGLang", 13) + pad("AIPerf", 36) + "formula\n";
  for (const auto& d : metric_defs()) o += pad(d.key, 18) + pad(d.vllm, 13) + pad(d.aiperf, 36) + d.formula + "\n";
  return o;
}

std::string terminal_summary(const json& s, bool names) {
  std::ostringstream o;
  const json& rq = s["requests"];
  const json& th = s["throughput"];
  o << "============ v4host bench: " << s.value("label", "") << " ============\n";
  o << pad("Successful requests:", 34) << rq.value("completed", 0) << "\n";
  o << pad("Failed requests:", 34) << rq.value("failed", 0);
  if (!s["errors"].empty()) {
    o << "  (";
    bool first = true;
    for (auto it = s["errors"].begin(); it != s["errors"].end(); ++it) o << (first ? "" : ", ") << it.key() << ": " << it.value(), first = false;
    o << ")";
  }
  o << "\n";
  o << pad("Benchmark duration (s):", 34) << f(s["duration_s"]) << "\n";
  o << pad("Total input tokens:", 34) << f(s["tokens"]["input"], 0) << "\n";
  o << pad("Total output tokens:", 34) << f(s["tokens"]["output"], 0) << "  (reasoning " << f(s["tokens"]["reasoning"], 0) << ")\n";
  o << pad("Request throughput (req/s):", 34) << f(th["requests_per_s"]) << "\n";
  o << pad("Input token throughput (tok/s):", 34) << f(th["input_tokens_per_s"]) << "\n";
  o << pad("Output token throughput (tok/s):", 34) << f(th["output_tokens_per_s"]) << "\n";
  o << pad("Total token throughput (tok/s):", 34) << f(th["total_tokens_per_s"]) << "\n";
  o << pad("Peak concurrency:", 34) << th.value("peak_concurrency", 0) << "\n";
  if (s.contains("goodput")) {
    o << pad("Goodput (req/s meeting SLO):", 34) << f(s["goodput"]["requests_per_s"]) << "  (attainment "
      << f(json(s["goodput"]["attainment"].is_number() ? s["goodput"]["attainment"].get<double>() * 100 : NAN), 1) << "%)\n";
  }
  const json& tk = s["tokens"];
  if (tk["prefix_cache_hit_rate"].is_number())
    o << pad("Prefix cache hits (usage):", 34) << f(json(tk["prefix_cache_hit_rate"].get<double>() * 100), 1) << "% of prompt tokens, "
      << tk.value("requests_with_cache_hits", 0) << " requests\n";
  const json& cx = tk["usage_vs_local_tokenizer"];
  if (cx.value("requests_compared", 0) > 0)
    o << pad("Usage vs local tokenizer:", 34) << cx.value("exact", 0) << "/" << cx.value("requests_compared", 0)
      << " exact, mean |diff| " << f(cx["mean_abs_diff"]) << " tokens\n";
  double conf = s.value("confidence", 0.95) * 100;
  o << "\n" << pad("metric", 18);
  if (names) o << pad("vLLM", 12) << pad("AIPerf", 24);
  o << pad("mean", 10, true) << pad("p50", 10, true) << pad("p90", 10, true) << pad("p99", 10, true) << pad("max", 10, true) << "   "
    << f(json(conf), 0) << "% CI of mean / p99\n";
  for (const auto& d : metric_defs()) {
    const json& m = s["metrics"][d.key];
    if (m.value("count", 0) == 0) continue;
    std::string ai = d.aiperf.substr(0, d.aiperf.find(' '));
    o << pad(d.key, 18);
    if (names) o << pad(d.vllm, 12) << pad(ai.substr(0, 23), 24);
    o << pad(f(m["mean"]), 10, true) << pad(f(m["p50"]), 10, true) << pad(f(m["p90"]), 10, true) << pad(f(m["p99"]), 10, true)
      << pad(f(m["max"]), 10, true) << "   ";
    auto ci = [&](const char* st) {
      const json& c = m["ci"][st];
      return c.is_array() ? "[" + f(c[0]) + ", " + f(c[1]) + "]" : std::string("(n too small)");
    };
    o << ci("mean") << " / " << ci("p99") << "\n";
  }
  return o.str();
}

void write_json(const json& doc, const std::string& path) {
  std::ofstream out(path, std::ios::binary);
  if (!out) throw InputError("--json: cannot write '" + path + "'");
  out << doc.dump(1) << "\n";
  if (!out) throw InputError("--json: writing '" + path + "' failed");
}

void write_csv(const json& doc, const std::string& path) {
  std::ofstream out(path, std::ios::binary);
  if (!out) throw InputError("--csv: cannot write '" + path + "'");
  const char* cols[] = {"index", "unit", "turn", "start_s", "scheduled_s", "in_flight", "status", "max_tokens", "input_tokens_local",
                        "prompt_tokens", "cached_tokens", "completion_tokens", "reasoning_tokens", "output_tokens_local",
                        "first_byte_ms", "ttft_ms", "ttfa_ms", "reasoning_ms", "tpot_ms", "e2e_ms", "output_tps", "finish_reason"};
  out << "point";
  for (const char* c : cols) out << "," << c;
  out << ",error_kind,itl_mean_ms\n";
  for (const auto& p : doc["points"]) {
    for (const auto& r : p["requests"]) {
      out << p["summary"].value("label", "");
      for (const char* c : cols) {
        out << ",";
        if (!r.contains(c) || r[c].is_null()) continue;
        if (r[c].is_string()) out << r[c].get<std::string>();
        else out << r[c].dump();
      }
      out << "," << (r.contains("error") ? r["error"].value("kind", "") : "");
      const json& pm = r["piece_ms"];
      out << ",";
      if (pm.is_array() && pm.size() >= 2 && pm.front().is_number() && pm.back().is_number())
        out << (pm.back().get<double>() - pm.front().get<double>()) / (pm.size() - 1);
      out << "\n";
    }
  }
  if (!out) throw InputError("--csv: writing '" + path + "' failed");
}

json read_result(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError("cannot open result file '" + path + "'");
  std::stringstream ss;
  ss << in.rdbuf();
  json j = json::parse(ss.str(), nullptr, false);
  if (j.is_discarded()) throw InputError("'" + path + "' is not valid JSON");
  if (!j.is_object() || !j.contains("points") || !j["points"].is_array() || j["points"].empty())
    throw InputError("'" + path + "' is not a `v4host bench --json` result (no points)");
  for (const auto& p : j["points"])
    if (!p.contains("requests") || !p["requests"].is_array() || !p.contains("summary"))
      throw InputError("'" + path + "': a point lacks its requests or summary");
  return j;
}

std::string render_html(const json& doc) {
  using namespace v4::report;
  const json& prov = doc["provenance"];
  HtmlPage page("v4host bench — " + prov.value("model", "") + " @ " + prov.value("endpoint", ""));
  std::vector<std::pair<std::string, std::string>> items;
  for (const char* k : {"endpoint", "api", "model", "started_utc", "bench_version", "server", "machine", "tokenizer", "command"})
    if (prov.contains(k)) items.emplace_back(k, prov[k].is_string() ? prov[k].get<std::string>() : prov[k].dump());
  if (doc.contains("config")) items.emplace_back("workload", doc["config"].value("workload", json::object()).dump());
  if (doc.value("interrupted", false)) items.emplace_back("note", "interrupted (Ctrl-C): results so far");
  page.definition_list(items);

  const json& points = doc["points"];
  // Summary table: one row per point.
  page.heading("Summary");
  std::vector<std::vector<Cell>> rows;
  int pi = 0;
  for (const auto& p : points) {
    const json& s = p["summary"];
    std::string pre = "p" + std::to_string(pi) + ".";
    auto c = [&](const json& v, const std::string& key, int prec = 2) { return Cell(f(v, prec), pre + key); };
    rows.push_back({Cell(s.value("label", "")), c(s["requests"]["completed"], "completed", 0), c(s["requests"]["failed"], "failed", 0),
                    c(s["throughput"]["requests_per_s"], "requests_per_s"), c(s["throughput"]["output_tokens_per_s"], "output_tokens_per_s"),
                    c(s["metrics"]["ttft_ms"]["p50"], "ttft_ms.p50"), c(s["metrics"]["ttft_ms"]["p99"], "ttft_ms.p99"),
                    c(s["metrics"]["ttfa_ms"]["p50"], "ttfa_ms.p50"), c(s["metrics"]["tpot_ms"]["mean"], "tpot_ms.mean"),
                    c(s["metrics"]["tpot_ms"]["p99"], "tpot_ms.p99"), c(s["metrics"]["itl_ms"]["p99"], "itl_ms.p99"),
                    c(s["metrics"]["e2e_ms"]["p99"], "e2e_ms.p99"),
                    c(s.contains("goodput") ? s["goodput"]["requests_per_s"] : json(), "goodput_rps")});
    ++pi;
  }
  page.table({"point", "ok", "failed", "req/s", "out tok/s", "TTFT p50 ms", "TTFT p99 ms", "TTFA p50 ms", "TPOT mean ms", "TPOT p99 ms",
              "ITL p99 ms", "E2E p99 ms", "goodput req/s"},
             rows, "summary");

  // Charts.
  page.heading("Latency distributions");
  page.begin_grid();
  for (const char* key : {"ttft_ms", "ttfa_ms", "tpot_ms", "itl_ms", "e2e_ms"}) {
    std::vector<Series> ss;
    for (const auto& p : points) {
      std::vector<RequestRecord> recs;
      for (const auto& r : p["requests"]) recs.push_back(record_from_json(r));
      auto v = metric_values(recs, key);
      if (!v.empty()) ss.push_back(cdf_series(p["summary"].value("label", ""), v));
    }
    if (ss.empty()) continue;
    ChartOptions o;
    o.title = std::string(find_metric(key)->title) + " — CDF";
    o.x.label = std::string(key) + " (ms)";
    o.y.label = "fraction of requests";
    o.y.min = 0;
    o.y.max = 1;
    o.id = std::string("cdf-") + key;
    page.raw(render_chart(o, ss));
  }
  page.end_grid();

  if (points.size() > 1) {
    page.heading("Against load");
    bool by_rate = points[0]["load"].value("mode", "") != "concurrency";
    std::string xl = by_rate ? "request rate (req/s)" : "concurrency";
    auto x_of = [&](const json& p) { return by_rate ? p["load"].value("rate", 0.0) : p["load"].value("concurrency", 0.0); };
    Series tput = mk("output tok/s", true), rps = mk("req/s", true), gp = mk("goodput req/s", true);
    Series t50 = mk("TTFT p50", true), t99 = mk("TTFT p99", true), tp = mk("TPOT mean", true), tp99 = mk("TPOT p99", true);
    for (const auto& p : points) {
      const json& s = p["summary"];
      double x = x_of(p);
      auto val = [](const json& v) { return v.is_number() ? v.get<double>() : NAN; };
      tput.points.emplace_back(x, val(s["throughput"]["output_tokens_per_s"]));
      rps.points.emplace_back(x, val(s["throughput"]["requests_per_s"]));
      if (s.contains("goodput")) gp.points.emplace_back(x, val(s["goodput"]["requests_per_s"]));
      t50.points.emplace_back(x, val(s["metrics"]["ttft_ms"]["p50"]));
      t99.points.emplace_back(x, val(s["metrics"]["ttft_ms"]["p99"]));
      tp.points.emplace_back(x, val(s["metrics"]["tpot_ms"]["mean"]));
      tp99.points.emplace_back(x, val(s["metrics"]["tpot_ms"]["p99"]));
    }
    page.begin_grid();
    ChartOptions o;
    o.x.label = xl;
    o.x.log = !by_rate;
    o.y.include_zero = true;
    o.title = "Output throughput";
    o.y.label = "tokens/s";
    o.id = "tput";
    page.raw(render_chart(o, {tput}));
    o.title = "TTFT";
    o.y.label = "ms";
    o.id = "ttft-vs-load";
    page.raw(render_chart(o, {t50, t99}));
    o.title = "TPOT";
    o.id = "tpot-vs-load";
    page.raw(render_chart(o, {tp, tp99}));
    if (!gp.points.empty()) {
      o.title = "Goodput";
      o.y.label = "requests/s";
      o.id = "goodput";
      page.raw(render_chart(o, {rps, gp}));
    }
    page.end_grid();
  }

  page.heading("TTFT against input length");
  page.begin_grid();
  {
    std::vector<Series> ss;
    for (const auto& p : points) {
      Series s = mk(p["summary"].value("label", ""), false);
      for (const auto& r : p["requests"]) {
        double in = r["prompt_tokens"].is_number() && r["prompt_tokens"].get<int>() >= 0 ? r["prompt_tokens"].get<double>()
                                                                                           : r.value("input_tokens_local", -1);
        if (in >= 0 && r["ttft_ms"].is_number()) s.points.emplace_back(in, r["ttft_ms"].get<double>());
      }
      ss.push_back(s);
    }
    ChartOptions o;
    o.title = "TTFT vs input tokens";
    o.x.label = "input tokens";
    o.y.label = "TTFT (ms)";
    o.y.include_zero = true;
    o.id = "ttft-vs-input";
    page.raw(render_chart(o, ss));
  }
  page.end_grid();

  // Full per-point metric tables with CIs.
  for (size_t i = 0; i < points.size(); ++i) {
    const json& s = points[i]["summary"];
    page.heading("Metrics — " + s.value("label", ""), 3);
    std::vector<std::vector<Cell>> mr;
    for (const auto& d : metric_defs()) {
      const json& m = s["metrics"][d.key];
      if (m.value("count", 0) == 0) continue;
      std::string pre = "p" + std::to_string(i) + "." + d.key + ".";
      auto ci = [&](const char* st) {
        const json& c = m["ci"][st];
        return c.is_array() ? "[" + f(c[0]) + ", " + f(c[1]) + "]" : std::string("n too small");
      };
      mr.push_back({Cell(d.key), Cell(d.vllm), Cell(d.aiperf), Cell(f(m["count"], 0), pre + "count"), Cell(f(m["mean"]), pre + "mean"),
                    Cell(ci("mean")), Cell(f(m["p50"]), pre + "p50"), Cell(f(m["p90"]), pre + "p90"), Cell(f(m["p95"]), pre + "p95"),
                    Cell(f(m["p99"]), pre + "p99"), Cell(ci("p99")), Cell(f(m["max"]), pre + "max")});
    }
    page.table({"metric", "vLLM/SGLang", "AIPerf", "n", "mean", "CI mean", "p50", "p90", "p95", "p99", "CI p99", "max"}, mr);
  }

  page.heading("Definitions");
  std::vector<std::vector<Cell>> dr;
  for (const auto& d : metric_defs()) dr.push_back({Cell(d.key), Cell(d.title), Cell(d.vllm), Cell(d.aiperf), Cell(d.formula)});
  page.table({"metric", "meaning", "vLLM/SGLang", "AIPerf", "formula"}, dr);
  page.paragraph("Times are taken when the bytes carrying each streamed piece were read from the socket. Percentiles use linear "
                 "interpolation (NumPy default); intervals are seeded percentile bootstraps, omitted where the sample is too small "
                 "for a two-sided percentile interval (368 requests for p99 at 95%).",
                 "muted");
  // Summary numbers as data, so the page can be checked against the JSON it came from.
  json sums = json::array();
  for (const auto& p : points) sums.push_back(p["summary"]);
  page.json_data("bench-summary", sums.dump());
  // Highlight the row under the pointer (the only script; it must not fail).
  page.script(
      "document.querySelectorAll('table tbody tr').forEach(function(r){r.addEventListener('mouseenter',function(){r.style.background='#f6f8fc';});"
      "r.addEventListener('mouseleave',function(){r.style.background='';});});"
      "document.documentElement.setAttribute('data-points', JSON.parse(document.getElementById('bench-summary').textContent).length);");
  return page.render();
}

void write_html(const json& doc, const std::string& path) {
  std::ofstream out(path, std::ios::binary);
  if (!out) throw InputError("--html: cannot write '" + path + "'");
  out << render_html(doc);
  if (!out) throw InputError("--html: writing '" + path + "' failed");
}

}  // namespace v4::bench
