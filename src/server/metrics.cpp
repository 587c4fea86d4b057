#include "server/metrics.h"

#include <cstdio>
#include <sstream>

#include "core/prometheus.h"

namespace v4 {

void Metrics::describe(const std::string& name, const std::string& type, const std::string& help) {
  std::lock_guard<std::mutex> lk(mu_);
  auto& f = fam_[name];
  f.type = type;
  f.help = help;
}

void Metrics::describe_histogram(const std::string& name, const std::string& help, std::vector<double> buckets) {
  std::lock_guard<std::mutex> lk(mu_);
  auto& f = fam_[name];
  f.type = "histogram";
  f.help = help;
  f.buckets = std::move(buckets);
}

void Metrics::inc(const std::string& name, const Labels& labels, double v) {
  std::lock_guard<std::mutex> lk(mu_);
  fam_[name].values[prometheus_labels(labels)] += v;
}

void Metrics::set(const std::string& name, const Labels& labels, double v) {
  std::lock_guard<std::mutex> lk(mu_);
  fam_[name].values[prometheus_labels(labels)] = v;
}

void Metrics::observe(const std::string& name, double v, const Labels& labels) {
  std::lock_guard<std::mutex> lk(mu_);
  auto& f = fam_[name];
  auto& h = f.hists[prometheus_labels(labels)];
  if (h.counts.size() != f.buckets.size()) h.counts.assign(f.buckets.size(), 0);
  for (size_t i = 0; i < f.buckets.size(); ++i)
    if (v <= f.buckets[i]) {
      h.counts[i] += 1;
      break;
    }
  h.sum += v;
  h.count += 1;
}

double Metrics::value(const std::string& name, const Labels& labels) const {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = fam_.find(name);
  if (it == fam_.end()) return 0;
  if (it->second.type == "histogram") {
    auto h = it->second.hists.find(prometheus_labels(labels));
    return h == it->second.hists.end() ? 0 : static_cast<double>(h->second.count);
  }
  auto v = it->second.values.find(prometheus_labels(labels));
  return v == it->second.values.end() ? 0 : v->second;
}

static std::string num(double v) {
  char b[64];
  std::snprintf(b, sizeof b, "%.17g", v);
  return b;
}

std::string Metrics::render() const {
  std::lock_guard<std::mutex> lk(mu_);
  std::ostringstream o;
  for (auto& [name, f] : fam_) {
    o << "# HELP " << name << " " << f.help << "\n# TYPE " << name << " " << (f.type.empty() ? "untyped" : f.type) << "\n";
    if (f.type == "histogram") {
      for (auto& [lk2, h] : f.hists) {
        std::string inner = lk2.empty() ? "" : lk2.substr(1, lk2.size() - 2) + ",";
        double cum = 0;
        for (size_t i = 0; i < f.buckets.size(); ++i) {
          cum += h.counts.size() > i ? h.counts[i] : 0;
          o << name << "_bucket{" << inner << "le=\"" << num(f.buckets[i]) << "\"} " << num(cum) << "\n";
        }
        o << name << "_bucket{" << inner << "le=\"+Inf\"} " << h.count << "\n";
        o << name << "_sum" << lk2 << " " << num(h.sum) << "\n";
        o << name << "_count" << lk2 << " " << h.count << "\n";
      }
      continue;
    }
    for (auto& [lk2, v] : f.values) o << name << lk2 << " " << num(v) << "\n";
  }
  return o.str();
}

}  // namespace v4
