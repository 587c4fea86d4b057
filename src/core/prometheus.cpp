#include "core/prometheus.h"

#include <fmt/format.h>

namespace v4 {

std::string prometheus_labels(const std::vector<std::pair<std::string, std::string>>& l) {
  if (l.empty()) return "";
  // Appended by hand: this runs several times per request on the hot path.
  std::string s;
  size_t n = 2;
  for (auto& [k, v] : l) n += k.size() + v.size() + 4;
  s.reserve(n);
  s += '{';
  for (size_t i = 0; i < l.size(); ++i) {
    if (i) s += ',';
    s += l[i].first;
    s += "=\"";
    for (char c : l[i].second) {
      if (c == '"' || c == '\\') s += '\\';
      if (c == '\n') {
        s += "\\n";
        continue;
      }
      s += c;
    }
    s += '"';
  }
  s += '}';
  return s;
}

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
  // Cumulative as the format wants them: every bucket whose bound the value is under.
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
  if (auto h = it->second.hist.find(k); h != it->second.hist.end()) return h->second.back();
  auto s = it->second.samples.find(k);
  return s == it->second.samples.end() ? 0 : s->second;
}

std::string Metrics::render() const {
  std::lock_guard<std::mutex> g(mu_);
  std::string out;
  // Numbers in their shortest round-trip form (fmt's "{}"): 0.005, not 0.0050000000000000001.
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

}  // namespace v4
