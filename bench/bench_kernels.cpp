// Linear-kernel throughput per weight format (batch 1 = decode, batch 64 = prefill), reported as
// weight bytes/s (decode is bandwidth-bound) and GFLOP/s. Compare bytes/s with the machine's
// read bandwidth (`v4host bench-engine` measures it) for the roofline ratio.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <random>
#include <vector>

#include "core/cpu.h"
#include "core/float_formats.h"
#include "kernels/linear.h"
#include "kernels/linear_bf16.h"

using namespace v4;

namespace {

struct Weight {
  std::vector<uint8_t> data, scale;
  LinearWeight w;
};

Weight make(WFormat f, int N, int K) {
  Weight o;
  std::mt19937 rng(1);
  o.w.format = f;
  o.w.rows = N;
  o.w.cols = K;
  const size_t n = static_cast<size_t>(N), k = static_cast<size_t>(K);
  switch (f) {
    case WFormat::BF16: o.data.resize(n * k * 2); break;
    case WFormat::FP8: o.data.resize(n * k); o.scale.assign(((n + 127) / 128) * ((k + 127) / 128), 120); break;
    case WFormat::FP4: o.data.resize(n * k / 2); o.scale.assign(n * k / 32, 120); break;
    case WFormat::F32: o.data.resize(n * k * 4); break;
  }
  for (auto& b : o.data) b = static_cast<uint8_t>(rng() & 0x77);  // finite codes in every format
  if (f == WFormat::F32 || f == WFormat::BF16) {
    // small finite floats
    if (f == WFormat::F32) {
      float* p = reinterpret_cast<float*>(o.data.data());
      for (size_t i = 0; i < n * k; ++i) p[i] = 0.01f * static_cast<float>(i % 97);
    } else {
      uint16_t* p = reinterpret_cast<uint16_t*>(o.data.data());
      for (size_t i = 0; i < n * k; ++i) p[i] = f32_to_bf16(0.01f * static_cast<float>(i % 97));
    }
  }
  o.w.data = o.data.data();
  o.w.scale_format = o.scale.empty() ? ScaleFormat::None : ScaleFormat::E8M0;
  o.w.scale = o.scale.empty() ? nullptr : o.scale.data();
  return o;
}

// Second argument: 1 forces the portable kernels, for A/B against the dispatched ones
// (AVX-512 or AVX2); the label says which ran.
struct ForcePortable {
  explicit ForcePortable(const benchmark::State& st) { set_force_portable(st.range(1) == 1); }
  ~ForcePortable() { set_force_portable(false); }
};

void BM_Linear(benchmark::State& st, WFormat f, int N, int K) {
  const int M = static_cast<int>(st.range(0));
  Weight w = make(f, N, K);
  std::vector<float> x(static_cast<size_t>(M) * K, 0.5f), y(static_cast<size_t>(M) * N);
  const ForcePortable fp(st);
  for (auto _ : st) {
    linear(w.w, x.data(), M, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  st.counters["weight_bytes/s"] = benchmark::Counter(static_cast<double>(w.w.bytes()) * st.iterations(), benchmark::Counter::kIsRate);
  st.counters["GFLOP/s"] = benchmark::Counter(2.0 * M * N * K * st.iterations() / 1e9, benchmark::Counter::kIsRate);
  st.SetLabel(cpu_summary());
}

// The FP32 kernels over a pool of 512 MB of weights (past the L3): the weight stream of a decode
// step, where BM_Linear at decode sizes mostly reads the L3.
void BM_LinearStream(benchmark::State& st, WFormat f, int N, int K) {
  const int M = static_cast<int>(st.range(0));
  Weight proto = make(f, N, K);
  const int copies = std::max<int>(1, static_cast<int>((size_t(512) << 20) / proto.w.bytes()));
  std::vector<Weight> pool;
  for (int i = 0; i < copies; ++i) {
    pool.push_back(proto);
    pool.back().w.data = pool.back().data.data();
    pool.back().w.scale = pool.back().scale.empty() ? nullptr : pool.back().scale.data();
  }
  std::vector<float> x(static_cast<size_t>(M) * K), y(static_cast<size_t>(M) * N);
  for (size_t i = 0; i < x.size(); ++i) x[i] = 0.01f * static_cast<float>(static_cast<int>(i % 193) - 96);
  const ForcePortable fp(st);
  for (auto _ : st) {
    for (const Weight& w : pool) linear(w.w, x.data(), M, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  st.counters["weight_bytes/s"] =
      benchmark::Counter(static_cast<double>(proto.w.bytes()) * copies * st.iterations(), benchmark::Counter::kIsRate);
  st.counters["GFLOP/s"] = benchmark::Counter(2.0 * M * N * K * copies * st.iterations() / 1e9, benchmark::Counter::kIsRate);
  st.SetLabel(cpu_summary());
}

// The official-numerics path on the BF16 dot-product units: FP8 activation quantisation and
// packing included, as linear_act runs it.
void BM_LinearBf16(benchmark::State& st, WFormat f, int N, int K) {
  const int M = static_cast<int>(st.range(0));
  Weight w = make(f, N, K);
  if (!bf16_dot_available() || !bf16_weight_ok(w.w)) {
    st.SkipWithError("no AVX-512 BF16");
    return;
  }
  std::vector<float> x(static_cast<size_t>(M) * K), y(static_cast<size_t>(M) * N);
  for (size_t i = 0; i < x.size(); ++i) x[i] = 0.01f * static_cast<float>(static_cast<int>(i % 193) - 96);
  std::vector<uint16_t> xp(static_cast<size_t>(M) * bf16_padded_k(w.w));
  // Second argument: the smallest call on the AMX tiles (1 = every call, 999 = none).
  const int prev = amx_min_tokens();
  if (st.range(1) > 0) set_amx_min_tokens(static_cast<int>(st.range(1)));
  for (auto _ : st) {
    bf16_quant_pack_act(w.w, x.data(), M, K, xp.data());
    linear_bf16(w.w, xp.data(), M, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  st.counters["weight_bytes/s"] = benchmark::Counter(static_cast<double>(w.w.bytes()) * st.iterations(), benchmark::Counter::kIsRate);
  st.counters["GFLOP/s"] = benchmark::Counter(2.0 * M * N * K * st.iterations() / 1e9, benchmark::Counter::kIsRate);
  set_amx_min_tokens(prev);
}

// The same over a pool of 1 GB of weights (past any cache): what a decode step sees.
void BM_LinearBf16Stream(benchmark::State& st, WFormat f, int N, int K) {
  const int M = static_cast<int>(st.range(0));
  Weight proto = make(f, N, K);
  if (!bf16_dot_available() || !bf16_weight_ok(proto.w)) {
    st.SkipWithError("no AVX-512 BF16");
    return;
  }
  const int copies = static_cast<int>((size_t(1) << 30) / proto.w.bytes());
  std::vector<Weight> pool;
  for (int i = 0; i < copies; ++i) {
    pool.push_back(proto);
    pool.back().w.data = pool.back().data.data();
    pool.back().w.scale = pool.back().scale.data();
  }
  std::vector<float> x(static_cast<size_t>(M) * K), y(static_cast<size_t>(M) * N);
  for (size_t i = 0; i < x.size(); ++i) x[i] = 0.01f * static_cast<float>(static_cast<int>(i % 193) - 96);
  std::vector<uint16_t> xp(static_cast<size_t>(M) * bf16_padded_k(proto.w));
  const int prev = amx_min_tokens();
  if (st.range(1) > 0) set_amx_min_tokens(static_cast<int>(st.range(1)));
  for (auto _ : st) {
    for (const Weight& w : pool) {
      bf16_quant_pack_act(w.w, x.data(), M, K, xp.data());
      linear_bf16(w.w, xp.data(), M, y.data());
    }
    benchmark::DoNotOptimize(y.data());
  }
  st.counters["weight_bytes/s"] =
      benchmark::Counter(static_cast<double>(proto.w.bytes()) * copies * st.iterations(), benchmark::Counter::kIsRate);
  set_amx_min_tokens(prev);
}

}  // namespace

BENCHMARK_CAPTURE(BM_LinearBf16Stream, fp8_wo_b, WFormat::FP8, 4096, 8192)->ArgsProduct({{1, 2, 6, 8}, {1, 999}})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_LinearBf16Stream, fp4_expert_w1, WFormat::FP4, 2048, 4096)->ArgsProduct({{1, 2, 6, 8}, {1, 999}})->Unit(benchmark::kMillisecond)->UseRealTime();

// {tokens, smallest AMX call}: the tile path against the vdpbf16ps path at decode sizes.
#define V4_BF16_ARGS ->ArgsProduct({{1, 2, 6, 8}, {1, 999}})->Args({64, 0})->Args({256, 0})->Unit(benchmark::kMillisecond)->UseRealTime()
BENCHMARK_CAPTURE(BM_LinearBf16, fp8_wq_b, WFormat::FP8, 32768, 1024) V4_BF16_ARGS;
BENCHMARK_CAPTURE(BM_LinearBf16, fp8_wo_b, WFormat::FP8, 4096, 8192) V4_BF16_ARGS;
BENCHMARK_CAPTURE(BM_LinearBf16, fp4_expert_w1, WFormat::FP4, 2048, 4096) V4_BF16_ARGS;

// V4-Flash shapes: wq_b (FP8 32768x1024), wo_b (FP8 4096x8192), an FP4 expert w1 (2048x4096),
// the BF16 LM head slice (16384x4096).
BENCHMARK_CAPTURE(BM_Linear, fp8_wq_b, WFormat::FP8, 32768, 1024)->ArgsProduct({{1, 8, 64}, {0}})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Linear, fp8_wo_b, WFormat::FP8, 4096, 8192)->ArgsProduct({{1, 8, 64}, {0}})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Linear, fp4_expert_w1, WFormat::FP4, 2048, 4096)->ArgsProduct({{1, 8, 64}, {0}})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Linear, bf16_head_slice, WFormat::BF16, 16384, 4096)->ArgsProduct({{1, 8, 64}, {0}})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Linear, f32_hc_fn, WFormat::F32, 24, 16384)->ArgsProduct({{1, 8, 64}, {0}})->Unit(benchmark::kMillisecond)->UseRealTime();

// {tokens, 1 = portable}: the dispatched FP32 kernels (AVX2 on AMD Zen 2/3) against the portable
// ones at 4096 x 4096 (decode in L3, prefill); the stream variant reads the weights from DRAM.
#define V4_AB_ARGS ->ArgsProduct({{1, 16, 64}, {0, 1}})->Unit(benchmark::kMillisecond)->UseRealTime()
BENCHMARK_CAPTURE(BM_Linear, fp8_4096, WFormat::FP8, 4096, 4096) V4_AB_ARGS;
BENCHMARK_CAPTURE(BM_Linear, fp4_4096, WFormat::FP4, 4096, 4096) V4_AB_ARGS;
BENCHMARK_CAPTURE(BM_Linear, bf16_4096, WFormat::BF16, 4096, 4096) V4_AB_ARGS;
BENCHMARK_CAPTURE(BM_LinearStream, fp8_4096, WFormat::FP8, 4096, 4096)->ArgsProduct({{1, 2}, {0, 1}})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_LinearStream, fp4_4096, WFormat::FP4, 4096, 4096)->ArgsProduct({{1, 2}, {0, 1}})->Unit(benchmark::kMillisecond)->UseRealTime();
