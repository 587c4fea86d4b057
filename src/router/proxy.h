// The router's HTTP front: the same APIs as `v4host serve` (chat completions, completions,
// responses, messages — streaming or not), /v1/models (the route aliases), /health, /metrics.
//
// A request is parsed once into the neutral protocol form, a route is chosen (rules, alias,
// default), the route's chain is planned (hops outside the request's residency, over the
// per-request cost cap or blocked by an exhausted budget are skipped, each recorded), and the
// hops are tried in order: circuit breaker, concurrency limit, retries with backoff and jitter
// honouring Retry-After, a first-token/idle timeout and a total one. Every upstream answer is read
// as a stream and assembled; the route's verifiers then accept it or move on to the next hop.
// Streaming to the client: `buffer` routes hold the answer until it is verified and then send it;
// `first_byte` routes stream it through and can fall back only until the first byte was sent
// (after that a failure ends the stream with the dialect's error event — never a second answer
// spliced on). The ledger is written before a response's final bytes go out.
#pragma once
#include <memory>
#include <string>

#include "router/config.h"

namespace v4 {
class Metrics;
}
namespace v4::text {
class Tokenizer;
}

namespace v4::router {

struct ProxyOptions {
  // Event loops (one thread each) serving client connections and, by default, their upstream
  // calls; 0 = one per core, at most 4 (two on a 2-core machine: a burst of work then drains on
  // both cores instead of queueing behind one loop).
  int io_threads = 0;
  int upstream_threads = 0;  // 0: upstream calls run on the client connection's loop (no thread hop);
                             // N: N separate upstream I/O threads, each with its own connection pool
  // Event-loop threads at real-time priority (SCHED_FIFO 1; needs CAP_SYS_NICE or an
  // RLIMIT_RTPRIO), so that other work on the machine does not keep a woken loop off the CPU —
  // on a shared machine that wait, not the router's own work, is most of the added latency's
  // tail. Refused: a warning, and the loops run at normal priority (io_realtime_granted()).
  bool io_realtime = false;
  // Without io_realtime: each event-loop thread asks the scheduler for an EEVDF slice of this
  // many microseconds (Linux >= 6.12; no privilege; 0 = the kernel's default slice). A woken loop
  // with a short slice runs at once instead of waiting out the slice of a CPU-bound task that
  // holds the core (about 3 ms on 2 cores); its share of the CPU does not change. The ledger's
  // writer thread asks for the same slice.
  int io_slice_us = 100;
  // Without io_realtime: after handling events an event loop keeps polling (non-blocking, the
  // CPU yielded to other runnable threads between polls) for up to this many microseconds
  // before it blocks, so that a byte arriving meanwhile needs no wake-up of a sleeping thread
  // (net/event_loop.h). 0 = block at once. Costs the CPU it polls with: see docs/route.md.
  // Not with io_realtime: a real-time thread's sched_yield lets no normal thread run, so a
  // spinning real-time loop would hold its core against everything else.
  int io_spin_us = 0;
  bool quiet = false;
};

class Proxy {
 public:
  // `tok` (may be null: bytes/4 estimates) counts prompt tokens for rules and cost caps.
  Proxy(Config cfg, const text::Tokenizer* tok, ProxyOptions opt = {});
  ~Proxy();
  Proxy(const Proxy&) = delete;
  Proxy& operator=(const Proxy&) = delete;

  int bind();     // returns the port
  void serve();   // blocks until stop()
  void stop();    // any thread
  void request_stop() noexcept;  // async-signal-safe
  const Config& config() const;
  // After serve() started: whether every event-loop thread got the real-time priority asked for.
  bool io_realtime_granted() const;
  // The event loops serving connections (io_threads, resolved; with upstream_threads, the server's).
  int io_loops() const;
  Metrics& metrics();

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace v4::router
