#include "kernels/ops.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "core/float_formats.h"

namespace v4 {

float inv_rms(const float* x, int n, float eps) {
  double ss = 0;  // double accumulation: the reference is float32 torch (pairwise); this is closer
  for (int i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
  return 1.0f / std::sqrt(static_cast<float>(ss / n) + eps);
}

void rmsnorm(const float* x, const float* w, int n, float eps, float* y) {
  const float r = inv_rms(x, n, eps);
  if (w) {
    for (int i = 0; i < n; ++i) y[i] = x[i] * r * w[i];
  } else {
    for (int i = 0; i < n; ++i) y[i] = x[i] * r;
  }
}

void rms_normalize(float* x, int n, float eps) { rmsnorm(x, nullptr, n, eps, x); }

void RopeTable::init(int d, float theta, bool yarn, float factor, int orig, float beta_fast, float beta_slow) {
  // float32 arithmetic throughout, as the reference's precompute_freqs_cis.
  rope_dim = d;
  freqs.resize(static_cast<size_t>(d / 2));
  for (int i = 0; i < d / 2; ++i)
    freqs[static_cast<size_t>(i)] = 1.0f / std::pow(theta, static_cast<float>(2 * i) / static_cast<float>(d));
  if (!yarn) return;
  auto corr = [&](float rot) {
    return d * std::log(orig / (rot * 2 * std::numbers::pi)) / (2 * std::log(static_cast<double>(theta)));
  };
  float low = static_cast<float>(std::max(std::floor(corr(beta_fast)), 0.0));
  float high = static_cast<float>(std::min(std::ceil(corr(beta_slow)), static_cast<double>(d - 1)));
  if (low == high) high += 0.001f;
  for (int i = 0; i < d / 2; ++i) {
    float ramp = std::clamp((static_cast<float>(i) - low) / (high - low), 0.0f, 1.0f);
    float smooth = 1.0f - ramp;
    float f = freqs[static_cast<size_t>(i)];
    freqs[static_cast<size_t>(i)] = f / factor * (1.0f - smooth) + f * smooth;
  }
}

void RopeTable::apply(float* x, int64_t pos, bool inverse) const {
  const float p = static_cast<float>(pos);
  for (int i = 0; i < rope_dim / 2; ++i) {
    float ang = p * freqs[static_cast<size_t>(i)];
    float c = std::cos(ang), s = std::sin(ang);
    if (inverse) s = -s;
    float a = x[2 * i], b = x[2 * i + 1];
    x[2 * i] = a * c - b * s;
    x[2 * i + 1] = a * s + b * c;
  }
}

void RopeTable::apply_heads(float* x, int count, size_t stride, int64_t pos, bool inverse) const {
  constexpr int kMaxPairs = 128;  // rope_dim 64 in V4; wider tables take the per-vector path
  const int np = rope_dim / 2;
  if (np > kMaxPairs) {
    for (int h = 0; h < count; ++h) apply(x + static_cast<size_t>(h) * stride, pos, inverse);
    return;
  }
  float cs[kMaxPairs], sn[kMaxPairs];
  const float p = static_cast<float>(pos);
  for (int i = 0; i < np; ++i) {
    const float ang = p * freqs[static_cast<size_t>(i)];
    cs[i] = std::cos(ang);
    sn[i] = inverse ? -std::sin(ang) : std::sin(ang);
  }
  for (int h = 0; h < count; ++h) {
    float* xh = x + static_cast<size_t>(h) * stride;
    for (int i = 0; i < np; ++i) {
      const float a = xh[2 * i], b = xh[2 * i + 1];
      xh[2 * i] = a * cs[i] - b * sn[i];
      xh[2 * i + 1] = a * sn[i] + b * cs[i];
    }
  }
}

void RopeTable::cos_sin(int64_t pos, int i, float* c, float* s) const {
  const float ang = static_cast<float>(pos) * freqs[static_cast<size_t>(i)];
  *c = std::cos(ang);
  *s = std::sin(ang);
}

void hadamard(float* x, int n) {
  for (int h = 1; h < n; h *= 2)
    for (int i = 0; i < n; i += 2 * h)
      for (int j = i; j < i + h; ++j) {
        float a = x[j], b = x[j + h];
        x[j] = a + b;
        x[j + h] = a - b;
      }
  const float s = 1.0f / std::sqrt(static_cast<float>(n));
  for (int i = 0; i < n; ++i) x[i] *= s;
}

void fakequant_fp8(float* x, int n, int block) {
  for (int b0 = 0; b0 < n; b0 += block) {
    int b1 = std::min(n, b0 + block);
    float amax = 1e-4f;
    for (int i = b0; i < b1; ++i) amax = std::max(amax, std::fabs(x[i]));
    float s = pow2_ceil(amax * (1.0f / 448.0f));
    for (int i = b0; i < b1; ++i) x[i] = round_e4m3(std::clamp(x[i] / s, -448.0f, 448.0f)) * s;
  }
}

void act_quant_fp8(const float* x, int n, int block, float* q, float* scales) {
  for (int b0 = 0, bi = 0; b0 < n; b0 += block, ++bi) {
    int b1 = std::min(n, b0 + block);
    float amax = 1e-4f;
    for (int i = b0; i < b1; ++i) amax = std::max(amax, std::fabs(x[i]));
    float s = pow2_ceil(amax * (1.0f / 448.0f));
    if (scales) scales[bi] = s;
    for (int i = b0; i < b1; ++i) q[i] = round_e4m3(std::clamp(x[i] / s, -448.0f, 448.0f));
  }
}

void fakequant_fp4(float* x, int n, int block) {
  for (int b0 = 0; b0 < n; b0 += block) {
    int b1 = std::min(n, b0 + block);
    float amax = 6.0f * std::ldexp(1.0f, -126);
    for (int i = b0; i < b1; ++i) amax = std::max(amax, std::fabs(x[i]));
    float s = pow2_ceil(amax * (1.0f / 6.0f));
    for (int i = b0; i < b1; ++i) x[i] = round_e2m1(std::clamp(x[i] / s, -6.0f, 6.0f)) * s;
  }
}

float sigmoidf(float x) { return 1.0f / (1.0f + std::exp(-x)); }
float softplus(float x) { return x > 20.0f ? x : std::log1p(std::exp(x)); }
float silu(float x) { return x / (1.0f + std::exp(-x)); }

void hc_split_sinkhorn(const float* m, const float* sc, const float* base, int hc, int iters, float eps, float* pre,
                       float* post, float* comb) {
  for (int i = 0; i < hc; ++i) {
    pre[i] = sigmoidf(m[i] * sc[0] + base[i]) + eps;
    post[i] = 2.0f * sigmoidf(m[hc + i] * sc[1] + base[hc + i]);
  }
  const int off = 2 * hc;
  for (int j = 0; j < hc; ++j) {
    float* row = comb + j * hc;
    float mx = -INFINITY;
    for (int k = 0; k < hc; ++k) {
      row[k] = m[off + j * hc + k] * sc[2] + base[off + j * hc + k];
      mx = std::max(mx, row[k]);
    }
    float sum = 0;
    for (int k = 0; k < hc; ++k) sum += (row[k] = std::exp(row[k] - mx));
    for (int k = 0; k < hc; ++k) row[k] = row[k] / sum + eps;
  }
  auto col_norm = [&] {
    for (int k = 0; k < hc; ++k) {
      float s = 0;
      for (int j = 0; j < hc; ++j) s += comb[j * hc + k];
      for (int j = 0; j < hc; ++j) comb[j * hc + k] /= (s + eps);
    }
  };
  auto row_norm = [&] {
    for (int j = 0; j < hc; ++j) {
      float s = 0;
      for (int k = 0; k < hc; ++k) s += comb[j * hc + k];
      for (int k = 0; k < hc; ++k) comb[j * hc + k] /= (s + eps);
    }
  };
  col_norm();
  for (int it = 1; it < iters; ++it) {
    row_norm();
    col_norm();
  }
}

}  // namespace v4
