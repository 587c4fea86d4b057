// The spend ledger: one SQLite database (WAL) with a row per request and a row per fallback hop —
// tokens, cost at the tariff in force, the self-hosted tier's amortised cost, upstream, latency,
// verification outcome. Writes go through one writer thread that commits whatever is queued in a
// single transaction (group commit) and then calls each record's completion: the proxy sends the
// final bytes of a response only from that completion, so a response that reached a client is in
// the ledger, and a request id is a primary key, so nothing is counted twice — also across a
// `kill -9` (WAL with synchronous=NORMAL survives a process crash; `sync: full` for power loss).
//
// It also keeps the running sums that budgets are checked against (per key, team and route, per UTC
// day and month), loaded from the database at start.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

struct sqlite3;

namespace v4::router {

struct HopRecord {
  std::string upstream;
  std::string outcome;  // ok | connect_error | timeout | http_429 | http_5xx | http_4xx | garbage | truncated |
                        // verify_failed | circuit_open | busy | residency | budget
  std::string detail;   // e.g. the verifier's message or the upstream's error
  int status = 0;       // upstream HTTP status (0 = none)
  double latency_ms = 0;
  int64_t prompt_tokens = 0, cached_tokens = 0, completion_tokens = 0;
  double cost_usd = 0, amortised_usd = 0;
};

struct RequestRecord {
  std::string id;     // unique request id (also sent to the client as x-v4host-request-id)
  double ts = 0;      // unix seconds (UTC) at arrival
  std::string key, team, route, api, upstream;  // upstream that answered ("" = none)
  bool stream = false;
  int status = 0;                 // status sent to the client
  std::string outcome;            // ok | fallback_ok | failed | refused_budget | refused_cost | refused_residency | bad_request
  std::string verification;       // passed | failed | none
  int64_t prompt_tokens = 0, cached_tokens = 0, completion_tokens = 0;  // of the answer sent
  double cost_usd = 0, amortised_usd = 0;  // summed over every hop (failed hops cost money too)
  double latency_ms = 0, ttft_ms = 0;
  std::vector<HopRecord> hops;
};

struct LedgerOptions {
  bool sync_full = false;  // synchronous=FULL (survives power loss) instead of NORMAL (survives crashes)
  // > 0: the writer thread asks for an EEVDF slice of this many microseconds (as the router's
  // loops do): a stream's end frames wait for its commit, so a writer woken late releases several
  // streams' ends at once, and closed-loop clients then send their next requests in a clump.
  int writer_slice_us = 0;
};

class Ledger {
 public:
  explicit Ledger(const std::string& path, LedgerOptions opt = {});
  ~Ledger();
  Ledger(const Ledger&) = delete;
  Ledger& operator=(const Ledger&) = delete;

  // Queues the record; `done(ok)` runs on the writer thread after the commit (ok=false: the write
  // failed, logged). Budget sums are updated at once.
  void record(RequestRecord r, std::function<void(bool)> done = {});
  // Waits until everything queued so far is committed.
  void flush();

  enum class Scope { Key, Team, Route };
  // Marginal (tariff) spend in the current UTC day / month for a scope, including queued records.
  double spent_today(Scope s, const std::string& name, std::time_t now) const;
  double spent_month(Scope s, const std::string& name, std::time_t now) const;
  uint64_t write_failures() const;

 private:
  void writer_loop();
  void add_sums(const RequestRecord& r);
  void load_sums();

  sqlite3* db_ = nullptr;
  std::string path_;
  mutable std::mutex mu_;
  std::condition_variable cv_, flushed_;
  std::deque<std::pair<RequestRecord, std::function<void(bool)>>> queue_;
  uint64_t queued_ = 0, committed_ = 0, failures_ = 0;
  bool stop_ = false;
  std::map<std::string, double> sums_;  // "k|name|2026-12-01" / "k|name|2026-12" -> USD
  std::thread writer_;
  // WAL pages after the last commit (SQLite's wal hook). The checkpoint (under synchronous=NORMAL
  // the only fsyncs) runs after a batch's callbacks have released its responses' last bytes, not
  // inside the commit as SQLite's automatic checkpoint would.
  int wal_pages_ = 0;
  static int on_wal(void* self, sqlite3*, const char*, int pages);
};

// `v4host spend`: a text table of the ledger grouped by key, team, route, upstream (per hop, so
// failed hops are counted against the upstream that cost them) or day. since/until: YYYY-MM-DD.
struct SpendQuery {
  std::string by = "route";
  std::string since, until;
  bool json = false;
};
std::string spend_report(const std::string& ledger_path, const SpendQuery& q);

}  // namespace v4::router
