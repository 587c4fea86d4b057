// v4host serve: the OpenAI/Anthropic-compatible server.
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "cli/commands.h"
#include "cli/demo_model.h"
#include "core/error.h"
#include "core/progress.h"
#include "server/service.h"
#include "text/tokenizer_builder.h"

namespace v4::cli {

namespace {

Service* g_service = nullptr;

void on_signal(int) {
  if (g_service) g_service->stop();
}

struct ServeArgs {
  std::string model, numerics = "exact";
  bool demo = false, quiet = false, no_thinking = false;
  ServeOptions opt;
  int64_t kv_budget_mb = 4096, prefix_cache_mb = 1024;
};

void run_serve(ServeArgs& a) {
  Progress::set_global_quiet(a.quiet);
  if (a.opt.api_key.empty())
    if (const char* k = std::getenv("V4HOST_API_KEY")) a.opt.api_key = k;
  std::string dir = a.model;
  if (dir.empty()) {
    if (!a.demo) {
      if (isatty(0) && isatty(2)) {
        std::fprintf(stderr, "No --model given. Serve the built-in synthetic demo model (random weights, ~150 MB, created on first use)? [Y/n] ");
        std::string line;
        std::getline(std::cin, line);
        if (!line.empty() && line[0] != 'y' && line[0] != 'Y') throw InputError("pass --model DIR with your downloaded V4 checkpoint");
      } else {
        throw InputError("no --model given: pass --model DIR (a downloaded V4 checkpoint) or --demo for the synthetic demo model");
      }
    }
    dir = ensure_demo_model(a.quiet);
    if (a.opt.served_model_name.empty()) a.opt.served_model_name = "v4host-demo";
  }
  Numerics num;
  if (!parse_numerics(a.numerics, &num)) throw InputError("--numerics must be exact, official or cachesim");
  if (a.opt.sched.ctx < 16) throw InputError("--ctx must be at least 16");
  if (a.opt.sched.max_seqs < 1) throw InputError("--max-seqs must be at least 1");
  if (a.kv_budget_mb < 1) throw InputError("--kv-budget must be positive");
  a.opt.sched.kv_budget = static_cast<size_t>(a.kv_budget_mb) << 20;
  a.opt.sched.prefix_cache_bytes = static_cast<size_t>(std::max<int64_t>(0, a.prefix_cache_mb)) << 20;
  a.opt.default_thinking = !a.no_thinking;
  std::string tok_path = text::model_tokenizer_path(dir);
  if (tok_path.empty()) throw InputError("no tokenizer.json in " + dir + " (it ships with the official checkpoints)");
  auto tok = text::Tokenizer::from_file(tok_path);
  auto w = ModelWeights::load(dir, false, a.quiet);
  Engine eng(*w, num);
  Service svc(a.opt, *w, eng, *tok);
  const int port = svc.bind();
  std::fprintf(stderr, "v4host: serving '%s' on http://%s:%d/v1 (ctx %lld, max %d sequences%s)\n", svc.model_id().c_str(),
               a.opt.host.c_str(), port, static_cast<long long>(a.opt.sched.ctx), a.opt.sched.max_seqs,
               a.opt.api_key.empty() ? ", no API key" : ", API key required");
  g_service = &svc;
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGPIPE, SIG_IGN);
  svc.serve();
  g_service = nullptr;
  std::fprintf(stderr, "v4host: stopped\n");
}

}  // namespace

void add_serve_command(CLI::App& app) {
  auto a = std::make_shared<ServeArgs>();
  auto* c = app.add_subcommand("serve", "OpenAI- and Anthropic-compatible server for a V4 checkpoint");
  c->add_option("--model", a->model, "checkpoint directory (config.json, safetensors, tokenizer.json)");
  c->add_flag("--demo", a->demo, "serve the built-in synthetic demo model (created on first use)");
  c->add_option("--host", a->opt.host, "bind address (default 127.0.0.1)");
  c->add_option("--port", a->opt.port, "port (default 8000; 0 = any free port)");
  c->add_option("--api-key", a->opt.api_key, "require 'Authorization: Bearer KEY' (also $V4HOST_API_KEY)");
  c->add_option("--served-model-name", a->opt.served_model_name, "model id clients must send (default: directory name)");
  c->add_option("--ctx", a->opt.sched.ctx, "max tokens per sequence (prompt + completion)");
  c->add_option("--max-seqs", a->opt.sched.max_seqs, "sequences decoded together");
  c->add_option("--kv-budget", a->kv_budget_mb, "MiB of per-sequence state across running sequences");
  c->add_option("--prefix-cache", a->prefix_cache_mb, "MiB for the exact prefix cache (0 = off)");
  c->add_option("--prefill-chunk", a->opt.sched.prefill_chunk, "prompt tokens per scheduler step");
  c->add_option("--queue", a->opt.sched.queue_limit, "waiting requests before 429");
  c->add_option("--numerics", a->numerics, "exact | official | cachesim");
  c->add_flag("--no-thinking", a->no_thinking, "default to non-thinking mode when a request does not choose");
  c->add_flag("--log-prompts", a->opt.log_prompts, "log prompt text (off by default)");
  c->add_flag("--quiet,-q", a->quiet, "no progress output");
  c->callback([a] { run_serve(*a); });
}

}  // namespace v4::cli
