// The load generator: drives one endpoint with a workload, recording a RequestRecord per request.
// Asynchronous HTTP, no thread per stream: requests are spread round-robin over a few I/O threads
// (Target::io_threads, each with its own io_context and connection pool), which parse and time
// the streamed pieces; one control thread runs arrivals, the load limits and the bookkeeping of
// finished requests.
//
// Modes
// - concurrency C: closed loop, C units in flight; a finished unit starts the next;
// - rate R: open loop, units arrive with gamma-distributed gaps (shape = burstiness, mean 1/R;
//   burstiness 1 = Poisson, < 1 burstier, > 1 more regular), optionally capped at max_concurrency
//   (arrivals then wait; their scheduled time is kept so queueing shows up in the latencies);
// - replay: units start at their JSONL timestamps (divided by replay_speed).
// A unit is one request, or one agent session whose turns run back to back.
// Limits: `requests` measured requests (after `warmup` unmeasured ones, run first and waited for)
// and/or `duration_s`; a stop flag (set from a SIGINT handler) cancels what is in flight and ends
// the run with what finished — the caller still writes results.
#pragma once
#include <atomic>
#include <functional>
#include <string>
#include <vector>

#include "bench/api.h"
#include "bench/record.h"
#include "bench/workload.h"

namespace v4::bench {

struct Target {
  std::string base_url;  // normalized .../v1
  std::string model;
  Api api = Api::chat;
  std::string api_key;
  bool stream = true;
  net::Timeouts timeouts;
  int io_threads = 0;  // client I/O threads (streams are spread over them); 0 = one per core, at most 4
  // Run the I/O threads (only those: not the control thread, not the analysis after the run) at
  // real-time priority (SCHED_FIFO 1), so that on a machine shared with other work they read
  // each socket as its data arrives. Needs CAP_SYS_NICE or an RLIMIT_RTPRIO; without it the run
  // goes on at normal priority with a short EEVDF slice (100 us; Linux >= 6.12, no privilege),
  // which helps but does not suffice on a busy machine, and RunResult::io_realtime says so. The
  // I/O threads sleep in epoll between pieces, and the kernel's real-time throttling keeps 5% of
  // each second for the rest, so they cannot lock the machine up.
  bool io_realtime = false;
};

struct LoadSpec {
  enum Mode { by_concurrency, by_rate, replay } mode = by_concurrency;
  int concurrency = 1;
  double rate = 0;          // requests (units) per second
  double burstiness = 1;
  int max_concurrency = 0;  // rate mode cap, 0 = none
  long requests = 100;      // 0 = until duration
  double duration_s = 0;    // 0 = until requests
  int warmup = 0;
  uint64_t seed = 0;
  double replay_speed = 1;
  std::string label() const;  // "c=16", "rate=4.0", "replay"
};

struct Progress {
  long done = 0, started = 0, errors = 0, target = 0;
  double elapsed_s = 0, output_tokens = 0;
  double ttft_p50_ms = 0;
};

struct RunResult {
  std::vector<RequestRecord> records;  // measured ones (warmup excluded), in start order
  double duration_s = 0;               // first start -> last end of the measured requests
  bool interrupted = false;
  net::ClientHeaders server_headers;   // from the first successful response
  bool io_realtime = false;            // the I/O threads ran at real-time priority (Target::io_realtime granted)
  std::string io_realtime_error;       // why not, when it was asked for and refused
};

using ProgressFn = std::function<void(const Progress&, bool final)>;

// Gamma(shape k, scale theta) sample (Marsaglia-Tsang), reproducible from the seed state.
double gamma_sample(double k, double theta, uint64_t& state);

RunResult run_load(const Target& t, const LoadSpec& spec, Workload& wl, const text::Tokenizer* tok, const ProgressFn& progress,
                   std::atomic<bool>* stop);

}  // namespace v4::bench
