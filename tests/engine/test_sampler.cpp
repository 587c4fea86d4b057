// Sampling: greedy, temperature, top-k, top-p, min-p and masks on random logits; frequencies
// follow the (filtered) softmax; a seed reproduces its draws.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <set>

#include "engine/sampler.h"

using namespace v4;

namespace {

std::vector<float> random_logits(int n, unsigned seed, float scale = 2.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, scale);
  std::vector<float> l(static_cast<size_t>(n));
  for (auto& x : l) x = nd(rng);
  return l;
}

std::vector<double> softmax(const std::vector<float>& l, float t) {
  float mx = *std::max_element(l.begin(), l.end());
  std::vector<double> p(l.size());
  double s = 0;
  for (size_t i = 0; i < l.size(); ++i) s += (p[i] = std::exp((l[i] - mx) / t));
  for (auto& x : p) x /= s;
  return p;
}

TEST(Sampler, GreedyAndTopK1AreArgmax) {
  auto l = random_logits(1000, 1);
  const int32_t best = argmax(l.data(), 1000);
  Sampler g({0.0f, 1.0f, 0.0f, 0, 3});
  EXPECT_EQ(g.sample(l.data(), 1000), best);
  Sampler k1({1.0f, 1.0f, 0.0f, 1, 3});
  for (int i = 0; i < 20; ++i) EXPECT_EQ(k1.sample(l.data(), 1000), best);
}

TEST(Sampler, FrequenciesFollowTheSoftmax) {
  auto l = random_logits(50, 2, 1.0f);
  const float t = 0.7f;
  auto p = softmax(l, t);
  Sampler s({t, 1.0f, 0.0f, 0, 11});
  const int N = 60000;
  std::vector<int> count(50, 0);
  for (int i = 0; i < N; ++i) ++count[static_cast<size_t>(s.sample(l.data(), 50))];
  for (int i = 0; i < 50; ++i) {
    const double expect = p[static_cast<size_t>(i)] * N, sd = std::sqrt(expect * (1 - p[static_cast<size_t>(i)])) + 1;
    EXPECT_NEAR(count[static_cast<size_t>(i)], expect, 5 * sd) << "token " << i;
  }
}

TEST(Sampler, TopPKeepsTheSmallestNucleus) {
  auto l = random_logits(2000, 3, 3.0f);
  auto p = softmax(l, 1.0f);
  std::vector<int> order(2000);
  for (int i = 0; i < 2000; ++i) order[static_cast<size_t>(i)] = i;
  std::sort(order.begin(), order.end(), [&](int a, int b) { return p[static_cast<size_t>(a)] > p[static_cast<size_t>(b)]; });
  double acc = 0;
  std::set<int> nucleus;
  for (int i : order) {
    nucleus.insert(i);
    acc += p[static_cast<size_t>(i)];
    if (acc >= 0.8) break;
  }
  Sampler s({1.0f, 0.8f, 0.0f, 0, 5});
  for (int i = 0; i < 3000; ++i) ASSERT_TRUE(nucleus.count(s.sample(l.data(), 2000)));
}

TEST(Sampler, MinPAndMaskFilter) {
  auto l = random_logits(500, 4, 2.0f);
  const float mx = *std::max_element(l.begin(), l.end());
  Sampler s({1.0f, 1.0f, 0.2f, 0, 6});
  for (int i = 0; i < 2000; ++i) {
    const int32_t t = s.sample(l.data(), 500);
    ASSERT_GE(std::exp(l[static_cast<size_t>(t)] - mx), 0.2f - 1e-6f);
  }
  std::vector<uint8_t> mask(500, 0);
  mask[7] = mask[300] = 1;
  Sampler m({1.0f, 1.0f, 0.0f, 0, 7});
  for (int i = 0; i < 200; ++i) {
    const int32_t t = m.sample(l.data(), 500, &mask);
    ASSERT_TRUE(t == 7 || t == 300);
  }
}

TEST(Sampler, SeedReproduces) {
  auto l = random_logits(129280, 8, 2.0f);
  Sampler a({0.9f, 0.95f, 0.0f, 0, 42}), b({0.9f, 0.95f, 0.0f, 0, 42});
  for (int i = 0; i < 50; ++i) EXPECT_EQ(a.sample(l.data(), 129280), b.sample(l.data(), 129280));
}

}  // namespace
