#include "engine/sampler.h"

#include <algorithm>
#include <cmath>

namespace v4 {

int32_t argmax(const float* x, int n) {
  int32_t best = 0;
  for (int i = 1; i < n; ++i)
    if (x[i] > x[best]) best = i;
  return best;
}

int32_t Sampler::sample(const float* logits, int vocab, const std::vector<uint8_t>* mask) {
  auto allowed = [&](int i) { return !mask || (*mask)[static_cast<size_t>(i)]; };
  if (p_.temperature <= 0.0f) {
    int32_t best = -1;
    for (int i = 0; i < vocab; ++i)
      if (allowed(i) && (best < 0 || logits[i] > logits[best])) best = i;
    return best < 0 ? 0 : best;
  }
  cand_.clear();
  float mx = -INFINITY;
  for (int i = 0; i < vocab; ++i)
    if (allowed(i)) mx = std::max(mx, logits[i]);
  if (!std::isfinite(mx)) return 0;
  for (int i = 0; i < vocab; ++i)
    if (allowed(i)) cand_.push_back({(logits[i] - mx) / p_.temperature, i});
  std::sort(cand_.begin(), cand_.end(), [](auto& a, auto& b) { return a.first > b.first; });
  if (p_.top_k > 0 && static_cast<size_t>(p_.top_k) < cand_.size()) cand_.resize(static_cast<size_t>(p_.top_k));
  double sum = 0;
  for (auto& c : cand_) sum += std::exp(static_cast<double>(c.first));
  // min-p: drop tokens whose probability is below min_p times the top probability.
  if (p_.min_p > 0) {
    const double thresh = p_.min_p;  // relative to p_max = exp(0)/sum
    size_t keep = 0;
    while (keep < cand_.size() && std::exp(static_cast<double>(cand_[keep].first)) >= thresh) ++keep;
    cand_.resize(std::max<size_t>(1, keep));
  }
  if (p_.top_p < 1.0f) {
    double acc = 0;
    size_t keep = 0;
    while (keep < cand_.size()) {
      acc += std::exp(static_cast<double>(cand_[keep].first)) / sum;
      ++keep;
      if (acc >= p_.top_p) break;
    }
    cand_.resize(std::max<size_t>(1, keep));
  }
  double total = 0;
  for (auto& c : cand_) total += std::exp(static_cast<double>(c.first));
  std::uniform_real_distribution<double> u(0.0, total);
  double r = u(rng_), acc = 0;
  for (auto& c : cand_) {
    acc += std::exp(static_cast<double>(c.first));
    if (r <= acc) return c.second;
  }
  return cand_.back().second;
}

}  // namespace v4
