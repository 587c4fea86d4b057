// The router's Prometheus registry: counters and gauges by label set, fixed-bucket histograms.
// Thread-safe (one mutex; the hot path touches it a handful of times per request).
#pragma once
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace v4::router {

using Labels = std::vector<std::pair<std::string, std::string>>;

class Metrics {
 public:
  void describe(const std::string& name, const std::string& type, const std::string& help);
  void describe_histogram(const std::string& name, const std::string& help, std::vector<double> buckets);
  void inc(const std::string& name, const Labels& l = {}, double v = 1);
  void set(const std::string& name, const Labels& l, double v);
  void observe(const std::string& name, const Labels& l, double v);
  double value(const std::string& name, const Labels& l = {}) const;
  std::string render() const;

 private:
  struct Family {
    std::string type, help;
    std::vector<double> buckets;
    std::map<std::string, double> samples;                // rendered labels -> value
    std::map<std::string, std::vector<double>> hist;      // rendered labels -> bucket counts + sum + count
  };
  mutable std::mutex mu_;
  std::map<std::string, Family> fam_;
};

}  // namespace v4::router
