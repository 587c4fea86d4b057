// The attention inner loops against plain float loops on random data of awkward sizes, on the
// AVX-512 and the portable path: indexer scores over blocked keys, linear top-k, MQA with sink.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "core/cpu.h"
#include "kernels/attn.h"
#include "kernel_test_util.h"

using namespace v4;

namespace {

using test::rel_err;

class AttnKernels : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override { set_force_portable(GetParam()); }
  void TearDown() override { set_force_portable(false); }
};

TEST_P(AttnKernels, IndexerScoresMatchPlainLoops) {
  std::mt19937 rng(4);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (auto [H, d, n] : {std::tuple{16, 128, 37}, std::tuple{5, 40, 300}, std::tuple{64, 128, 16}, std::tuple{3, 128, 1}}) {
    KeyBlocks kb;
    kb.d = d;
    std::vector<float> keys(static_cast<size_t>(n) * d), q(static_cast<size_t>(H) * d), w(static_cast<size_t>(H));
    for (auto& v : keys) v = nd(rng);
    for (auto& v : q) v = nd(rng);
    for (auto& v : w) v = nd(rng);
    for (int j = 0; j < n; ++j) kb.append(keys.data() + static_cast<size_t>(j) * d);
    ASSERT_EQ(kb.at(n - 1, d - 1), keys.back());
    for (int64_t m : {static_cast<int64_t>(n), static_cast<int64_t>(std::max(1, n - 5))}) {
      std::vector<float> ref(static_cast<size_t>(m)), got(static_cast<size_t>((m + 15) / 16 * 16));
      for (int64_t j = 0; j < m; ++j) {
        double s = 0;
        for (int h = 0; h < H; ++h) {
          double dot = 0;
          for (int e = 0; e < d; ++e) dot += static_cast<double>(q[static_cast<size_t>(h * d + e)]) * keys[static_cast<size_t>(j * d + e)];
          s += w[static_cast<size_t>(h)] * std::max(dot, 0.0);
        }
        ref[static_cast<size_t>(j)] = static_cast<float>(s);
      }
      indexer_scores(q.data(), w.data(), H, kb, m, got.data());
      got.resize(static_cast<size_t>(m));
      EXPECT_LT(rel_err(got, ref), 1e-5) << H << "x" << d << " n=" << m;
    }
  }
}

TEST_P(AttnKernels, TopKIsTheKLargest) {
  std::mt19937 rng(8);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> s(1000);
  for (auto& v : s) v = nd(rng);
  std::vector<int32_t> idx;
  top_k_indices(s.data(), 1000, 37, idx);
  ASSERT_EQ(idx.size(), 37u);
  std::vector<float> sorted = s;
  std::sort(sorted.rbegin(), sorted.rend());
  std::vector<float> got;
  for (int32_t i : idx) got.push_back(s[static_cast<size_t>(i)]);
  std::sort(got.rbegin(), got.rend());
  EXPECT_EQ(got, std::vector<float>(sorted.begin(), sorted.begin() + 37));
  top_k_indices(s.data(), 10, 37, idx);  // fewer than k: all of them
  EXPECT_EQ(idx.size(), 10u);
}

TEST_P(AttnKernels, MqaAttendMatchesPlainSoftmax) {
  std::mt19937 rng(6);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (auto [H, d, nk] : {std::tuple{4, 128, 160}, std::tuple{5, 72, 3}, std::tuple{64, 512, 41}, std::tuple{1, 200, 1}}) {
    std::vector<float> kv(static_cast<size_t>(nk) * d), q(static_cast<size_t>(H) * d), sink(static_cast<size_t>(H));
    for (auto& v : kv) v = nd(rng);
    for (auto& v : q) v = nd(rng) * 0.3f;
    for (auto& v : sink) v = nd(rng);
    std::vector<const float*> keys;
    for (int i = nk - 1; i >= 0; --i) keys.push_back(kv.data() + static_cast<size_t>(i) * d);  // gathered, any order
    const float scale = 1.0f / std::sqrt(static_cast<float>(d));
    std::vector<float> ref(q.size()), got(q.size()), scratch;
    for (int h = 0; h < H; ++h) {
      std::vector<double> sc(static_cast<size_t>(nk));
      double mx = sink[static_cast<size_t>(h)];
      for (int i = 0; i < nk; ++i) {
        double dot = 0;
        for (int e = 0; e < d; ++e) dot += static_cast<double>(q[static_cast<size_t>(h * d + e)]) * keys[static_cast<size_t>(i)][e];
        sc[static_cast<size_t>(i)] = dot * scale;
        mx = std::max(mx, sc[static_cast<size_t>(i)]);
      }
      double den = std::exp(sink[static_cast<size_t>(h)] - mx);
      for (auto& v : sc) den += (v = std::exp(v - mx));
      for (int e = 0; e < d; ++e) {
        double o = 0;
        for (int i = 0; i < nk; ++i) o += sc[static_cast<size_t>(i)] / den * keys[static_cast<size_t>(i)][e];
        ref[static_cast<size_t>(h * d + e)] = static_cast<float>(o);
      }
    }
    mqa_attend(q.data(), H, d, keys.data(), nk, sink.data(), scale, got.data(), scratch);
    EXPECT_LT(rel_err(got, ref), 1e-5) << H << "x" << d << " nk=" << nk;
  }
}

INSTANTIATE_TEST_SUITE_P(Paths, AttnKernels, ::testing::Values(false, true),
                         [](const auto& i) { return i.param ? "portable" : "dispatch"; });

}  // namespace
