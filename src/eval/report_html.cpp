#include "eval/report_html.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "eval/summary.h"
#include "report/heatmap.h"
#include "report/html.h"

namespace v4::eval {

namespace {

using report::Cell;

std::string pct(double v) { return fmt::format("{:.1f}%", 100 * v); }

std::vector<Cell> rate_row(const std::string& label, const std::string& key, const Json& t) {
  return {Cell(label),
          Cell(std::to_string(t.value("passed", 0L)), key + ".passed"),
          Cell(std::to_string(t.value("n", 0L)), key + ".n"),
          Cell(pct(t.value("pass_rate", 0.0)), key + ".pass_rate"),
          Cell(fmt::format("[{:.1f}%, {:.1f}%]", 100 * t["ci95"][0].get<double>(), 100 * t["ci95"][1].get<double>()), key + ".ci95"),
          Cell(t.contains("errors") ? std::to_string(t["errors"].get<long>()) : "0", key + ".errors")};
}

// Pass rate with its interval as a horizontal bar (SVG), one row per label.
std::string interval_bars(const std::vector<std::pair<std::string, Json>>& rows, const std::string& id) {
  const int w = 520, lh = 24, left = 160, top = 10;
  const int h = top + static_cast<int>(rows.size()) * lh + 26;
  std::string s = fmt::format("<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"{}\" class=\"intervals\" width=\"{}\" height=\"{}\" font-family=\"sans-serif\" font-size=\"12\">\n", id, w, h);
  const int span = w - left - 20;
  for (int t = 0; t <= 100; t += 25) {
    int x = left + span * t / 100;
    s += fmt::format("<line x1=\"{0}\" x2=\"{0}\" y1=\"{1}\" y2=\"{2}\" stroke=\"#ddd\"/><text x=\"{0}\" y=\"{3}\" text-anchor=\"middle\">{4}%</text>\n", x,
                     top, h - 22, h - 8, t);
  }
  for (size_t i = 0; i < rows.size(); ++i) {
    const Json& t = rows[i].second;
    const double p = t.value("pass_rate", 0.0), lo = t["ci95"][0].get<double>(), hi = t["ci95"][1].get<double>();
    const int y = top + static_cast<int>(i) * lh + lh / 2;
    s += fmt::format("<g class=\"interval\" data-label=\"{}\" data-rate=\"{:.6g}\" data-lo=\"{:.6g}\" data-hi=\"{:.6g}\">", report::html_escape(rows[i].first), p, lo, hi);
    s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>", left - 8, y + 4, report::html_escape(rows[i].first));
    s += fmt::format("<line x1=\"{}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"#345\" stroke-width=\"2\"/>", left + span * lo, left + span * hi, y, y);
    s += fmt::format("<circle cx=\"{}\" cy=\"{}\" r=\"5\" fill=\"#2a6fb0\"><title>{}: {} [{}, {}]</title></circle></g>\n", left + span * p, y,
                     report::html_escape(rows[i].first), pct(p), pct(lo), pct(hi));
  }
  s += "</svg>\n";
  return s;
}

}  // namespace

void write_run_html(const std::string& path, const Json& s) {
  report::HtmlPage page("v4host eval: " + s.value("suite", std::string()));
  if (s.contains("provenance")) {
    const Json& p = s["provenance"];
    std::vector<std::pair<std::string, std::string>> kv;
    for (auto it = p.begin(); it != p.end(); ++it) kv.push_back({it.key(), it.value().is_string() ? it.value().get<std::string>() : it.value().dump()});
    page.definition_list(kv);
    if (p.value("sandbox", "") == "none") page.paragraph("WARNING: the code ran WITHOUT a sandbox (--unsafe-no-sandbox).", "bad");
  }
  page.heading("Pass rates (95% Wilson intervals)");
  std::vector<std::vector<Cell>> rows = {rate_row("all", "all", s)};
  std::vector<std::pair<std::string, Json>> bars = {{"all", s}};
  if (s.contains("categories"))
    for (auto it = s["categories"].begin(); it != s["categories"].end(); ++it) {
      rows.push_back(rate_row("category " + it.key(), "category." + it.key(), it.value()));
      bars.push_back({it.key(), it.value()});
    }
  if (s.contains("reasoning"))
    for (auto it = s["reasoning"].begin(); it != s["reasoning"].end(); ++it) {
      rows.push_back(rate_row("reasoning " + it.key(), "reasoning." + it.key(), it.value()));
      if (s["reasoning"].size() > 1) bars.push_back({"reasoning " + it.key(), it.value()});
    }
  page.table({"", "passed", "n", "pass rate", "95% CI", "errors"}, rows, "rates");
  page.raw(interval_bars(bars, "rate-intervals"));
  if (s.contains("pass_at_k")) {
    std::vector<std::vector<Cell>> pk;
    for (auto it = s["pass_at_k"].begin(); it != s["pass_at_k"].end(); ++it)
      pk.push_back({Cell("pass@" + it.key()), Cell(fmt::format("{:.4f}", it.value().get<double>()), "pass_at_k." + it.key())});
    page.heading("pass@k (unbiased estimator)");
    page.table({"k", "value"}, pk, "pass-at-k");
  }
  if (auto grids = retrieval_grids(s); !grids.empty()) {
    page.heading("Retrieval: pass rate by context length and needle depth");
    page.begin_grid();
    int gi = 0;
    for (const auto& g : grids) {
      const auto& lens = g.lengths;
      const auto& deps = g.depths;
      report::Heatmap h;
      h.title = g.category + (g.reasoning.empty() ? "" : " (reasoning " + g.reasoning + ")");
      h.row_label = "context tokens";
      h.col_label = "needle depth %";
      h.id = "heatmap-" + std::to_string(gi++);
      for (long L : lens) h.rows.push_back(L % 1048576 == 0 ? std::to_string(L / 1048576) + "M" : L % 1024 == 0 ? std::to_string(L / 1024) + "K" : std::to_string(L));
      for (double d : deps) h.cols.push_back(fmt::format("{:g}", d));
      h.values.assign(lens.size(), std::vector<double>(deps.size(), std::nan("")));
      h.notes.assign(lens.size(), std::vector<std::string>(deps.size()));
      for (const auto& c : g.cells) {
        size_t r = static_cast<size_t>(std::find(lens.begin(), lens.end(), c["length"].get<long>()) - lens.begin());
        size_t k = static_cast<size_t>(std::find(deps.begin(), deps.end(), c["depth"].get<double>()) - deps.begin());
        h.values[r][k] = c["pass_rate"].get<double>();
        h.notes[r][k] = fmt::format("{}/{} passed", c["passed"].get<long>(), c["n"].get<long>());
      }
      page.raw(report::heatmap_svg(h));
    }
    page.end_grid();
  }
  if (s.contains("skipped_lengths") && !s["skipped_lengths"].empty())
    page.paragraph("Lengths skipped (beyond the endpoint's context): " + s["skipped_lengths"].dump(), "muted");
  page.json_data("summary", s.dump());
  page.write(path);
}

void write_compare_html(const std::string& path, const Json& c, const std::string& an, const std::string& bn) {
  report::HtmlPage page("v4host eval compare");
  page.definition_list({{"A (baseline)", an}, {"B (candidate)", bn}, {"pairs", std::to_string(c["n_pairs"].get<long>())},
                        {"verdict", "B is " + c["verdict"].get<std::string>() + (c["verdict"] == "no significant difference" ? "" : " than A")}});
  auto row = [](const std::string& label, const std::string& key, const Json& t) {
    return std::vector<Cell>{Cell(label),
                             Cell(std::to_string(t["n_pairs"].get<long>()), key + ".n_pairs"),
                             Cell(pct(t["a_pass_rate"].get<double>()), key + ".a_pass_rate"),
                             Cell(pct(t["b_pass_rate"].get<double>()), key + ".b_pass_rate"),
                             Cell(std::to_string(t["a_only"].get<long>()), key + ".a_only"),
                             Cell(std::to_string(t["b_only"].get<long>()), key + ".b_only"),
                             Cell(fmt::format("{:.4g}", t["p_value"].get<double>()), key + ".p_value")};
  };
  std::vector<std::vector<Cell>> rows = {row("all", "all", c)};
  if (c.contains("categories"))
    for (auto it = c["categories"].begin(); it != c["categories"].end(); ++it) rows.push_back(row("category " + it.key(), "category." + it.key(), it.value()));
  page.heading("Pass rates, discordant pairs and exact McNemar p-values");
  page.table({"", "pairs", "A pass rate", "B pass rate", "only A passed", "only B passed", "p (McNemar)"}, rows, "ab");
  page.paragraph(fmt::format("Difference B - A: {:+.1f} pp, 95% CI [{:+.1f}, {:+.1f}] (paired bootstrap). Mean score A {:.3f}, B {:.3f}, difference {:+.3f} [{:+.3f}, {:+.3f}].",
                             100 * c["diff"].get<double>(), 100 * c["diff_ci95"][0].get<double>(), 100 * c["diff_ci95"][1].get<double>(),
                             c["score"]["a_mean"].get<double>(), c["score"]["b_mean"].get<double>(), c["score"]["diff"].get<double>(),
                             c["score"]["ci95"][0].get<double>(), c["score"]["ci95"][1].get<double>()));
  std::vector<std::vector<Cell>> flips;
  for (const auto& id : c["a_only_ids"]) flips.push_back({Cell(id.get<std::string>()), Cell("A only", "", false, "bad")});
  for (const auto& id : c["b_only_ids"]) flips.push_back({Cell(id.get<std::string>()), Cell("B only", "", false, "good")});
  if (!flips.empty()) {
    page.heading("Items that flipped");
    page.table({"item#sample", "passed in"}, flips, "flips");
  }
  page.json_data("compare", c.dump());
  page.write(path);
}

}  // namespace v4::eval
