// v4host eval: evaluation on your own workloads against any OpenAI- or Anthropic-compatible
// endpoint — long-context retrieval (niah), sandboxed coding tasks (code), tool-call conformance
// (tools) or your own JSONL — resumable, with Wilson intervals, pass@k, and a paired A/B gate
// (eval compare: exact McNemar + paired bootstrap, --fail-if-worse).
#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>

#include "cli/commands.h"
#include "core/error.h"
#include "core/progress.h"
#include "eval/code_suite.h"
#include "eval/compare.h"
#include "eval/niah.h"
#include "eval/provenance.h"
#include "eval/report_html.h"
#include "eval/results.h"
#include "eval/runner.h"
#include "eval/scorers.h"
#include "eval/summary.h"
#include "eval/tools_suite.h"
#include "text/tokenizer.h"
#include "text/tokenizer_builder.h"

namespace v4::cli {

namespace {

using eval::Json;

std::atomic<bool> g_stop{false};
void on_sigint(int) { g_stop.store(true); }

struct EvalRunArgs {
  std::string suite, url, model, out, api = "openai", api_key_env, reasoning = "none", summary, html;
  int concurrency = 1, samples = 1, max_tokens = 0;  // 0: 1024 for code, else 256
  long limit = -1;
  uint64_t seed = 1;
  double temperature = -1, timeout = 600;
  bool quiet = false;
  // niah
  std::string lengths = "4k,32k,128k,1m", depths = "0,25,50,75,100", niah_modes = "single,mrcr", haystack, tokenizer, tokenizer_dir;
  int needles = 4, per_cell = 1;
  long ctx = 0;
  // code / tools
  std::string tasks;
  bool with_builtin = false, unsafe_no_sandbox = false;
  std::string memory = "1024";
};

std::unique_ptr<text::Tokenizer> load_tokenizer(const EvalRunArgs& a) {
  if (!a.tokenizer.empty()) return text::Tokenizer::from_file(a.tokenizer);
  if (!a.tokenizer_dir.empty()) {
    std::string p = text::model_tokenizer_path(a.tokenizer_dir);
    if (p.empty()) throw InputError("--tokenizer-dir: no tokenizer.json in " + a.tokenizer_dir);
    return text::Tokenizer::from_file(p);
  }
  // The V4 tokenizer rebuilt from the V3 one (same BPE; only special tokens differ).
  std::string v3 = text::find_v3_tokenizer_json();
  if (v3.empty())
    throw InputError("niah counts lengths with the V4 tokenizer: pass --tokenizer PATH/tokenizer.json or --tokenizer-dir MODEL_DIR");
  return text::Tokenizer::from_json(text::build_v4_tokenizer_json(v3));
}

void write_json(const std::string& path, const Json& j) {
  std::ofstream f(path, std::ios::binary);
  if (!f) throw InputError("cannot write " + path);
  f << j.dump(2) << "\n";
}

int run_eval_cmd(EvalRunArgs& a) {
  Progress::set_global_quiet(a.quiet);
  if (a.api != "openai" && a.api != "anthropic" && a.api != "responses") throw InputError("--api must be openai, responses or anthropic");
  if (a.concurrency < 1 || a.concurrency > 256) throw InputError("--concurrency must be in 1..256");
  if (a.samples < 1 || a.samples > 1000) throw InputError("--samples must be in 1..1000");
  if (a.max_tokens < 0) throw InputError("--max-tokens must be positive");
  if (a.max_tokens == 0) a.max_tokens = a.suite == "code" ? 1024 : 256;
  std::vector<std::string> modes = eval::split_list(a.reasoning);
  if (modes.empty()) throw InputError("--reasoning is empty (none, high or max)");
  for (const auto& m : modes)
    if (m != "none" && m != "high" && m != "max") throw InputError("--reasoning: unknown mode '" + m + "' (none, high or max)");
  if (a.temperature < 0) a.temperature = a.samples > 1 ? 0.8 : 0.0;

  eval::EndpointConfig ec;
  ec.url = a.url;
  ec.api = a.api;
  ec.model = a.model;
  ec.timeout_s = a.timeout;
  if (!a.api_key_env.empty()) {
    const char* k = std::getenv(a.api_key_env.c_str());
    if (!k || !*k) throw InputError("--api-key-env: $" + a.api_key_env + " is not set");
    ec.api_key = k;
  }
  eval::Endpoint ep(ec);

  // The suite. Files and flags are checked before the endpoint is contacted; niah needs the
  // endpoint's context to cap its lengths, so it is built after the probe.
  std::unique_ptr<eval::Sandbox> sandbox;
  std::unique_ptr<eval::Suite> suite;
  std::unique_ptr<text::Tokenizer> tok;
  eval::NiahOptions no;
  if (a.suite == "niah") {
    no.lengths = eval::parse_lengths(a.lengths, "--lengths");
    no.depths = eval::parse_depths(a.depths, "--depths");
    no.modes = eval::split_list(a.niah_modes);
    no.needles = a.needles;
    no.per_cell = a.per_cell;
    no.seed = a.seed;
    no.haystack_dir = a.haystack;
    // The answer is a 7-digit code; with reasoning on it needs room to think first.
    const bool thinks = std::any_of(modes.begin(), modes.end(), [](const std::string& m) { return m != "none"; });
    no.answer_tokens = thinks ? a.max_tokens : std::min(a.max_tokens, 64);
    tok = load_tokenizer(a);
  } else if (a.suite == "code") {
    eval::SandboxOptions so;
    so.unsafe = a.unsafe_no_sandbox;
    try {
      so.memory_bytes = std::stol(a.memory) * 1024L * 1024L;
    } catch (...) {
      throw InputError("--memory must be MiB (an integer)");
    }
    sandbox = std::make_unique<eval::Sandbox>(so);
    sandbox->check();  // fail closed
    if (a.unsafe_no_sandbox) std::fprintf(stderr, "v4host eval: WARNING: --unsafe-no-sandbox: model-written code runs WITHOUT isolation\n");
    suite = eval::make_code_suite(a.tasks, a.with_builtin, *sandbox);
  } else if (a.suite == "tools") {
    suite = eval::make_tools_suite(a.tasks, a.with_builtin);
  } else if (std::filesystem::is_regular_file(a.suite)) {
    suite = eval::load_user_suite(a.suite);
  } else {
    throw InputError("unknown suite '" + a.suite + "': use niah, code, tools or the path of your JSONL file");
  }
  long ctx = 0;
  Json server = ep.probe_models(&ctx);  // unreachable endpoint -> InputError (exit 2)
  if (a.ctx > 0) ctx = a.ctx;
  if (a.suite == "niah") {
    no.context = ctx;
    suite = eval::make_niah_suite(no, *tok);
  }

  eval::ResultsWriter out(a.out);
  eval::RunOptions ro;
  ro.reasoning = modes;
  ro.samples = a.samples;
  ro.concurrency = a.concurrency;
  ro.limit = a.limit;
  ro.seed = a.seed;
  ro.temperature = a.temperature;
  ro.max_tokens = a.max_tokens;
  ro.quiet = a.quiet;
  ro.stop = &g_stop;
  const std::string started = eval::utc_now();
  auto prev = std::signal(SIGINT, on_sigint);
  eval::RunReport rep = eval::run_eval(*suite, ep, out, ro);
  std::signal(SIGINT, prev);

  // Summary over what the file holds for this run's items.
  std::vector<eval::Outcome> all = eval::load_results(a.out);
  std::vector<eval::Item> items = eval::expand_items(suite->items(), modes, a.limit);
  std::set<std::string> keys;
  for (const auto& it : items)
    for (int s = 0; s < a.samples; ++s) keys.insert(it.id + "#" + std::to_string(s));
  std::vector<eval::Outcome> mine;
  for (auto& o : all)
    if (keys.count(o.key())) mine.push_back(std::move(o));
  Json summary = eval::summarize(suite->name(), mine);
  Json desc = suite->describe();
  for (auto it = desc.begin(); it != desc.end(); ++it) summary[it.key()] = it.value();
  summary["complete"] = mine.size() == keys.size();
  Json prov = {{"endpoint", ep.config().url}, {"api", a.api}, {"model", a.model}, {"server", server},
               {"v4host_version", "0.1.0"}, {"seed", a.seed}, {"samples", a.samples}, {"reasoning", a.reasoning},
               {"temperature", a.temperature}, {"max_tokens", a.max_tokens}, {"concurrency", a.concurrency},
               {"results", a.out}, {"machine", eval::machine_info()}, {"started", started}, {"finished", eval::utc_now()}};
  if (ctx > 0) prov["context"] = ctx;
  if (sandbox) prov["sandbox"] = sandbox->mode();
  if (a.limit >= 0) prov["limit"] = a.limit;
  summary["provenance"] = prov;
  if (!a.summary.empty()) write_json(a.summary, summary);
  if (!a.html.empty()) eval::write_run_html(a.html, summary);
  std::fprintf(stdout, "%s", eval::format_summary(summary).c_str());
  std::fprintf(stdout, "  this run: %zu done now, %zu already in %s, %zu to go\n", rep.ran, rep.skipped, a.out.c_str(),
               keys.size() - mine.size());
  if (rep.interrupted) {
    std::fprintf(stderr, "v4host eval: interrupted; rerun the same command to continue (finished items are kept in %s)\n", a.out.c_str());
    return 130;
  }
  if (rep.endpoint_failed) {
    std::fprintf(stderr, "v4host eval: error: the endpoint stopped answering (%s); rerun the same command to continue\n", rep.last_error.c_str());
    return 2;
  }
  if (rep.transport_errors)
    std::fprintf(stderr, "v4host eval: %zu item(s) got no answer from the endpoint (last: %s); rerun the same command to redo them\n",
                 rep.transport_errors, rep.last_error.c_str());
  return 0;
}

struct EvalCompareArgs {
  std::string a, b, json_out, html;
  bool json = false, fail_if_worse = false;
  double alpha = 0.05;
  int bootstrap = 10000;
  uint64_t seed = 1;
};

int run_compare_cmd(const EvalCompareArgs& c) {
  if (!(c.alpha > 0 && c.alpha < 1)) throw InputError("--alpha must be in (0, 1)");
  auto A = eval::load_results(c.a);
  auto B = eval::load_results(c.b);
  eval::CompareOptions o;
  o.alpha = c.alpha;
  o.bootstrap = c.bootstrap;
  o.seed = c.seed;
  Json r = eval::compare_results(A, B, o);
  if (r["n_pairs"].get<long>() == 0) throw InputError("no item ids in common between " + c.a + " and " + c.b);
  r["a"] = c.a;
  r["b"] = c.b;
  if (c.json) std::fprintf(stdout, "%s\n", r.dump(2).c_str());
  else std::fprintf(stdout, "%s", eval::format_compare(r, c.a, c.b).c_str());
  if (!c.json_out.empty()) write_json(c.json_out, r);
  if (!c.html.empty()) eval::write_compare_html(c.html, r, c.a, c.b);
  if (c.fail_if_worse && r["verdict"] == "worse") {
    std::fprintf(stderr, "v4host eval compare: B is significantly worse than A (p = %.4g): failing (--fail-if-worse)\n", r["p_value"].get<double>());
    return 1;
  }
  return 0;
}

struct EvalReportArgs {
  std::string results, suite, summary, html;
};

int run_report_cmd(const EvalReportArgs& a) {
  auto rs = eval::load_results(a.results);
  Json s = eval::summarize(a.suite.empty() ? std::filesystem::path(a.results).stem().string() : a.suite, rs);
  s["provenance"] = {{"results", a.results}};
  if (!a.summary.empty()) write_json(a.summary, s);
  if (!a.html.empty()) eval::write_run_html(a.html, s);
  std::fprintf(stdout, "%s", eval::format_summary(s).c_str());
  return 0;
}

}  // namespace

void add_eval_command(CLI::App& app) {
  auto* e = app.add_subcommand("eval", "evaluate an endpoint on your workloads: niah, code, tools or your JSONL; compare two runs");
  e->require_subcommand(1);

  auto a = std::make_shared<EvalRunArgs>();
  auto* r = e->add_subcommand("run", "run a suite against an endpoint, resumable, one JSON line per item and sample");
  r->add_option("suite", a->suite, "niah | code | tools | PATH.jsonl (your items)")->required();
  r->add_option("--url", a->url, "endpoint base URL, e.g. http://127.0.0.1:8000/v1")->required();
  r->add_option("--model", a->model, "model name sent in requests")->required();
  r->add_option("--out", a->out, "results JSONL (appended; an existing file is continued)")->required();
  r->add_option("--api", a->api, "openai (chat completions) | responses | anthropic (messages)");
  r->add_option("--api-key-env", a->api_key_env, "environment variable holding the API key");
  r->add_option("--concurrency", a->concurrency, "requests in flight (default 1)");
  r->add_option("--samples", a->samples, "samples per item (pass@k; default 1)");
  r->add_option("--seed", a->seed, "seed for generated items and sampling (default 1)");
  r->add_option("--reasoning", a->reasoning, "none | high | max, or a list (none,high) to run every item per mode (default none)");
  r->add_option("--limit", a->limit, "first N items only");
  r->add_option("--summary", a->summary, "write the summary JSON here");
  r->add_option("--html", a->html, "write the HTML report here");
  r->add_option("--max-tokens", a->max_tokens, "answer tokens per turn (default 256; 1024 for code)");
  r->add_option("--temperature", a->temperature, "sampling temperature (default 0, or 0.8 with --samples > 1)");
  r->add_option("--timeout", a->timeout, "seconds per request (default 600)");
  r->add_option("--lengths", a->lengths, "niah: context lengths in tokens (default 4k,32k,128k,1m; capped at the endpoint's context)");
  r->add_option("--depths", a->depths, "niah: needle depths in % (default 0,25,50,75,100)");
  r->add_option("--niah-modes", a->niah_modes, "niah: single,mrcr (default both)");
  r->add_option("--needles", a->needles, "niah: look-alike needles in mrcr mode (default 4)");
  r->add_option("--per-cell", a->per_cell, "niah: items per length x depth cell (default 1)");
  r->add_option("--haystack", a->haystack, "niah: directory of your text files (e.g. a repository) instead of the built-in corpus");
  r->add_option("--tokenizer", a->tokenizer, "niah: tokenizer.json used to count lengths");
  r->add_option("--tokenizer-dir", a->tokenizer_dir, "niah: model directory holding tokenizer.json");
  r->add_option("--ctx", a->ctx, "the endpoint's context in tokens (default: from /v1/models)");
  r->add_option("--tasks", a->tasks, "code / tools: your JSONL tasks instead of the built-in set");
  r->add_flag("--with-builtin", a->with_builtin, "code / tools: run the built-in set as well as --tasks");
  r->add_flag("--unsafe-no-sandbox", a->unsafe_no_sandbox, "code: run tests WITHOUT the bubblewrap sandbox (flagged in the report)");
  r->add_option("--memory", a->memory, "code: address-space limit per test process in MiB (default 1024)");
  r->add_flag("--quiet,-q", a->quiet, "no progress bar");
  r->callback([a] {
    int rc = run_eval_cmd(*a);
    if (rc != 0) std::exit(rc);
  });

  auto c = std::make_shared<EvalCompareArgs>();
  auto* cm = e->add_subcommand("compare", "paired A/B comparison of two results files (exact McNemar, paired bootstrap)");
  cm->add_option("a", c->a, "baseline results JSONL")->required();
  cm->add_option("b", c->b, "candidate results JSONL")->required();
  cm->add_flag("--json", c->json, "print the comparison as JSON");
  cm->add_option("--json-out", c->json_out, "also write the JSON here");
  cm->add_option("--html", c->html, "write the HTML A/B report here");
  cm->add_flag("--fail-if-worse", c->fail_if_worse, "exit 1 when B is significantly worse than A");
  cm->add_option("--alpha", c->alpha, "significance level (default 0.05)");
  cm->add_option("--bootstrap", c->bootstrap, "bootstrap resamples (default 10000)");
  cm->add_option("--seed", c->seed, "bootstrap seed (default 1)");
  cm->callback([c] {
    int rc = run_compare_cmd(*c);
    if (rc != 0) std::exit(rc);
  });

  auto p = std::make_shared<EvalReportArgs>();
  auto* rp = e->add_subcommand("report", "summary / HTML report of an existing results file");
  rp->add_option("results", p->results, "results JSONL")->required();
  rp->add_option("--suite", p->suite, "suite name shown in the report");
  rp->add_option("--summary", p->summary, "write the summary JSON here");
  rp->add_option("--html", p->html, "write the HTML report here");
  rp->callback([p] { run_report_cmd(*p); });
}

}  // namespace v4::cli
