#include "engine/bench.h"

#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <random>

#include "core/cpu.h"
#include "core/thread_pool.h"

namespace v4 {

namespace {
double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}
}  // namespace

double decode_weight_bytes(const ModelWeights& w) {
  const ModelConfig& c = w.cfg;
  double b = static_cast<double>(w.embed.bytes()) / c.vocab_size + static_cast<double>(w.lm_head.bytes()) +
             static_cast<double>(w.head.hc_fn.bytes());
  for (const BlockWeights& L : w.layers) {
    const AttentionWeights& a = L.attn;
    b += static_cast<double>(a.wq_a.bytes() + a.wq_b.bytes() + a.wkv.bytes() + a.wo_a.bytes() + a.wo_b.bytes());
    if (a.comp) b += static_cast<double>(a.comp->wkv.bytes() + a.comp->wgate.bytes());
    if (a.indexer)
      b += static_cast<double>(a.indexer->wq_b.bytes() + a.indexer->weights_proj.bytes() + a.indexer->comp.wkv.bytes() +
                               a.indexer->comp.wgate.bytes());
    const FfnWeights& f = L.ffn;
    const ExpertWeights& e0 = f.experts.front();
    b += static_cast<double>(f.gate.bytes() + f.shared.w1.bytes() + f.shared.w2.bytes() + f.shared.w3.bytes());
    b += static_cast<double>(c.n_activated) * static_cast<double>(e0.w1.bytes() + e0.w2.bytes() + e0.w3.bytes());
    b += static_cast<double>(L.hc_attn.fn.bytes() + L.hc_ffn.fn.bytes());
  }
  return b;
}

double measure_read_bandwidth(size_t bytes) {
  const size_t n = bytes / sizeof(uint64_t);
  std::unique_ptr<uint64_t[]> buf(new uint64_t[n]);
  parallel_for(n, 1 << 16, [&](size_t b, size_t e) {
    for (size_t i = b; i < e; ++i) buf[i] = i;
  });
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    std::atomic<uint64_t> sink{0};
    auto t = std::chrono::steady_clock::now();
    parallel_for(n, 1 << 16, [&](size_t b, size_t e) {
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
    best = std::max(best, static_cast<double>(n * sizeof(uint64_t)) / seconds_since(t));
    if (sink.load() == 42) best += 0;  // keeps the reads alive
  }
  return best;
}

EngineBenchResult bench_engine(Engine& eng, int P, int D, uint64_t seed) {
  EngineBenchResult r;
  r.prompt_tokens = P;
  r.decode_tokens = D;
  r.threads = ThreadPool::global().size();
  r.kernels = cpu_summary();
  const int V = eng.config().vocab_size;
  std::mt19937_64 rng(seed);
  std::vector<int32_t> prompt(static_cast<size_t>(P));
  for (auto& t : prompt) t = static_cast<int32_t>(rng() % static_cast<uint64_t>(V));
  auto st = eng.new_sequence();
  std::vector<float> logits(static_cast<size_t>(V));
  Segment s;
  s.state = st.get();
  s.tokens = prompt.data();
  s.n = P;
  s.logits = logits.data();
  auto t0 = std::chrono::steady_clock::now();
  eng.forward(std::span<Segment>(&s, 1));
  r.prefill_s = seconds_since(t0);
  r.prefill_tok_s = P / r.prefill_s;
  int32_t tok = 0;
  auto t1 = std::chrono::steady_clock::now();
  for (int i = 0; i < D; ++i) {
    tok = static_cast<int32_t>(rng() % static_cast<uint64_t>(V));
    s.tokens = &tok;
    s.n = 1;
    eng.forward(std::span<Segment>(&s, 1));
  }
  r.decode_s = seconds_since(t1);
  r.decode_tok_s = D / r.decode_s;
  r.bytes_per_token = decode_weight_bytes(eng.weights());
  r.mem_bw_bytes_s = measure_read_bandwidth();
  r.bw_ratio = r.bytes_per_token * r.decode_tok_s / r.mem_bw_bytes_s;
  return r;
}

}  // namespace v4
