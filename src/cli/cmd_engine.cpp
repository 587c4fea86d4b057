// Engine subcommands: logits, generate, synth, bench-engine.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "cli/commands.h"
#include "cli/demo_model.h"
#include "cli/weights_option.h"
#include "core/cpu.h"
#include "core/error.h"
#include "core/npy.h"
#include "core/progress.h"
#include "engine/bench.h"
#include "engine/engine.h"
#include "model/synth.h"
#include "text/tokenizer.h"
#include "text/tokenizer_builder.h"
#include "engine/sampler.h"
#include "engine/speculative.h"

namespace v4::cli {

namespace {

std::vector<int32_t> read_tokens(const std::string& path) {
  NpyArray a = read_npy(path);
  std::vector<int32_t> t;
  for (int64_t v : a.as_i64()) t.push_back(static_cast<int32_t>(v));
  if (t.empty()) throw InputError(path + ": no tokens");
  return t;
}

Numerics numerics_from(const std::string& s) {
  Numerics n;
  if (!parse_numerics(s, &n)) throw InputError(std::string("--numerics must be ") + kNumericsChoices + " (got '" + s + "')");
  return n;
}

struct LogitsArgs {
  std::string model, tokens, out, numerics = "exact", populate = "auto";
  int prefill = -1, chunk = 0;
  bool mtp = false, quiet = false;
};

void run_logits(const LogitsArgs& a) {
  Progress::set_global_quiet(a.quiet);
  auto tokens = read_tokens(a.tokens);
  auto w = ModelWeights::load(a.model, a.mtp, a.quiet, populate_from(a.populate));
  Engine eng(*w, numerics_from(a.numerics));
  const int N = static_cast<int>(tokens.size()), V = w->cfg.vocab_size;
  const int P = a.prefill < 0 ? N : a.prefill;
  if (P < 1 || P > N) throw InputError("--prefill must be in [1, " + std::to_string(N) + "]");
  if (a.chunk < 0) throw InputError("--chunk must be positive");
  if (a.mtp && !eng.has_mtp() && w->dspark)
    throw InputError("--mtp: this checkpoint's mtp.* is a DSpark drafter, not an MTP head (docs/checkpoints.md); "
                     "the engine does not run it yet");
  if (a.mtp && !eng.has_mtp()) throw InputError("--mtp: the checkpoint has no mtp.* weights");
  auto st = eng.new_sequence(a.mtp);
  std::vector<float> logits(static_cast<size_t>(N) * V);
  std::vector<float> hidden;
  const size_t hrow = static_cast<size_t>(w->cfg.hc_mult) * w->cfg.dim;
  if (a.mtp) hidden.resize(static_cast<size_t>(N) * hrow);
  Progress prog("prefill", static_cast<size_t>(N), a.quiet);
  // Prefill [0, P) in chunks, then decode one token at a time.
  const int chunk = a.chunk > 0 ? a.chunk : P;
  auto step = [&](int b, int n) {
    Segment s;
    s.state = st.get();
    s.tokens = tokens.data() + b;
    s.n = n;
    s.all_logits = true;
    s.logits = logits.data() + static_cast<size_t>(b) * V;
    if (a.mtp) s.hidden = hidden.data() + static_cast<size_t>(b) * hrow;
    eng.forward(std::span<Segment>(&s, 1));
    prog.update(static_cast<size_t>(b + n));
  };
  for (int b = 0; b < P; b += chunk) step(b, std::min(chunk, P - b));
  for (int b = P; b < N; ++b) step(b, 1);
  prog.finish();
  if (!a.mtp) {
    write_npy_f32(a.out, logits.data(), {N, V});
    return;
  }
  // MTP: row i (i = 0..N-2) uses the main streams at i and token i+1; predicts token i+2.
  std::vector<float> mlog(static_cast<size_t>(N - 1) * V);
  if (N > 1) {
    MtpSegment ms;
    ms.state = st.get();
    ms.hidden = hidden.data();
    ms.next_tokens = tokens.data() + 1;
    ms.n = N - 1;
    ms.logits = mlog.data();
    eng.forward_mtp(std::span<MtpSegment>(&ms, 1));
  }
  write_npy_f32(a.out, mlog.data(), {N - 1, V});
}

struct GenArgs {
  std::string model, tokens, prompt, numerics = "exact", populate = "auto";
  int n = 16;
  float temperature = 0, top_p = 1;
  uint64_t seed = 0;
  bool quiet = false, speculative = false;
};

void run_generate(const GenArgs& a) {
  Progress::set_global_quiet(a.quiet);
  if (a.tokens.empty() == a.prompt.empty()) throw InputError("give exactly one of --tokens IN.npy or --prompt TEXT");
  std::unique_ptr<text::Tokenizer> tok;
  std::vector<int32_t> tokens;
  if (!a.prompt.empty()) {
    std::string path = text::model_tokenizer_path(a.model);
    if (path.empty()) throw InputError("--prompt needs " + a.model + "/tokenizer.json");
    tok = text::Tokenizer::from_file(path);
    tokens = tok->encode(a.prompt);  // raw text; use `v4host render` for chat prompts
    if (tokens.empty()) throw InputError("--prompt is empty");
  } else {
    tokens = read_tokens(a.tokens);
  }
  if (a.n < 0) throw InputError("-n must be >= 0");
  if (a.temperature < 0 || a.top_p <= 0 || a.top_p > 1) throw InputError("need --temperature >= 0 and 0 < --top-p <= 1");
  auto w = ModelWeights::load(a.model, a.speculative, a.quiet, populate_from(a.populate));
  Engine eng(*w, numerics_from(a.numerics));
  if (a.speculative && drafter_of(eng) == DrafterKind::None)
    throw InputError("--speculative: the checkpoint has no drafter (neither the MTP head mtp.0.* nor the DSpark drafter mtp.0..2)");
  auto st = eng.new_sequence();
  const int V = w->cfg.vocab_size;
  const SamplingParams sp{a.temperature, a.top_p, 0.0f, 0, a.seed};
  std::vector<int32_t> out;
  std::unique_ptr<text::StreamDecoder> dec;
  if (tok) dec = std::make_unique<text::StreamDecoder>(*tok);
  auto print = [&](int32_t t) {
    out.push_back(t);
    if (dec) std::fputs(dec->push(t).c_str(), stdout);
    else std::printf("%s%d", out.size() > 1 ? " " : "", t);
    std::fflush(stdout);
  };
  if (a.speculative) {
    // MTP or DSpark drafts, one batched verifying forward per step; same output distribution as plain.
    SpeculativeDecoder sd(eng, *st, sp);
    sd.start(tokens.data(), static_cast<int>(tokens.size()));
    sd.generate(a.n, [&](int32_t t) {
      print(t);
      return true;
    });
    if (!a.quiet)
      std::fprintf(stderr, "speculative (%s): %lld drafts, %.1f%% accepted, %.2f tokens per verifying forward\n",
                   drafter_name(sd.sequence().kind()), static_cast<long long>(sd.stats().drafts), 100 * sd.stats().acceptance(), sd.stats().tokens_per_step());
  } else {
    std::vector<float> logits(static_cast<size_t>(V));
    Sampler sampler(sp);
    Segment s;
    s.state = st.get();
    s.tokens = tokens.data();
    s.n = static_cast<int>(tokens.size());
    s.logits = logits.data();
    eng.forward(std::span<Segment>(&s, 1));
    for (int i = 0; i < a.n; ++i) {
      print(sampler.sample(logits.data(), V));
      if (i + 1 == a.n) break;
      s.tokens = &out.back();
      s.n = 1;
      eng.forward(std::span<Segment>(&s, 1));
    }
  }
  if (dec) std::fputs(dec->finish().c_str(), stdout);
  std::printf("\n");
}

struct BenchArgs {
  std::string model, numerics = "exact", populate = "auto";
  BenchOptions opt;
  int prompt = 0;
  bool quiet = false, json = false;
};

void run_bench(BenchArgs a) {
  Progress::set_global_quiet(a.quiet);
  if (a.prompt > 0) a.opt.prompts = {a.prompt};
  for (int p : a.opt.prompts)
    if (p < 1) throw InputError("--prompts: every prompt length must be >= 1");
  for (int b : a.opt.batches)
    if (b < 1 || b > 256) throw InputError("--batches: every batch must be in [1, 256]");
  if (a.opt.decode < 1) throw InputError("--decode must be >= 1");
  if (a.opt.context < 0 || a.opt.context_base < 1) throw InputError("--context must be >= 0 and --context-base >= 1");
  a.opt.progress = !a.quiet && !a.json;
  if (a.opt.speculative < 0) throw InputError("--speculative must be >= 0");
  auto w = ModelWeights::load(a.model, a.opt.speculative > 0, a.quiet, populate_from(a.populate));
  Engine eng(*w, numerics_from(a.numerics));
  if (a.opt.speculative > 0 && drafter_of(eng) == DrafterKind::None)
    throw InputError("--speculative: the checkpoint has no drafter (neither the MTP head mtp.0.* nor the DSpark drafter mtp.0..2)");
  EngineBenchResult r = bench_engine(eng, a.opt);
  if (a.json) {
    std::printf("%s\n", bench_json(r).c_str());
    return;
  }
  std::printf("model            %s (%.2f GB of weights), numerics %s%s\n", a.model.c_str(),
              static_cast<double>(w->weight_bytes()) / 1e9, r.numerics.c_str(), r.bf16_dot ? " on the BF16 dot-product units" : "");
  std::printf("threads          %d   kernels: %s\n", r.threads, r.kernels.c_str());
  if (const PopulateReport& pr = w->populate_report(); pr.populated)
    std::printf("weights          mapped before the figures (%.2f GB in %.1f s)\n", static_cast<double>(pr.bytes) / 1e9, pr.seconds);
  else
    std::printf("weights          mapped as used (%s)\n", pr.why.c_str());
  std::printf("roofline         read %.1f GB/s (%s), FP32 FMA %.0f GFLOP/s, BF16 dot %.0f GFLOP/s (measured now)\n",
              r.mem_bw_bytes_s / 1e9, r.mem_bw_probe.c_str(), r.fp32_peak_flop_s / 1e9, r.bf16_peak_flop_s / 1e9);
  std::printf("read probes     ");
  for (const auto& [name, b] : r.mem_bw_probes) std::printf(" %s %.1f", name.c_str(), b / 1e9);
  std::printf(" GB/s (best of each; decode is compared with the highest)\n");
  for (const auto& p : r.prefill)
    std::printf("prefill %5d    %8.2f tokens/s  %6.1f GFLOP/s = %5.1f%% of the %s peak\n", p.tokens, p.tok_s, p.flop_s / 1e9,
                100 * p.ratio, r.bf16_dot ? "BF16" : "FP32");
  for (const auto& d : r.decode)
    std::printf("decode batch %-3d %8.2f tokens/s  = %5.1f%% of its bandwidth ceiling (%.2f), %.2fx batch 1, CPU share %.0f%%\n",
                d.batch, d.tok_s, 100 * d.ratio, d.roofline_tok_s, d.speedup, 100 * d.cpu_share);
  std::printf("weights/token    %.1f MB read per decoded token (batch 1)\n", r.bytes_per_token / 1e6);
  if (r.context.tokens > 0) {
    const auto& c = r.context;
    std::printf("context %d vs %d: prefill %.1f vs %.1f tokens/s (%.0f%%), decode after %.2f vs %.2f tokens/s (%.0f%%)\n",
                c.tokens, c.base, c.prefill_tok_s, c.base_prefill_tok_s, 100 * c.prefill_tok_s / c.base_prefill_tok_s,
                c.decode_tok_s, c.base_decode_tok_s, 100 * c.decode_tok_s / c.base_decode_tok_s);
  }
  if (r.speculative.tokens > 0)
    std::printf("speculative      %.2f tokens/s greedy with %s drafts: %.1f%% accepted, %.2f tokens per verifying forward\n",
                r.speculative.tok_s, drafter_name(drafter_of(eng)), 100 * r.speculative.acceptance, r.speculative.tokens_per_step);
}

}  // namespace

void add_engine_commands(CLI::App& app) {
  {
    auto a = std::make_shared<BenchArgs>();
    auto* c = app.add_subcommand("bench-engine", "Decode/prefill throughput with this machine's roofline measured in the same run");
    c->add_option("--model", a->model, "checkpoint directory")->required();
    c->add_option("--prompts", a->opt.prompts, "prefill figures: prompt lengths (random ids)")->delimiter(',');
    c->add_option("--prompt", a->prompt, "a single prefill figure (same as --prompts N)");
    c->add_option("--batches", a->opt.batches, "decode figures: batch sizes")->delimiter(',');
    c->add_option("--decode", a->opt.decode, "decode steps per figure");
    c->add_option("--context", a->opt.context, "long-context figure: prefill and decode after N tokens (0 = skip)");
    c->add_option("--context-base", a->opt.context_base, "the short context it is compared with");
    c->add_option("--speculative", a->opt.speculative, "also generate N tokens with speculation (MTP or DSpark drafts; 0 = skip)");
    c->add_option("--seed", a->opt.seed, "random seed for the token ids");
    c->add_option("--numerics", a->numerics, "exact | official | fast | cachesim");
    add_populate_option(c, &a->populate);
    c->add_flag("--json", a->json, "machine-readable output");
    c->add_flag("--quiet,-q", a->quiet, "no progress output");
    c->callback([a] { run_bench(*a); });
  }
  {
    auto o = std::make_shared<SynthOptions>();
    auto* c = app.add_subcommand("synth", "Write a synthetic checkpoint (official instruct layout, random weights)");
    c->add_option("--preset", o->preset, "tiny | flash-shaped | pro-shaped");
    c->add_option("--revision", o->revision,
                  "preview (NextN MTP head) | 0731 | 0813 (current official layout: DSpark drafter mtp.0..2)");
    c->add_option("--out", o->out_dir, "output directory")->required();
    c->add_option("--experts", o->experts, "routed experts (default 8)");
    c->add_option("--layers", o->layers, "main layers");
    c->add_option("--vocab", o->vocab, "vocabulary size (default 129280, the real tokenizer's)");
    c->add_option("--seed", o->seed, "random seed");
    c->add_option("--expert-dtype", o->expert_dtype, "fp4 (instruct) | fp8 (Base / FP8 build)");
    c->add_option("--scale-dtype", o->scale_dtype, "e8m0 | f32 (Base-style FP8 block scales)");
    c->add_flag("--quiet,-q", o->quiet, "no progress output");
    auto tok = std::make_shared<std::string>();
    c->add_option("--tokenizer", *tok, "tokenizer.json to copy into the checkpoint (default: built from the V3 npm tokenizer when present)");
    c->callback([o, tok] {
      if (!tok->empty()) {
        std::ifstream f(*tok, std::ios::binary);
        if (!f) throw InputError("cannot read --tokenizer " + *tok);
        o->tokenizer_json.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
      } else {
        o->tokenizer_json = synthetic_tokenizer_json();
        if (o->tokenizer_json.empty())
          std::fprintf(stderr, "v4host: note: no tokenizer.json written (V3 npm tokenizer not found; run scripts/setup.sh)\n");
      }
      write_synthetic_checkpoint(*o);
      std::printf("wrote %s\n", o->out_dir.c_str());
    });
  }
  {
    auto a = std::make_shared<LogitsArgs>();
    auto* c = app.add_subcommand("logits", "Write float32 logits [len, vocab] for every prompt position (row i predicts token i+1)");
    c->add_option("--model", a->model, "checkpoint directory")->required();
    c->add_option("--tokens", a->tokens, "prompt token ids (.npy, integer)")->required();
    c->add_option("--out", a->out, "output .npy")->required();
    c->add_option("--prefill", a->prefill, "prefill the first N tokens, decode the rest one at a time");
    c->add_option("--chunk", a->chunk, "prefill in chunks of C tokens");
    c->add_option("--numerics", a->numerics, "exact | official | fast | cachesim");
    add_populate_option(c, &a->populate);
    c->add_flag("--mtp", a->mtp, "write the MTP head's logits (row i predicts token i+2)");
    c->add_flag("--quiet,-q", a->quiet, "no progress output");
    c->callback([a] { run_logits(*a); });
  }
  {
    auto a = std::make_shared<GenArgs>();
    auto* c = app.add_subcommand("generate", "Continue a prompt of token ids; prints the generated ids");
    c->add_option("--model", a->model, "checkpoint directory")->required();
    c->add_option("--tokens", a->tokens, "prompt token ids (.npy); prints generated ids");
    c->add_option("--prompt", a->prompt, "prompt text (tokenized with the model's tokenizer.json); prints text");
    c->add_option("-n", a->n, "tokens to generate");
    c->add_option("--temperature", a->temperature, "0 = greedy");
    c->add_option("--top-p", a->top_p, "nucleus sampling");
    c->add_option("--seed", a->seed, "random seed");
    c->add_option("--numerics", a->numerics, "exact | official | fast | cachesim");
    add_populate_option(c, &a->populate);
    c->add_flag("--speculative", a->speculative, "draft with the MTP head or the DSpark drafter, verify in one batched forward (exact)");
    c->add_flag("--quiet,-q", a->quiet, "no progress output");
    c->callback([a] { run_generate(*a); });
  }
}

}  // namespace v4::cli
