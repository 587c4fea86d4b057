// A small Prometheus registry: counters, gauges and histograms with fixed label sets, rendered
// in the text exposition format. Names carry the v4host_ prefix and their unit.
#pragma once
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace v4 {

class Metrics {
 public:
  using Labels = std::vector<std::pair<std::string, std::string>>;

  void describe(const std::string& name, const std::string& type, const std::string& help);
  void inc(const std::string& name, const Labels& labels = {}, double v = 1.0);
  void set(const std::string& name, const Labels& labels, double v);
  void set(const std::string& name, double v) { set(name, {}, v); }
  // Histogram with the given upper bounds (seconds etc.).
  void describe_histogram(const std::string& name, const std::string& help, std::vector<double> buckets);
  void observe(const std::string& name, double v, const Labels& labels = {});
  double value(const std::string& name, const Labels& labels = {}) const;
  std::string render() const;

 private:
  struct Hist {
    std::vector<double> counts;  // per bucket (cumulative at render time)
    double sum = 0;
    uint64_t count = 0;
  };
  struct Family {
    std::string type, help;
    std::vector<double> buckets;
    std::map<std::string, double> values;  // rendered label set -> value
    std::map<std::string, Hist> hists;
  };
  mutable std::mutex mu_;
  std::map<std::string, Family> fam_;
};

}  // namespace v4
