// `v4host bench` and `v4host bench compare` as a user runs them (the real binary), against the
// scripted streaming endpoint: every --api, every workload kind, load modes, result files, the HTML
// report in headless Chromium, comparisons with --fail-on, bad input, and Ctrl-C.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "../common/chromium_check.h"
#include "../common/scripted_endpoint.h"
#include "subprocess.h"

// GCC 12 false positive on chains of std::string operator+ (GCC bug 105329).
#pragma GCC diagnostic ignored "-Wrestrict"

using json = nlohmann::json;
using v4::testing::run_binary;
using v4::testing::Schedule;
using v4::testing::ScriptedEndpoint;
namespace fs = std::filesystem;

namespace {

struct TmpDir {
  fs::path p = fs::temp_directory_path() / ("v4bench-" + std::to_string(::getpid()) + "-" + std::to_string(std::rand()));
  TmpDir() { fs::create_directories(p); }
  ~TmpDir() { fs::remove_all(p); }
  std::string operator/(const std::string& f) const { return (p / f).string(); }
};

json load(const std::string& path) {
  std::ifstream f(path);
  return json::parse(f);
}

Schedule quick(int reasoning = 2) {
  Schedule s;
  s.first_token_ms = 15;
  s.interval_ms = 2;
  s.reasoning_chunks = reasoning;
  s.answer_chunks = 6;
  s.follow_max_tokens = false;
  return s;
}

}  // namespace

TEST(BenchCli, EveryApiStreamsAndSplitsReasoningFromAnswer) {
  ScriptedEndpoint ep(quick());
  TmpDir d;
  for (const char* api : {"chat", "completions", "responses", "messages"}) {
    SCOPED_TRACE(api);
    auto r = run_binary({"bench", "--url", ep.base_url(), "--api", api, "--requests", "6", "--concurrency", "3", "--input-len", "20",
                         "--output-len", "6", "--reasoning", "on", "--json", d / "r.json", "-q"});
    ASSERT_EQ(r.rc, 0) << r.err;
    json j = load(d / "r.json");
    EXPECT_EQ(j["provenance"]["model"], "scripted-model");  // picked from /v1/models
    EXPECT_EQ(j["provenance"]["api"], api);
    EXPECT_EQ(j["provenance"]["server"], "scripted-endpoint");
    const json& s = j["points"][0]["summary"];
    EXPECT_EQ(s["requests"]["completed"], 6);
    EXPECT_EQ(s["requests"]["failed"], 0);
    ASSERT_EQ(j["points"][0]["requests"].size(), 6u);
    for (const auto& q : j["points"][0]["requests"]) {
      EXPECT_EQ(q["output_tokens"], 8);
      if (std::string(api) != "completions") {  // completions has no reasoning channel
        EXPECT_EQ(q["reasoning_pieces"], 2);
        EXPECT_EQ(q["answer_pieces"], 6);
        EXPECT_GE(q["ttfa_ms"].get<double>(), q["ttft_ms"].get<double>());  // pieces may share a read on a busy machine
      }
      EXPECT_GE(q["ttft_ms"].get<double>(), 14.0);  // the scripted first-token delay is 15 ms
      EXPECT_EQ(q["piece_ms"].size(), 8u);
    }
    EXPECT_GT(s["throughput"]["output_tokens_per_s"].get<double>(), 0);
  }
  // What was sent: forced output length where supported, reasoning switched on per API.
  auto bodies = ep.bodies();
  ASSERT_EQ(bodies.size(), 24u);
  int forced = 0, thinking = 0, effort = 0;
  for (const auto& b : bodies) {
    json j = json::parse(b);
    forced += j.value("min_tokens", 0) == 6 && j.value("ignore_eos", false);
    thinking += j.contains("thinking") && j["thinking"]["type"] == "enabled";
    effort += j.contains("reasoning");
  }
  EXPECT_EQ(forced, 12);    // chat + completions
  EXPECT_EQ(thinking, 12);  // chat + messages
  EXPECT_EQ(effort, 6);     // responses
}

TEST(BenchCli, WorkloadKindsAndLoadModes) {
  Schedule s = quick(0);
  s.follow_max_tokens = true;
  s.cached_tokens = 5;
  ScriptedEndpoint ep(s);
  TmpDir d;
  {  // shared prefix, at a Poisson rate
    auto r = run_binary({"bench", "--url", ep.base_url() + "/v1", "--model", "scripted-model", "--workload", "shared-prefix", "--prefixes",
                         "2", "--prefix-tokens", "40", "--requests", "8", "--rate", "40", "--burstiness", "0.5", "--json", d / "sp.json", "-q"});
    ASSERT_EQ(r.rc, 0) << r.err;
    json j = load(d / "sp.json");
    EXPECT_EQ(j["points"][0]["summary"]["requests"]["completed"], 8);
    EXPECT_EQ(j["points"][0]["load"]["mode"], "rate");
    EXPECT_NEAR(j["points"][0]["summary"]["tokens"]["prefix_cache_hit_rate"].get<double>(), 5.0 / 12, 1e-3);
    EXPECT_EQ(j["points"][0]["summary"]["tokens"]["requests_with_cache_hits"], 8);
  }
  auto bodies = ep.bodies();
  ASSERT_EQ(bodies.size(), 8u);
  std::set<std::string> systems;
  for (const auto& b : bodies) systems.insert(json::parse(b)["messages"][0]["content"].get<std::string>());
  EXPECT_EQ(systems.size(), 2u);  // 2 system prompts shared by 8 requests
  {  // agent sessions: 2 sessions x 3 turns, the conversation grows with tool calls and results
    auto r = run_binary({"bench", "--url", ep.base_url(), "--workload", "agent", "--turns", "3", "--requests", "6", "--concurrency", "2",
                         "--output-len", "4", "--json", d / "ag.json", "-q"});
    ASSERT_EQ(r.rc, 0) << r.err;
    json j = load(d / "ag.json");
    EXPECT_EQ(j["points"][0]["summary"]["requests"]["completed"], 6);
    int max_turn = 0;
    for (const auto& q : j["points"][0]["requests"]) max_turn = std::max(max_turn, q["turn"].get<int>());
    EXPECT_EQ(max_turn, 2);
    auto all = ep.bodies();
    json last = json::parse(all.back());
    bool has_tool_result = false, has_tool_call = false;
    for (const auto& m : last["messages"]) {
      has_tool_result |= m["role"] == "tool";
      has_tool_call |= m.contains("tool_calls");
    }
    EXPECT_TRUE(has_tool_result);
    EXPECT_TRUE(has_tool_call);
    EXPECT_TRUE(last.contains("tools"));
  }
  {  // the user's own requests, replayed with their timing (0, 0.2, 0.4 s)
    std::ofstream f(d / "w.jsonl");
    f << R"({"messages":[{"role":"user","content":"hello"}],"max_tokens":3,"timestamp":100.0})" << "\n"
      << R"({"prompt":"once upon a time","max_tokens":5,"timestamp":100.2})" << "\n\n"
      << R"({"messages":[{"role":"user","content":"bye"}],"timestamp":100.4})" << "\n";
    f.close();
    auto r = run_binary({"bench", "--url", ep.base_url(), "--workload", "jsonl", "--file", d / "w.jsonl", "--replay", "--json", d / "j.json", "-q"});
    ASSERT_EQ(r.rc, 0) << r.err;
    json j = load(d / "j.json");
    const json& q = j["points"][0]["requests"];
    ASSERT_EQ(q.size(), 3u);
    EXPECT_EQ(q[0]["output_tokens"], 3);
    EXPECT_EQ(q[1]["output_tokens"], 5);
    EXPECT_NEAR(q[1]["start_s"].get<double>() - q[0]["start_s"].get<double>(), 0.2, 0.05);
    EXPECT_NEAR(q[2]["start_s"].get<double>() - q[0]["start_s"].get<double>(), 0.4, 0.05);
  }
}

TEST(BenchCli, SweepHtmlReportRendersInChromiumAndMatchesJson) {
  ScriptedEndpoint ep(quick());
  TmpDir d;
  auto r = run_binary({"bench", "--url", ep.base_url(), "--concurrency", "1,4", "--requests", "12", "--warmup", "2", "--slo", "ttft=1s,tpot=50ms",
                       "--json", d / "s.json", "--csv", d / "s.csv", "--html", d / "s.html"});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.err.find("inter_token_latency"), std::string::npos);  // both naming conventions printed
  EXPECT_NE(r.err.find("(e2e - ttft) / (output_tokens - 1)"), std::string::npos);
  json j = load(d / "s.json");
  ASSERT_EQ(j["points"].size(), 2u);
  EXPECT_EQ(j["points"][1]["summary"]["throughput"]["peak_concurrency"], 4);
  EXPECT_EQ(j["points"][0]["summary"]["goodput"]["attainment"], 1.0);
  // CSV: header + 24 rows.
  std::ifstream csv(d / "s.csv");
  int lines = 0;
  for (std::string l; std::getline(csv, l);) ++lines;
  EXPECT_EQ(lines, 25);
  auto c = v4::testing::open_in_chromium(d / "s.html");
  if (!c.available) GTEST_SKIP() << c.message;
  EXPECT_EQ(c.script_errors, "");
  EXPECT_GE(c.svg_total, 8);  // 5 CDFs + 4 load charts + TTFT vs input
  EXPECT_EQ(c.svg_rendered, c.svg_total);
  EXPECT_NE(c.dom.find("data-points=\"2\""), std::string::npos);  // the page's script ran
  for (int p = 0; p < 2; ++p) {
    const json& m = j["points"][p]["summary"]["metrics"];
    for (const char* key : {"ttft_ms", "tpot_ms", "itl_ms", "e2e_ms"})
      for (const char* st : {"mean", "p50", "p99"}) {
        char want[32];
        std::snprintf(want, sizeof want, "%.2f", m[key][st].get<double>());
        EXPECT_EQ(v4::testing::text_of_key(c.dom, "p" + std::to_string(p) + "." + key + "." + st), want) << key << " " << st;
      }
  }
  EXPECT_NE(c.dom.find("data-series=\"c=4\""), std::string::npos);
}

TEST(BenchCli, CompareFlagsRegressionAndFailOnExitsOne) {
  TmpDir d;
  Schedule fast = quick(0), slow = quick(0);
  slow.first_token_ms = 40;
  {
    ScriptedEndpoint a(fast);
    ASSERT_EQ(run_binary({"bench", "--url", a.base_url(), "--requests", "40", "--concurrency", "4", "--json", d / "a.json", "-q"}).rc, 0);
  }
  {
    ScriptedEndpoint b(slow);
    ASSERT_EQ(run_binary({"bench", "--url", b.base_url(), "--requests", "40", "--concurrency", "4", "--json", d / "b.json", "-q"}).rc, 0);
  }
  auto same = run_binary({"bench", "compare", d / "a.json", d / "a.json", "--fail-on", "p99_ttft>+10%"});
  EXPECT_EQ(same.rc, 0) << same.out << same.err;
  auto r = run_binary({"bench", "compare", d / "a.json", d / "b.json", "--fail-on", "p99_ttft>+10%,mean_tpot>+50%", "--json", d / "c.json"});
  EXPECT_EQ(r.rc, 1) << r.out << r.err;
  EXPECT_NE(r.out.find("REGRESSION"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("FAIL: p99_ttft>+10%"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("FAIL: mean_tpot"), std::string::npos) << r.out;  // TPOT did not change
  json c = load(d / "c.json");
  bool found = false;
  for (const auto& row : c["rows"])
    if (row["metric"] == "ttft_ms" && row["stat"] == "mean") {
      found = true;
      EXPECT_EQ(row["verdict"], "REGRESSION");
      EXPECT_GT(row["rel_ci"][0].get<double>(), 0.5);  // 15 ms -> 40 ms
    }
  EXPECT_TRUE(found);
}

TEST(BenchCli, BadInputIsExitTwoWithAClearMessage) {
  ScriptedEndpoint ep(quick());
  TmpDir d;
  auto expect2 = [](const v4::testing::ProcResult& r, const std::string& msg) {
    EXPECT_EQ(r.rc, 2) << r.err;
    EXPECT_NE(r.err.find(msg), std::string::npos) << r.err;
  };
  // Unreachable URL (a port nothing listens on).
  int port;
  {
    boost::asio::io_context io;
    boost::asio::ip::tcp::acceptor a(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
    port = a.local_endpoint().port();
  }
  expect2(run_binary({"bench", "--url", "http://127.0.0.1:" + std::to_string(port), "--requests", "1"}), "cannot reach");
  expect2(run_binary({"bench", "--url", "localhost:8000", "--requests", "1"}), "no scheme");
  expect2(run_binary({"bench", "--url", ep.base_url(), "--model", "gpt-nonexistent", "--requests", "1"}), "'gpt-nonexistent' is not served");
  {
    std::ofstream f(d / "bad.jsonl");
    f << R"({"prompt":"fine"})" << "\n" << R"({"messages": "not an array"})" << "\n";
  }
  expect2(run_binary({"bench", "--url", ep.base_url(), "--workload", "jsonl", "--file", d / "bad.jsonl"}), "bad.jsonl:2");
  expect2(run_binary({"bench", "--url", ep.base_url(), "--workload", "jsonl", "--file", d / "missing.jsonl"}), "cannot open");
  expect2(run_binary({"bench", "--url", ep.base_url(), "--slo", "ttft<2s"}), "--slo");
  expect2(run_binary({"bench", "--url", ep.base_url(), "--slo", "ttft=fast"}), "--slo");
  expect2(run_binary({"bench", "--url", ep.base_url(), "--slo", "latency=2s"}), "unknown key");
  expect2(run_binary({"bench", "--url", ep.base_url(), "--api", "grpc"}), "--api");
  expect2(run_binary({"bench", "--url", ep.base_url(), "--input-len", "uniform:10"}), "--input-len");
  expect2(run_binary({"bench", "--url", ep.base_url(), "--concurrency", "4,x"}), "--concurrency");
  expect2(run_binary({"bench", "--requests", "1"}), "--url is required");
  expect2(run_binary({"bench", "compare", d / "bad.jsonl", d / "bad.jsonl"}), "not valid JSON");
  {
    std::ofstream f(d / "ok.json");
    f << "{}";
  }
  expect2(run_binary({"bench", "compare", d / "ok.json", d / "ok.json"}), "not a `v4host bench --json` result");
  expect2(run_binary({"bench", "compare", d / "ok.json", d / "ok.json", "--fail-on", "p99_ttft=10%"}), "--fail-on");
  EXPECT_EQ(ep.requests(), 0u);  // nothing was sent for any of these
}

TEST(BenchCli, CtrlCWritesTheResultsSoFar) {
  Schedule s = quick(0);
  s.interval_ms = 40;
  s.answer_chunks = 5;  // ~0.2 s per request
  ScriptedEndpoint ep(s);
  TmpDir d;
  v4::testing::Proc p({V4_BINARY, "bench", "--url", ep.base_url(), "--requests", "1000", "--concurrency", "4", "--json", d / "i.json",
                       "--html", d / "i.html"});
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  p.signal(SIGINT);
  auto r = p.wait(std::chrono::seconds(30));
  EXPECT_EQ(r.rc, 130) << r.err;
  EXPECT_NE(r.err.find("interrupted"), std::string::npos) << r.err;
  ASSERT_TRUE(fs::exists(d / "i.json"));
  EXPECT_TRUE(fs::exists(d / "i.html"));
  json j = load(d / "i.json");
  EXPECT_TRUE(j["interrupted"].get<bool>());
  long completed = j["points"][0]["summary"]["requests"]["completed"];
  EXPECT_GE(completed, 4);
  EXPECT_LT(completed, 1000);
  int cancelled = 0;
  for (const auto& q : j["points"][0]["requests"])
    if (q.contains("error")) cancelled += q["error"]["kind"] == "cancelled";
  EXPECT_LE(cancelled, 4);  // the ones in flight at Ctrl-C
}

TEST(BenchCli, SloSearchFindsTheRateWhereQueueingBreaksTheSlo) {
  // The scripted endpoint serves any number of streams, so queueing comes from --max-concurrency:
  // at 2 in flight and ~50 ms per request, about 40 req/s is the capacity; a TTFT SLO of 60 ms
  // holds well below it and fails above it. The 50 ms between the first token's delay and the SLO
  // leave room for this in-process endpoint's timers to slip on a busy machine (with 20 ms, 2 of
  // 20 requests late at 4 req/s failed the start rate in one run of three under load).
  Schedule s = quick(0);
  s.first_token_ms = 10;
  s.interval_ms = 5;
  s.answer_chunks = 8;
  ScriptedEndpoint ep(s);
  TmpDir d;
  auto r = run_binary({"bench", "--url", ep.base_url(), "--slo", "ttft=60ms", "--slo-search", "--search-start", "4", "--search-max", "256",
                       "--search-steps", "1", "--max-concurrency", "2", "--requests", "20", "--json", d / "slo.json", "--html", d / "slo.html", "-q"});
  ASSERT_EQ(r.rc, 0) << r.err;
  json j = load(d / "slo.json");
  const json& ss = j["slo_search"];
  ASSERT_TRUE(ss["max_rate_meeting_slo"].is_number()) << ss.dump();
  double best = ss["max_rate_meeting_slo"];
  EXPECT_GE(best, 4);
  EXPECT_LT(best, 128);
  EXPECT_GT(ss["first_failing_rate"].get<double>(), best);
  EXPECT_GE(ss["probes"].size(), 3u);
  EXPECT_EQ(j["points"].size(), ss["probes"].size());
  for (const auto& p : ss["probes"]) EXPECT_EQ(p["meets"].get<bool>(), p["attainment"].get<double>() >= 0.9);
}

// --io-realtime asks for SCHED_FIFO on the I/O threads: the run goes on either way, the JSON
// records what was asked and what was granted, and a refusal is a warning on stderr.
TEST(BenchCli, IoRealtimeIsRecordedAndARefusalWarns) {
  ScriptedEndpoint ep(quick(0));
  TmpDir d;
  auto r = run_binary({"bench", "--url", ep.base_url(), "--requests", "4", "--concurrency", "2", "--output-len", "6", "--io-realtime",
                       "--json", d / "rt.json", "-q"});
  ASSERT_EQ(r.rc, 0) << r.err;
  json j = load(d / "rt.json");
  EXPECT_EQ(j["config"]["io_realtime"], true);
  ASSERT_TRUE(j["points"][0]["io_realtime"].is_boolean());
  EXPECT_EQ(j["points"][0]["summary"]["requests"]["completed"], 4);
  const bool granted = j["points"][0]["io_realtime"].get<bool>();
  EXPECT_EQ(r.err.find("--io-realtime: SCHED_FIFO refused") == std::string::npos, granted) << r.err;
}
