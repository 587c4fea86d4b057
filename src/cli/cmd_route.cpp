// v4host route: the gateway in front of self-hosted V4 and hosted APIs (docs/route.md).
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include <fmt/format.h>

#include "cli/commands.h"
#include "cli/demo_model.h"
#include "core/error.h"
#include "router/config.h"
#include "router/proxy.h"
#include "router/upstream_client.h"
#include "text/tokenizer.h"
#include "text/tokenizer_builder.h"

namespace v4::cli {

namespace {

namespace fs = std::filesystem;

struct RouteArgs {
  std::string config, check_config, host, ledger;
  int port = -1;
  bool demo = false, quiet = false;
  int io_threads = 0;
  int upstream_threads = 0;
  bool io_realtime = false;
  int io_slice_us = 100;
  int io_spin_us = 0;
};

router::Proxy* g_proxy = nullptr;
void on_signal(int) {
  if (g_proxy) g_proxy->request_stop();
}

// A child `v4host serve --demo` on a free port; killed when this process ends.
struct DemoServer {
  pid_t pid = -1;
  int port = 0;
};

int free_port() {
  // Let the kernel pick: bind port 0 through a throwaway serve is not possible, so probe upward
  // from a random base; the child reports bind failures and we retry.
  static int next = 20000 + static_cast<int>(getpid() % 20000);
  return next++;
}

DemoServer start_demo_server(const std::string& name, const std::vector<std::string>& extra, const std::string& log) {
  for (int attempt = 0; attempt < 20; ++attempt) {
    DemoServer s;
    s.port = free_port();
    std::string self = fs::read_symlink("/proc/self/exe").string();
    std::vector<std::string> args = {self, "serve", "--demo", "--quiet", "--port", std::to_string(s.port), "--served-model-name", name,
                                     "--max-seqs", "8"};
    args.insert(args.end(), extra.begin(), extra.end());
    s.pid = fork();
    if (s.pid == 0) {
      // The tiers' own request logs go to a file, not into the router's console.
      if (FILE* f = std::fopen(log.c_str(), "a")) {
        dup2(fileno(f), 1);
        dup2(fileno(f), 2);
      }
      std::vector<char*> av;
      for (auto& a : args) av.push_back(a.data());
      av.push_back(nullptr);
      execv(self.c_str(), av.data());
      _exit(127);
    }
    for (int i = 0; i < 600; ++i) {  // up to 60 s (first use creates the demo model)
      int st;
      if (waitpid(s.pid, &st, WNOHANG) == s.pid) {
        s.pid = -1;
        break;
      }
      router::UpResult r = router::get_blocking(fmt::format("http://127.0.0.1:{}/health", s.port), 0.5);
      if (r.ok() && r.status == 200 && r.body.find("\"" + name + "\"") != std::string::npos) return s;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (s.pid > 0) {
      kill(s.pid, SIGKILL);
      waitpid(s.pid, nullptr, 0);
    }
  }
  throw InputError("--demo: could not start a `v4host serve --demo` instance");
}

std::string demo_config(int local_port, int hosted_port, const std::string& ledger, const std::string& tokenizer) {
  return fmt::format(R"(# v4host route --demo: a local V4 tier and a second instance playing a hosted API.
listen: {{host: 127.0.0.1, port: 8080}}
ledger: {ledger}
tokenizer: {tokenizer}
upstreams:
  local-flash:
    kind: v4host
    base_url: http://127.0.0.1:{local}/v1
    model: v4host-demo
    residency: on-prem
    cost: {{amortised_per_hour: 2.00}}
    timeouts: {{connect: 1s, first_token: 30s, total: 120s}}
    health: {{interval: 2s}}
  hosted-pro:
    kind: openai            # any OpenAI-compatible API; here a second local demo instance
    base_url: http://127.0.0.1:{hosted}/v1
    model: hosted-pro
    residency: cloud
    cost:
      tariff:
        - {{from: 2026-01-01, input: 0.435, cached_input: 0.036, output: 0.87, off_peak: {{window: "16:30-00:30", input: 0.2175, output: 0.435}}}}
    timeouts: {{connect: 2s, first_token: 30s, total: 120s}}
routes:
  auto:               # most traffic: local first, hosted when the answer fails verification
    chain: [local-flash, hosted-pro]
    verify: [non_empty, json_schema, tool_args]
  pro:                # hard requests straight to the hosted tier, capped per request
    chain: [hosted-pro]
    stream: first_byte
    cost_cap: {{usd: 0.05, over: refuse}}
  local:
    chain: [local-flash]
    residency: [on-prem]
rules:
  - match: {{reasoning_effort: [high, max]}}
    route: pro
  - match: {{header: {{x-data-class: restricted}}}}
    route: local
default_route: auto
)",
                     fmt::arg("ledger", ledger), fmt::arg("tokenizer", tokenizer), fmt::arg("local", local_port), fmt::arg("hosted", hosted_port));
}

void run_route(RouteArgs& a) {
  if (!a.check_config.empty()) {
    router::Config cfg = router::load_config_file(a.check_config);
    std::fputs(router::describe_config(cfg).c_str(), stdout);
    std::printf("config OK\n");
    return;
  }
  if (a.config.empty() && !a.demo) throw InputError("give --config FILE (or --demo, or --check-config FILE)");
  std::vector<DemoServer> children;
  fs::path work;  // --demo: config and the tiers' logs, removed at exit
  struct Reaper {
    std::vector<DemoServer>& c;
    fs::path& dir;
    ~Reaper() {
      for (auto& s : c)
        if (s.pid > 0) {
          kill(s.pid, SIGTERM);
          waitpid(s.pid, nullptr, 0);
        }
      std::error_code ec;
      if (!dir.empty()) fs::remove_all(dir, ec);
    }
  } reaper{children, work};
  std::string cfg_path = a.config;
  if (a.demo) {
    std::string dir = ensure_demo_model(a.quiet);
    if (!a.quiet) std::fprintf(stderr, "v4host route --demo: starting the local tier and the stand-in hosted tier...\n");
    work = fs::temp_directory_path() / fmt::format("v4host-route-demo-{}", getpid());
    fs::create_directories(work);
    // The local tier has a short context, so long prompts fail there and fall back to the
    // stand-in hosted tier (which has the full context): fallback visible with one curl.
    children.push_back(start_demo_server("v4host-demo", {"--no-thinking", "--ctx", "256"}, (work / "local-flash.log").string()));
    children.push_back(start_demo_server("hosted-pro", {"--no-thinking"}, (work / "hosted-pro.log").string()));
    std::string ledger = a.ledger.empty() ? "v4host-route-demo.db" : a.ledger;
    cfg_path = (work / "route.yaml").string();
    std::ofstream(cfg_path) << demo_config(children[0].port, children[1].port, fs::absolute(ledger).string(), text::model_tokenizer_path(dir));
  }
  router::Config cfg = router::load_config_file(cfg_path);
  if (!a.host.empty()) cfg.host = a.host;
  if (a.port >= 0) cfg.port = a.port;
  if (!a.ledger.empty()) cfg.ledger = a.ledger;
  std::unique_ptr<text::Tokenizer> tok;
  if (!cfg.tokenizer.empty()) tok = text::Tokenizer::from_file(cfg.tokenizer);
  router::ProxyOptions po;
  po.io_threads = a.io_threads;
  po.upstream_threads = a.upstream_threads;
  po.io_realtime = a.io_realtime;
  po.io_slice_us = a.io_slice_us;
  po.io_spin_us = a.io_spin_us;
  po.quiet = a.quiet;
  router::Proxy proxy(cfg, tok.get(), po);
  int port = proxy.bind();
  std::fprintf(stderr, "v4host route: listening on http://%s:%d/v1 — %zu routes, %zu upstreams, ledger %s%s\n", cfg.host.c_str(), port,
               cfg.routes.size(), cfg.upstreams.size(), cfg.ledger.c_str(), tok ? "" : " (no tokenizer: prompt tokens estimated)");
  if (a.demo) {
    std::fprintf(stderr,
                 "\nTry it (config: %s):\n"
                 "  curl -s localhost:%d/v1/chat/completions -H 'content-type: application/json' \\\n"
                 "    -d '{\"model\":\"auto\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":16}'\n"
                 "  # a prompt longer than the local tier's 256-token context falls back to hosted-pro:\n"
                 "  curl -s localhost:%d/v1/chat/completions -H 'content-type: application/json' -D - -o /dev/null -d \\\n"
                 "    \"{\\\"model\\\":\\\"auto\\\",\\\"max_tokens\\\":8,\\\"messages\\\":[{\\\"role\\\":\\\"user\\\",\\\"content\\\":\\\"$(printf 'word %%.0s' $(seq 400))\\\"}]}\" | grep x-v4host\n"
                 "  # reasoning_effort high is routed to the hosted tier by rule 1:\n"
                 "  curl -s localhost:%d/v1/chat/completions -H 'content-type: application/json' -D - -o /dev/null \\\n"
                 "    -d '{\"model\":\"auto\",\"reasoning_effort\":\"high\",\"max_tokens\":8,\"messages\":[{\"role\":\"user\",\"content\":\"hard\"}]}' | grep x-v4host\n"
                 "  ./build/v4host spend --ledger %s --by upstream\n\n",
                 cfg_path.c_str(), port, port, port, cfg.ledger.c_str());
  }
  g_proxy = &proxy;
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGPIPE, SIG_IGN);
  proxy.serve();
  g_proxy = nullptr;
  std::fprintf(stderr, "v4host route: stopped\n");
}

}  // namespace

void add_route_command(CLI::App& app) {
  auto a = std::make_shared<RouteArgs>();
  auto* c = app.add_subcommand("route", "Gateway: rules, fallback chains, verification, cost caps, budgets, residency, ledger");
  c->add_option("--config", a->config, "router config (YAML; see docs/route.md)");
  c->add_option("--check-config", a->check_config, "validate a config and print every resolved chain");
  c->add_flag("--demo", a->demo, "run with two `serve --demo` instances as the local and the stand-in hosted tier");
  c->add_option("--host", a->host, "bind address (overrides listen.host)");
  c->add_option("--port", a->port, "port (overrides listen.port; 0 = any free port)");
  c->add_option("--ledger", a->ledger, "ledger file (overrides ledger)");
  c->add_option("--io-threads", a->io_threads, "event loops, one thread each, serving client connections and their upstream calls (default 0: one per core, at most 4)")->check(CLI::Range(0, 64));
  c->add_option("--upstream-threads", a->upstream_threads,
                "separate upstream I/O threads, each with its own connection pool (default 0: upstream calls run on the client connection's event loop)")
      ->check(CLI::Range(0, 64));
  c->add_flag("--io-realtime", a->io_realtime,
              "run the event-loop threads at real-time priority (SCHED_FIFO 1; needs CAP_SYS_NICE) so that other work on the machine does not "
              "delay forwarding; refused: a warning and normal priority");
  c->add_option("--io-slice-us", a->io_slice_us,
                 "without --io-realtime: the scheduler slice (EEVDF, Linux >= 6.12) the event-loop threads ask for, so that a woken loop "
                 "preempts CPU-bound work at once (default 100; 0: the kernel's default)")
      ->check(CLI::Range(0, 100000));
  c->add_option("--io-spin-us", a->io_spin_us,
                "without --io-realtime: how long an event loop keeps polling after its last event before it sleeps, so that the next "
                "byte finds it awake (costs the CPU it polls with; default 0: sleep at once)")
      ->check(CLI::Range(0, 100000));
  c->add_flag("--quiet,-q", a->quiet, "no progress output");
  c->callback([a] { run_route(*a); });
}

}  // namespace v4::cli
