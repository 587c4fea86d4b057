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
  float mx = -INFINITY;
  for (int i = 0; i < vocab; ++i)
    if (allowed(i)) mx = std::max(mx, logits[i]);
  if (!std::isfinite(mx)) return 0;
  // Unnormalised probabilities relative to the top token (its weight is 1). min-p keeps tokens
  // with p >= min_p * p_max, i.e. weight >= min_p; dropping them here keeps the rest O(kept).
  cand_.clear();
  const float inv_t = 1.0f / p_.temperature;
  for (int i = 0; i < vocab; ++i) {
    if (!allowed(i)) continue;
    const float w = std::exp((logits[i] - mx) * inv_t);
    if (w >= p_.min_p && w > 0.0f) cand_.push_back({w, i});
  }
  if (cand_.empty()) return argmax(logits, vocab);
  auto heavier = [](const std::pair<float, int32_t>& a, const std::pair<float, int32_t>& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  if (p_.top_k > 0 && static_cast<size_t>(p_.top_k) < cand_.size()) {
    std::nth_element(cand_.begin(), cand_.begin() + p_.top_k, cand_.end(), heavier);
    cand_.resize(static_cast<size_t>(p_.top_k));
  }
  if (p_.top_p < 1.0f) {
    // The nucleus (fewest heaviest tokens whose mass reaches top_p) by quickselect on mass:
    // expected O(n), no sort of the 129K vocabulary.
    double total = 0;
    for (auto& c : cand_) total += c.first;
    double target = p_.top_p * total;
    size_t lo = 0, hi = cand_.size();
    while (hi - lo > 1) {
      const size_t mid = lo + (hi - lo) / 2;
      std::nth_element(cand_.begin() + static_cast<long>(lo), cand_.begin() + static_cast<long>(mid),
                       cand_.begin() + static_cast<long>(hi), heavier);
      double mass = 0;
      for (size_t i = lo; i < mid; ++i) mass += cand_[i].first;
      if (mass >= target) {
        hi = mid;  // the nucleus ends inside [lo, mid)
      } else {
        target -= mass;  // all of [lo, mid) is in it
        lo = mid;
      }
    }
    cand_.resize(lo + 1);
  }
  double total = 0;
  for (auto& c : cand_) total += c.first;
  std::uniform_real_distribution<double> u(0.0, total);
  const double r = u(rng_);
  double acc = 0;
  for (auto& c : cand_) {
    acc += c.first;
    if (r < acc) return c.second;
  }
  return cand_.back().second;
}

}  // namespace v4
