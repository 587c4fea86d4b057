// Shared by the kernel tests: random weights in every checkpoint format and the relative error
// against a float32 reference (never exact float equality).
#pragma once
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "core/float_formats.h"
#include "kernels/linear.h"

namespace v4::test {

// A weight with its own storage (movable: the vectors' buffers stay where the view points).
struct OwnedWeight {
  std::vector<uint8_t> data, scale;
  LinearWeight w;
};

// F32 / BF16: normal values. FP8: every finite e4m3 code uniformly (zeros and subnormals occur,
// NaN codes excluded). FP4: every nibble. Block scales 2^(e-127) for e uniform in
// [scale_lo, scale_hi], as UE8M0 bytes or F32.
inline OwnedWeight random_weight(WFormat f, int N, int K, std::mt19937& rng, ScaleFormat sf = ScaleFormat::E8M0,
                                 int scale_lo = 118, int scale_hi = 126) {
  std::normal_distribution<float> nd(0.f, 1.f);
  std::uniform_int_distribution<int> byte(0, 255), se(scale_lo, scale_hi);
  OwnedWeight o;
  o.w.format = f;
  o.w.rows = N;
  o.w.cols = K;
  const size_t n = static_cast<size_t>(N), k = static_cast<size_t>(K);
  switch (f) {
    case WFormat::F32: {
      o.data.resize(n * k * 4);
      float* p = reinterpret_cast<float*>(o.data.data());
      for (size_t i = 0; i < n * k; ++i) p[i] = nd(rng);
      break;
    }
    case WFormat::BF16: {
      o.data.resize(n * k * 2);
      uint16_t* p = reinterpret_cast<uint16_t*>(o.data.data());
      for (size_t i = 0; i < n * k; ++i) p[i] = f32_to_bf16(nd(rng));
      break;
    }
    case WFormat::FP8: {
      o.data.resize(n * k);
      for (auto& b : o.data) {
        do b = static_cast<uint8_t>(byte(rng));
        while ((b & 0x7f) == 0x7f);
      }
      const size_t ns = ((n + 127) / 128) * ((k + 127) / 128);
      o.w.scale_format = sf;
      if (sf == ScaleFormat::F32) {
        o.scale.resize(ns * 4);
        float* s = reinterpret_cast<float*>(o.scale.data());
        for (size_t i = 0; i < ns; ++i) s[i] = std::ldexp(1.0f, se(rng) - 127);
      } else {
        o.scale.resize(ns);
        for (auto& b : o.scale) b = static_cast<uint8_t>(se(rng));
      }
      break;
    }
    case WFormat::FP4: {
      o.data.resize(n * k / 2);
      for (auto& b : o.data) b = static_cast<uint8_t>(byte(rng));
      o.w.scale_format = sf;
      if (sf == ScaleFormat::F32) {
        o.scale.resize(n * (k / 32) * 4);
        float* s = reinterpret_cast<float*>(o.scale.data());
        for (size_t i = 0; i < n * (k / 32); ++i) s[i] = std::ldexp(1.0f, se(rng) - 127);
      } else {
        o.scale.resize(n * (k / 32));
        for (auto& b : o.scale) b = static_cast<uint8_t>(se(rng));
      }
      break;
    }
  }
  o.w.data = o.data.data();
  o.w.scale = o.scale.empty() ? nullptr : o.scale.data();
  return o;
}

// ||a - b|| / ||b|| over all elements.
inline double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    den += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(num / den);
}

}  // namespace v4::test
