// v4host serve: the OpenAI/Anthropic-compatible server.
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "cli/commands.h"
#include "cli/demo_model.h"
#include "cli/weights_option.h"
#include "core/error.h"
#include "core/progress.h"
#include "server/service.h"
#include "text/tokenizer_builder.h"

namespace v4::cli {

namespace {

Service* g_service = nullptr;

void on_signal(int) {
  if (g_service) g_service->request_stop();
}

struct ServeArgs {
  std::string model, numerics = "exact", speculative = "auto", populate = "auto";
  bool demo = false, quiet = false, no_thinking = false;
  ServeOptions opt;
  std::string kv_budget = "4G", prefix_cache = "1G", max_body = "8M", max_header = "64K", stream_buffer = "4M",
              response_store = "64M";
};

// "4294967296", "4G", "512M", "64K" (binary units) -> bytes.
size_t parse_bytes(const std::string& flag, const std::string& v) {
  size_t pos = 0;
  double x = 0;
  try {
    x = std::stod(v, &pos);
  } catch (const std::exception&) {
    throw InputError(flag + ": expected a size such as 4G, 512M or a byte count, got '" + v + "'");
  }
  std::string unit = v.substr(pos);
  double mul = 1;
  if (unit == "K" || unit == "KiB" || unit == "k") mul = 1024.0;
  else if (unit == "M" || unit == "MiB") mul = 1024.0 * 1024;
  else if (unit == "G" || unit == "GiB") mul = 1024.0 * 1024 * 1024;
  else if (unit == "T" || unit == "TiB") mul = 1024.0 * 1024 * 1024 * 1024;
  else if (!unit.empty() && unit != "B") throw InputError(flag + ": unknown unit '" + unit + "' (use K, M, G or T)");
  if (x < 0) throw InputError(flag + " must not be negative");
  return static_cast<size_t>(x * mul);
}

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
  if (!parse_numerics(a.numerics, &num)) throw InputError(std::string("--numerics must be ") + kNumericsChoices);
  if (!parse_spec_mode(a.speculative, &a.opt.sched.speculative)) throw InputError("--speculative must be on, off or auto");
  if (a.opt.sched.spec_drafts < 0) throw InputError("--speculative-drafts must be 0 (the drafter's own) or positive");
  if (a.opt.sched.ctx < 16) throw InputError("--ctx must be at least 16");
  if (a.opt.sched.max_seqs < 1) throw InputError("--max-seqs must be at least 1");
  a.opt.sched.kv_budget = parse_bytes("--kv-budget", a.kv_budget);
  if (a.opt.sched.kv_budget == 0) throw InputError("--kv-budget must be positive");
  a.opt.sched.prefix_cache_bytes = parse_bytes("--prefix-cache", a.prefix_cache);
  a.opt.max_body_bytes = parse_bytes("--max-body", a.max_body);
  if (a.opt.max_body_bytes < 1024) throw InputError("--max-body must be at least 1K");
  a.opt.max_header_bytes = parse_bytes("--max-header", a.max_header);
  if (a.opt.max_header_bytes < 1024) throw InputError("--max-header must be at least 1K");
  a.opt.stream_buffer_bytes = parse_bytes("--stream-buffer", a.stream_buffer);
  if (a.opt.stream_buffer_bytes < 4096) throw InputError("--stream-buffer must be at least 4K");
  for (auto [flag, v] : {std::pair{"--idle-timeout", a.opt.idle_timeout_s}, {"--header-timeout", a.opt.header_timeout_s},
                         {"--body-timeout", a.opt.body_timeout_s}, {"--write-timeout", a.opt.write_timeout_s}})
    if (!(v > 0)) throw InputError(std::string(flag) + " must be a positive number of seconds");
  if (a.opt.io_threads < 1 || a.opt.io_threads > 256) throw InputError("--io-threads must be 1..256");
  if (a.opt.worker_threads < 1 || a.opt.worker_threads > 256) throw InputError("--http-workers must be 1..256");
  if (a.opt.cors_origin.find_first_of(" \r\n,") != std::string::npos)
    throw InputError("--cors takes one origin (https://app.example) or '*', got '" + a.opt.cors_origin + "'");
  a.opt.default_thinking = !a.no_thinking;
  if (a.opt.max_output_tokens < 0) throw InputError("--max-output-tokens must be 0 (no cap) or positive");
  a.opt.response_store_bytes = parse_bytes("--response-store", a.response_store);
  if (a.opt.secret.empty()) {
    if (const char* s = std::getenv("V4HOST_SECRET")) a.opt.secret = s;
  }
  std::string tok_path = text::model_tokenizer_path(dir);
  if (tok_path.empty()) throw InputError("no tokenizer.json in " + dir + " (it ships with the official checkpoints)");
  auto tok = text::Tokenizer::from_file(tok_path);
  auto w = ModelWeights::load(dir, a.opt.sched.speculative != SpecMode::Off, a.quiet, populate_from(a.populate));
  Engine eng(*w, num);
  if (a.opt.sched.speculative == SpecMode::On && drafter_of(eng) == DrafterKind::None)
    throw InputError("--speculative on: the checkpoint has no drafter (neither the MTP head mtp.0.* nor the DSpark drafter mtp.0..2)");
  Service svc(a.opt, *w, eng, *tok);
  const int port = svc.bind();
  const DrafterKind dk = svc.scheduler().drafter();
  const std::string spec = dk == DrafterKind::None ? "" : std::string(", speculative ") + spec_mode_name(a.opt.sched.speculative) + " (" + drafter_name(dk) + ")";
  std::fprintf(stderr, "v4host: serving '%s' on http://%s:%d/v1 (ctx %lld, max %d sequences%s%s)\n", svc.model_id().c_str(),
               a.opt.host.c_str(), port, static_cast<long long>(a.opt.sched.ctx), a.opt.sched.max_seqs, spec.c_str(),
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
  c->add_option("--kv-budget", a->kv_budget, "bytes of per-sequence state across running sequences (e.g. 4G, 512M; default 4G)");
  c->add_option("--prefix-cache", a->prefix_cache, "bytes for the exact prefix cache (e.g. 1G; 0 = off)");
  c->add_option("--max-body", a->max_body, "largest accepted request body (default 8M)");
  c->add_option("--max-header", a->max_header, "largest accepted request header (default 64K; 431 above)");
  c->add_option("--idle-timeout", a->opt.idle_timeout_s, "seconds an idle keep-alive connection is kept (default 60)");
  c->add_option("--header-timeout", a->opt.header_timeout_s, "seconds a request header may take to arrive (default 10; 408 after)");
  c->add_option("--body-timeout", a->opt.body_timeout_s, "seconds a request body may take after its header (default 30; 408 after)");
  c->add_option("--write-timeout", a->opt.write_timeout_s, "seconds a client may read nothing before it is dropped (default 30)");
  c->add_option("--stream-buffer", a->stream_buffer, "stream bytes queued for a slow reader before it is dropped (default 4M)");
  c->add_option("--io-threads", a->opt.io_threads, "HTTP I/O threads (default 2)");
  c->add_option("--http-workers", a->opt.worker_threads, "threads preparing generation requests (default 2)");
  c->add_option("--cors", a->opt.cors_origin, "allow browser requests from ORIGIN ('*' = any): preflights answered, CORS headers added");
  c->add_option("--prefill-chunk", a->opt.sched.prefill_chunk, "prompt tokens per scheduler step");
  c->add_option("--queue", a->opt.sched.queue_limit, "waiting requests before 429");
  c->add_option("--numerics", a->numerics, "exact | official | fast | cachesim");
  add_populate_option(c, &a->populate);
  c->add_option("--speculative", a->speculative,
                 "on | off | auto (default): draft with the checkpoint's MTP head or DSpark drafter, verify exactly in the batch; "
                 "auto drafts per request while its acceptance pays");
  c->add_option("--speculative-drafts", a->opt.sched.spec_drafts, "drafts per step (default 0 = the drafter's own: MTP 1, DSpark 5)");
  c->add_flag("--no-thinking", a->no_thinking, "default to non-thinking mode when a request does not choose");
  c->add_option("--max-output-tokens", a->opt.max_output_tokens,
                "cap on generated tokens per request, whatever the client asks (0 = no cap; default 0)");
  c->add_option("--response-store", a->response_store, "bytes of stored /v1/responses conversations (LRU; default 64M; 0 = none)");
  c->add_option("--secret", a->opt.secret, "key for reasoning encrypted_content (also $V4HOST_SECRET; default: random per process)");
  c->add_flag("--log-prompts", a->opt.log_prompts, "log prompt text (off by default)");
  c->add_flag("--quiet,-q", a->quiet, "no progress output");
  c->callback([a] { run_serve(*a); });
}

}  // namespace v4::cli
