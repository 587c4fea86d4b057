// v4host bench-serve: serving throughput of the continuous-batching scheduler. At each
// concurrency C it submits C greedy requests of random prompts at once (no prefix-cache hits)
// and reports aggregate generated tokens/s, per-stream decode tokens/s and mean time to first
// token — the numbers `v4host serve` gets from the same Scheduler, without HTTP in the way.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cli/commands.h"
#include "cli/weights_option.h"
#include "core/error.h"
#include "core/progress.h"
#include "engine/engine.h"
#include "kv/sequence_state.h"
#include "core/prometheus.h"
#include "sched/scheduler.h"

namespace v4::cli {

namespace {

using Clock = std::chrono::steady_clock;

struct BenchServeArgs {
  std::string model, numerics = "exact", concurrency = "1,2,4,8,16", speculative = "off", populate = "auto";
  int tokens = 64, prompt = 128, prefill_chunk = 256;
  uint64_t seed = 1;
  bool quiet = false, json = false, warmup = true;
};

struct Row {
  int concurrency = 0, requests = 0;
  long generated = 0;
  double wall_s = 0, agg_tok_s = 0, stream_tok_s = 0, ttft_s = 0, ttft_max_s = 0;
};

std::vector<int> parse_list(const std::string& s) {
  std::vector<int> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    int v = 0;
    try {
      size_t used = 0;
      v = std::stoi(item, &used);
      if (used != item.size()) v = 0;
    } catch (...) {
      v = 0;
    }
    if (v < 1 || v > 1024) throw InputError("--concurrency must be a comma-separated list of integers in 1..1024 (got '" + s + "')");
    out.push_back(v);
  }
  if (out.empty()) throw InputError("--concurrency is empty");
  return out;
}

// Submits `n` requests at once and follows each on its own thread, timing the first token and
// the last one.
Row run_level(Scheduler& sched, int n, const BenchServeArgs& a, std::mt19937_64& rng) {
  const int V = sched.engine().config().vocab_size;
  // Ordinary text ids: stay clear of the low ids and of the special tokens at the top.
  const int lo = std::min(1000, V / 4), hi = std::max(lo + 1, std::min(V - 1, 100000));
  std::uniform_int_distribution<int32_t> pick(lo, hi - 1);
  struct Track {
    std::shared_ptr<RequestHandle> h;
    Clock::time_point first, last;
    int tokens = 0;
    bool got_first = false;
  };
  std::vector<Track> tr(static_cast<size_t>(n));
  std::vector<GenRequest> reqs;
  for (int i = 0; i < n; ++i) {
    GenRequest g;
    g.prompt.resize(static_cast<size_t>(a.prompt));
    for (auto& t : g.prompt) t = pick(rng);
    g.max_tokens = a.tokens;
    g.sampling.temperature = 0;  // greedy
    reqs.push_back(std::move(g));
  }
  const auto t0 = Clock::now();
  for (int i = 0; i < n; ++i) tr[static_cast<size_t>(i)].h = sched.submit(std::move(reqs[static_cast<size_t>(i)]));
  std::vector<std::thread> th;
  for (int i = 0; i < n; ++i)
    th.emplace_back([&t = tr[static_cast<size_t>(i)]] {
      std::vector<TokenEvent> ev;
      for (;;) {
        ev.clear();
        const bool done = t.h->poll(ev, std::chrono::milliseconds(100));
        if (!ev.empty()) {
          const auto now = Clock::now();
          if (!t.got_first) t.first = now, t.got_first = true;
          t.last = now;
          t.tokens += static_cast<int>(ev.size());
        }
        if (done) break;
      }
    });
  for (auto& x : th) x.join();
  const auto t1 = Clock::now();
  Row r;
  r.concurrency = n;
  r.requests = n;
  r.wall_s = std::chrono::duration<double>(t1 - t0).count();
  int streams = 0, firsts = 0;
  for (auto& t : tr) {
    if (t.h->finish_reason() == FinishReason::Error) throw std::runtime_error("generation failed: " + t.h->error());
    // Count every generated token, the EOS a greedy random model may hit included (not delivered).
    r.generated += t.h->completion_tokens() + (t.h->finish_reason() == FinishReason::Stop ? 1 : 0);
    if (!t.got_first) continue;
    const double ttft = std::chrono::duration<double>(t.first - t0).count();
    r.ttft_s += ttft;
    r.ttft_max_s = std::max(r.ttft_max_s, ttft);
    ++firsts;
    const double dec = std::chrono::duration<double>(t.last - t.first).count();
    if (t.tokens > 1 && dec > 0) {
      r.stream_tok_s += (t.tokens - 1) / dec;
      ++streams;
    }
  }
  if (firsts) r.ttft_s /= firsts;
  if (streams) r.stream_tok_s /= streams;
  r.agg_tok_s = r.wall_s > 0 ? static_cast<double>(r.generated) / r.wall_s : 0;
  return r;
}

void run_bench_serve(const BenchServeArgs& a) {
  Progress::set_global_quiet(a.quiet);
  if (a.tokens < 1 || a.prompt < 1) throw InputError("--tokens and --prompt must be >= 1");
  if (a.prefill_chunk < 1) throw InputError("--prefill-chunk must be >= 1");
  Numerics num;
  if (!parse_numerics(a.numerics, &num)) throw InputError(std::string("--numerics must be ") + kNumericsChoices);
  const std::vector<int> levels = parse_list(a.concurrency);
  const int cmax = *std::max_element(levels.begin(), levels.end());
  SchedulerOptions so;
  if (!parse_spec_mode(a.speculative, &so.speculative)) throw InputError("--speculative must be on, off or auto");
  auto w = ModelWeights::load(a.model, so.speculative != SpecMode::Off, a.quiet, populate_from(a.populate));
  Engine eng(*w, num);
  so.max_seqs = cmax;
  so.ctx = a.prompt + a.tokens + 1;
  so.queue_limit = cmax + 1;
  so.prefill_chunk = a.prefill_chunk;
  so.prefix_cache_bytes = 0;  // random prompts never share a prefix; measure cold prefills
  so.snapshot_every = 0;
  // Admission never waits on the KV budget: every stream of the largest level fits at once.
  so.kv_budget = std::max(so.kv_budget, SequenceState::projected_bytes(eng.config(), so.ctx) * static_cast<size_t>(cmax) + 1);
  Metrics metrics;  // speculation counters (acceptance, tokens per verifying step)
  Scheduler sched(eng, so, &metrics);
  std::mt19937_64 rng(a.seed);
  if (!a.quiet)
    std::fprintf(stderr, "bench-serve: %s, prompt %d, %d new tokens per request, greedy, prefill chunk %d\n", a.model.c_str(),
                 a.prompt, a.tokens, a.prefill_chunk);
  if (a.warmup) {  // fault the weights in and size the buffers before timing
    BenchServeArgs w1 = a;
    w1.tokens = std::min(a.tokens, 2);
    run_level(sched, 1, w1, rng);
  }
  std::vector<Row> rows;
  for (int c : levels) {
    if (!a.quiet) std::fprintf(stderr, "bench-serve: concurrency %d ...\n", c);
    rows.push_back(run_level(sched, c, a, rng));
    const Row& r = rows.back();
    if (!a.quiet)
      std::fprintf(stderr, "bench-serve: concurrency %d: %.3f tok/s aggregate, %.3f tok/s per stream, TTFT %.3f s\n", c,
                   r.agg_tok_s, r.stream_tok_s, r.ttft_s);
  }
  sched.stop();
  const double drafted = metrics.value("v4host_spec_draft_tokens_total"), accepted = metrics.value("v4host_spec_accepted_tokens_total"),
               vsteps = metrics.value("v4host_spec_verify_steps_total"), emitted = metrics.value("v4host_spec_emitted_tokens_total");
  if (a.json) {
    std::printf("{\"model\": \"%s\", \"prompt_tokens\": %d, \"max_tokens\": %d, \"speculative\": {\"mode\": \"%s\", \"drafter\": \"%s\", "
                "\"drafted\": %.0f, \"accepted\": %.0f, \"verify_steps\": %.0f, \"acceptance\": %.4f, \"tokens_per_step\": %.4f}, \"results\": [",
                a.model.c_str(), a.prompt, a.tokens, spec_mode_name(so.speculative), drafter_name(sched.drafter()), drafted, accepted, vsteps,
                drafted > 0 ? accepted / drafted : 0.0, vsteps > 0 ? emitted / vsteps : 0.0);
    for (size_t i = 0; i < rows.size(); ++i) {
      const Row& r = rows[i];
      std::printf("%s{\"concurrency\": %d, \"generated_tokens\": %ld, \"wall_s\": %.4f, \"aggregate_tok_s\": %.4f, "
                  "\"per_stream_tok_s\": %.4f, \"mean_ttft_s\": %.4f, \"max_ttft_s\": %.4f}",
                  i ? ", " : "", r.concurrency, r.generated, r.wall_s, r.agg_tok_s, r.stream_tok_s, r.ttft_s, r.ttft_max_s);
    }
    std::printf("]}\n");
    return;
  }
  std::printf("model %s: prompt %d tokens, %d generated per request (greedy), %.2f GB of weights\n", a.model.c_str(), a.prompt,
              a.tokens, static_cast<double>(w->weight_bytes()) / 1e9);
  std::printf("| concurrency | generated tokens | wall s | aggregate tok/s | per-stream tok/s | mean TTFT s | max TTFT s |\n");
  std::printf("|---:|---:|---:|---:|---:|---:|---:|\n");
  for (const Row& r : rows)
    std::printf("| %d | %ld | %.2f | %.2f | %.2f | %.3f | %.3f |\n", r.concurrency, r.generated, r.wall_s, r.agg_tok_s,
                r.stream_tok_s, r.ttft_s, r.ttft_max_s);
  if (so.speculative != SpecMode::Off)
    std::printf("speculative %s (%s): %.0f drafts, %.1f%% accepted, %.2f tokens per verifying step (%.0f steps)\n",
                spec_mode_name(so.speculative), drafter_name(sched.drafter()), drafted, drafted > 0 ? 100 * accepted / drafted : 0.0,
                vsteps > 0 ? emitted / vsteps : 0.0, vsteps);
}

}  // namespace

void add_bench_serve_command(CLI::App& app) {
  auto a = std::make_shared<BenchServeArgs>();
  auto* c = app.add_subcommand("bench-serve", "Serving throughput of the batching scheduler at several concurrency levels");
  c->add_option("--model", a->model, "checkpoint directory")->required();
  c->add_option("--concurrency", a->concurrency, "comma-separated concurrent streams (default 1,2,4,8,16)");
  c->add_option("--tokens", a->tokens, "tokens generated per request (default 64)");
  c->add_option("--prompt", a->prompt, "random prompt tokens per request (default 128)");
  c->add_option("--prefill-chunk", a->prefill_chunk, "prompt tokens per scheduler step (default 256, as serve)");
  c->add_option("--seed", a->seed, "random seed for the prompts");
  c->add_option("--numerics", a->numerics, "exact | official | fast | cachesim");
  add_populate_option(c, &a->populate);
  c->add_option("--speculative", a->speculative, "on | off (default) | auto: speculative decoding in the batches, as serve");
  c->add_flag("!--no-warmup", a->warmup, "skip the untimed warm-up request");
  c->add_flag("--json", a->json, "machine-readable output");
  c->add_flag("--quiet,-q", a->quiet, "no progress output");
  c->callback([a] { run_bench_serve(*a); });
}

}  // namespace v4::cli
