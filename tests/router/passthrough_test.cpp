// The router's cheap paths end to end (router in process, fake upstreams on net::HttpServer that
// send exactly the bytes a test gives them): a streamed answer in the client's dialect is
// forwarded byte for byte, usage reaches the ledger from passed-through streams and from answers
// assembled by the lean reader, a failure before the first byte still falls back, and a verifier
// still gates a buffered route.
#include <gtest/gtest.h>
#include <pthread.h>
#include <sched.h>
#include <sqlite3.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>

#include <fmt/format.h>

#include "net/http_client.h"
#include "net/http_server.h"
#include "protocol/protocol.h"
#include "router/config.h"
#include "core/thread_priority.h"
#include "router/proxy.h"

namespace fs = std::filesystem;
using v4::protocol::ojson;

namespace {

// An upstream that answers every chat request with `status` and the given SSE bytes (or body).
struct FakeUpstream {
  v4::net::HttpServer srv;
  std::thread th;
  std::string sse;        // streamed answer, written in pieces of `piece` bytes
  size_t piece = 7;       // odd splits: events cut mid-way across writes
  int status = 200;
  std::string error_body = R"({"error":{"message":"boom","type":"server_error"}})";
  std::atomic<int> calls{0};
  std::string last_body, last_request_id;  // the X-Request-Id the router sent
  int port = 0;

  explicit FakeUpstream(std::string frames, int st = 200) : srv(opts()), sse(std::move(frames)), status(st) {
    srv.route("POST", "/v1/chat/completions", [this](const v4::net::Request& q, v4::net::Reply& r) {
      ++calls;
      last_body = q.body;
      last_request_id = q.header("x-request-id");
      if (status != 200) {
        r.status = status;
        r.set_content(error_body, "application/json");
        return;
      }
      auto s = r.start_stream("text/event-stream");
      for (size_t i = 0; i < sse.size(); i += piece) s->write(sse.substr(i, piece));
      s->close();
    });
    port = srv.bind();
    srv.start();
  }
  static v4::net::ServerOptions opts() {
    v4::net::ServerOptions o;
    o.io_threads = 1;
    return o;
  }
  std::string url() const { return fmt::format("http://127.0.0.1:{}/v1", port); }
};

struct Router {
  fs::path dir;
  std::unique_ptr<v4::router::Proxy> proxy;
  std::thread th;
  int port = 0;
  explicit Router(const std::string& yaml_body, v4::router::ProxyOptions po = {}) {
    std::string tmpl = (fs::temp_directory_path() / "v4route-pt-XXXXXX").string();
    dir = mkdtemp(tmpl.data());
    std::string yaml = fmt::format("listen: {{port: 0}}\nledger: {}/ledger.db\naccess_log: \"-\"\n{}", dir.string(), yaml_body);
    proxy = std::make_unique<v4::router::Proxy>(v4::router::load_config_text(yaml, "pt.yaml"), nullptr, po);
    port = proxy->bind();
    th = std::thread([this] { proxy->serve(); });
  }
  ~Router() {
    proxy->stop();
    th.join();
    proxy.reset();
    fs::remove_all(dir);
  }
  v4::net::Response post(const std::string& body) {
    return v4::net::post_json(fmt::format("http://127.0.0.1:{}/v1/chat/completions", port), body);
  }
  // One value from the ledger (the request was committed before its last bytes were sent).
  std::string q(const std::string& sql) {
    sqlite3* db = nullptr;
    sqlite3_open_v2((dir / "ledger.db").c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
    sqlite3_stmt* st = nullptr;
    std::string out;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
      const unsigned char* t = sqlite3_column_text(st, 0);
      out = t ? reinterpret_cast<const char*>(t) : "";
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
  }
};

std::string upstream(const std::string& name, const FakeUpstream& u, const std::string& extra = "") {
  return fmt::format("  {}: {{kind: openai, base_url: \"{}\", residency: on-prem, health: {{interval: 0s}}, "
                     "timeouts: {{connect: 1s, first_token: 2s, total: 5s}}{}}}\n",
                     name, u.url(), extra);
}

// An engine's stream with its own formatting: spaces after colons, an escaped and a non-ASCII
// token, a field the router does not know, usage in a chunk of its own.
const std::string kRole = "data: {\"id\": \"up-1\", \"object\": \"chat.completion.chunk\", \"created\": 5, \"model\": \"engine-model\", "
                          "\"choices\": [{\"index\": 0, \"delta\": {\"role\": \"assistant\", \"content\": \"\"}, \"finish_reason\": null}], "
                          "\"x_engine\": {\"queue_ms\": 3}}\n\n";
const std::string kTok1 = "data: {\"id\": \"up-1\", \"choices\": [{\"index\": 0, \"delta\": {\"content\": \"caf\\u00e9 \\\"q\\\"\"}, \"finish_reason\": null}]}\n\n";
const std::string kTok2 = "data: {\"id\": \"up-1\", \"choices\": [{\"index\": 0, \"delta\": {\"content\": \" \xe2\x9c\x93 done\"}, \"finish_reason\": null}]}\n\n";
const std::string kFinish = "data: {\"id\": \"up-1\", \"choices\": [{\"index\": 0, \"delta\": {}, \"finish_reason\": \"stop\"}]}\n\n";
const std::string kUsage = "data: {\"id\": \"up-1\", \"choices\": [], \"usage\": {\"prompt_tokens\": 21, \"completion_tokens\": 4, \"total_tokens\": 25, "
                           "\"prompt_tokens_details\": {\"cached_tokens\": 8}}}\n\n";
const std::string kDone = "data: [DONE]\n\n";

std::string chat_body(bool stream, bool usage, const std::string& model = "r") {
  return fmt::format(R"({{"model":"{}","stream":{},{}"messages":[{{"role":"user","content":"hi"}}]}})", model, stream ? "true" : "false",
                     usage ? R"("stream_options":{"include_usage":true},)" : "");
}

}  // namespace

TEST(RouterPassthrough, StreamForwardedByteExactWithUsageInLedger) {
  FakeUpstream up(kRole + kTok1 + kTok2 + kFinish + kUsage + kDone);
  Router rt("upstreams:\n" + upstream("a", up) + "routes:\n  r: {chain: [a], stream: first_byte}\n");
  auto res = rt.post(chat_body(true, true));
  ASSERT_EQ(res.status, 200) << res.body;
  EXPECT_EQ(res.body, up.sse);  // every byte as the engine wrote it, its id, model and fields included
  std::string id = v4::net::header_value(res.headers, "x-v4host-request-id");
  EXPECT_EQ(rt.q("SELECT prompt_tokens || '/' || cached_tokens || '/' || completion_tokens || '/' || outcome FROM requests WHERE id = '" + id + "'"),
            "21/8/4/ok");
  // The engine was told the ledger's id (its log lines match the router's record).
  EXPECT_FALSE(id.empty());
  EXPECT_EQ(up.last_request_id, id);
  // The router asked the engine for usage; a client that did not gets the stream without it.
  auto sent = ojson::parse(up.last_body);
  EXPECT_EQ(sent["stream_options"]["include_usage"], true);
  res = rt.post(chat_body(true, false));
  ASSERT_EQ(res.status, 200);
  EXPECT_EQ(res.body, kRole + kTok1 + kTok2 + kFinish + kDone);
  id = v4::net::header_value(res.headers, "x-v4host-request-id");
  EXPECT_EQ(rt.q("SELECT completion_tokens FROM requests WHERE id = '" + id + "'"), "4");
}

TEST(RouterPassthrough, NonStreamingAnswerFromLeanReaderWithUsage) {
  FakeUpstream up(kRole + kTok1 + kTok2 + kFinish + kUsage + kDone);
  Router rt("upstreams:\n" + upstream("a", up) + "routes:\n  r: {chain: [a]}\n");
  auto res = rt.post(chat_body(false, false));
  ASSERT_EQ(res.status, 200) << res.body;
  auto j = ojson::parse(res.body);
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["model"], "r");
  EXPECT_EQ(j["choices"][0]["message"]["content"], "caf\xc3\xa9 \"q\" \xe2\x9c\x93 done");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(j["usage"]["prompt_tokens"], 21);
  EXPECT_EQ(j["usage"]["prompt_tokens_details"]["cached_tokens"], 8);
  std::string id = v4::net::header_value(res.headers, "x-v4host-request-id");
  EXPECT_EQ(j["id"], "chatcmpl-" + id);
  EXPECT_EQ(rt.q("SELECT prompt_tokens || '/' || completion_tokens FROM requests WHERE id = '" + id + "'"), "21/4");
}

TEST(RouterPassthrough, NonStreamingFallsBackToProtocolReaderMidStream) {
  // A tool call after some text: not the plain shape, so the frames so far are replayed into the
  // protocol reader and the answer still has both.
  const std::string call = "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_9\",\"type\":\"function\","
                           "\"function\":{\"name\":\"get\",\"arguments\":\"{\\\"a\\\":1}\"}}]},\"finish_reason\":null}]}\n\n";
  const std::string fin = "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n";
  FakeUpstream up(kRole + kTok1 + call + fin + kUsage + kDone);
  Router rt("upstreams:\n" + upstream("a", up) + "routes:\n  r: {chain: [a]}\n");
  auto res = rt.post(chat_body(false, false));
  ASSERT_EQ(res.status, 200) << res.body;
  auto j = ojson::parse(res.body);
  EXPECT_EQ(j["choices"][0]["message"]["content"], "caf\xc3\xa9 \"q\"");
  EXPECT_EQ(j["choices"][0]["message"]["tool_calls"][0]["id"], "call_9");
  EXPECT_EQ(j["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"], "{\"a\":1}");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "tool_calls");
  EXPECT_EQ(j["usage"]["completion_tokens"], 4);
}

TEST(RouterPassthrough, FallbackBeforeFirstByteStillWorks) {
  FakeUpstream bad("", 500);
  // Headers and the role chunk, then the stream ends: no token was sent, so the next hop answers.
  FakeUpstream cut(kRole);
  FakeUpstream good(kRole + kTok1 + kFinish + kUsage + kDone);
  Router rt("upstreams:\n" + upstream("bad", bad) + upstream("cut", cut) + upstream("good", good) +
            "routes:\n  r: {chain: [bad, cut, good], stream: first_byte, retry: {attempts: 1}}\n");
  auto res = rt.post(chat_body(true, true));
  ASSERT_EQ(res.status, 200) << res.body;
  EXPECT_EQ(res.body, good.sse);
  EXPECT_EQ(v4::net::header_value(res.headers, "x-v4host-upstream"), "good");
  std::string id = v4::net::header_value(res.headers, "x-v4host-request-id");
  EXPECT_EQ(rt.q("SELECT group_concat(upstream || ':' || outcome, ',') FROM (SELECT * FROM hops WHERE request_id = '" + id + "' ORDER BY n)"),
            "bad:http_5xx,cut:truncated,good:ok");
  EXPECT_EQ(rt.q("SELECT outcome FROM requests WHERE id = '" + id + "'"), "fallback_ok");
}

TEST(RouterPassthrough, VerifierStillGatesBufferedRoutes) {
  FakeUpstream wrong(kRole + "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"no digits here\"}}]}\n\n" + kFinish + kUsage + kDone);
  FakeUpstream right(kRole + "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"answer 42\"}}]}\n\n" + kFinish + kUsage + kDone);
  Router rt("upstreams:\n" + upstream("wrong", wrong) + upstream("right", right) +
            "routes:\n  r: {chain: [wrong, right], verify: [{regex: \"[0-9]+\"}]}\n");
  for (bool stream : {false, true}) {
    auto res = rt.post(chat_body(stream, false));
    ASSERT_EQ(res.status, 200) << res.body;
    EXPECT_EQ(v4::net::header_value(res.headers, "x-v4host-upstream"), "right");
    EXPECT_NE(res.body.find("answer 42"), std::string::npos);
    EXPECT_EQ(res.body.find("no digits"), std::string::npos);  // the rejected answer never reaches the client
    std::string id = v4::net::header_value(res.headers, "x-v4host-request-id");
    EXPECT_EQ(rt.q("SELECT verification FROM requests WHERE id = '" + id + "'"), "passed");
    EXPECT_EQ(rt.q("SELECT outcome FROM hops WHERE request_id = '" + id + "' AND n = 0"), "verify_failed");
  }
  EXPECT_EQ(wrong.calls, 2);
}

TEST(RouterPassthrough, UsageOnTheFinishChunkCutForAClientThatDidNotAsk) {
  const std::string fin_usage = "data: {\"id\": \"up-1\", \"choices\": [{\"index\": 0, \"delta\": {}, \"finish_reason\": \"stop\"}], "
                                "\"usage\": {\"prompt_tokens\": 9, \"completion_tokens\": 2}, \"x_engine\": 1}\n\n";
  FakeUpstream up(kRole + kTok1 + fin_usage + kDone);
  Router rt("upstreams:\n" + upstream("a", up) + "routes:\n  r: {chain: [a], stream: first_byte}\n");
  auto res = rt.post(chat_body(true, false));
  ASSERT_EQ(res.status, 200) << res.body;
  EXPECT_EQ(res.body, kRole + kTok1 + "data: {\"id\": \"up-1\", \"choices\": [{\"index\": 0, \"delta\": {}, \"finish_reason\": \"stop\"}], \"x_engine\": 1}\n\n" + kDone);
  std::string id = v4::net::header_value(res.headers, "x-v4host-request-id");
  EXPECT_EQ(rt.q("SELECT prompt_tokens || '/' || completion_tokens FROM requests WHERE id = '" + id + "'"), "9/2");
  res = rt.post(chat_body(true, true));
  EXPECT_EQ(res.body, up.sse);
}

// --io-realtime: the loops get SCHED_FIFO where this process may have it (as a probe thread can),
// run at normal priority where not, and forward the same bytes either way.
TEST(RouterPassthrough, RealtimeLoopsWhereAllowedSameBytes) {
  bool allowed = false;
  std::thread probe([&] {
    sched_param sp{};
    sp.sched_priority = 1;
    allowed = pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp) == 0;
  });
  probe.join();
  FakeUpstream up(kRole + kTok1 + kTok2 + kFinish + kUsage + kDone);
  v4::router::ProxyOptions po;
  po.io_realtime = true;
  po.quiet = true;
  Router rt("upstreams:\n" + upstream("a", up) + "routes:\n  r: {chain: [a], stream: first_byte}\n", po);
  auto res = rt.post(chat_body(true, true));
  ASSERT_EQ(res.status, 200) << res.body;
  EXPECT_EQ(res.body, up.sse);
  EXPECT_EQ(rt.proxy->io_realtime_granted(), allowed);
}

// The slices of this process's threads named `name` (from /proc/self/task).
std::vector<uint64_t> slices_of(const std::string& name) {
  std::vector<uint64_t> out;
  for (auto& t : fs::directory_iterator("/proc/self/task")) {
    std::ifstream comm(t.path() / "comm");
    std::string n;
    std::getline(comm, n);
    if (n == name) out.push_back(v4::thread_slice_ns(static_cast<pid_t>(std::stol(t.path().filename().string()))));
  }
  return out;
}

// Normal-priority event loops and the ledger's writer ask for a short EEVDF slice (io_slice_us,
// default 100 us) so that a woken one preempts CPU-bound work at once; 0 leaves the kernel's default. Skipped where the
// kernel does not keep a custom slice (before Linux 6.12), where sched_getattr cannot tell.
TEST(RouterPassthrough, NormalPriorityLoopsAskForAShortSlice) {
  uint64_t probe_ns = 0;
  std::thread probe([&] {
    v4::request_short_slice(123'000);
    probe_ns = v4::thread_slice_ns(static_cast<pid_t>(syscall(SYS_gettid)));
  });
  probe.join();
  if (probe_ns != 123'000) GTEST_SKIP() << "this kernel keeps no custom EEVDF slice (sched_getattr says " << probe_ns << " ns)";
  FakeUpstream up(kRole + kTok1 + kTok2 + kFinish + kUsage + kDone);
  const std::string yaml = "upstreams:\n" + upstream("a", up) + "routes:\n  r: {chain: [a], stream: first_byte}\n";
  for (int us : {100, 250, 0}) {
    v4::router::ProxyOptions po;
    po.io_slice_us = us;
    po.io_threads = 2;
    po.quiet = true;
    Router rt(yaml, po);
    auto res = rt.post(chat_body(true, true));  // served: the loops are running
    ASSERT_EQ(res.status, 200) << res.body;
    EXPECT_EQ(res.body, up.sse);
    // The two loops, and threads started from them, which inherit the name and the slice (Asio's
    // resolver thread, started by the first upstream call).
    auto slices = slices_of("route-loop");
    ASSERT_GE(slices.size(), 2u);
    // The ledger's writer asks for the same slice (its commit releases the streams' ends).
    auto ledger = slices_of("route-ledger");
    ASSERT_EQ(ledger.size(), 1u);
    slices.push_back(ledger[0]);
    for (uint64_t ns : slices) {
      if (us > 0) EXPECT_EQ(ns, static_cast<uint64_t>(us) * 1000);
      else EXPECT_NE(ns, 100'000u) << "io_slice_us 0 keeps the kernel's default slice";
    }
  }
}

// CPU time (ns) of this process's threads named `name`, from /proc/self/task/*/schedstat.
uint64_t cpu_ns_of(const std::string& name) {
  uint64_t total = 0;
  for (auto& t : fs::directory_iterator("/proc/self/task")) {
    std::ifstream comm(t.path() / "comm");
    std::string n;
    std::getline(comm, n);
    uint64_t ns = 0;
    if (n == name && std::ifstream(t.path() / "schedstat") >> ns) total += ns;
  }
  return total;
}

// io_spin_us: loops that keep polling after their events (net/event_loop.h) forward the same
// bytes, and sleep again once idle — over 300 idle ms the two use a small part of the 600 ms
// they would spinning all along; the Router's destructor (stop, join) ends them as it does others.
TEST(RouterPassthrough, SpinningLoopsSameBytesAndSleepWhenIdle) {
  FakeUpstream up(kRole + kTok1 + kTok2 + kFinish + kUsage + kDone);
  v4::router::ProxyOptions po;
  po.io_spin_us = 2000;
  po.io_threads = 2;
  po.quiet = true;
  Router rt("upstreams:\n" + upstream("a", up) + "routes:\n  r: {chain: [a], stream: first_byte}\n", po);
  for (int i = 0; i < 4; ++i) {  // fresh connections: both loops serve
    auto res = rt.post(chat_body(true, true));
    ASSERT_EQ(res.status, 200) << res.body;
    EXPECT_EQ(res.body, up.sse);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // past the spin and the ledger's commit
  const uint64_t c0 = cpu_ns_of("route-loop");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_LT(cpu_ns_of("route-loop") - c0, 60'000'000u) << "idle loops kept spinning";
}

// io_threads 0 (the default): one event loop per core, at most 4; requests on fresh connections,
// which go round-robin over the loops, are all served byte for byte.
TEST(RouterPassthrough, DefaultLoopsOnePerCoreAtMostFour) {
  FakeUpstream up(kRole + kTok1 + kTok2 + kFinish + kUsage + kDone);
  v4::router::ProxyOptions po;
  po.quiet = true;
  EXPECT_EQ(po.io_threads, 0);
  Router rt("upstreams:\n" + upstream("a", up) + "routes:\n  r: {chain: [a], stream: first_byte}\n", po);
  const int want = static_cast<int>(std::clamp(std::thread::hardware_concurrency(), 1u, 4u));
  EXPECT_EQ(rt.proxy->io_loops(), want);
  for (int i = 0; i < 2 * want; ++i) {  // post_json: a fresh connection each time
    auto res = rt.post(chat_body(true, true));
    ASSERT_EQ(res.status, 200) << res.body;
    EXPECT_EQ(res.body, up.sse);
  }
  EXPECT_GE(slices_of("route-loop").size(), static_cast<size_t>(want));
}

// The way in for a plain Chat Completions body: the upstream receives the client's own bytes with
// the model, stream and usage members set (router/wire_edit.h), and the protocol layer still
// validates the request first — a bad one gets its 400 and never reaches the upstream.
TEST(RouterPassthrough, PlainBodyEditedOnItsWayInBadOnesStill400) {
  FakeUpstream up(kRole + kTok1 + kFinish + kUsage + kDone);
  Router rt("upstreams:\n" + upstream("a", up, ", model: engine-m") + "routes:\n  r: {chain: [a], stream: first_byte}\n");
  const std::string msgs = R"("messages" : [ {"role":"user", "content":"caf\u00e9 \"q\""} ])";
  auto res = rt.post("{ " + msgs + R"(, "model":"r", "stream":false, "temperature":0.5, "metadata":{"tag":"t"} })");
  ASSERT_EQ(res.status, 200) << res.body;
  EXPECT_EQ(ojson::parse(res.body)["model"], "r");  // the client hears its own model name
  EXPECT_NE(up.last_body.find(msgs), std::string::npos) << up.last_body;  // the client's bytes, spacing and escapes as sent
  auto sent = ojson::parse(up.last_body);
  EXPECT_EQ(sent["model"], "engine-m");
  EXPECT_EQ(sent["stream"], true);
  EXPECT_EQ(sent["stream_options"]["include_usage"], true);
  EXPECT_EQ(sent["temperature"], 0.5);
  EXPECT_FALSE(sent.contains("metadata"));
  EXPECT_EQ(sent["messages"][0]["content"], "caf\xc3\xa9 \"q\"");
  const int calls = up.calls;
  struct Bad {
    std::string body, param;
  };
  for (const Bad& b : std::vector<Bad>{{R"({"model":"r","messages":[]})", "messages"},
                                       {R"({"model":"r","messages":[{"role":"user","content":"a"}],"temperature":5})", "temperature"},
                                       {R"({"model":"r","messages":[{"role":"user","content":"a"}],"top_logprobs":2})", "top_logprobs"},
                                       {R"({"model":"r","messages":[{"role":"wizard","content":"a"}]})", "messages[0].role"},
                                       {R"({"model":"r","messages":[{"role":"user","content":"a"}],"max_tokens":0})", "max_tokens"},
                                       {R"({"model":"r","messages":[{"role":"user","content":"a"}],"n":2})", "n"},
                                       {R"({"model":"r","messages":[{"role":"user","content":"a"}])", ""}}) {
    res = rt.post(b.body);
    EXPECT_EQ(res.status, 400) << b.body << " -> " << res.body;
    auto e = ojson::parse(res.body, nullptr, false);
    ASSERT_TRUE(e.is_object() && e.contains("error")) << res.body;
    if (!b.param.empty()) {
      EXPECT_EQ(e["error"]["param"], b.param) << res.body;
    }
    EXPECT_FALSE(e["error"]["message"].get<std::string>().empty());
  }
  EXPECT_EQ(up.calls, calls);  // none of them reached the upstream
}
