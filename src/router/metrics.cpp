#include "router/metrics.h"

#include <fmt/format.h>

#include "core/prometheus.h"

namespace v4::router {

void Metrics::describe(const std::string& name, const std::string& type, const std::string& help) {
  std::lock_guard<std::mutex> g(mu_);
  auto& f = fam_[name];
  f.type = type;
  f.help = help;
}

void Metrics::describe_histogram(const std::string& name, const std::string& help, std::vector<double> buckets) {
  std::lock_guard<std::mutex> g(mu_);
  auto& f = fam_[name];
  f.type = "histogram";
  f.help = help;
  f.buckets = std::move(buckets);
}

void Metrics::inc(const std::string& name, const Labels& l, double v) {
  std::string k = prometheus_labels(l);
  std::lock_guard<std::mutex> g(mu_);
  fam_[name].samples[k] += v;
}

void Metrics::set(const std::string& name, const Labels& l, double v) {
  std::string k = prometheus_labels(l);
  std::lock_guard<std::mutex> g(mu_);
  fam_[name].samples[k] = v;
}

void Metrics::observe(const std::string& name, const Labels& l, double v) {
  std::string k = prometheus_labels(l);
  std::lock_guard<std::mutex> g(mu_);
  auto& f = fam_[name];
  auto& h = f.hist[k];
  if (h.empty()) h.assign(f.buckets.size() + 2, 0);
  for (size_t i = 0; i < f.buckets.size(); ++i)
    if (v <= f.buckets[i]) h[i] += 1;
  h[f.buckets.size()] += v;
  h[f.buckets.size() + 1] += 1;
}

double Metrics::value(const std::string& name, const Labels& l) const {
  std::string k = prometheus_labels(l);
  std::lock_guard<std::mutex> g(mu_);
  auto it = fam_.find(name);
  if (it == fam_.end()) return 0;
  auto s = it->second.samples.find(k);
  return s == it->second.samples.end() ? 0 : s->second;
}

std::string Metrics::render() const {
  std::lock_guard<std::mutex> g(mu_);
  std::string out;
  for (auto& [name, f] : fam_) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, f.help, name, f.type.empty() ? "untyped" : f.type);
    for (auto& [k, v] : f.samples) out += fmt::format("{}{} {}\n", name, k, v);
    for (auto& [k, h] : f.hist) {
      std::string inner = k.empty() ? "" : k.substr(1, k.size() - 2) + ",";
      for (size_t i = 0; i < f.buckets.size(); ++i) out += fmt::format("{}_bucket{{{}le=\"{}\"}} {}\n", name, inner, f.buckets[i], h[i]);
      out += fmt::format("{}_bucket{{{}le=\"+Inf\"}} {}\n", name, inner, h[f.buckets.size() + 1]);
      out += fmt::format("{}_sum{} {}\n{}_count{} {}\n", name, k, h[f.buckets.size()], name, k, h[f.buckets.size() + 1]);
    }
  }
  return out;
}

}  // namespace v4::router
