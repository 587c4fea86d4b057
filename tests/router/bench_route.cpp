// Router overhead benchmark, side by side with calling the upstream directly in the same run.
// Not a test (nothing is asserted about speed): run it with
//   ./build/tests/test_router --gtest_also_run_disabled_tests --gtest_filter='*RouteBench*'
// Upstream: the scripted streaming endpoint (tests/common), known timing. Load: closed-loop
// clients on the async HTTP client. Two kinds of streams, each at 1, 64 and 512 concurrent
// streams, direct and through `v4host route`:
// - paced: an upstream that paces tokens as an LLM server does (first token after 100 ms, then
//   40 tokens/s, 32 tokens per answer by default; ROUTE_BENCH_PACED=first_ms:interval_ms:chunks).
//   The machine is not saturated, so what is added is the router's own latency: added time to
//   first token and added latency of every streamed chunk (the client's kernel receive time of
//   the chunk minus the instant the upstream wrote it, matched through the X-Request-Id the
//   router sends upstream), direct vs routed.
// - saturated: short streams (first token 20 ms, 8 chunks 10 ms apart) that the closed-loop
//   clients restart at once, so 512 streams ask for ~5,000 requests/s and ~50,000 frames/s from
//   the two cores that client, upstream and router share: the added latency there is mostly
//   queueing for the CPU, reported as such.
// Figures: time to first token and total latency p50/p99 direct vs routed and their difference
// (added); non-streaming requests per second at 64 in flight; the CPU time the router adds per
// request (whole-process CPU routed minus direct: load-independent, unlike latency on a shared
// machine); RSS growth per open stream. The last lines put each figure next to the issue's goal.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
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

// CPU seconds of this process's threads whose name starts with `prefix` ("route-loop": the
// router's event loops; "route-ledger": its ledger writer), from /proc/self/task/*/stat. Unlike
// the whole-process figure this leaves out the client and the upstream, whose CPU per request
// moves with the machine's load as much as the router's own does.
double threads_cpu_s(const std::string& prefix) {
  static const double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
  double total = 0;
  std::error_code ec;
  for (auto& t : fs::directory_iterator("/proc/self/task", ec)) {
    std::ifstream comm(t.path() / "comm");
    std::string name;
    std::getline(comm, name);
    if (name.rfind(prefix, 0) != 0) continue;
    std::ifstream st(t.path() / "stat");
    std::string line;
    std::getline(st, line);
    size_t p = line.rfind(')');  // fields after the name: state is field 3, utime 14, stime 15
    if (p == std::string::npos) continue;
    std::istringstream in(line.substr(p + 2));
    std::string f;
    double ut = 0, stm = 0;
    for (int i = 3; i <= 15 && in >> f; ++i) {
      if (i == 14) ut = std::atof(f.c_str());
      if (i == 15) stm = std::atof(f.c_str());
    }
    total += (ut + stm) / tick;
  }
  return total;
}

// CPU seconds of the calling thread: run_load's client runs its event loop on it.
double thread_cpu_s() {
  rusage u{};
  getrusage(RUSAGE_THREAD, &u);
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
  // Paced runs only (an endpoint to match against): per streamed chunk, the client's kernel receive
  // time minus the instant the upstream wrote it; per request, the upstream's first token write
  // minus the client's send minus the scheduled first-token delay (the request's way in).
  std::vector<double> chunk_ms, request_ms;
  uint64_t done = 0, failed = 0;
  double seconds = 0, peak_rss_mb = 0, cpu = 0, loop_cpu = 0, ledger_cpu = 0, client_cpu = 0;
  double cpu_us_per_req() const { return done ? cpu * 1e6 / static_cast<double>(done) : 0; }
  // The router's own threads (0 for direct runs): event loops, ledger writer, per request.
  double loop_us_per_req() const { return done ? loop_cpu * 1e6 / static_cast<double>(done) : 0; }
  double ledger_us_per_req() const { return done ? ledger_cpu * 1e6 / static_cast<double>(done) : 0; }
  // The benchmark's client (its one event-loop thread), per request, and its share of a core.
  double client_us_per_req() const { return done ? client_cpu * 1e6 / static_cast<double>(done) : 0; }
  double client_core_share() const { return seconds > 0 ? client_cpu / seconds : 0; }
};

double pct(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5));
  return v[i];
}

struct LoadOptions {
  bool stream = true;
  int conc = 1;
  double seconds = 4;      // from the start; requests sent before stagger_ms are not counted
  double stagger_ms = 0;
  v4::net::ClientHeaders extra;
  // Paced runs: the endpoint whose write times are matched to the client's reads, and its
  // first-token delay. Direct requests carry their own X-Request-Id; routed ones are matched by
  // the router's x-v4host-request-id, which the router sends upstream as X-Request-Id.
  const v4::testing::ScriptedEndpoint* probe = nullptr;
  double first_token_ms = 0;
  // Open loop: > 0 = requests start at Poisson arrivals of this rate (per second, the same seeded
  // sequence for the direct and the routed run) instead of each client restarting when its
  // previous stream ends; `conc` is then only the mean number of open streams it aims at.
  double open_rate = 0;
};

// Closed loop: `conc` clients, each sending its next request when the previous one ends.
// stagger_ms: client i sends its first request i * stagger_ms / conc after the start, so that
// closed-loop clients of a fixed-length stream do not arrive in lock-step waves (64 requests in the
// same millisecond every 90 ms, which measures a burst, not 64 concurrent streams); latencies of
// requests sent before the last client started are not counted.
Sample run_load(const std::string& url, const LoadOptions& o) {
  boost::asio::io_context io;
  v4::net::HttpClient client(io);
  Sample s;
  const std::string body = fmt::format(R"({{"model":"m","stream":{},"max_tokens":8,"messages":[{{"role":"user","content":"hello"}}]}})",
                                       o.stream ? "true" : "false");
  auto t_end = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.seconds));
  const auto t_warm = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double, std::milli>(o.stagger_ms));
  struct Matched {
    std::string id;
    Clock::time_point t0;
    std::vector<Clock::time_point> arrivals;
  };
  std::vector<Matched> matched;
  uint64_t seq = 0;
  std::function<void()> one;
  auto next = [&] {
    if (o.open_rate <= 0) one();  // closed loop: this client's next request
  };
  one = [&] {
    if (Clock::now() >= t_end) return;
    v4::net::ClientRequest r;
    r.method = "POST";
    r.url = url;
    r.headers = {{"Content-Type", "application/json"}};
    r.headers.insert(r.headers.end(), o.extra.begin(), o.extra.end());
    auto m = std::make_shared<Matched>();
    if (o.probe) {
      m->id = fmt::format("bench-{}", seq++);
      r.headers.emplace_back("X-Request-Id", m->id);
    }
    r.body = body;
    m->t0 = Clock::now();
    auto first = std::make_shared<Clock::time_point>();
    auto carry = std::make_shared<std::string>();  // the last bytes of the previous piece ("tok " may straddle two)
    v4::net::Handlers h;
    if (o.probe)
      h.on_head = [m](const v4::net::Response& head) {
        std::string via = v4::net::header_value(head.headers, "x-v4host-request-id");
        if (!via.empty()) m->id = via;
      };
    const bool probe = o.probe != nullptr;
    h.on_body = [first, m, carry, probe](std::string_view piece, v4::net::Clock::time_point at) {
      if (*first == Clock::time_point{} && piece.find("tok ") != std::string_view::npos) *first = at;
      if (!probe) return;
      // One "tok " per scheduled chunk: each one found is a chunk that arrived at `at`.
      std::string text = *carry + std::string(piece);
      for (size_t p = text.find("tok "); p != std::string::npos; p = text.find("tok ", p + 4))
        if (p + 4 > carry->size()) m->arrivals.push_back(at);
      *carry = text.size() > 3 ? text.substr(text.size() - 3) : text;
    };
    h.on_done = [&, m, first](v4::net::Response&& resp) {
      auto now = Clock::now();
      if (resp.ok() && resp.status == 200) {
        ++s.done;
        if (m->t0 < t_warm) return next();
        s.total_ms.push_back(std::chrono::duration<double, std::milli>(now - m->t0).count());
        if (*first != Clock::time_point{}) s.ttft_ms.push_back(std::chrono::duration<double, std::milli>(*first - m->t0).count());
        if (o.probe) matched.push_back(std::move(*m));
      } else {
        if (s.failed++ == 0) std::fprintf(stderr, "first failure: status %d %s %s\n", resp.status, resp.error_message.c_str(), resp.body.substr(0, 200).c_str());
      }
      next();
    };
    client.start(std::move(r), std::move(h));
  };
  auto t0 = Clock::now();
  double c0 = cpu_s(), l0 = threads_cpu_s("route-loop"), g0 = threads_cpu_s("route-ledger"), k0 = thread_cpu_s();
  std::vector<std::unique_ptr<boost::asio::steady_timer>> starts;
  // Open loop: arrivals on their own schedule (a late timer fires the overdue ones at once: they
  // do not wait for the system under test).
  std::mt19937_64 rng(42);
  std::exponential_distribution<double> gap(o.open_rate > 0 ? o.open_rate : 1.0);
  boost::asio::steady_timer arrivals(io);
  std::function<void(Clock::time_point)> arrive = [&](Clock::time_point at) {
    arrivals.expires_at(at);
    arrivals.async_wait([&, at](const boost::system::error_code& ec) {
      if (ec || Clock::now() >= t_end) return;
      one();
      arrive(at + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(gap(rng))));
    });
  };
  if (o.open_rate > 0) arrive(Clock::now());
  for (int i = 0; i < o.conc && o.open_rate <= 0; ++i) {
    if (o.stagger_ms <= 0) {
      one();
      continue;
    }
    starts.push_back(std::make_unique<boost::asio::steady_timer>(io));
    starts.back()->expires_after(std::chrono::microseconds(static_cast<int64_t>(o.stagger_ms * 1000 * i / o.conc)));
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
  s.client_cpu = thread_cpu_s() - k0;
  sampler.join();
  s.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  s.cpu = cpu_s() - c0;
  s.loop_cpu = threads_cpu_s("route-loop") - l0;
  s.ledger_cpu = threads_cpu_s("route-ledger") - g0;
  auto ms = [](Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); };
  FILE* dump = std::getenv("ROUTE_BENCH_DUMP") && o.probe ? std::fopen(std::getenv("ROUTE_BENCH_DUMP"), "a") : nullptr;
  // The start's CLOCK_MONOTONIC instant (steady_clock here), to line the dump up with traces of the
  // same run (perf sched, /proc schedstat), whose clocks are monotonic too.
  if (dump)
    std::fprintf(dump, "# %s conc %d t0_monotonic_ms %.3f\n", url.c_str(), o.conc,
                 std::chrono::duration<double, std::milli>(t0.time_since_epoch()).count());
  for (auto& m : matched) {
    auto sent = o.probe->sent_times(m.id);  // one instant per scheduled chunk, then the finish
    if (sent.empty()) continue;
    auto due = dump ? o.probe->scheduled_times(m.id) : std::vector<Clock::time_point>{};
    s.request_ms.push_back(ms(sent[0] - m.t0) - o.first_token_ms);
    for (size_t i = 0; i < m.arrivals.size() && i + 1 < sent.size(); ++i) {
      s.chunk_ms.push_back(ms(m.arrivals[i] - sent[i]));
      // Per chunk: the upstream's write instant, the chunk's latency to the client, how late the
      // upstream's timer wrote it (written - scheduled), the chunk's index, and the stream's number.
      if (dump)
        std::fprintf(dump, "%.3f %.3f %.3f %zu %zu\n", ms(sent[i] - t0), ms(m.arrivals[i] - sent[i]), i < due.size() ? ms(sent[i] - due[i]) : 0.0, i,
                     static_cast<size_t>(&m - matched.data()));
    }
  }
  if (dump) std::fclose(dump);
  return s;
}

}  // namespace

namespace {

std::vector<int> conc_list(const char* env, std::vector<int> out = {1, 64, 512}) {
  if (const char* e = std::getenv(env)) {  // e.g. "1,64,512,2000"
    out.clear();
    for (const char* p = e; *p;) {
      out.push_back(std::atoi(p));
      while (*p && *p != ',') ++p;
      if (*p) ++p;
    }
  }
  return out;
}

// Routed minus direct at percentile p.
double added(const std::vector<double>& r, const std::vector<double>& d, double p) { return pct(r, p) - pct(d, p); }

// The direct, routed and added rows of a paced cell (closed- or open-loop); `cpu`: with the
// whole-process CPU per stream (the closed-loop cells, whose stream counts are fixed).
void print_paced_cell(int conc, const Sample& d, const Sample& r, bool cpu) {
  for (const Sample* p : {&d, &r}) {
    std::printf("%-6d %-8s %10.3f %10.3f %7zu %10.3f %10.3f %9zu %10.3f %10.3f %8.0f", conc, p == &d ? "direct" : "router", pct(p->ttft_ms, 0.5),
                pct(p->ttft_ms, 0.99), p->ttft_ms.size(), pct(p->chunk_ms, 0.5), pct(p->chunk_ms, 0.99), p->chunk_ms.size(), pct(p->request_ms, 0.5),
                pct(p->request_ms, 0.99), static_cast<double>(p->done) / p->seconds);
    if (cpu) std::printf(" %10.1f", p->cpu_us_per_req());
    std::printf("\n");
  }
  std::printf("%-6d %-8s %10.3f %10.3f %7s %10.3f %10.3f %9s %10.3f %10.3f   (router - direct", conc, "added", added(r.ttft_ms, d.ttft_ms, 0.5),
              added(r.ttft_ms, d.ttft_ms, 0.99), "", added(r.chunk_ms, d.chunk_ms, 0.5), added(r.chunk_ms, d.chunk_ms, 0.99), "",
              added(r.request_ms, d.request_ms, 0.5), added(r.request_ms, d.request_ms, 0.99));
  if (cpu) std::printf("; router CPU %.1f us per stream", r.cpu_us_per_req() - d.cpu_us_per_req());
  std::printf(")\n");
}

}  // namespace

TEST(RouteBench, DISABLED_AddedLatencyAndThroughput) {
  const double secs = std::getenv("ROUTE_BENCH_SECONDS") ? std::atof(std::getenv("ROUTE_BENCH_SECONDS")) : 4.0;
  // Paced upstream: first token after `first` ms, then one token every `interval` ms, `chunks` in all.
  double p_first = 100, p_interval = 25;
  int p_chunks = 32;
  if (const char* e = std::getenv("ROUTE_BENCH_PACED")) std::sscanf(e, "%lf:%lf:%d", &p_first, &p_interval, &p_chunks);
  v4::testing::Schedule paced;
  paced.first_token_ms = p_first;
  paced.interval_ms = p_interval;
  paced.answer_chunks = std::max(1, p_chunks);
  paced.model = "m";
  v4::testing::ScriptedEndpoint paced_up(paced);
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
      "  p: {{kind: v4host, base_url: \"{}/v1\", concurrency: 100000, residency: on-prem, cost: {{amortised_per_hour: 1}}, health: {{interval: 0s}}}}\n"
      "routes:\n  streams: {{chain: [s], stream: first_byte}}\n  fast: {{chain: [f]}}\n  paced: {{chain: [p], stream: first_byte}}\n"
      "rules:\n  - {{match: {{header: {{x-bench: fast}}}}, route: fast}}\n  - {{match: {{header: {{x-bench: paced}}}}, route: paced}}\n",
      dir.string(), stream_up.base_url(), fast_up.base_url(), paced_up.base_url());
  v4::router::Config cfg = v4::router::load_config_text(yaml, "bench.yaml");
  // ROUTE_BENCH_IO_THREADS / ROUTE_BENCH_UPSTREAM_THREADS: the router's server and upstream threads.
  v4::router::ProxyOptions po;
  if (const char* e = std::getenv("ROUTE_BENCH_IO_THREADS")) po.io_threads = std::max(1, std::atoi(e));
  if (const char* e = std::getenv("ROUTE_BENCH_UPSTREAM_THREADS")) po.upstream_threads = std::max(0, std::atoi(e));
  if (const char* e = std::getenv("ROUTE_BENCH_IO_SLICE_US")) po.io_slice_us = std::max(0, std::atoi(e));
  if (const char* e = std::getenv("ROUTE_BENCH_IO_SPIN_US")) po.io_spin_us = std::max(0, std::atoi(e));
  po.io_realtime = std::getenv("ROUTE_BENCH_IO_REALTIME") && std::atoi(std::getenv("ROUTE_BENCH_IO_REALTIME")) != 0;
  v4::router::Proxy proxy(cfg, nullptr, po);
  int port = proxy.bind();
  std::thread srv([&] { proxy.serve(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  if (po.io_realtime) std::printf("router event loops at SCHED_FIFO 1: %s\n", proxy.io_realtime_granted() ? "granted" : "refused");
  else
    std::printf("router event loops at normal priority, EEVDF slice asked: %d us (0: the kernel's default), polling %d us after their last event "
                "before they sleep (0: at once)\n",
                po.io_slice_us, po.io_spin_us);
  const std::string via = fmt::format("http://127.0.0.1:{}/v1/chat/completions", port);
  struct Row {
    int conc;
    Sample d, r;
  };

  // ---- paced: the router's own latency on an unsaturated machine
  const double p_len = p_first + p_interval * (paced.answer_chunks - 1);  // one stream, ms
  std::printf("\nPACED upstream (first token %.0f ms, then one token every %.0f ms = %.0f tokens/s per stream, %d tokens): "
              "%.0f s per cell after a %.0f ms spread of the first requests; router io_threads %d, upstream_threads %d (0: on the event loops)\n",
              p_first, p_interval, 1000 / p_interval, paced.answer_chunks, secs, p_len, proxy.io_loops(), po.upstream_threads);
  std::printf("%-6s %-8s %10s %10s %7s %10s %10s %9s %10s %10s %8s %10s\n", "conc", "path", "ttft p50", "ttft p99", "n", "chunk p50", "chunk p99",
              "chunks", "req p50", "req p99", "str/s", "cpu us/str");
  std::vector<Row> paced_rows;
  for (int conc : conc_list("ROUTE_BENCH_PACED_CONC")) {  // "0": none
    if (std::getenv("ROUTE_BENCH_NO_STREAMS")) break;
    if (conc <= 0) continue;
    LoadOptions o;
    o.conc = conc;
    o.stagger_ms = p_len;
    o.seconds = secs + p_len / 1000;
    o.probe = &paced_up;
    o.first_token_ms = p_first;
    const uint64_t c0 = paced_up.connections(), q0 = paced_up.requests();
    Sample d = run_load(paced_up.base_url() + "/v1/chat/completions", o);
    const uint64_t c1 = paced_up.connections(), q1 = paced_up.requests();
    o.extra = {{"x-bench", "paced"}};
    Sample r = run_load(via, o);
    // Upstream connections opened per request: the router's pool should reuse one per stream.
    std::printf("upstream connections opened: direct %llu for %llu requests, router %llu for %llu requests\n",
                static_cast<unsigned long long>(c1 - c0), static_cast<unsigned long long>(q1 - q0),
                static_cast<unsigned long long>(paced_up.connections() - c1), static_cast<unsigned long long>(paced_up.requests() - q1));
    print_paced_cell(conc, d, r, true);
    // Direct first, then routed on the same heap: the client's and upstream's memory of the direct
    // run is reused by the routed one, so the routed peak above the direct peak is the router's.
    if (conc >= 512)
      std::printf("RSS with %d open streams: peak direct %.1f MB, routed %.1f MB; the router's share (routed peak - direct peak) %.1f KB per open stream\n",
                  conc, d.peak_rss_mb, r.peak_rss_mb, (r.peak_rss_mb - d.peak_rss_mb) * 1024 / conc);
    paced_rows.push_back({conc, std::move(d), std::move(r)});
  }

  // ---- open loop: the paced upstream, streams arriving at random (Poisson) instead of closed-loop
  // clients, which synchronise over a run (a stream restarts when its end arrives, so streams
  // delayed together stay together): the same mean number of open streams without the clumps.
  std::printf("\nOPEN-LOOP PACED (the paced upstream; Poisson arrivals at streams / %.0f ms, so that many streams are open on average)\n", p_len);
  std::printf("%-6s %-8s %10s %10s %7s %10s %10s %9s %10s %10s %8s\n", "conc", "path", "ttft p50", "ttft p99", "n", "chunk p50", "chunk p99",
              "chunks", "req p50", "req p99", "str/s");
  std::vector<Row> open_rows;
  for (int conc : conc_list("ROUTE_BENCH_OPEN_CONC", {64, 512})) {
    if (std::getenv("ROUTE_BENCH_NO_STREAMS")) break;
    if (conc <= 0) continue;  // "0": none
    LoadOptions o;
    o.conc = conc;
    o.open_rate = conc / (p_len / 1000);
    o.stagger_ms = p_len;  // streams that start in the first stream length (the ramp) are not counted
    o.seconds = secs + p_len / 1000;
    o.probe = &paced_up;
    o.first_token_ms = p_first;
    Sample d = run_load(paced_up.base_url() + "/v1/chat/completions", o);
    o.extra = {{"x-bench", "paced"}};
    Sample r = run_load(via, o);
    print_paced_cell(conc, d, r, false);
    open_rows.push_back({conc, std::move(d), std::move(r)});
  }

  // ---- saturated: short streams restarted at once (the CPU is the bottleneck at 512)
  std::printf("\nSATURATED upstream (first token 20 ms, 8 chunks 10 ms apart, clients restart at once): %.0f s per cell\n", secs);
  std::printf("%-6s %-8s %10s %10s %10s %10s %10s %9s %8s %10s\n", "conc", "path", "ttft p50", "ttft p99", "total p50", "total p99", "req/s", "failed",
              "rss MB", "cpu us/req");
  std::vector<Row> rows;
  // ROUTE_BENCH_STAGGER_MS: spread of the clients' first requests (default one stream's length;
  // 0 = all at once, in lock-step).
  const double stagger = std::getenv("ROUTE_BENCH_STAGGER_MS") ? std::atof(std::getenv("ROUTE_BENCH_STAGGER_MS")) : 100.0;
  for (int conc : conc_list("ROUTE_BENCH_CONC")) {  // "0": none
    if (std::getenv("ROUTE_BENCH_NO_STREAMS")) break;
    if (conc <= 0) continue;
    LoadOptions o;
    o.conc = conc;
    o.seconds = secs;
    o.stagger_ms = stagger;
    double rss0 = rss_mb();
    Sample d = run_load(stream_up.base_url() + "/v1/chat/completions", o);
    double rss1 = rss_mb();
    Sample r = run_load(via, o);
    for (auto* p : {&d, &r})
      std::printf("%-6d %-8s %10.3f %10.3f %10.3f %10.3f %10.0f %9llu %8.0f %10.1f\n", conc, p == &d ? "direct" : "router", pct(p->ttft_ms, 0.5),
                  pct(p->ttft_ms, 0.99), pct(p->total_ms, 0.5), pct(p->total_ms, 0.99), static_cast<double>(p->done) / p->seconds,
                  static_cast<unsigned long long>(p->failed), p->peak_rss_mb, p->cpu_us_per_req());
    std::printf("%-6d %-8s %10.3f %10.3f %10.3f %10.3f   (router - direct; router CPU %.1f us per stream)\n", conc, "added",
                added(r.ttft_ms, d.ttft_ms, 0.5), added(r.ttft_ms, d.ttft_ms, 0.99), added(r.total_ms, d.total_ms, 0.5),
                added(r.total_ms, d.total_ms, 0.99), r.cpu_us_per_req() - d.cpu_us_per_req());
    if (conc >= 512)
      std::printf("RSS growth with %d open streams: direct (client + upstream) %.1f KB per stream, through the router %.1f KB per stream; "
                  "the router's share %.1f KB per open stream\n",
                  conc, (d.peak_rss_mb - rss0) * 1024 / conc, (r.peak_rss_mb - rss1) * 1024 / conc,
                  ((r.peak_rss_mb - rss1) - (d.peak_rss_mb - rss0)) * 1024 / conc);
    rows.push_back({conc, std::move(d), std::move(r)});
  }
  // Non-streaming throughput, header-selected route to the zero-delay upstream.
  const int ns_conc = std::getenv("ROUTE_BENCH_NS_CONC") ? std::atoi(std::getenv("ROUTE_BENCH_NS_CONC")) : 64;
  LoadOptions no;
  no.stream = false;
  no.conc = ns_conc;  // "0": no non-streaming cell
  no.seconds = secs;
  Sample nd, nr;
  if (ns_conc > 0) {
    nd = run_load(fast_up.base_url() + "/v1/chat/completions", no);
    no.extra = {{"x-bench", "fast"}};
    nr = run_load(via, no);
  }
  const double nd_rps = static_cast<double>(nd.done) / std::max(1e-9, nd.seconds), nr_rps = static_cast<double>(nr.done) / std::max(1e-9, nr.seconds);
  if (ns_conc > 0)
    std::printf("non-streaming, %d in flight: direct %.0f req/s (p50 %.3f ms, p99 %.3f ms), router %.0f req/s (p50 %.3f ms, p99 %.3f ms), "
              "failed %llu; ratio %.2f; CPU per request: direct %.1f us, router %.1f us (router's own %.1f us)\n",
              ns_conc, nd_rps, pct(nd.total_ms, 0.5), pct(nd.total_ms, 0.99), nr_rps, pct(nr.total_ms, 0.5), pct(nr.total_ms, 0.99),
              static_cast<unsigned long long>(nr.failed), nr_rps / nd_rps, nd.cpu_us_per_req(), nr.cpu_us_per_req(),
              nr.cpu_us_per_req() - nd.cpu_us_per_req());
  // The goals of the issue, side by side with what this run measured.
  std::printf("\nsummary (goal: p99 added < 1 ms, >= 5000 non-streaming req/s, bounded memory per open stream):\n");
  // One summary line per paced cell: added TTFT and per-chunk latency, and the router's CPU.
  auto paced_summary = [&](const char* label, const Row& row) {
    std::printf("  %s %4d streams: added TTFT p50 %+.3f ms p99 %+.3f ms (n %zu), added per-chunk latency p50 %+.3f ms p99 %+.3f ms (n %zu)", label,
                row.conc, added(row.r.ttft_ms, row.d.ttft_ms, 0.5), added(row.r.ttft_ms, row.d.ttft_ms, 0.99), row.r.ttft_ms.size(),
                added(row.r.chunk_ms, row.d.chunk_ms, 0.5), added(row.r.chunk_ms, row.d.chunk_ms, 0.99), row.r.chunk_ms.size());
    std::printf("; router CPU %.1f us per stream (loops %.1f, ledger %.1f)", row.r.cpu_us_per_req() - row.d.cpu_us_per_req(),
                row.r.loop_us_per_req(), row.r.ledger_us_per_req());
    // The client is one thread: near 100 % of a core it is itself the bottleneck of the cell.
    std::printf("; client thread %.0f / %.0f us per stream, %.0f / %.0f %% of a core (direct / routed)", row.d.client_us_per_req(),
                row.r.client_us_per_req(), 100 * row.d.client_core_share(), 100 * row.r.client_core_share());
    std::printf("\n");
  };
  for (auto& row : paced_rows) paced_summary("paced", row);
  for (auto& row : open_rows) paced_summary("open-loop paced", row);
  for (auto& row : rows)
    std::printf("  saturated %4d streams: added TTFT p50 %+.3f ms p99 %+.3f ms, total p50 %+.3f ms p99 %+.3f ms; streams/s router/direct %.2f; "
                "router CPU %.1f us per stream (loops %.1f, ledger %.1f)\n",
                row.conc, added(row.r.ttft_ms, row.d.ttft_ms, 0.5), added(row.r.ttft_ms, row.d.ttft_ms, 0.99), added(row.r.total_ms, row.d.total_ms, 0.5),
                added(row.r.total_ms, row.d.total_ms, 0.99),
                (static_cast<double>(row.r.done) / row.r.seconds) / std::max(1e-9, static_cast<double>(row.d.done) / row.d.seconds),
                row.r.cpu_us_per_req() - row.d.cpu_us_per_req(), row.r.loop_us_per_req(), row.r.ledger_us_per_req());
  if (ns_conc > 0)
    std::printf("  non-streaming: %.0f req/s through the router, %.0f direct (ratio %.2f); router CPU %.1f us per request "
              "(%.0f req/s per core of router time; loops %.1f us, ledger %.1f us)\n",
              nr_rps, nd_rps, nr_rps / nd_rps, nr.cpu_us_per_req() - nd.cpu_us_per_req(),
              1e6 / std::max(1.0, nr.cpu_us_per_req() - nd.cpu_us_per_req()), nr.loop_us_per_req(), nr.ledger_us_per_req());
  proxy.stop();
  srv.join();
  fs::remove_all(dir);
}
