// `v4host bench`: latency and throughput of an OpenAI- or Anthropic-compatible endpoint, and
// `v4host bench compare A.json B.json`. See docs/bench.md.
#include <sys/utsname.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <memory>
#include <sstream>
#include <thread>

#include "bench/compare.h"
#include "bench/metrics.h"
#include "bench/output.h"
#include "bench/runner.h"
#include "cli/commands.h"
#include "core/error.h"
#include "text/tokenizer.h"

namespace v4::cli {

namespace {

using namespace v4::bench;

std::atomic<bool> g_stop{false};

void on_sigint(int) {
  if (g_stop.exchange(true)) {  // second Ctrl-C: give up at once
    std::signal(SIGINT, SIG_DFL);
    std::raise(SIGINT);
  }
}

struct BenchArgs {
  std::string url, model, api = "chat", api_key_env, concurrency, rate, slo, duration, workload = "synthetic", input_len = "128",
                              output_len = "128", reasoning = "default", file, extra_body, tokenizer, model_dir, json_out, csv_out,
                              html_out;
  double burstiness = 1, slo_attainment = 0.9, search_start = 1, search_max = 1024, replay_speed = 1, timeout_s = 600;
  int max_concurrency = 0, warmup = 0, io_threads = 0, prefixes = 4, prefix_tokens = 512, turns = 4, tool_result_tokens = 64, search_steps = 4;
  long requests = -1;
  uint64_t seed = 0;
  bool slo_search = false, replay = false, no_force = false, no_stream = false, quiet = false, io_realtime = false;
};

double parse_duration_s(const std::string& flag, const std::string& v) {
  size_t pos = 0;
  double x = 0;
  try {
    x = std::stod(v, &pos);
  } catch (const std::exception&) {
    throw InputError(flag + ": expected a duration such as 30s, 2m or 500ms, got '" + v + "'");
  }
  std::string u = v.substr(pos);
  double mul = u.empty() || u == "s" ? 1 : u == "ms" ? 0.001 : u == "m" || u == "min" ? 60 : u == "h" ? 3600 : -1;
  if (mul < 0 || !(x > 0)) throw InputError(flag + ": expected a positive duration such as 30s, 2m or 500ms, got '" + v + "'");
  return x * mul;
}

template <class T>
std::vector<T> parse_list(const std::string& flag, const std::string& s) {
  std::vector<T> out;
  std::stringstream ss(s);
  std::string p;
  while (std::getline(ss, p, ',')) {
    size_t pos = 0;
    double v = 0;
    try {
      v = std::stod(p, &pos);
    } catch (const std::exception&) {
      pos = 0;
    }
    if (pos == 0 || pos != p.size() || !(v > 0)) throw InputError(flag + ": expected positive numbers separated by commas, got '" + s + "'");
    out.push_back(static_cast<T>(v));
  }
  if (out.empty()) throw InputError(flag + ": empty list");
  return out;
}

std::string read_file_or_empty(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return {};
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  char b[24];
  std::snprintf(b, sizeof b, "%016llx", static_cast<unsigned long long>(h));
  return b;
}

json machine_info() {
  json m;
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  m["hostname"] = host;
  utsname u{};
  if (uname(&u) == 0) m["kernel"] = std::string(u.sysname) + " " + u.release + " " + u.machine;
  m["cpus"] = std::thread::hardware_concurrency();
  std::ifstream ci("/proc/cpuinfo");
  std::string line;
  while (std::getline(ci, line))
    if (line.rfind("model name", 0) == 0) {
      m["cpu_model"] = line.substr(line.find(':') + 2);
      break;
    }
  return m;
}

std::string command_line() {
  std::string raw = read_file_or_empty("/proc/self/cmdline"), out;
  for (char c : raw) out += c ? c : ' ';
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

std::string utc_now() {
  std::time_t t = std::time(nullptr);
  char b[32];
  std::strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return b;
}

// GET /v1/models: reachability, key, model id. Returns the model's list entry (or null).
json preflight(const Target& t, std::string& model, const std::string& key_env) {
  net::ClientHeaders h = request_headers(t.api, t.api_key);
  net::Timeouts to;
  to.connect = std::chrono::milliseconds(10000);
  to.first_byte = std::chrono::milliseconds(30000);
  to.total = std::chrono::milliseconds(60000);
  auto r = net::get(t.base_url + "/models", h, to);
  if (!r.ok()) throw InputError("--url: cannot reach " + t.base_url + ": " + r.error_message);
  if (r.status == 401 || r.status == 403)
    throw InputError("the endpoint rejected the credentials (HTTP " + std::to_string(r.status) + ")" +
                     (key_env.empty() ? std::string("; pass --api-key-env VAR") : "; check $" + key_env));
  if (r.status != 200) {
    if (model.empty()) throw InputError("--model is required: " + t.base_url + "/models answered HTTP " + std::to_string(r.status));
    std::fprintf(stderr, "v4host bench: warning: %s/models answered HTTP %d; not checking the model name\n", t.base_url.c_str(), r.status);
    return nullptr;
  }
  json j = json::parse(r.body, nullptr, false);
  std::vector<std::string> ids;
  json entry;
  if (j.is_object() && j.contains("data") && j["data"].is_array())
    for (const auto& m : j["data"])
      if (m.is_object() && m.contains("id") && m["id"].is_string()) {
        ids.push_back(m["id"]);
        if (m["id"] == model) entry = m;
      }
  if (model.empty()) {
    if (ids.size() != 1) throw InputError("--model is required (" + t.base_url + " serves " + std::to_string(ids.size()) + " models)");
    model = ids[0];
    entry = j["data"][0];
  } else if (entry.is_null() && !ids.empty()) {
    std::string list;
    for (const auto& i : ids) list += (list.empty() ? "" : ", ") + i;
    throw InputError("--model: '" + model + "' is not served by " + t.base_url + " (it serves: " + list + ")");
  }
  return entry;
}

struct Printer {
  bool quiet, tty;
  std::string label;
  std::chrono::steady_clock::time_point last{};
  void operator()(const Progress& p, bool final) {
    if (quiet) return;
    auto now = std::chrono::steady_clock::now();
    if (!final && !tty && now - last < std::chrono::seconds(5)) return;
    last = now;
    const int width = 24;
    int filled = p.target > 0 ? static_cast<int>(width * std::min(1.0, double(p.done) / p.target)) : 0;
    std::string bar = p.target > 0 ? "[" + std::string(filled, '#') + std::string(width - filled, '.') + "] " : "";
    std::fprintf(stderr, "%s%s %s%ld done%s, %ld err, %.1f s, %.1f req/s, %.0f out tok/s, TTFT p50 %.1f ms%s", tty ? "\r" : "",
                 label.c_str(), bar.c_str(), p.done, p.target > 0 ? ("/" + std::to_string(p.target)).c_str() : "", p.errors, p.elapsed_s,
                 p.elapsed_s > 0 ? p.done / p.elapsed_s : 0.0, p.elapsed_s > 0 ? p.output_tokens / p.elapsed_s : 0.0, p.ttft_p50_ms,
                 tty ? (final ? "\n" : "   ") : "\n");
    std::fflush(stderr);
  }
};

json load_json(const LoadSpec& l) {
  json j = {{"mode", l.mode == LoadSpec::by_concurrency ? "concurrency" : l.mode == LoadSpec::by_rate ? "rate" : "replay"}, {"requests", l.requests},
            {"duration_s", l.duration_s}, {"warmup", l.warmup}, {"seed", l.seed}};
  if (l.mode == LoadSpec::by_concurrency) j["concurrency"] = l.concurrency;
  if (l.mode == LoadSpec::by_rate) j.update({{"rate", l.rate}, {"burstiness", l.burstiness}, {"max_concurrency", l.max_concurrency}});
  if (l.mode == LoadSpec::replay) j["replay_speed"] = l.replay_speed;
  return j;
}

void run_bench(BenchArgs& a) {
  if (a.url.empty()) throw InputError("--url is required (the endpoint's base URL, e.g. http://127.0.0.1:8000/v1)");
  Target t;
  t.base_url = normalize_base_url(a.url);
  t.api = parse_api(a.api);
  t.model = a.model;
  t.stream = !a.no_stream;
  if (a.io_threads < 0 || a.io_threads > 64) throw InputError("--io-threads must be between 0 (one per core) and 64");
  t.io_threads = a.io_threads;
  t.io_realtime = a.io_realtime;
  if (!(a.timeout_s > 0)) throw InputError("--timeout must be positive");
  t.timeouts.total = std::chrono::milliseconds(static_cast<int64_t>(a.timeout_s * 1000));
  t.timeouts.first_byte = t.timeouts.total;
  if (!a.api_key_env.empty()) {
    const char* k = std::getenv(a.api_key_env.c_str());
    if (!k || !*k) throw InputError("--api-key-env: environment variable " + a.api_key_env + " is not set");
    t.api_key = k;
  }
  // Load plan (validated before any network traffic).
  auto slo = parse_slo(a.slo);
  if (a.slo_search && slo.empty()) throw InputError("--slo-search needs --slo (e.g. --slo ttft=2s,tpot=50ms)");
  if (!a.concurrency.empty() && !a.rate.empty()) throw InputError("--concurrency and --rate are alternatives; pass one");
  if (!(a.burstiness > 0)) throw InputError("--burstiness must be positive (1 = Poisson)");
  if (!(a.slo_attainment > 0 && a.slo_attainment <= 1)) throw InputError("--slo-attainment must be in (0, 1]");
  if (a.warmup < 0) throw InputError("--warmup must be >= 0");
  double duration = a.duration.empty() ? 0 : parse_duration_s("--duration", a.duration);
  long requests = a.requests >= 0 ? a.requests : (duration > 0 ? 0 : 100);
  if (requests == 0 && duration == 0) throw InputError("--requests must be positive (or give --duration)");
  WorkloadSpec ws;
  ws.kind = a.workload;
  ws.input = LengthDist::parse("--input-len", a.input_len);
  ws.output = LengthDist::parse("--output-len", a.output_len);
  ws.force_output = !a.no_force;
  ws.reasoning = parse_reasoning(a.reasoning);
  ws.prefixes = a.prefixes;
  ws.prefix_tokens = a.prefix_tokens;
  ws.turns = a.turns;
  ws.tool_result_tokens = a.tool_result_tokens;
  ws.jsonl = a.file;
  ws.seed = a.seed;
  if (!a.extra_body.empty()) {
    ws.extra_body = json::parse(a.extra_body, nullptr, false);
    if (ws.extra_body.is_discarded() || !ws.extra_body.is_object()) throw InputError("--extra-body must be a JSON object");
  }
  if (a.replay && ws.kind != "jsonl") throw InputError("--replay needs --workload jsonl --file PATH (with timestamps)");
  std::unique_ptr<text::Tokenizer> tok;
  std::string tok_path = a.tokenizer;
  if (tok_path.empty() && !a.model_dir.empty()) tok_path = a.model_dir + "/tokenizer.json";
  if (!tok_path.empty()) tok = text::Tokenizer::from_file(tok_path);
  else if (!a.quiet)
    std::fprintf(stderr, "v4host bench: no --tokenizer / --model-dir: input lengths are approximate and usage is not cross-checked\n");
  Workload wl(ws, tok.get());

  std::vector<LoadSpec> plan;
  LoadSpec base;
  base.requests = requests;
  base.duration_s = duration;
  base.warmup = a.warmup;
  base.seed = a.seed;
  base.burstiness = a.burstiness;
  base.max_concurrency = a.max_concurrency;
  base.replay_speed = a.replay_speed;
  if (a.replay) {
    base.mode = LoadSpec::replay;
    if (a.requests < 0) base.requests = wl.size();
    plan.push_back(base);
  } else if (!a.rate.empty()) {
    for (double r : parse_list<double>("--rate", a.rate)) {
      LoadSpec l = base;
      l.mode = LoadSpec::by_rate;
      l.rate = r;
      plan.push_back(l);
    }
  } else if (!a.slo_search) {
    for (int c : parse_list<int>("--concurrency", a.concurrency.empty() ? "1" : a.concurrency)) {
      LoadSpec l = base;
      l.mode = LoadSpec::by_concurrency;
      l.concurrency = c;
      plan.push_back(l);
    }
  }

  json entry = preflight(t, t.model, a.api_key_env);

  json doc;
  json prov = {{"endpoint", t.base_url}, {"api", api_name(t.api)}, {"model", t.model}, {"bench_version", "v4host 0.1.0"},
               {"started_utc", utc_now()}, {"machine", machine_info()}, {"command", command_line()}, {"seed", a.seed}};
  if (!entry.is_null()) prov["model_entry"] = entry;
  if (tok) prov["tokenizer"] = {{"path", tok_path}, {"fnv1a64", fnv1a(read_file_or_empty(tok_path))}};
  doc["v4host_bench"] = 1;
  doc["config"] = {{"workload", ws.to_json()}, {"stream", t.stream}, {"timeout_s", a.timeout_s}, {"io_threads", a.io_threads}, {"io_realtime", a.io_realtime}};
  if (!slo.empty()) {
    json sj;
    for (const auto& [k, v] : slo) sj[k + "_ms"] = v;
    doc["config"]["slo"] = sj;
  }
  doc["points"] = json::array();
  g_stop = false;
  auto prev = std::signal(SIGINT, on_sigint);
  bool interrupted = false;
  net::ClientHeaders server_headers;
  SummaryOptions so;
  so.slo = slo;
  so.seed = a.seed;
  bool realtime_warned = false;
  auto run_point = [&](const LoadSpec& l) -> json {
    Printer pr{a.quiet, static_cast<bool>(isatty(2)), l.label()};
    RunResult res = run_load(t, l, wl, tok.get(), std::ref(pr), &g_stop);
    interrupted = interrupted || res.interrupted;
    if (a.io_realtime && !res.io_realtime && !realtime_warned) {
      std::fprintf(stderr, "v4host bench: warning: --io-realtime: %s (normal priority otherwise)\n", res.io_realtime_error.c_str());
      realtime_warned = true;
    }
    if (server_headers.empty()) server_headers = res.server_headers;
    json p;
    p["load"] = load_json(l);
    if (a.io_realtime) p["io_realtime"] = res.io_realtime;
    p["summary"] = summarize_point(res, l, so);
    json rq = json::array();
    for (const auto& r : res.records) rq.push_back(record_to_json(r));
    p["requests"] = rq;
    if (!a.quiet) std::fprintf(stderr, "\n%s\n", terminal_summary(p["summary"]).c_str());
    doc["points"].push_back(p);
    return p;
  };
  for (const auto& l : plan) {
    if (interrupted) break;
    run_point(l);
  }
  if (a.slo_search && !interrupted) {
    // Highest arrival rate whose SLO attainment reaches the target: double until it fails, then
    // bisect between the last pass and the first failure.
    json probes = json::array();
    double lo = 0, hi = 0, r = a.search_start;
    auto attain = [&](double rate) {
      LoadSpec l = base;
      l.mode = LoadSpec::by_rate;
      l.rate = rate;
      json p = run_point(l);
      double at = p["summary"]["goodput"]["attainment"].is_number() ? p["summary"]["goodput"]["attainment"].get<double>() : 0;
      probes.push_back({{"rate", rate}, {"attainment", at}, {"meets", at >= a.slo_attainment}});
      return at >= a.slo_attainment;
    };
    while (!interrupted && r <= a.search_max) {
      if (attain(r)) lo = r, r *= 2;
      else {
        hi = r;
        break;
      }
    }
    for (int i = 0; i < a.search_steps && hi > 0 && !interrupted; ++i) {
      double mid = lo > 0 ? (lo + hi) / 2 : hi / 2;
      if (attain(mid)) lo = mid;
      else hi = mid;
    }
    doc["slo_search"] = {{"target_attainment", a.slo_attainment}, {"max_rate_meeting_slo", lo > 0 ? json(lo) : json(nullptr)},
                         {"first_failing_rate", hi > 0 ? json(hi) : json(nullptr)}, {"probes", probes}};
    if (!a.quiet)
      std::fprintf(stderr, "SLO search: highest rate meeting the SLO for %.0f%% of requests: %s req/s\n", a.slo_attainment * 100,
                   lo > 0 ? std::to_string(lo).c_str() : "none (even the lowest rate failed)");
  }
  std::signal(SIGINT, prev);
  json sh = json::object();
  for (const auto& [k, v] : server_headers) {
    std::string lk;
    for (char c : k) lk += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (lk == "server" || lk == "via" || lk == "x-powered-by" || lk.rfind("openai-", 0) == 0 || lk.rfind("anthropic-", 0) == 0 ||
        lk == "x-v4host-version" || lk == "x-model")
      sh[lk] = v;
  }
  prov["server_headers"] = sh;
  if (sh.contains("server")) prov["server"] = sh["server"];
  doc["provenance"] = prov;
  doc["interrupted"] = interrupted;
  doc["metric_definitions"] = json::array();
  for (const auto& d : metric_defs())
    doc["metric_definitions"].push_back({{"key", d.key}, {"vllm", d.vllm}, {"aiperf", d.aiperf}, {"formula", d.formula}});
  if (!a.json_out.empty()) write_json(doc, a.json_out);
  if (!a.csv_out.empty()) write_csv(doc, a.csv_out);
  if (!a.html_out.empty()) write_html(doc, a.html_out);
  if (!a.quiet) std::fprintf(stderr, "metric definitions:\n%s", metric_definitions_text().c_str());
  if (interrupted) {
    std::fprintf(stderr, "v4host bench: interrupted; results so far written\n");
    std::fflush(nullptr);
    std::exit(130);
  }
}

struct CompareArgs {
  std::string a, b, fail_on, json_out;
  uint64_t seed = 1;
  double confidence = 0.95;
};

void run_compare(CompareArgs& c) {
  CompareOptions o;
  o.seed = c.seed;
  o.confidence = c.confidence;
  if (!(c.confidence > 0 && c.confidence < 1)) throw InputError("--confidence must be in (0, 1)");
  if (!c.fail_on.empty()) o.fail_on = parse_fail_on(c.fail_on);
  json a = read_result(c.a), b = read_result(c.b);
  auto r = compare_results(a, b, o);
  std::printf("%s", r.text.c_str());
  if (!c.json_out.empty()) write_json(json{{"pairing", r.pairing}, {"rows", r.rows}, {"failures", r.failures}}, c.json_out);
  if (!r.failures.empty()) {
    for (const auto& f : r.failures) std::printf("FAIL: %s\n", f.c_str());
    std::fflush(stdout);
    std::exit(1);
  }
}

}  // namespace

void add_bench_command(CLI::App& app) {
  auto a = std::make_shared<BenchArgs>();
  auto* c = app.add_subcommand("bench", "latency and throughput of an OpenAI- or Anthropic-compatible endpoint (see docs/bench.md)");
  c->add_option("--url", a->url, "endpoint base URL, e.g. http://127.0.0.1:8000/v1");
  c->add_option("--model", a->model, "model id (default: the only model the endpoint lists)");
  c->add_option("--api", a->api, "chat | completions | responses | messages (default chat)");
  c->add_option("--api-key-env", a->api_key_env, "environment variable holding the API key");
  c->add_option("--concurrency", a->concurrency, "closed-loop concurrency, or a sweep: 1,4,16,64");
  c->add_option("--rate", a->rate, "open-loop arrival rate(s) in requests/s, e.g. 2 or 1,2,4");
  c->add_option("--burstiness", a->burstiness, "gamma shape of arrival gaps (1 = Poisson, <1 burstier)");
  c->add_option("--max-concurrency", a->max_concurrency, "cap on requests in flight in rate mode");
  c->add_option("--slo", a->slo, "SLOs for goodput, e.g. ttft=2s,tpot=50ms (keys ttft, ttfa, tpot, e2e, reasoning)");
  c->add_flag("--slo-search", a->slo_search, "search the highest rate meeting --slo");
  c->add_option("--slo-attainment", a->slo_attainment, "fraction of requests that must meet the SLO (default 0.9)");
  c->add_option("--search-start", a->search_start, "first rate of the SLO search (req/s, default 1)");
  c->add_option("--search-max", a->search_max, "highest rate the SLO search tries (default 1024)");
  c->add_option("--search-steps", a->search_steps, "bisection steps of the SLO search (default 4)");
  c->add_option("--requests", a->requests, "measured requests per load point (default 100)");
  c->add_option("--duration", a->duration, "stop starting requests after this long (e.g. 60s, 5m)");
  c->add_option("--warmup", a->warmup, "unmeasured requests before each load point");
  c->add_option("--seed", a->seed, "seed for workloads, arrivals and bootstrap intervals");
  c->add_option("--workload", a->workload, "synthetic | shared-prefix | agent | jsonl");
  c->add_option("--input-len", a->input_len, "input tokens: N, uniform:MIN,MAX or normal:MEAN,SD (default 128)");
  c->add_option("--output-len", a->output_len, "output tokens (max_tokens): N, uniform:MIN,MAX or normal:MEAN,SD (default 128)");
  c->add_flag("--no-force-output", a->no_force, "do not send min_tokens/ignore_eos (let the model stop early)");
  c->add_option("--reasoning", a->reasoning, "reasoning mode: default | off | on | max");
  c->add_option("--prefixes", a->prefixes, "shared-prefix: number of system prompts (default 4)");
  c->add_option("--prefix-tokens", a->prefix_tokens, "shared-prefix: tokens per system prompt (default 512)");
  c->add_option("--turns", a->turns, "agent: turns per session (default 4)");
  c->add_option("--tool-result-tokens", a->tool_result_tokens, "agent: tokens per tool result (default 64)");
  c->add_option("--file", a->file, "jsonl: the request file");
  c->add_flag("--replay", a->replay, "jsonl: start requests at their recorded timestamps");
  c->add_option("--replay-speed", a->replay_speed, "jsonl replay: time compression factor (2 = twice as fast)");
  c->add_option("--extra-body", a->extra_body, "JSON object merged into every request body");
  c->add_option("--tokenizer", a->tokenizer, "tokenizer.json for exact lengths and usage cross-checks");
  c->add_option("--model-dir", a->model_dir, "model directory whose tokenizer.json to use");
  c->add_flag("--no-stream", a->no_stream, "non-streaming requests (TTFT = E2E)");
  c->add_option("--timeout", a->timeout_s, "per-request timeout in seconds (default 600)");
  c->add_option("--io-threads", a->io_threads, "client I/O threads the streams are spread over (default 0: one per core, at most 4)");
  c->add_flag("--io-realtime", a->io_realtime,
              "run the I/O threads at real-time priority (SCHED_FIFO 1; needs CAP_SYS_NICE) so that other work on the machine does not delay reads");
  c->add_option("--json", a->json_out, "write every request's timings + summary + provenance");
  c->add_option("--csv", a->csv_out, "write one CSV row per request");
  c->add_option("--html", a->html_out, "write a self-contained HTML report with SVG charts");
  c->add_flag("--quiet,-q", a->quiet, "no progress or summary on stderr");

  auto ca = std::make_shared<CompareArgs>();
  auto* cmp = c->add_subcommand("compare", "compare two `bench --json` results: differences with confidence intervals");
  cmp->add_option("A", ca->a, "baseline result (A)")->required();
  cmp->add_option("B", ca->b, "candidate result (B)")->required();
  cmp->add_option("--fail-on", ca->fail_on, "exit 1 when crossed, e.g. 'p99_ttft>+10%,mean_tpot>+2ms,output_throughput<-5%'");
  cmp->add_option("--seed", ca->seed, "bootstrap seed");
  cmp->add_option("--confidence", ca->confidence, "interval level (default 0.95)");
  cmp->add_option("--json", ca->json_out, "write the comparison rows as JSON");
  cmp->callback([ca] { run_compare(*ca); });
  c->callback([a, cmp] {
    if (cmp->parsed()) return;
    run_bench(*a);
  });
}

}  // namespace v4::cli
