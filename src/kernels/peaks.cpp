#include "kernels/peaks.h"

#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
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

// AVX2+FMA: 8-wide FMA chains. 12 accumulators cover Zen 3's 4-cycle latency on 2 FMA pipes
// (8 in flight) with room, and leave registers for the constants (16 ymm in all, so 24 would spill).
__attribute__((target("avx2,fma"))) float fma_chains_avx2(long iters) {
  constexpr int kN = 12;
  __m256 a[kN];
  for (int i = 0; i < kN; ++i) a[i] = _mm256_set1_ps(static_cast<float>(i));
  const __m256 x = _mm256_set1_ps(0.999f), y = _mm256_set1_ps(0.001f);
  for (long it = 0; it < 2 * iters; ++it)  // 2 x 12 chains per iteration: kChains FMAs like the others
    for (int i = 0; i < kN; ++i) a[i] = _mm256_fmadd_ps(a[i], x, y);
  __m256 s = a[0];
  for (int i = 1; i < kN; ++i) s = _mm256_add_ps(s, a[i]);
  float v[8];
  _mm256_storeu_ps(v, s);
  return v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
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

// The same with AVX2 loads (32 bytes; four accumulators over two lines per step).
__attribute__((target("avx2"))) uint64_t sum_lines_avx2(const uint64_t* p, size_t n) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    a0 = _mm256_add_epi64(a0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i)));
    a1 = _mm256_add_epi64(a1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 4)));
    a2 = _mm256_add_epi64(a2, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 8)));
    a3 = _mm256_add_epi64(a3, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 12)));
  }
  const __m256i t = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
  uint64_t v[4];
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(v), t);
  uint64_t s = v[0] + v[1] + v[2] + v[3];
  for (; i < n; ++i) s += p[i];
  return s;
}

}  // namespace

namespace {

// Sums the 64-byte lines of [p, p + bytes) (a tail shorter than a line is skipped).
uint64_t sum_bytes(const uint8_t* p, size_t bytes) {
  if (use_avx512()) {
    // Lines are read with unaligned loads; a weight span need not start on a line.
    static_assert(sizeof(uint64_t) == 8);
    return sum_lines_avx512(reinterpret_cast<const uint64_t*>(p), bytes / 64 * 8);
  }
  if (use_avx2()) return sum_lines_avx2(reinterpret_cast<const uint64_t*>(p), bytes / 64 * 8);
  uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  for (size_t i = 0; i + 32 <= bytes; i += 32) {
    uint64_t v[4];
    std::memcpy(v, p + i, 32);
    s0 += v[0];
    s1 += v[1];
    s2 += v[2];
    s3 += v[3];
  }
  return s0 + s1 + s2 + s3;
}

// A probe: the pieces one pass reads, handed out one at a time to the pool's threads.
struct Probe {
  std::string name;
  std::vector<ReadSpan> pieces;
  size_t bytes = 0;
  std::vector<double> rates;
};

Probe make_probe(std::string name, std::span<const ReadSpan> spans, size_t total, size_t piece) {
  Probe pr;
  pr.name = std::move(name);
  for (const ReadSpan& sp : spans) {
    const auto* p = static_cast<const uint8_t*>(sp.p);
    size_t left = std::min(sp.bytes, total - pr.bytes) / 64 * 64;
    for (size_t off = 0; off < left; off += piece) {
      const size_t n = std::min(piece, left - off);
      pr.pieces.push_back({p + off, n});
      pr.bytes += n;
    }
    if (pr.bytes >= total) break;
  }
  return pr;
}

double read_pass(const Probe& pr) {
  std::atomic<uint64_t> sink{0};
  auto t = std::chrono::steady_clock::now();
  parallel_each(pr.pieces.size(), [&](size_t i) {
    sink.fetch_add(sum_bytes(static_cast<const uint8_t*>(pr.pieces[i].p), pr.pieces[i].bytes), std::memory_order_relaxed);
  });
  const double r = static_cast<double>(pr.bytes) / seconds_since(t);
  return sink.load() == 42 ? r + 0 : r;  // keeps the reads alive
}

// A fresh anonymous buffer of `bytes`, first touched by the pool's threads. Transparent huge
// pages are "madvise" here, so it gets 4 KiB pages: the original probe. (Advised
// MADV_HUGEPAGE it read no faster than the mapped weights below, and its first touch cost
// about 7 s of compaction per run on this machine, whose memory the page cache fills.)
struct AnonBuffer {
  std::unique_ptr<uint64_t[]> p;
  explicit AnonBuffer(size_t bytes) : p(new uint64_t[bytes / sizeof(uint64_t)]) {
    const size_t n = bytes / sizeof(uint64_t);
    uint64_t* b0 = p.get();
    parallel_for(n, 1 << 16, [&](size_t b, size_t e) {
      for (size_t i = b; i < e; ++i) b0[i] = i;
    });
  }
};

}  // namespace

ReadRoofline measure_read_roofline(std::span<const ReadSpan> weights, size_t bytes, int reps) {
  bytes = bytes / 64 * 64;
  // Large pieces: 1/32 of a pass (what the original probe's parallel_for handed out); small:
  // the one-token kernels' 256 KB tasks.
  const size_t big = std::max<size_t>(64, bytes / 32 / 64 * 64), small = size_t(256) << 10;
  AnonBuffer a4(bytes);
  std::vector<Probe> probes;
  auto add = [&](const std::string& name, std::span<const ReadSpan> sp) {
    probes.push_back(make_probe(name, sp, bytes, big));
    probes.push_back(make_probe(name + "/256k", sp, bytes, small));
  };
  const ReadSpan s4{a4.p.get(), bytes};
  add("anon-4k", std::span<const ReadSpan>(&s4, 1));
  size_t wbytes = 0;
  for (const ReadSpan& sp : weights) wbytes += sp.bytes;
  if (wbytes >= bytes) add("weights", weights);
  for (int rep = 0; rep < reps; ++rep)
    for (Probe& pr : probes) pr.rates.push_back(read_pass(pr));
  ReadRoofline r;
  for (const Probe& pr : probes) {
    const double b = pr.rates.empty() ? 0 : best(pr.rates);
    r.probes.push_back({pr.name, b});
    if (pr.name == "anon-4k") r.anon_4k_bytes_s = b;
    if (b > r.bytes_s) {
      r.bytes_s = b;
      r.probe = pr.name;
    }
  }
  return r;
}

double measure_fp32_peak() {
  if (use_avx512()) return peak(fma_chains, kChains * 16 * 2.0);
  if (use_avx2()) return peak(fma_chains_avx2, kChains * 8 * 2.0);
  return peak(fma_chains_portable, kChains * 8 * 2.0);
}

double measure_bf16_peak() {
  if (!bf16_dot_available()) return 0;
  return peak(dp_chains, kChains * 32 * 2.0);
}

}  // namespace v4
