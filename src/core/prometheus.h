// Prometheus metrics: one registry of counters, gauges and fixed-bucket histograms by label set,
// rendered in the text exposition format. The server's /metrics and the router's /metrics are
// both this registry (names carry the v4host_ prefix and their unit). Thread-safe: one mutex,
// label sets rendered to their map key before it is taken.
#pragma once
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace v4 {

// Renders a label set as `{k="v",...}` ("" for no labels), escaping `"`, `\` and newlines in the
// values as the text format requires. The result doubles as the registry's per-series map key.
std::string prometheus_labels(const std::vector<std::pair<std::string, std::string>>& labels);

class Metrics {
 public:
  using Labels = std::vector<std::pair<std::string, std::string>>;

  // A family's type ("counter", "gauge") and help line; a family used before it is described
  // renders as "untyped".
  void describe(const std::string& name, const std::string& type, const std::string& help);
  // A histogram family with the given upper bounds (seconds, tokens, ...), ascending.
  void describe_histogram(const std::string& name, const std::string& help, std::vector<double> buckets);
  void inc(const std::string& name, const Labels& labels = {}, double v = 1);
  void set(const std::string& name, const Labels& labels, double v);
  void set(const std::string& name, double v) { set(name, {}, v); }
  // One observation of a histogram series.
  void observe(const std::string& name, const Labels& labels, double v);
  void observe(const std::string& name, double v) { observe(name, {}, v); }
  // A counter's or gauge's value; a histogram series' observation count; 0 for unknown series.
  double value(const std::string& name, const Labels& labels = {}) const;
  std::string render() const;

 private:
  struct Family {
    std::string type, help;
    std::vector<double> buckets;
    std::map<std::string, double> samples;             // rendered labels -> value
    std::map<std::string, std::vector<double>> hist;   // rendered labels -> cumulative bucket counts, sum, count
  };
  mutable std::mutex mu_;
  std::map<std::string, Family> fam_;
};

}  // namespace v4
