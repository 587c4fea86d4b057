#include "eval/summary.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <tuple>

#include "stats/binomial.h"

namespace v4::eval {

namespace {

struct Tally {
  long n = 0, passed = 0, errors = 0;
  double score = 0;
  void add(const Outcome& o) {
    ++n;
    if (o.passed) ++passed;
    if (!o.error.empty()) ++errors;
    score += o.score;
  }
  Json to_json() const {
    auto ci = stats::wilson_interval(passed, n);
    Json j = {{"n", n}, {"passed", passed}, {"pass_rate", n ? static_cast<double>(passed) / static_cast<double>(n) : 0.0},
              {"ci95", {ci.lo, ci.hi}}, {"score_mean", n ? score / static_cast<double>(n) : 0.0}};
    if (errors) j["errors"] = errors;
    return j;
  }
};

}  // namespace

Json summarize(const std::string& suite, const std::vector<Outcome>& rs) {
  Tally all;
  std::map<std::string, Tally> cats, modes;
  std::map<std::tuple<std::string, std::string, long, double>, Tally> cells;
  std::map<std::string, std::pair<long, long>> per_id;  // id -> (samples, passed)
  std::map<std::string, long> error_kinds;
  for (const auto& o : rs) {
    all.add(o);
    if (!o.category.empty()) cats[o.category].add(o);
    const std::string mode = o.meta.value("reasoning", std::string());
    if (!mode.empty()) modes[mode].add(o);
    if (o.meta.contains("length") && o.meta.contains("depth") && o.meta["length"].is_number() && o.meta["depth"].is_number())
      cells[{o.category, mode, o.meta["length"].get<long>(), o.meta["depth"].get<double>()}].add(o);
    auto& p = per_id[o.id];
    ++p.first;
    if (o.passed) ++p.second;
    if (!o.error_kind.empty()) ++error_kinds[o.error_kind];
  }
  Json s = {{"suite", suite}};
  Json t = all.to_json();
  for (auto it = t.begin(); it != t.end(); ++it) s[it.key()] = it.value();
  s["items"] = static_cast<long>(per_id.size());
  if (!error_kinds.empty()) s["error_kinds"] = error_kinds;
  if (!cats.empty()) {
    Json c = Json::object();
    for (const auto& [k, v] : cats) c[k] = v.to_json();
    s["categories"] = c;
  }
  if (!modes.empty()) {
    Json m = Json::object();
    for (const auto& [k, v] : modes) m[k] = v.to_json();
    s["reasoning"] = m;
  }
  long kmax = 0;
  for (const auto& [id, p] : per_id) kmax = std::max(kmax, p.first);
  if (kmax > 1) {
    Json pk = Json::object();
    for (long k = 1; k <= kmax; k = (k * 2 > kmax && k != kmax) ? kmax : k * 2) {
      double sum = 0;
      long m = 0;
      for (const auto& [id, p] : per_id)
        if (p.first >= k) {
          sum += stats::pass_at_k(p.first, p.second, k);
          ++m;
        }
      if (m) pk[std::to_string(k)] = sum / static_cast<double>(m);
      if (k == kmax) break;
    }
    s["pass_at_k"] = pk;
    s["samples_per_item"] = kmax;
  }
  if (!cells.empty()) {
    Json arr = Json::array();
    for (const auto& [k, v] : cells) {
      Json c = v.to_json();
      c["category"] = std::get<0>(k);
      if (!std::get<1>(k).empty()) c["reasoning"] = std::get<1>(k);
      c["length"] = std::get<2>(k);
      c["depth"] = std::get<3>(k);
      arr.push_back(c);
    }
    s["cells"] = arr;
  }
  return s;
}

std::vector<RetrievalGrid> retrieval_grids(const Json& s) {
  std::vector<RetrievalGrid> grids;
  if (!s.contains("cells")) return grids;
  std::map<std::pair<std::string, std::string>, std::vector<Json>> by_key;
  for (const auto& c : s["cells"]) by_key[{c.value("category", ""), c.value("reasoning", "")}].push_back(c);
  for (auto& [key, cs] : by_key) {
    RetrievalGrid g{key.first, key.second, {}, {}, std::move(cs)};
    for (const auto& c : g.cells) {
      g.lengths.push_back(c["length"].get<long>());
      g.depths.push_back(c["depth"].get<double>());
    }
    std::sort(g.lengths.begin(), g.lengths.end());
    g.lengths.erase(std::unique(g.lengths.begin(), g.lengths.end()), g.lengths.end());
    std::sort(g.depths.begin(), g.depths.end());
    g.depths.erase(std::unique(g.depths.begin(), g.depths.end()), g.depths.end());
    grids.push_back(std::move(g));
  }
  return grids;
}

std::string format_summary(const Json& s) {
  std::string out;
  auto line = [](const std::string& label, const Json& t) {
    return fmt::format("  {:<28} {:>5}/{:<5} {:6.1f}%  [{:5.1f}, {:5.1f}]{}\n", label, t.value("passed", 0L), t.value("n", 0L),
                       100 * t.value("pass_rate", 0.0), 100 * t["ci95"][0].get<double>(), 100 * t["ci95"][1].get<double>(),
                       t.contains("errors") ? fmt::format("  ({} errors)", t["errors"].get<long>()) : "");
  };
  out += fmt::format("suite {}: {} results over {} items\n", s.value("suite", ""), s.value("n", 0L), s.value("items", 0L));
  out += fmt::format("  {:<28} {:>11} {:>7}  {}\n", "", "passed/n", "rate", "95% CI (Wilson)");
  out += line("all", s);
  if (s.contains("categories"))
    for (auto it = s["categories"].begin(); it != s["categories"].end(); ++it) out += line("category " + it.key(), it.value());
  if (s.contains("reasoning") && s["reasoning"].size() > 1)
    for (auto it = s["reasoning"].begin(); it != s["reasoning"].end(); ++it) out += line("reasoning " + it.key(), it.value());
  if (s.contains("pass_at_k")) {
    out += "  pass@k (unbiased):";
    for (auto it = s["pass_at_k"].begin(); it != s["pass_at_k"].end(); ++it)
      out += fmt::format("  pass@{} {:.3f}", it.key(), it.value().get<double>());
    out += "\n";
  }
  for (const auto& g : retrieval_grids(s)) {
    out += fmt::format("  retrieval {}{}: pass rate by length (rows) x depth % (columns)\n", g.category,
                       g.reasoning.empty() ? "" : " @" + g.reasoning);
    out += fmt::format("  {:>10}", "");
    for (double d : g.depths) out += fmt::format(" {:>6g}", d);
    out += "\n";
    for (long L : g.lengths) {
      out += fmt::format("  {:>10}", L);
      for (double d : g.depths) {
        auto it = std::find_if(g.cells.begin(), g.cells.end(),
                               [&](const Json& c) { return c["length"].get<long>() == L && c["depth"].get<double>() == d; });
        if (it == g.cells.end()) out += fmt::format(" {:>6}", "-");
        else out += fmt::format(" {:>5.0f}%", 100 * (*it)["pass_rate"].get<double>());
      }
      out += "\n";
    }
  }
  if (s.contains("skipped_lengths") && !s["skipped_lengths"].empty()) out += "  skipped (beyond the endpoint's context): " + s["skipped_lengths"].dump() + "\n";
  if (s.contains("sandbox") && s["sandbox"] == "none") out += "  WARNING: code ran WITHOUT a sandbox (--unsafe-no-sandbox)\n";
  return out;
}

}  // namespace v4::eval
