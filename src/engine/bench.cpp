#include "engine/bench.h"

#include <chrono>
#include <ctime>
#include <cmath>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>

#include "core/cpu.h"
#include "core/thread_pool.h"
#include "engine/speculative.h"
#include "kernels/peaks.h"

namespace v4 {

namespace {

double process_cpu_s() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

double params(const LinearWeight& w) { return w.valid() ? static_cast<double>(w.rows) * w.cols : 0.0; }
double bytes(const LinearWeight& w) { return w.valid() ? static_cast<double>(w.bytes()) : 0.0; }

}  // namespace

double WeightTraffic::step_bytes(int batch) const {
  const double distinct = experts > 0 ? experts * (1.0 - std::pow(1.0 - static_cast<double>(topk) / experts, batch)) : 0;
  return dense_bytes + head_bytes + distinct * expert_bytes;
}

WeightTraffic weight_traffic(const ModelWeights& w) {
  const ModelConfig& c = w.cfg;
  WeightTraffic t;
  t.experts = c.n_routed_experts;
  t.topk = c.n_activated;
  t.head_bytes = static_cast<double>(w.embed.bytes()) / c.vocab_size + bytes(w.lm_head) + bytes(w.head.hc_fn);
  t.head_params = params(w.lm_head) + params(w.head.hc_fn);
  auto dense = [&](const LinearWeight& x) {
    t.dense_bytes += bytes(x);
    t.dense_params += params(x);
  };
  for (const BlockWeights& L : w.layers) {
    const AttentionWeights& a = L.attn;
    for (const LinearWeight* x : {&a.wq_a, &a.wq_b, &a.wkv, &a.wo_a, &a.wo_b}) dense(*x);
    if (a.comp) {
      dense(a.comp->wkv);
      dense(a.comp->wgate);
    }
    if (a.indexer)
      for (const LinearWeight* x : {&a.indexer->wq_b, &a.indexer->weights_proj, &a.indexer->comp.wkv, &a.indexer->comp.wgate})
        dense(*x);
    const FfnWeights& f = L.ffn;
    for (const LinearWeight* x : {&f.gate, &f.shared.w1, &f.shared.w2, &f.shared.w3, &L.hc_attn.fn, &L.hc_ffn.fn}) dense(*x);
    const ExpertWeights& e0 = f.experts.front();
    t.expert_bytes += bytes(e0.w1) + bytes(e0.w2) + bytes(e0.w3);
    t.expert_params += params(e0.w1) + params(e0.w2) + params(e0.w3);
  }
  return t;
}

double decode_weight_bytes(const ModelWeights& w) { return weight_traffic(w).step_bytes(1); }

namespace {

struct Runner {
  Engine& eng;
  std::mt19937_64 rng;
  int V;
  std::vector<int32_t> random_tokens(int n) {
    std::vector<int32_t> t(static_cast<size_t>(n));
    for (auto& x : t) x = static_cast<int32_t>(rng() % static_cast<uint64_t>(V));
    return t;
  }
  // Prefills a fresh sequence with n random tokens; returns seconds.
  double prefill(SequenceState& st, int n) {
    auto toks = random_tokens(n);
    std::vector<float> logits(static_cast<size_t>(V));
    Segment s;
    s.state = &st;
    s.tokens = toks.data();
    s.n = n;
    s.logits = logits.data();
    auto t0 = std::chrono::steady_clock::now();
    eng.forward(std::span<Segment>(&s, 1));
    return seconds_since(t0);
  }
  double cpu_s = 0;  // process CPU seconds of the timed decode steps (all threads)
  // `steps` decode steps over the given sequences at once (one untimed warm-up step first);
  // returns seconds per step.
  double decode(std::vector<std::unique_ptr<SequenceState>>& st, int steps) {
    const size_t B = st.size();
    std::vector<float> logits(B * static_cast<size_t>(V));
    std::vector<int32_t> tok(B);
    double t = 0;
    for (int i = 0; i <= steps; ++i) {
      std::vector<Segment> segs(B);
      for (size_t b = 0; b < B; ++b) {
        tok[b] = static_cast<int32_t>(rng() % static_cast<uint64_t>(V));
        segs[b].state = st[b].get();
        segs[b].tokens = &tok[b];
        segs[b].n = 1;
        segs[b].logits = logits.data() + b * static_cast<size_t>(V);
      }
      auto t0 = std::chrono::steady_clock::now();
      const double c0 = process_cpu_s();
      eng.forward(segs);
      if (i > 0) {
        t += seconds_since(t0);
        cpu_s += process_cpu_s() - c0;
      }
    }
    return t / steps;
  }
};

}  // namespace

EngineBenchResult bench_engine(Engine& eng, const BenchOptions& opt) {
  EngineBenchResult r;
  r.threads = ThreadPool::global().size();
  r.kernels = cpu_summary();
  r.weights_populated = eng.weights().populate_report().populated;
  r.populate_s = eng.weights().populate_report().seconds;
  r.bf16_dot = eng.bf16_dot();
  r.numerics = numerics_name(eng.numerics());
  const WeightTraffic wt = weight_traffic(eng.weights());
  r.prefill_flop_per_token = wt.prefill_flop();
  auto note = [&](const char* fmt, double a, double b) {
    if (opt.progress) {
      std::fprintf(stderr, fmt, a, b);
      std::fputc('\n', stderr);
    }
  };
  // Roofline first (the figures below are compared with it). The read probes include the
  // routed experts' mapped weights: the pages a decode step streams.
  std::vector<ReadSpan> spans;
  for (const BlockWeights& L : eng.weights().layers)
    for (const ExpertWeights& e : L.ffn.experts)
      for (const LinearWeight* x : {&e.w1, &e.w3, &e.w2})
        if (x->valid()) spans.push_back({x->data, x->data_bytes()});
  const ReadRoofline rl = measure_read_roofline(spans);
  r.mem_bw_bytes_s = rl.bytes_s;
  r.mem_bw_probe = rl.probe;
  r.mem_bw_4k_bytes_s = rl.anon_4k_bytes_s;
  for (const ReadProbe& p : rl.probes) r.mem_bw_probes.emplace_back(p.name, p.bytes_s);
  r.fp32_peak_flop_s = measure_fp32_peak();
  r.bf16_peak_flop_s = measure_bf16_peak();
  r.peak_flop_s = r.bf16_dot ? r.bf16_peak_flop_s : r.fp32_peak_flop_s;
  note("roofline: %.1f GB/s read, %.0f GFLOP/s peak", r.mem_bw_bytes_s / 1e9, r.peak_flop_s / 1e9);

  Runner run{eng, std::mt19937_64(opt.seed), eng.config().vocab_size};
  std::unique_ptr<SequenceState> first;
  for (int P : opt.prompts) {
    auto st = eng.new_sequence();
    PrefillFigure f;
    f.tokens = P;
    const double s = run.prefill(*st, P);
    f.tok_s = P / s;
    f.flop_s = f.tok_s * r.prefill_flop_per_token;
    f.ratio = r.peak_flop_s > 0 ? f.flop_s / r.peak_flop_s : 0;
    r.prefill.push_back(f);
    if (!first) {
      first = std::move(st);
      r.prompt_tokens = P;
      r.prefill_s = s;
      r.prefill_tok_s = f.tok_s;
    }
    note("prefill %.0f tokens: %.2f tok/s", P, f.tok_s);
  }
  if (!first) {
    first = eng.new_sequence();
    run.prefill(*first, 16);
  }
  for (int B : opt.batches) {
    std::vector<std::unique_ptr<SequenceState>> st;
    for (int b = 0; b < B; ++b) st.push_back(std::make_unique<SequenceState>(*first));  // same prefix
    DecodeFigure d;
    d.batch = B;
    run.cpu_s = 0;
    const double step = run.decode(st, opt.decode);
    d.tok_s = B / step;
    d.cpu_share = run.cpu_s / (step * opt.decode * r.threads);
    d.step_bytes = wt.step_bytes(B);
    d.roofline_tok_s = B * r.mem_bw_bytes_s / d.step_bytes;
    d.ratio = d.tok_s / d.roofline_tok_s;
    r.decode.push_back(d);
    if (B == 1 && r.decode_tokens == 0) {
      r.decode_tokens = opt.decode;
      r.decode_s = step * opt.decode;
      r.decode_tok_s = d.tok_s;
    }
    note("decode batch %.0f: %.2f tok/s", B, d.tok_s);
  }
  const double b1 = r.decode.empty() ? 0 : r.decode.front().batch == 1 ? r.decode.front().tok_s : 0;
  for (auto& d : r.decode) d.speedup = b1 > 0 ? d.tok_s / b1 : 0;
  r.bytes_per_token = wt.step_bytes(1);
  r.bw_ratio = r.bytes_per_token * r.decode_tok_s / r.mem_bw_bytes_s;
  if (opt.context > 0) {
    // On a shared machine the load changes within seconds: the short-context prefill is timed
    // before and after the long one (mean), and the two decodes alternate step by step, so both
    // figures of a ratio see the same conditions.
    ContextFigure& c = r.context;
    c.tokens = opt.context;
    c.base = opt.context_base;
    std::vector<std::unique_ptr<SequenceState>> base, lng;
    base.push_back(eng.new_sequence());
    lng.push_back(eng.new_sequence());
    auto spare = eng.new_sequence();
    const double b0 = run.prefill(*base[0], c.base);
    const double l0 = run.prefill(*lng[0], c.tokens);
    const double b1 = run.prefill(*spare, c.base);
    c.base_prefill_tok_s = c.base / ((b0 + b1) / 2);
    c.prefill_tok_s = c.tokens / l0;
    double tb = 0, tl = 0;
    for (int i = 0; i < opt.decode; ++i) {
      tb += run.decode(base, 1);
      tl += run.decode(lng, 1);
    }
    c.base_decode_tok_s = opt.decode / tb;
    c.decode_tok_s = opt.decode / tl;
    note("context %.0f: prefill %.1f tok/s", c.tokens, c.prefill_tok_s);
  }
  if (opt.speculative > 0 && drafter_of(eng) != DrafterKind::None) {
    auto st = eng.new_sequence(true);
    SpeculativeDecoder sd(eng, *st, SamplingParams{});
    auto prompt = run.random_tokens(32);
    sd.start(prompt.data(), 32);
    auto t0 = std::chrono::steady_clock::now();
    sd.generate(opt.speculative, [](int32_t) { return true; });
    SpeculativeFigure& f = r.speculative;
    f.tokens = opt.speculative;
    f.tok_s = opt.speculative / seconds_since(t0);
    f.acceptance = sd.stats().acceptance();
    f.tokens_per_step = sd.stats().tokens_per_step();
    note("speculative: %.2f tok/s, %.2f tokens/step", f.tok_s, f.tokens_per_step);
  }
  return r;
}

std::string bench_json(const EngineBenchResult& r) {
  nlohmann::ordered_json j;
  j["prompt_tokens"] = r.prompt_tokens;
  j["decode_tokens"] = r.decode_tokens;
  j["threads"] = r.threads;
  j["prefill_tok_s"] = r.prefill_tok_s;
  j["decode_tok_s"] = r.decode_tok_s;
  j["weight_bytes_per_token"] = r.bytes_per_token;
  j["mem_bw_bytes_s"] = r.mem_bw_bytes_s;
  j["bw_ratio"] = r.bw_ratio;
  j["numerics"] = r.numerics;
  j["bf16_dot"] = r.bf16_dot;
  j["fp32_peak_flop_s"] = r.fp32_peak_flop_s;
  j["bf16_peak_flop_s"] = r.bf16_peak_flop_s;
  j["peak_flop_s"] = r.peak_flop_s;
  j["prefill_flop_per_token"] = r.prefill_flop_per_token;
  j["mem_bw_probe"] = r.mem_bw_probe;
  j["mem_bw_4k_bytes_s"] = r.mem_bw_4k_bytes_s;
  j["kernels"] = r.kernels;
  j["weights_populated"] = r.weights_populated;
  j["populate_s"] = r.populate_s;
  j["mem_bw_probes"] = nlohmann::ordered_json::object();
  for (const auto& [name, b] : r.mem_bw_probes) j["mem_bw_probes"][name] = b;
  j["decode"] = nlohmann::ordered_json::array();
  for (const auto& d : r.decode)
    j["decode"].push_back({{"batch", d.batch}, {"tok_s", d.tok_s}, {"step_bytes", d.step_bytes},
                           {"roofline_tok_s", d.roofline_tok_s}, {"roofline_ratio", d.ratio}, {"speedup_vs_batch1", d.speedup},
                           {"cpu_share", d.cpu_share}});
  j["prefill"] = nlohmann::ordered_json::array();
  for (const auto& p : r.prefill)
    j["prefill"].push_back({{"tokens", p.tokens}, {"tok_s", p.tok_s}, {"flop_s", p.flop_s}, {"peak_ratio", p.ratio}});
  if (r.context.tokens > 0) {
    const ContextFigure& c = r.context;
    j["context"] = {{"tokens", c.tokens},
                    {"base_tokens", c.base},
                    {"prefill_tok_s", c.prefill_tok_s},
                    {"base_prefill_tok_s", c.base_prefill_tok_s},
                    {"prefill_ratio", c.base_prefill_tok_s > 0 ? c.prefill_tok_s / c.base_prefill_tok_s : 0},
                    {"decode_tok_s", c.decode_tok_s},
                    {"base_decode_tok_s", c.base_decode_tok_s},
                    {"decode_ratio", c.base_decode_tok_s > 0 ? c.decode_tok_s / c.base_decode_tok_s : 0}};
  }
  if (r.speculative.tokens > 0)
    j["speculative"] = {{"tokens", r.speculative.tokens},
                        {"tok_s", r.speculative.tok_s},
                        {"acceptance", r.speculative.acceptance},
                        {"tokens_per_step", r.speculative.tokens_per_step},
                        {"speedup_vs_batch1", r.decode_tok_s > 0 ? r.speculative.tok_s / r.decode_tok_s : 0}};
  return j.dump(2);
}

}  // namespace v4
