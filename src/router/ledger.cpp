#include "router/ledger.h"

#include "core/thread_priority.h"

#include <pthread.h>

#include <sqlite3.h>

#include <cstdio>
#include <ctime>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "router/cost.h"

namespace v4::router {

namespace {

const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS requests(
  id TEXT PRIMARY KEY,
  ts REAL NOT NULL, day TEXT NOT NULL, month TEXT NOT NULL,
  api_key TEXT, team TEXT, route TEXT, api TEXT, upstream TEXT,
  stream INTEGER, status INTEGER, outcome TEXT, verification TEXT,
  prompt_tokens INTEGER, cached_tokens INTEGER, completion_tokens INTEGER,
  cost_usd REAL, amortised_usd REAL, latency_ms REAL, ttft_ms REAL, hops INTEGER);
CREATE TABLE IF NOT EXISTS hops(
  request_id TEXT NOT NULL REFERENCES requests(id), n INTEGER NOT NULL,
  upstream TEXT, outcome TEXT, detail TEXT, status INTEGER, latency_ms REAL,
  prompt_tokens INTEGER, cached_tokens INTEGER, completion_tokens INTEGER,
  cost_usd REAL, amortised_usd REAL,
  PRIMARY KEY(request_id, n));
CREATE INDEX IF NOT EXISTS requests_day ON requests(day);
)sql";

// "ledger FILE: what SQLite said", so a corrupt or foreign file is named (SQLite opens lazily: a
// file that is not a database is only found out by the first statement).
InputError ledger_error(sqlite3* db, const std::string& m) {
  const char* f = sqlite3_db_filename(db, "main");
  return InputError(std::string("ledger ") + (f && *f ? f : "(memory)") + ": " + m);
}

struct Stmt {
  sqlite3_stmt* s = nullptr;
  Stmt(sqlite3* db, const char* sql) {
    if (sqlite3_prepare_v2(db, sql, -1, &s, nullptr) != SQLITE_OK) throw ledger_error(db, sqlite3_errmsg(db));
  }
  ~Stmt() { sqlite3_finalize(s); }
  void text(int i, const std::string& v) { sqlite3_bind_text(s, i, v.c_str(), static_cast<int>(v.size()), SQLITE_TRANSIENT); }
  void real(int i, double v) { sqlite3_bind_double(s, i, v); }
  void integer(int i, int64_t v) { sqlite3_bind_int64(s, i, v); }
};

void exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string m = err ? err : "?";
    sqlite3_free(err);
    throw ledger_error(db, m);
  }
}

std::string scope_key(Ledger::Scope s, const std::string& name, const std::string& period) {
  char c = s == Ledger::Scope::Key ? 'k' : s == Ledger::Scope::Team ? 't' : 'r';
  return std::string(1, c) + "|" + name + "|" + period;
}

}  // namespace

Ledger::Ledger(const std::string& path, LedgerOptions opt) : path_(path) {
  if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr) != SQLITE_OK) {
    std::string m = db_ ? sqlite3_errmsg(db_) : "out of memory";
    sqlite3_close(db_);
    throw InputError("cannot open ledger " + path + ": " + m);
  }
  sqlite3_busy_timeout(db_, 5000);
  try {
    exec(db_, "PRAGMA journal_mode=WAL;");
    exec(db_, opt.sync_full ? "PRAGMA synchronous=FULL;" : "PRAGMA synchronous=NORMAL;");
    exec(db_, kSchema);
    load_sums();
  } catch (...) {
    sqlite3_close(db_);
    throw;
  }
  // Replaces SQLite's automatic checkpoint, which would run inside the commit (see writer_loop).
  sqlite3_wal_hook(db_, &Ledger::on_wal, this);
  writer_ = std::thread([this, slice_us = opt.writer_slice_us] {
    pthread_setname_np(pthread_self(), "route-ledger");
    request_short_slice_us(slice_us);
    writer_loop();
  });
}

int Ledger::on_wal(void* self, sqlite3*, const char*, int pages) {
  static_cast<Ledger*>(self)->wal_pages_ = pages;  // the writer thread (the hook runs in its commit)
  return SQLITE_OK;
}

Ledger::~Ledger() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (writer_.joinable()) writer_.join();
  sqlite3_close(db_);
}

void Ledger::load_sums() {
  std::time_t now = std::time(nullptr);
  Stmt s(db_, "SELECT api_key, team, route, day, month, cost_usd FROM requests WHERE month = ?1");
  s.text(1, utc_month(now));
  const std::string today = utc_day(now);
  while (sqlite3_step(s.s) == SQLITE_ROW) {
    auto col = [&](int i) {
      const unsigned char* t = sqlite3_column_text(s.s, i);
      return t ? std::string(reinterpret_cast<const char*>(t)) : std::string();
    };
    double cost = sqlite3_column_double(s.s, 5);
    std::string day = col(3), month = col(4);
    const std::pair<Scope, std::string> scopes[] = {{Scope::Key, col(0)}, {Scope::Team, col(1)}, {Scope::Route, col(2)}};
    for (auto& [sc, name] : scopes) {
      if (name.empty()) continue;
      sums_[scope_key(sc, name, month)] += cost;
      if (day == today) sums_[scope_key(sc, name, day)] += cost;
    }
  }
}

void Ledger::add_sums(const RequestRecord& r) {
  if (r.cost_usd <= 0) return;
  std::time_t t = static_cast<std::time_t>(r.ts);
  std::string day = utc_day(t), month = utc_month(t);
  const std::pair<Scope, const std::string*> scopes[] = {{Scope::Key, &r.key}, {Scope::Team, &r.team}, {Scope::Route, &r.route}};
  for (auto& [sc, name] : scopes) {
    if (name->empty()) continue;
    sums_[scope_key(sc, *name, day)] += r.cost_usd;
    sums_[scope_key(sc, *name, month)] += r.cost_usd;
  }
}

void Ledger::record(RequestRecord r, std::function<void(bool)> done) {
  {
    std::lock_guard<std::mutex> l(mu_);
    add_sums(r);
    queue_.emplace_back(std::move(r), std::move(done));
    ++queued_;
  }
  cv_.notify_one();
}

void Ledger::flush() {
  std::unique_lock<std::mutex> l(mu_);
  uint64_t target = queued_;
  flushed_.wait(l, [&] { return committed_ >= target; });
}

double Ledger::spent_today(Scope s, const std::string& name, std::time_t now) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = sums_.find(scope_key(s, name, utc_day(now)));
  return it == sums_.end() ? 0 : it->second;
}

double Ledger::spent_month(Scope s, const std::string& name, std::time_t now) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = sums_.find(scope_key(s, name, utc_month(now)));
  return it == sums_.end() ? 0 : it->second;
}

uint64_t Ledger::write_failures() const {
  std::lock_guard<std::mutex> l(mu_);
  return failures_;
}

void Ledger::writer_loop() {
  Stmt req(db_,
           "INSERT OR IGNORE INTO requests(id, ts, day, month, api_key, team, route, api, upstream, stream, status, outcome, "
           "verification, prompt_tokens, cached_tokens, completion_tokens, cost_usd, amortised_usd, latency_ms, ttft_ms, hops) "
           "VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20,?21)");
  Stmt hop(db_,
           "INSERT OR IGNORE INTO hops(request_id, n, upstream, outcome, detail, status, latency_ms, prompt_tokens, cached_tokens, "
           "completion_tokens, cost_usd, amortised_usd) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)");
  for (;;) {
    std::deque<std::pair<RequestRecord, std::function<void(bool)>>> batch;
    {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait(l, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty() && stop_) return;
      batch.swap(queue_);
    }
    bool ok = true;
    std::string err;
    // One transaction for the whole batch: a request and its hops are committed together or not at all.
    if (sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) != SQLITE_OK) ok = false;
    for (auto& [r, _] : batch) {
      if (!ok) break;
      std::time_t t = static_cast<std::time_t>(r.ts);
      sqlite3_reset(req.s);
      req.text(1, r.id);
      req.real(2, r.ts);
      req.text(3, utc_day(t));
      req.text(4, utc_month(t));
      req.text(5, r.key);
      req.text(6, r.team);
      req.text(7, r.route);
      req.text(8, r.api);
      req.text(9, r.upstream);
      req.integer(10, r.stream);
      req.integer(11, r.status);
      req.text(12, r.outcome);
      req.text(13, r.verification);
      req.integer(14, r.prompt_tokens);
      req.integer(15, r.cached_tokens);
      req.integer(16, r.completion_tokens);
      req.real(17, r.cost_usd);
      req.real(18, r.amortised_usd);
      req.real(19, r.latency_ms);
      req.real(20, r.ttft_ms);
      req.integer(21, static_cast<int64_t>(r.hops.size()));
      if (sqlite3_step(req.s) != SQLITE_DONE) {
        ok = false;
        break;
      }
      for (size_t i = 0; i < r.hops.size() && ok; ++i) {
        auto& h = r.hops[i];
        sqlite3_reset(hop.s);
        hop.text(1, r.id);
        hop.integer(2, static_cast<int64_t>(i));
        hop.text(3, h.upstream);
        hop.text(4, h.outcome);
        hop.text(5, h.detail);
        hop.integer(6, h.status);
        hop.real(7, h.latency_ms);
        hop.integer(8, h.prompt_tokens);
        hop.integer(9, h.cached_tokens);
        hop.integer(10, h.completion_tokens);
        hop.real(11, h.cost_usd);
        hop.real(12, h.amortised_usd);
        if (sqlite3_step(hop.s) != SQLITE_DONE) ok = false;
      }
    }
    if (ok && sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) ok = false;
    if (!ok) {
      err = sqlite3_errmsg(db_);
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      std::fprintf(stderr, "v4host route: ledger write failed (%zu records): %s\n", batch.size(), err.c_str());
    }
    for (auto& [r, done] : batch)
      if (done) done(ok);
    {
      std::lock_guard<std::mutex> l(mu_);
      committed_ += batch.size();
      if (!ok) failures_ += batch.size();
    }
    flushed_.notify_all();
    // SQLite's usual threshold (1000 pages), checkpointed now that this batch's responses are on
    // their way; between transactions, so it copies the whole WAL and the next commit restarts it.
    if (wal_pages_ >= 1000) {
      sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
      wal_pages_ = 0;
    }
  }
}

std::string spend_report(const std::string& path, const SpendQuery& q) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    std::string m = db ? sqlite3_errmsg(db) : "?";
    sqlite3_close(db);
    throw InputError("cannot open ledger " + path + ": " + m);
  }
  struct Closer {
    sqlite3* d;
    ~Closer() { sqlite3_close(d); }
  } closer{db};
  sqlite3_busy_timeout(db, 5000);
  std::string col;
  bool per_hop = q.by == "upstream";
  if (q.by == "key") col = "r.api_key";
  else if (q.by == "team") col = "r.team";
  else if (q.by == "route") col = "r.route";
  else if (q.by == "day") col = "r.day";
  else if (q.by == "upstream") col = "h.upstream";
  else throw InputError("--by must be key, team, route, upstream or day, got '" + q.by + "'");
  std::string where = " WHERE 1=1";
  if (!q.since.empty()) where += " AND r.day >= ?1";
  if (!q.until.empty()) where += " AND r.day <= ?2";
  std::string sql;
  if (per_hop) {
    // Per upstream: every hop that reached it, answered or not (failed hops cost tokens too).
    sql = "SELECT " + col + ", COUNT(*), SUM(h.outcome = 'ok'), SUM(h.prompt_tokens), SUM(h.completion_tokens), SUM(h.cost_usd), "
          "SUM(h.amortised_usd), SUM(h.outcome = 'verify_failed'), SUM(h.outcome != 'ok'), AVG(h.latency_ms) "
          "FROM hops h JOIN requests r ON r.id = h.request_id" + where + " GROUP BY 1 ORDER BY 1";
  } else {
    sql = "SELECT " + col + ", COUNT(*), SUM(r.status < 400), SUM(r.prompt_tokens), SUM(r.completion_tokens), SUM(r.cost_usd), "
          "SUM(r.amortised_usd), SUM((SELECT COUNT(*) FROM hops h WHERE h.request_id = r.id AND h.outcome = 'verify_failed')), "
          "SUM(r.hops > 1), AVG(r.latency_ms) FROM requests r" + where + " GROUP BY 1 ORDER BY 1";
  }
  Stmt s(db, sql.c_str());
  if (!q.since.empty()) s.text(1, q.since);
  if (!q.until.empty()) s.text(2, q.until);
  nlohmann::ordered_json rows = nlohmann::ordered_json::array();
  std::string out = fmt::format("{:<20} {:>9} {:>8} {:>12} {:>12} {:>12} {:>12} {:>12} {:>9} {:>9} {:>10}\n", q.by,
                                per_hop ? "hops" : "requests", "ok", "prompt_tok", "output_tok", "tariff_usd", "amortised", "total_usd",
                                "verifyX", per_hop ? "failed" : "fallbacks", "avg_ms");
  double tot[4] = {0, 0, 0, 0};
  while (sqlite3_step(s.s) == SQLITE_ROW) {
    const unsigned char* g = sqlite3_column_text(s.s, 0);
    std::string group = g && *g ? reinterpret_cast<const char*>(g) : "(none)";
    int64_t n = sqlite3_column_int64(s.s, 1), ok = sqlite3_column_int64(s.s, 2);
    int64_t pt = sqlite3_column_int64(s.s, 3), ct = sqlite3_column_int64(s.s, 4);
    double cost = sqlite3_column_double(s.s, 5), am = sqlite3_column_double(s.s, 6);
    int64_t vf = sqlite3_column_int64(s.s, 7), fb = sqlite3_column_int64(s.s, 8);
    double lat = sqlite3_column_double(s.s, 9);
    tot[0] += static_cast<double>(n);
    tot[1] += cost;
    tot[2] += am;
    tot[3] += static_cast<double>(ok);
    rows.push_back({{q.by, group}, {per_hop ? "hops" : "requests", n}, {"ok", ok}, {"prompt_tokens", pt}, {"completion_tokens", ct},
                    {"tariff_usd", cost}, {"amortised_usd", am}, {"total_usd", cost + am}, {"verification_failures", vf},
                    {per_hop ? "failed" : "fallbacks", fb}, {"avg_latency_ms", lat}});
    out += fmt::format("{:<20} {:>9} {:>8} {:>12} {:>12} {:>12.6f} {:>12.6f} {:>12.6f} {:>9} {:>9} {:>10.1f}\n", group, n, ok, pt, ct, cost, am,
                       cost + am, vf, fb, lat);
  }
  if (q.json) return rows.dump(2) + "\n";
  out += fmt::format("{:<20} {:>9} {:>8} {:>12} {:>12} {:>12.6f} {:>12.6f} {:>12.6f}\n", "total", static_cast<int64_t>(tot[0]),
                     static_cast<int64_t>(tot[3]), "", "", tot[1], tot[2], tot[1] + tot[2]);
  return out;
}

}  // namespace v4::router
