// Ledger: records with their hops committed together, ids never counted twice, budget sums
// reloaded at start, and the spend report grouped each way.
#include <gtest/gtest.h>

#include <sqlite3.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <functional>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "router/ledger.h"

using namespace v4::router;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path p;
  TempDir() {
    char t[] = "/tmp/v4router-XXXXXX";
    p = mkdtemp(t);
  }
  ~TempDir() { fs::remove_all(p); }
};

RequestRecord rec(const std::string& id, const std::string& key, const std::string& route, double cost, double ts) {
  RequestRecord r;
  r.id = id;
  r.ts = ts;
  r.key = key;
  r.team = "t-" + key;
  r.route = route;
  r.api = "chat";
  r.status = 200;
  r.outcome = "ok";
  r.upstream = "pro";
  r.prompt_tokens = 100;
  r.completion_tokens = 10;
  r.cost_usd = cost;
  HopRecord h{"pro", "ok", "", 200, 0, 100, 0, 10, cost, 0};
  r.hops.push_back(h);
  return r;
}

int64_t count(const fs::path& db, const char* sql) {
  sqlite3* d;
  sqlite3_open(db.c_str(), &d);
  sqlite3_stmt* s;
  sqlite3_prepare_v2(d, sql, -1, &s, nullptr);
  int64_t n = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
  sqlite3_finalize(s);
  sqlite3_close(d);
  return n;
}

}  // namespace

TEST(RouterLedger, GroupCommitAndSums) {
  TempDir tmp;
  fs::path db = tmp.p / "l.db";
  double now = static_cast<double>(std::time(nullptr));
  std::atomic<int> done{0};
  {
    Ledger l(db.string());
    for (int i = 0; i < 200; ++i) l.record(rec(fmt::format("r{}", i), i % 2 ? "alice" : "bob", "coding", 0.01, now), [&](bool ok) {
      EXPECT_TRUE(ok);
      ++done;
    });
    // A fallback: a failed local hop (no price) then the hosted answer.
    RequestRecord f = rec("fb", "alice", "coding", 0.02, now);
    HopRecord local;
    local.upstream = "flash";
    local.outcome = "verify_failed";
    local.amortised_usd = 0.001;
    f.hops.insert(f.hops.begin(), local);
    f.amortised_usd = 0.001;
    l.record(f);
    l.record(rec("r0", "bob", "coding", 0.01, now));  // the same id again: ignored
    l.flush();
    EXPECT_EQ(done.load(), 200);
    EXPECT_NEAR(l.spent_today(Ledger::Scope::Key, "alice", static_cast<std::time_t>(now)), 100 * 0.01 + 0.02, 1e-9);
    EXPECT_NEAR(l.spent_month(Ledger::Scope::Route, "coding", static_cast<std::time_t>(now)), 2.03, 1e-9);  // the duplicate counts in memory
  }
  EXPECT_EQ(count(db, "SELECT COUNT(*) FROM requests"), 201);
  EXPECT_EQ(count(db, "SELECT COUNT(*) FROM hops"), 202);
  {
    Ledger again(db.string());  // sums come back from the database: the duplicate is gone
    EXPECT_NEAR(again.spent_month(Ledger::Scope::Route, "coding", static_cast<std::time_t>(now)), 2.02, 1e-9);
    EXPECT_NEAR(again.spent_today(Ledger::Scope::Team, "t-bob", static_cast<std::time_t>(now)), 1.0, 1e-9);
  }
  std::string by_key = spend_report(db.string(), {"key", "", "", false});
  EXPECT_NE(by_key.find("alice"), std::string::npos) << by_key;
  EXPECT_NE(by_key.find("bob"), std::string::npos) << by_key;
  std::string js = spend_report(db.string(), {"upstream", "", "", true});
  auto j = nlohmann::json::parse(js);
  ASSERT_EQ(j.size(), 2u);  // flash, pro
  EXPECT_EQ(j[0]["upstream"], "flash");
  EXPECT_EQ(j[0]["verification_failures"], 1);
  EXPECT_NEAR(j[0]["amortised_usd"].get<double>(), 0.001, 1e-12);
  EXPECT_EQ(j[1]["hops"], 201);
  auto jr = nlohmann::json::parse(spend_report(db.string(), {"route", "", "", true}));
  ASSERT_EQ(jr.size(), 1u);
  EXPECT_EQ(jr[0]["requests"], 201);
  EXPECT_EQ(jr[0]["fallbacks"], 1);
  EXPECT_NEAR(jr[0]["total_usd"].get<double>(), 2.021, 1e-9);
  EXPECT_THROW(spend_report(db.string(), {"colour", "", "", false}), v4::InputError);
  auto jd = nlohmann::json::parse(spend_report(db.string(), {"day", "2999-01-01", "", true}));
  EXPECT_EQ(jd.size(), 0u);
}

// Checkpoints run after a batch has been released (not inside the commit that holds a response's
// last bytes), and still keep the WAL bounded: one commit per record, thousands of them (each
// commit appends several pages, so without checkpoints the WAL would pass 10,000 pages).
TEST(RouterLedger, WalCheckpointedOffTheCommitPath) {
  TempDir d;
  fs::path db = d.p / "l.db";
  const double now = static_cast<double>(std::time(nullptr));
  {
    Ledger l(db.string());
    for (int i = 0; i < 3000; ++i) {
      l.record(rec(fmt::format("w{}", i), "k", "r", 0.001, now));
      l.flush();
    }
    const auto wal_pages = static_cast<int64_t>(fs::file_size(db.string() + "-wal") / 4096);
    EXPECT_LT(wal_pages, 4000) << "the WAL grew without checkpoints";
  }
  EXPECT_EQ(count(db, "SELECT COUNT(*) FROM requests"), 3000);
  EXPECT_EQ(count(db, "SELECT COUNT(*) FROM hops"), 3000);
  EXPECT_EQ(count(db, "SELECT COUNT(*) FROM requests WHERE id = 'w2999'"), 1);
}

// A file that is not a SQLite database opens fine (SQLite reads lazily) and fails at the first
// statement: the router and `spend` both name the file, and the file is left as it was.
TEST(RouterLedger, CorruptFileIsNamedAndLeftAlone) {
  TempDir d;
  const fs::path bad = d.p / "not-a-ledger.db";
  std::string junk(8192, '\0');
  for (size_t i = 0; i < junk.size(); ++i) junk[i] = static_cast<char>((i * 131 + 7) % 251 + 1);
  {
    std::FILE* f = std::fopen(bad.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    std::fwrite(junk.data(), 1, junk.size(), f);
    std::fclose(f);
  }
  const auto message_of = [](const std::function<void()>& fn) -> std::string {
    try {
      fn();
    } catch (const v4::InputError& e) {
      return e.what();
    }
    return "(no error)";
  };
  const std::string opened = message_of([&] { Ledger l(bad.string()); });
  const std::string reported = message_of([&] { spend_report(bad.string(), {"route", "", "", false}); });
  for (const std::string& m : {opened, reported}) {
    EXPECT_NE(m.find(bad.string()), std::string::npos) << m;
    EXPECT_NE(m.find("not a database"), std::string::npos) << m;
  }
  EXPECT_EQ(fs::file_size(bad), junk.size());
  EXPECT_FALSE(fs::exists(d.p / "not-a-ledger.db-wal"));
}
