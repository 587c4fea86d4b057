#include "eval/compare.h"

#include <fmt/format.h>

#include <map>
#include <unordered_map>

#include "stats/binomial.h"

namespace v4::eval {

namespace {

struct Pairs {
  long n = 0, both = 0, neither = 0, a_only = 0, b_only = 0, a_pass = 0, b_pass = 0;
  void add(bool a, bool b) {
    ++n;
    a_pass += a;
    b_pass += b;
    if (a && b) ++both;
    else if (!a && !b) ++neither;
    else if (a) ++a_only;
    else ++b_only;
  }
  Json to_json() const {
    return {{"n_pairs", n},
            {"a_pass_rate", n ? static_cast<double>(a_pass) / static_cast<double>(n) : 0.0},
            {"b_pass_rate", n ? static_cast<double>(b_pass) / static_cast<double>(n) : 0.0},
            {"both_passed", both},
            {"neither", neither},
            {"a_only", a_only},
            {"b_only", b_only},
            {"p_value", stats::mcnemar_exact(a_only, b_only)}};
  }
};

}  // namespace

Json compare_results(const std::vector<Outcome>& a, const std::vector<Outcome>& b, const CompareOptions& opt) {
  std::unordered_map<std::string, const Outcome*> bk;
  for (const auto& o : b) bk[o.key()] = &o;
  Pairs all;
  std::map<std::string, Pairs> cats;
  std::vector<double> pa, pb;
  // Scores are resampled by item (the samples of one item move together).
  std::map<std::string, std::pair<double, double>> score_sum;
  std::map<std::string, long> score_n;
  Json a_only_ids = Json::array(), b_only_ids = Json::array();
  long unpaired_a = 0;
  std::unordered_map<std::string, bool> paired_b;
  for (const auto& o : a) {
    auto it = bk.find(o.key());
    if (it == bk.end()) {
      ++unpaired_a;
      continue;
    }
    const Outcome& q = *it->second;
    paired_b[q.key()] = true;
    all.add(o.passed, q.passed);
    if (!o.category.empty()) cats[o.category].add(o.passed, q.passed);
    pa.push_back(o.passed ? 1 : 0);
    pb.push_back(q.passed ? 1 : 0);
    auto& ss = score_sum[o.id];
    ss.first += o.score;
    ss.second += q.score;
    ++score_n[o.id];
    if (o.passed && !q.passed && a_only_ids.size() < 100) a_only_ids.push_back(o.key());
    if (!o.passed && q.passed && b_only_ids.size() < 100) b_only_ids.push_back(o.key());
  }
  std::vector<double> sa, sb;
  for (const auto& [id, s] : score_sum) {
    sa.push_back(s.first / static_cast<double>(score_n[id]));
    sb.push_back(s.second / static_cast<double>(score_n[id]));
  }
  Json c = all.to_json();
  const double p = c["p_value"].get<double>();
  auto diff = stats::paired_bootstrap(pa, pb, opt.bootstrap, opt.seed);
  auto sdiff = stats::paired_bootstrap(sa, sb, opt.bootstrap, opt.seed + 1);
  c["diff"] = c["b_pass_rate"].get<double>() - c["a_pass_rate"].get<double>();
  c["diff_ci95"] = {diff.ci.lo, diff.ci.hi};
  double am = 0, bm = 0;
  for (double x : sa) am += x;
  for (double x : sb) bm += x;
  if (!sa.empty()) {
    am /= static_cast<double>(sa.size());
    bm /= static_cast<double>(sb.size());
  }
  c["score"] = {{"a_mean", am}, {"b_mean", bm}, {"diff", sdiff.mean_diff}, {"ci95", {sdiff.ci.lo, sdiff.ci.hi}}, {"items", static_cast<long>(sa.size())}};
  std::string verdict = "no significant difference";
  if (p < opt.alpha && all.b_only != all.a_only) verdict = all.b_only > all.a_only ? "better" : "worse";
  c["verdict"] = verdict;
  c["alpha"] = opt.alpha;
  c["unpaired_a"] = unpaired_a;
  c["unpaired_b"] = static_cast<long>(b.size() - paired_b.size());
  if (!cats.empty()) {
    Json cj = Json::object();
    for (const auto& [k, v] : cats) cj[k] = v.to_json();
    c["categories"] = cj;
  }
  c["a_only_ids"] = a_only_ids;
  c["b_only_ids"] = b_only_ids;
  return c;
}

std::string format_compare(const Json& c, const std::string& an, const std::string& bn) {
  std::string s;
  s += fmt::format("A (baseline):  {}\nB (candidate): {}\n", an, bn);
  s += fmt::format("paired on {} (id, sample) pairs ({} only in A, {} only in B)\n", c["n_pairs"].get<long>(), c["unpaired_a"].get<long>(),
                   c["unpaired_b"].get<long>());
  s += fmt::format("  pass rate A {:.1f}%  B {:.1f}%  difference B-A {:+.1f} pp  95% CI [{:+.1f}, {:+.1f}] (paired bootstrap)\n",
                   100 * c["a_pass_rate"].get<double>(), 100 * c["b_pass_rate"].get<double>(), 100 * c["diff"].get<double>(),
                   100 * c["diff_ci95"][0].get<double>(), 100 * c["diff_ci95"][1].get<double>());
  s += fmt::format("  both passed {}  neither {}  only A passed {}  only B passed {}\n", c["both_passed"].get<long>(), c["neither"].get<long>(),
                   c["a_only"].get<long>(), c["b_only"].get<long>());
  s += fmt::format("  exact McNemar p = {:.4g}\n", c["p_value"].get<double>());
  const Json& sc = c["score"];
  s += fmt::format("  mean score A {:.3f}  B {:.3f}  difference {:+.3f}  95% CI [{:+.3f}, {:+.3f}]\n", sc["a_mean"].get<double>(),
                   sc["b_mean"].get<double>(), sc["diff"].get<double>(), sc["ci95"][0].get<double>(), sc["ci95"][1].get<double>());
  if (c.contains("categories"))
    for (auto it = c["categories"].begin(); it != c["categories"].end(); ++it)
      s += fmt::format("  category {:<20} A {:5.1f}%  B {:5.1f}%  only A {}  only B {}  p = {:.4g}\n", it.key(),
                       100 * it.value()["a_pass_rate"].get<double>(), 100 * it.value()["b_pass_rate"].get<double>(),
                       it.value()["a_only"].get<long>(), it.value()["b_only"].get<long>(), it.value()["p_value"].get<double>());
  s += fmt::format("verdict: B is {} (alpha {})\n",
                   c["verdict"] == "no significant difference" ? "not significantly different from A" : c["verdict"].get<std::string>() + " than A",
                   c["alpha"].get<double>());
  return s;
}

}  // namespace v4::eval
