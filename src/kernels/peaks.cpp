#include "kernels/peaks.h"

#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "core/cpu.h"
#include "core/thread_pool.h"
#include "kernels/linear_bf16.h"

namespace v4 {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// A peak is the best rate observed: on a shared machine the slower passes measure the neighbours.
double best(const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); }

constexpr int kChains = 24;  // independent accumulators: enough to cover the latency on 2 ports

__attribute__((target("avx512f,fma"))) float fma_chains(long iters) {
  __m512 a[kChains];
  for (int i = 0; i < kChains; ++i) a[i] = _mm512_set1_ps(static_cast<float>(i));
  const __m512 x = _mm512_set1_ps(0.999f), y = _mm512_set1_ps(0.001f);
  for (long it = 0; it < iters; ++it)
    for (int i = 0; i < kChains; ++i) a[i] = _mm512_fmadd_ps(a[i], x, y);
  float s = 0;
  for (int i = 0; i < kChains; ++i) s += _mm512_reduce_add_ps(a[i]);
  return s;
}

float fma_chains_portable(long iters) {
  float a[kChains][8];
  for (int i = 0; i < kChains; ++i)
    for (int j = 0; j < 8; ++j) a[i][j] = static_cast<float>(i + j);
  for (long it = 0; it < iters; ++it)
    for (int i = 0; i < kChains; ++i)
      for (int j = 0; j < 8; ++j) a[i][j] = a[i][j] * 0.999f + 0.001f;
  float s = 0;
  for (int i = 0; i < kChains; ++i) s += a[i][0];
  return s;
}

__attribute__((target("avx512f,avx512bf16"))) float dp_chains(long iters) {
  __m512 a[kChains];
  for (int i = 0; i < kChains; ++i) a[i] = _mm512_set1_ps(static_cast<float>(i));
  const __m512i one = _mm512_set1_epi16(0x3f80), half = _mm512_set1_epi16(0x3f00);
  const __m512bh x = reinterpret_cast<const __m512bh&>(one), y = reinterpret_cast<const __m512bh&>(half);
  for (long it = 0; it < iters; ++it)
    for (int i = 0; i < kChains; ++i) a[i] = _mm512_dpbf16_ps(a[i], x, y);
  float s = 0;
  for (int i = 0; i < kChains; ++i) s += _mm512_reduce_add_ps(a[i]);
  return s;
}

// Runs `body(iters)` on every pool thread at once; FLOP/s = threads·iters·flop_per_iter / time.
template <class F>
double peak(F body, double flop_per_iter) {
  const int T = ThreadPool::global().size();
  const long iters = 4'000'000;
  std::vector<double> r;
  std::atomic<float> sink{0};
  for (int rep = 0; rep < 7; ++rep) {
    auto t = std::chrono::steady_clock::now();
    parallel_for(static_cast<size_t>(T), 1, [&](size_t b, size_t e) {
      for (size_t i = b; i < e; ++i) sink = sink + body(iters);
    });
    r.push_back(static_cast<double>(T) * static_cast<double>(iters) * flop_per_iter / seconds_since(t));
  }
  return best(r);
}

// Sums 64-byte lines with AVX-512 loads (four independent accumulators): the rate a kernel that
// streams its weights with full-width loads can reach.
__attribute__((target("avx512f"))) uint64_t sum_lines_avx512(const uint64_t* p, size_t n) {
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    a0 = _mm512_add_epi64(a0, _mm512_loadu_si512(p + i));
    a1 = _mm512_add_epi64(a1, _mm512_loadu_si512(p + i + 8));
    a2 = _mm512_add_epi64(a2, _mm512_loadu_si512(p + i + 16));
    a3 = _mm512_add_epi64(a3, _mm512_loadu_si512(p + i + 24));
  }
  uint64_t s = static_cast<uint64_t>(_mm512_reduce_add_epi64(_mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3))));
  for (; i < n; ++i) s += p[i];
  return s;
}

}  // namespace

double measure_read_bandwidth(size_t bytes, int reps) {
  const size_t n = bytes / sizeof(uint64_t);
  std::unique_ptr<uint64_t[]> buf(new uint64_t[n]);
  parallel_for(n, 1 << 16, [&](size_t b, size_t e) {
    for (size_t i = b; i < e; ++i) buf[i] = i;
  });
  std::vector<double> r;
  for (int rep = 0; rep < reps; ++rep) {
    std::atomic<uint64_t> sink{0};
    auto t = std::chrono::steady_clock::now();
    parallel_for(n, 1 << 16, [&](size_t b, size_t e) {
      if (use_avx512()) {
        sink += sum_lines_avx512(buf.get() + b, e - b);
        return;
      }
      uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      size_t i = b;
      for (; i + 4 <= e; i += 4) {
        s0 += buf[i];
        s1 += buf[i + 1];
        s2 += buf[i + 2];
        s3 += buf[i + 3];
      }
      for (; i < e; ++i) s0 += buf[i];
      sink += s0 + s1 + s2 + s3;
    });
    r.push_back(static_cast<double>(n * sizeof(uint64_t)) / seconds_since(t));
    if (sink.load() == 42) r.back() += 0;  // keeps the reads alive
  }
  return best(r);
}

double measure_fp32_peak() {
  if (use_avx512()) return peak(fma_chains, kChains * 16 * 2.0);
  return peak(fma_chains_portable, kChains * 8 * 2.0);
}

double measure_bf16_peak() {
  if (!bf16_dot_available()) return 0;
  return peak(dp_chains, kChains * 32 * 2.0);
}

}  // namespace v4
