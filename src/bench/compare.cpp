#include "bench/compare.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <sstream>

#include "bench/metrics.h"
#include "core/error.h"
#include "stats/bootstrap.h"
#include "stats/summary.h"

namespace v4::bench {

std::vector<FailOn> parse_fail_on(const std::string& s) {
  std::vector<FailOn> out;
  std::stringstream ss(s);
  std::string part;
  while (std::getline(ss, part, ',')) {
    if (part.empty()) continue;
    FailOn f;
    f.text = part;
    auto bad = [&](const std::string& why) {
      return InputError("--fail-on '" + part + "': " + why + " (expected e.g. 'p99_ttft>+10%', 'mean_tpot>+2ms', 'output_throughput<-5%')");
    };
    auto op = part.find_first_of("<>");
    if (op == std::string::npos) throw bad("no '>' or '<'");
    f.op = part[op];
    std::string lhs = part.substr(0, op), rhs = part.substr(op + 1);
    static const std::map<std::string, std::string> tput = {{"output_throughput", "output_tokens_per_s"},
                                                            {"request_throughput", "requests_per_s"},
                                                            {"total_throughput", "total_tokens_per_s"},
                                                            {"goodput", "goodput_rps"}};
    if (auto t = tput.find(lhs); t != tput.end()) {
      f.metric = t->second;
    } else {
      auto us = lhs.find('_');
      if (us == std::string::npos) throw bad("left side must be STAT_METRIC or a throughput name");
      f.stat = lhs.substr(0, us);
      if (f.stat == "median") f.stat = "p50";
      try {
        (void)stats::Summary::of({1.0}, f.stat);
      } catch (const std::exception&) {
        throw bad("unknown statistic '" + f.stat + "'");
      }
      const MetricDef* d = find_metric(lhs.substr(us + 1));
      if (!d) throw bad("unknown metric '" + lhs.substr(us + 1) + "' (ttft, ttfa, tpot, itl, e2e, reasoning, output_tps)");
      f.metric = d->key;
    }
    size_t pos = 0;
    try {
      f.value = std::stod(rhs, &pos);
    } catch (const std::exception&) {
      throw bad("the threshold must be a signed number with % or a unit");
    }
    std::string unit = rhs.substr(pos);
    if (unit == "%") f.value /= 100, f.relative = true;
    else if (unit == "ms" || unit.empty()) f.relative = false;
    else if (unit == "s") f.value *= 1000, f.relative = false;
    else throw bad("unknown unit '" + unit + "' (use %, ms or s)");
    if (!f.relative && unit.empty() && f.stat.empty()) f.relative = false;
    out.push_back(f);
  }
  if (out.empty()) throw InputError("--fail-on: no thresholds given");
  return out;
}

namespace {

std::string fmt(double v, int p = 2) {
  if (!std::isfinite(v)) return "-";
  char b[48];
  std::snprintf(b, sizeof b, "%.*f", p, v);
  return b;
}
std::string pct(double v) {
  if (!std::isfinite(v)) return "-";
  char b[48];
  std::snprintf(b, sizeof b, "%+.1f%%", v * 100);
  return b;
}

std::vector<RequestRecord> records_of(const json& point) {
  std::vector<RequestRecord> r;
  for (const auto& j : point["requests"]) r.push_back(record_from_json(j));
  return r;
}

double tput(const json& s, const std::string& key) {
  const json* v = nullptr;
  if (key == "goodput_rps") {
    if (!s.contains("goodput")) return NAN;
    v = &s["goodput"]["requests_per_s"];
  } else {
    if (!s.contains("throughput") || !s["throughput"].is_object() || !s["throughput"].contains(key)) return NAN;
    v = &s["throughput"][key];
  }
  return v->is_number() ? v->get<double>() : NAN;
}

// Values of one metric for one request (ITL: its gaps; others: one value, or none).
std::vector<double> values_of(const RequestRecord& r, const std::string& key) { return metric_values({r}, key); }

}  // namespace

Pairing pair_requests(const json& a, const json& b, const std::vector<RequestRecord>& ra, const std::vector<RequestRecord>& rb) {
  Pairing p;
  const json& wa = a.contains("config") ? a["config"].value("workload", json()) : json();
  const json& wb = b.contains("config") ? b["config"].value("workload", json()) : json();
  if (wa.is_null() || wb.is_null()) {
    p.why = "a run does not record its workload";
    return p;
  }
  if (wa != wb) {
    p.why = "the runs used different workloads or seeds";
    return p;
  }
  // Same workload and seed: workload unit k (and turn t of a session) is the same request in both
  // runs, whatever order the load started them in.
  std::map<std::pair<int, int>, size_t> in_b;
  for (size_t j = 0; j < rb.size(); ++j)
    if (rb[j].ok()) in_b[{rb[j].unit, rb[j].turn}] = j;
  for (size_t i = 0; i < ra.size(); ++i) {
    if (!ra[i].ok()) continue;
    auto it = in_b.find({ra[i].unit, ra[i].turn});
    if (it == in_b.end()) continue;
    const RequestRecord& x = ra[i];
    const RequestRecord& y = rb[it->second];
    if (x.max_tokens != y.max_tokens || x.input_tokens_local != y.input_tokens_local) {
      p.why = "request " + std::to_string(x.unit) + "/" + std::to_string(x.turn) + " differs between the runs (max_tokens or input length)";
      p.pairs.clear();
      return p;
    }
    p.pairs.emplace_back(i, it->second);
  }
  if (p.pairs.size() < 2) {
    p.why = "fewer than 2 successful requests in common";
    p.pairs.clear();
    return p;
  }
  p.paired = true;
  p.why = std::to_string(p.pairs.size()) + " requests paired by workload unit and turn (same workload and seed)";
  return p;
}

PairedDiff paired_bootstrap(const std::vector<std::vector<double>>& a, const std::vector<std::vector<double>>& b,
                            const std::vector<std::string>& stats_names, const stats::BootstrapOptions& o) {
  // Pairs where both requests have the metric.
  std::vector<size_t> use;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i)
    if (!a[i].empty() && !b[i].empty()) use.push_back(i);
  const size_t k = stats_names.size();
  PairedDiff out;
  out.a.assign(k, NAN);
  out.b.assign(k, NAN);
  out.diff.assign(k, {});
  out.rel.assign(k, {});
  out.pairs = use.size();
  if (use.empty()) return out;
  auto pool = [&](const std::vector<std::vector<double>>& side, const std::vector<size_t>& idx, std::vector<double>& buf) {
    buf.clear();
    for (size_t i : idx) buf.insert(buf.end(), side[i].begin(), side[i].end());
    std::sort(buf.begin(), buf.end());
  };
  std::vector<double> pa, pb;
  pool(a, use, pa);
  pool(b, use, pb);
  // The same sample-size rule as the unpaired intervals: per request for one-value metrics, per
  // pooled value for ITL.
  const size_t n_values = std::min(pa.size(), pb.size());
  for (size_t s = 0; s < k; ++s) {
    out.a[s] = stats::Summary::of(pa, stats_names[s]);
    out.b[s] = stats::Summary::of(pb, stats_names[s]);
    out.diff[s].estimate = out.b[s] - out.a[s];
    out.rel[s].estimate = out.a[s] != 0 ? (out.b[s] - out.a[s]) / out.a[s] : NAN;
  }
  // Resample pairs jointly (a request and its counterpart stay together), so what the two runs
  // share — the same prompts, lengths and position in the sequence — cancels out of the difference.
  stats::SplitMix64 rng(o.seed);
  std::vector<std::vector<double>> rd(k), rr(k);
  std::vector<size_t> idx(use.size());
  for (int it = 0; it < o.iterations; ++it) {
    for (auto& x : idx) x = use[rng.below(use.size())];
    pool(a, idx, pa);
    pool(b, idx, pb);
    for (size_t s = 0; s < k; ++s) {
      double xa = stats::Summary::of(pa, stats_names[s]), xb = stats::Summary::of(pb, stats_names[s]);
      rd[s].push_back(xb - xa);
      if (xa != 0 && std::isfinite(xa) && std::isfinite(xb)) rr[s].push_back((xb - xa) / xa);
    }
  }
  const double lo_q = (1 - o.confidence) / 2 * 100, hi_q = (1 + o.confidence) / 2 * 100;
  for (size_t s = 0; s < k; ++s) {
    bool valid = use.size() >= 2 && stats::ci_supported(stats_names[s], n_values, o.confidence);
    std::sort(rd[s].begin(), rd[s].end());
    std::sort(rr[s].begin(), rr[s].end());
    if (valid && !rd[s].empty()) {
      out.diff[s].lo = stats::percentile_sorted(rd[s], lo_q);
      out.diff[s].hi = stats::percentile_sorted(rd[s], hi_q);
      out.diff[s].valid = true;
    }
    if (valid && rr[s].size() * 10 >= rd[s].size() * 9) {
      out.rel[s].lo = stats::percentile_sorted(rr[s], lo_q);
      out.rel[s].hi = stats::percentile_sorted(rr[s], hi_q);
      out.rel[s].valid = true;
    }
  }
  return out;
}

namespace {
}  // namespace

CompareResult compare_results(const json& a, const json& b, const CompareOptions& o) {
  CompareResult res;
  std::ostringstream t;
  // Pair points by label; two single-point runs pair whatever their labels.
  std::vector<std::pair<const json*, const json*>> pairs;
  if (a["points"].size() == 1 && b["points"].size() == 1) pairs.emplace_back(&a["points"][0], &b["points"][0]);
  else
    for (const auto& pa : a["points"])
      for (const auto& pb : b["points"])
        if (pa["summary"].value("label", "") == pb["summary"].value("label", "")) pairs.emplace_back(&pa, &pb);
  if (pairs.empty()) throw InputError("the two result files have no load point in common (labels differ)");
  stats::BootstrapOptions bo{o.iterations, o.confidence, o.seed};
  t << "A: " << a["provenance"].value("endpoint", "?") << " (" << a["provenance"].value("model", "?") << ", " << a["provenance"].value("started_utc", "") << ")\n";
  t << "B: " << b["provenance"].value("endpoint", "?") << " (" << b["provenance"].value("model", "?") << ", " << b["provenance"].value("started_utc", "") << ")\n";
  t << "difference = B - A; " << fmt(o.confidence * 100, 0) << "% bootstrap interval of the relative difference\n";
  for (const auto& [pa, pb] : pairs) {
    std::string label = (*pb)["summary"].value("label", "");
    t << "\n== " << (*pa)["summary"].value("label", "") << " vs " << label << " ==\n";
    char head[200];
    std::snprintf(head, sizeof head, "%-16s %-5s %12s %12s %12s %9s %21s  %s\n", "metric", "stat", "A", "B", "B-A", "rel", "rel CI", "verdict");
    auto ra = records_of(*pa), rb = records_of(*pb);
    const Pairing pr = pair_requests(a, b, ra, rb);
    const std::string mode = pr.paired ? "paired" : "unpaired";
    t << (pr.paired ? "paired: " + pr.why + "; B - A and its interval resample request pairs jointly\n"
                    : "unpaired: " + pr.why + "; the two runs are resampled as independent samples\n");
    res.pairing.push_back({{"point", label}, {"mode", mode}, {"why", pr.why}, {"pairs", pr.pairs.size()}});
    t << head;
    const std::vector<std::string> stat_names = {"mean", "p50", "p90", "p99"};
    for (const char* key : {"ttft_ms", "ttfa_ms", "reasoning_ms", "tpot_ms", "itl_ms", "e2e_ms", "output_tps"}) {
      auto va = metric_values(ra, key), vb = metric_values(rb, key);
      if (va.empty() || vb.empty()) continue;
      const MetricDef* d = find_metric(key);
      PairedDiff pd;
      if (pr.paired) {
        std::vector<std::vector<double>> ca, cb;
        for (const auto& [i, j] : pr.pairs) {
          ca.push_back(values_of(ra[i], key));
          cb.push_back(values_of(rb[j], key));
        }
        pd = paired_bootstrap(ca, cb, stat_names, bo);
      }
      for (size_t si = 0; si < stat_names.size(); ++si) {
        const char* st = stat_names[si].c_str();
        double xa, xb;
        stats::Interval rel;
        if (pr.paired) {
          xa = pd.a[si];
          xb = pd.b[si];
          rel = pd.rel[si];
        } else {
          auto sa = va, sb = vb;
          std::sort(sa.begin(), sa.end());
          std::sort(sb.begin(), sb.end());
          xa = stats::Summary::of(sa, st);
          xb = stats::Summary::of(sb, st);
          rel = stats::bootstrap_rel_diff_ci(va, vb, st, bo);
        }
        std::string verdict = "n too small";
        if (rel.valid) {
          bool up = rel.lo > 0, down = rel.hi < 0;
          if (!up && !down) verdict = "no significant change";
          else if (up == d->lower_is_better) verdict = "REGRESSION";
          else verdict = "improvement";
        }
        json row = {{"point", label}, {"metric", key}, {"stat", st}, {"a", xa}, {"b", xb}, {"diff", xb - xa},
                    {"rel", std::isfinite(rel.estimate) ? json(rel.estimate) : json(nullptr)}, {"verdict", verdict}, {"mode", mode}};
        if (rel.valid) row["rel_ci"] = {rel.lo, rel.hi};
        if (pr.paired) {
          row["pairs"] = pd.pairs;
          if (pd.diff[si].valid) row["diff_ci"] = {pd.diff[si].lo, pd.diff[si].hi};
        }
        res.rows.push_back(row);
        char line[300];
        std::string ci = rel.valid ? "[" + pct(rel.lo) + ", " + pct(rel.hi) + "]" : "-";
        std::snprintf(line, sizeof line, "%-16s %-5s %12s %12s %12s %9s %21s  %s\n", key, st, fmt(xa).c_str(), fmt(xb).c_str(),
                      fmt(xb - xa).c_str(), pct(rel.estimate).c_str(), ci.c_str(), verdict.c_str());
        t << line;
        for (const auto& f : o.fail_on) {
          if (f.metric != key || f.stat != st) continue;
          double delta = f.relative ? rel.estimate : xb - xa;
          if ((f.op == '>' && delta > f.value) || (f.op == '<' && delta < f.value))
            res.failures.push_back(f.text + " crossed at " + label + ": " + (f.relative ? pct(delta) : fmt(delta) + " ms"));
        }
      }
    }
    for (const char* key : {"requests_per_s", "output_tokens_per_s", "total_tokens_per_s", "goodput_rps"}) {
      double xa = tput((*pa)["summary"], key), xb = tput((*pb)["summary"], key);
      if (!std::isfinite(xa) || !std::isfinite(xb)) continue;
      double rel = xa != 0 ? (xb - xa) / xa : NAN;
      std::string verdict = rel < -0.05 ? "lower (no CI: one aggregate per run)" : rel > 0.05 ? "higher" : "within 5%";
      res.rows.push_back({{"point", label}, {"metric", key}, {"stat", "aggregate"}, {"a", xa}, {"b", xb}, {"diff", xb - xa},
                          {"rel", std::isfinite(rel) ? json(rel) : json(nullptr)}, {"verdict", verdict}});
      char line[300];
      std::snprintf(line, sizeof line, "%-16s %-5s %12s %12s %12s %9s %21s  %s\n", key, "agg", fmt(xa).c_str(), fmt(xb).c_str(),
                    fmt(xb - xa).c_str(), pct(rel).c_str(), "-", verdict.c_str());
      t << line;
      for (const auto& f : o.fail_on) {
        if (f.metric != key) continue;
        double delta = f.relative ? rel : xb - xa;
        if ((f.op == '>' && delta > f.value) || (f.op == '<' && delta < f.value))
          res.failures.push_back(f.text + " crossed at " + label + ": " + (f.relative ? pct(delta) : fmt(delta)));
      }
    }
  }
  res.text = t.str();
  return res;
}

}  // namespace v4::bench
