// Helpers for the golden-data tests: locate ../shared/golden, read arrays, compare logits.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/npy.h"
#include "core/shared_paths.h"

namespace v4::test {

inline std::string golden_root() { return v4::golden_dir(V4_SHARED_DEFAULT); }

#define V4_REQUIRE_GOLDEN(cfg)                                                                              \
  std::string G = ::v4::test::golden_root();                                                                \
  if (G.empty() || !std::filesystem::exists(G + "/" + cfg))                                                 \
    GTEST_SKIP() << "golden data not found: set V4HOST_GOLDEN or place the project's shared/golden next to " \
                    "the source tree (../shared/golden)";                                                   \
  G.append("/").append(cfg);

inline bool exists(const std::string& p) { return std::filesystem::exists(p); }

inline std::vector<float> f32(const std::string& p) { return read_npy(p).as_f32(); }
inline std::vector<int64_t> i64(const std::string& p) { return read_npy(p).as_i64(); }

inline nlohmann::json manifest(const std::string& dir) {
  std::ifstream f(dir + "/MANIFEST.json");
  return nlohmann::json::parse(f);
}

struct Cmp {
  double maxabs = 0, meanabs = 0, pearson = 0, argmax_agree = 0;
  int rows = 0;
};

// Compares rows of `got` ([*, V], row r at got_rows[r]) with `ref` ([rows, V]).
inline Cmp compare_rows(const std::vector<float>& got, const std::vector<int64_t>& got_rows, const std::vector<float>& ref, int V) {
  Cmp c;
  c.rows = static_cast<int>(ref.size() / V);
  double sa = 0, sb = 0, saa = 0, sbb = 0, sab = 0, n = 0, sum = 0;
  int agree = 0;
  for (int r = 0; r < c.rows; ++r) {
    const float* a = got.data() + static_cast<size_t>(got_rows[static_cast<size_t>(r)]) * V;
    const float* b = ref.data() + static_cast<size_t>(r) * V;
    int ia = 0, ib = 0;
    for (int v = 0; v < V; ++v) {
      double d = std::fabs(static_cast<double>(a[v]) - b[v]);
      c.maxabs = std::max(c.maxabs, d);
      sum += d;
      sa += a[v]; sb += b[v]; saa += a[v] * static_cast<double>(a[v]); sbb += b[v] * static_cast<double>(b[v]);
      sab += a[v] * static_cast<double>(b[v]); n += 1;
      if (a[v] > a[ia]) ia = v;
      if (b[v] > b[ib]) ib = v;
    }
    agree += ia == ib;
  }
  c.meanabs = sum / n;
  c.argmax_agree = static_cast<double>(agree) / c.rows;
  double cov = sab / n - (sa / n) * (sb / n), va = saa / n - (sa / n) * (sa / n), vb = sbb / n - (sb / n) * (sb / n);
  c.pearson = cov / std::sqrt(va * vb);
  return c;
}

inline std::vector<int64_t> iota_rows(int n, int64_t start = 0) {
  std::vector<int64_t> r(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) r[static_cast<size_t>(i)] = start + i;
  return r;
}

}  // namespace v4::test
