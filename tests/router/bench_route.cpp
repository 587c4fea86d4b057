// Router overhead benchmark, side by side with calling the upstream directly in the same run.
// Not a test (nothing is asserted about speed): run it with
//   ./build/tests/test_router --gtest_also_run_disabled_tests --gtest_filter='*RouteBench*'
// Upstream: the scripted streaming endpoint (tests/common), known timing. Load: closed-loop
// clients on the async HTTP client. Figures: time to first token and total latency p50/p99,
// direct vs through `v4host route` and the difference (added), at 1, 64 and 512 concurrent
// streams; non-streaming requests per second at 64 in flight, direct and routed; the CPU time the
// router adds per request (whole-process CPU routed minus direct: load-independent, unlike
// latency on a shared machine); RSS growth per open stream, direct and routed. The last lines
// put each figure next to the issue's goal.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <fmt/format.h>

#include "../common/scripted_endpoint.h"
#include "net/http_client.h"
#include "router/config.h"
#include "router/proxy.h"

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

// CPU seconds used by the whole process (clients, router, upstream): per request, this is far less
// sensitive to other load on the machine than latency is; routed minus direct is the router's cost.
double cpu_s() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

double rss_mb() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  return 0;
}

struct Sample {
  std::vector<double> ttft_ms, total_ms;
  uint64_t done = 0, failed = 0;
  double seconds = 0, peak_rss_mb = 0, cpu = 0;
  double cpu_us_per_req() const { return done ? cpu * 1e6 / static_cast<double>(done) : 0; }
};

double pct(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5));
  return v[i];
}

// Closed loop: `conc` clients, each sending its next request when the previous one ends.
// stagger_ms: client i sends its first request i * stagger_ms / conc after the start, so that
// closed-loop clients of a fixed-length stream do not arrive in lock-step waves (64 requests in the
// same millisecond every 90 ms, which measures a burst, not 64 concurrent streams); latencies of
// requests sent before the last client started are not counted.
Sample run_load(const std::string& url, bool stream, int conc, double seconds, const v4::net::ClientHeaders& extra = {}, double stagger_ms = 0) {
  boost::asio::io_context io;
  v4::net::HttpClient client(io);
  Sample s;
  const std::string body = fmt::format(R"({{"model":"m","stream":{},"max_tokens":8,"messages":[{{"role":"user","content":"hello"}}]}})",
                                       stream ? "true" : "false");
  auto t_end = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  const auto t_warm = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double, std::milli>(stagger_ms));
  std::function<void()> one;
  int active = 0;
  one = [&] {
    if (Clock::now() >= t_end) return;
    ++active;
    v4::net::ClientRequest r;
    r.method = "POST";
    r.url = url;
    r.headers = {{"Content-Type", "application/json"}};
    r.headers.insert(r.headers.end(), extra.begin(), extra.end());
    r.body = body;
    auto t0 = std::make_shared<Clock::time_point>(Clock::now());
    auto first = std::make_shared<Clock::time_point>();
    v4::net::Handlers h;
    h.on_body = [first](std::string_view piece, v4::net::Clock::time_point at) {
      if (*first == Clock::time_point{} && piece.find("tok ") != std::string_view::npos) *first = at;
    };
    h.on_done = [&, t0, first](v4::net::Response&& resp) {
      --active;
      auto now = Clock::now();
      if (resp.ok() && resp.status == 200) {
        ++s.done;
        if (*t0 < t_warm) return one();
        s.total_ms.push_back(std::chrono::duration<double, std::milli>(now - *t0).count());
        if (*first != Clock::time_point{}) s.ttft_ms.push_back(std::chrono::duration<double, std::milli>(*first - *t0).count());
      } else {
        if (s.failed++ == 0) std::fprintf(stderr, "first failure: status %d %s %s\n", resp.status, resp.error_message.c_str(), resp.body.substr(0, 200).c_str());
      }
      one();
    };
    client.start(std::move(r), std::move(h));
  };
  auto t0 = Clock::now();
  double c0 = cpu_s();
  std::vector<std::unique_ptr<boost::asio::steady_timer>> starts;
  for (int i = 0; i < conc; ++i) {
    if (stagger_ms <= 0) {
      one();
      continue;
    }
    starts.push_back(std::make_unique<boost::asio::steady_timer>(io));
    starts.back()->expires_after(std::chrono::microseconds(static_cast<int64_t>(stagger_ms * 1000 * i / conc)));
    starts.back()->async_wait([&](const boost::system::error_code& ec) {
      if (!ec) one();
    });
  }
  std::thread sampler([&] {
    while (Clock::now() < t_end) {
      s.peak_rss_mb = std::max(s.peak_rss_mb, rss_mb());
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
  io.run();
  sampler.join();
  s.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  s.cpu = cpu_s() - c0;
  return s;
}

}  // namespace

TEST(RouteBench, DISABLED_AddedLatencyAndThroughput) {
  const double secs = std::getenv("ROUTE_BENCH_SECONDS") ? std::atof(std::getenv("ROUTE_BENCH_SECONDS")) : 4.0;
  v4::testing::Schedule sch;
  sch.first_token_ms = 20;
  sch.interval_ms = 10;
  sch.answer_chunks = 8;
  sch.model = "m";
  v4::testing::ScriptedEndpoint stream_up(sch);
  v4::testing::Schedule fast;
  fast.first_token_ms = 0;
  fast.interval_ms = 0;
  fast.answer_chunks = 1;
  fast.model = "m";
  v4::testing::ScriptedEndpoint fast_up(fast);
  // ROUTE_BENCH_DIR: where the ledger goes (default /tmp; /dev/shm takes the disk out of it).
  std::string tdir = std::getenv("ROUTE_BENCH_DIR") ? std::getenv("ROUTE_BENCH_DIR") : "/tmp";
  std::string tmpl = tdir + "/v4route-bench-XXXXXX";
  fs::path dir = mkdtemp(tmpl.data());
  std::string yaml = fmt::format(
      "listen: {{port: 0}}\nledger: {}/ledger.db\naccess_log: \"-\"\n"
      "upstreams:\n"
      "  s: {{kind: v4host, base_url: \"{}/v1\", concurrency: 100000, residency: on-prem, cost: {{amortised_per_hour: 1}}, health: {{interval: 0s}}}}\n"
      "  f: {{kind: v4host, base_url: \"{}/v1\", concurrency: 100000, residency: on-prem, cost: {{amortised_per_hour: 1}}, health: {{interval: 0s}}}}\n"
      "routes:\n  streams: {{chain: [s], stream: first_byte}}\n  fast: {{chain: [f]}}\n"
      "rules:\n  - {{match: {{header: {{x-bench: fast}}}}, route: fast}}\n",
      dir.string(), stream_up.base_url(), fast_up.base_url());
  v4::router::Config cfg = v4::router::load_config_text(yaml, "bench.yaml");
  // ROUTE_BENCH_IO_THREADS / ROUTE_BENCH_UPSTREAM_THREADS: the router's server and upstream threads.
  v4::router::ProxyOptions po;
  if (const char* e = std::getenv("ROUTE_BENCH_IO_THREADS")) po.io_threads = std::max(1, std::atoi(e));
  if (const char* e = std::getenv("ROUTE_BENCH_UPSTREAM_THREADS")) po.upstream_threads = std::max(0, std::atoi(e));
  v4::router::Proxy proxy(cfg, nullptr, po);
  int port = proxy.bind();
  std::thread srv([&] { proxy.serve(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const std::string via = fmt::format("http://127.0.0.1:{}/v1/chat/completions", port);
  std::printf("\nrouter overhead, scripted upstream (first token 20 ms, 8 chunks 10 ms apart); %.0f s per cell; router io_threads %d, "
              "upstream_threads %d (0: on the event loops)\n", secs, po.io_threads, po.upstream_threads);
  std::printf("%-6s %-8s %10s %10s %10s %10s %10s %9s %8s %10s\n", "conc", "path", "ttft p50", "ttft p99", "total p50", "total p99", "req/s", "failed",
              "rss MB", "cpu us/req");
  std::vector<int> concs = {1, 64, 512};
  if (const char* e = std::getenv("ROUTE_BENCH_CONC")) {  // e.g. "1,64,512,2000"
    concs.clear();
    for (const char* p = e; *p;) {
      concs.push_back(std::atoi(p));
      while (*p && *p != ',') ++p;
      if (*p) ++p;
    }
  }
  struct Row {
    int conc;
    Sample d, r;
  };
  std::vector<Row> rows;
  // ROUTE_BENCH_STAGGER_MS: spread of the clients' first requests (default one stream's length;
  // 0 = all at once, in lock-step).
  const double stagger = std::getenv("ROUTE_BENCH_STAGGER_MS") ? std::atof(std::getenv("ROUTE_BENCH_STAGGER_MS")) : 100.0;
  for (int conc : concs) {
    if (std::getenv("ROUTE_BENCH_NO_STREAMS")) break;
    double rss0 = rss_mb();
    Sample d = run_load(stream_up.base_url() + "/v1/chat/completions", true, conc, secs, {}, stagger);
    double rss1 = rss_mb();
    Sample r = run_load(via, true, conc, secs, {}, stagger);
    for (auto* p : {&d, &r})
      std::printf("%-6d %-8s %10.3f %10.3f %10.3f %10.3f %10.0f %9llu %8.0f %10.1f\n", conc, p == &d ? "direct" : "router", pct(p->ttft_ms, 0.5),
                  pct(p->ttft_ms, 0.99), pct(p->total_ms, 0.5), pct(p->total_ms, 0.99), static_cast<double>(p->done) / p->seconds,
                  static_cast<unsigned long long>(p->failed), p->peak_rss_mb, p->cpu_us_per_req());
    std::printf("%-6d %-8s %10.3f %10.3f %10.3f %10.3f   (router - direct; router CPU %.1f us per stream)\n", conc, "added",
                pct(r.ttft_ms, 0.5) - pct(d.ttft_ms, 0.5), pct(r.ttft_ms, 0.99) - pct(d.ttft_ms, 0.99), pct(r.total_ms, 0.5) - pct(d.total_ms, 0.5),
                pct(r.total_ms, 0.99) - pct(d.total_ms, 0.99), r.cpu_us_per_req() - d.cpu_us_per_req());
    if (conc >= 512)
      std::printf("RSS growth with %d open streams: direct (client + upstream) %.1f KB per stream, through the router %.1f KB per stream; "
                  "the router's share %.1f KB per open stream\n",
                  conc, (d.peak_rss_mb - rss0) * 1024 / conc, (r.peak_rss_mb - rss1) * 1024 / conc,
                  ((r.peak_rss_mb - rss1) - (d.peak_rss_mb - rss0)) * 1024 / conc);
    rows.push_back({conc, std::move(d), std::move(r)});
  }
  // Non-streaming throughput, header-selected route to the zero-delay upstream.
  const int ns_conc = std::getenv("ROUTE_BENCH_NS_CONC") ? std::atoi(std::getenv("ROUTE_BENCH_NS_CONC")) : 64;
  Sample nd = run_load(fast_up.base_url() + "/v1/chat/completions", false, ns_conc, secs);
  Sample nr = run_load(via, false, ns_conc, secs, {{"x-bench", "fast"}});
  const double nd_rps = static_cast<double>(nd.done) / nd.seconds, nr_rps = static_cast<double>(nr.done) / nr.seconds;
  std::printf("non-streaming, %d in flight: direct %.0f req/s (p50 %.3f ms, p99 %.3f ms), router %.0f req/s (p50 %.3f ms, p99 %.3f ms), "
              "failed %llu; ratio %.2f; CPU per request: direct %.1f us, router %.1f us (router's own %.1f us)\n",
              ns_conc, nd_rps, pct(nd.total_ms, 0.5), pct(nd.total_ms, 0.99), nr_rps, pct(nr.total_ms, 0.5), pct(nr.total_ms, 0.99),
              static_cast<unsigned long long>(nr.failed), nr_rps / nd_rps, nd.cpu_us_per_req(), nr.cpu_us_per_req(),
              nr.cpu_us_per_req() - nd.cpu_us_per_req());
  // The goals of the issue, side by side with what this run measured.
  std::printf("\nsummary (goal: p99 added < 1 ms, >= 5000 non-streaming req/s, bounded memory per open stream):\n");
  for (auto& row : rows)
    std::printf("  %4d streams: added TTFT p50 %+.3f ms p99 %+.3f ms, total p50 %+.3f ms p99 %+.3f ms; streams/s router/direct %.2f; "
                "router CPU %.1f us per stream\n",
                row.conc, pct(row.r.ttft_ms, 0.5) - pct(row.d.ttft_ms, 0.5), pct(row.r.ttft_ms, 0.99) - pct(row.d.ttft_ms, 0.99),
                pct(row.r.total_ms, 0.5) - pct(row.d.total_ms, 0.5), pct(row.r.total_ms, 0.99) - pct(row.d.total_ms, 0.99),
                (static_cast<double>(row.r.done) / row.r.seconds) / std::max(1e-9, static_cast<double>(row.d.done) / row.d.seconds),
                row.r.cpu_us_per_req() - row.d.cpu_us_per_req());
  std::printf("  non-streaming: %.0f req/s through the router, %.0f direct (ratio %.2f); router CPU %.1f us per request "
              "(%.0f req/s per core of router time)\n",
              nr_rps, nd_rps, nr_rps / nd_rps, nr.cpu_us_per_req() - nd.cpu_us_per_req(),
              1e6 / std::max(1.0, nr.cpu_us_per_req() - nd.cpu_us_per_req()));
  proxy.stop();
  srv.join();
  fs::remove_all(dir);
}
