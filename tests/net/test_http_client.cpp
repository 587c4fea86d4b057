// HttpClient against a real Beast server (the scripted streaming endpoint) and raw sockets for the
// failure cases: streaming with read timestamps, keep-alive reuse, stale pooled connections,
// timeouts, cancellation, unreachable hosts, malformed responses, many concurrent streams.
#include <gtest/gtest.h>

#include <boost/asio.hpp>
#include <nlohmann/json.hpp>
#include <thread>

#include "../common/scripted_endpoint.h"
#include "net/http_client.h"
#include "net/sse_parser.h"

using namespace v4::net;
using v4::testing::Schedule;
using v4::testing::ScriptedEndpoint;
using json = nlohmann::json;
namespace asio = boost::asio;

namespace {

std::string chat_body(bool stream, const std::string& model = "scripted-model") {
  return json{{"model", model}, {"stream", stream}, {"messages", json::array({{{"role", "user"}, {"content", "hi"}}})}}.dump();
}

ClientRequest chat_req(const ScriptedEndpoint& ep, bool stream) {
  ClientRequest r;
  r.method = "POST";
  r.url = ep.base_url() + "/v1/chat/completions";
  r.headers = {{"Content-Type", "application/json"}};
  r.body = chat_body(stream);
  return r;
}

Schedule schedule(double first_ms, double interval_ms, int chunks) {
  Schedule s;
  s.first_token_ms = first_ms;
  s.interval_ms = interval_ms;
  s.answer_chunks = chunks;
  return s;
}

// Runs one request to completion on its own io_context and client. `handle` (if given) is set
// before the request runs, so handlers may cancel it.
Response run_one(const ClientRequest& rq, Handlers h, std::shared_ptr<RequestHandle>* handle = nullptr) {
  asio::io_context io;
  HttpClient c(io);
  Response done;
  h.on_done = [&](Response&& r) { done = std::move(r); };
  auto hd = c.start(rq, std::move(h));
  if (handle) *handle = hd;
  io.run();
  return done;
}

// A one-shot raw TCP server that answers the first request with `reply` (then optionally waits).
struct RawServer {
  asio::io_context io;
  asio::ip::tcp::acceptor acc{io, {asio::ip::make_address("127.0.0.1"), 0}};
  std::thread th;
  int port() { return acc.local_endpoint().port(); }
  std::string url() { return "http://127.0.0.1:" + std::to_string(port()) + "/"; }
  explicit RawServer(std::string reply, int hold_ms = 0) {
    th = std::thread([this, reply, hold_ms] {
      boost::system::error_code ec;
      asio::ip::tcp::socket s(io);
      acc.accept(s, ec);
      if (ec) return;
      char buf[4096];
      s.read_some(asio::buffer(buf), ec);
      if (!reply.empty()) asio::write(s, asio::buffer(reply), ec);
      if (hold_ms) std::this_thread::sleep_for(std::chrono::milliseconds(hold_ms));
      s.close(ec);
    });
  }
  ~RawServer() { th.join(); }
};

}  // namespace

TEST(Url, Parse) {
  auto u = Url::parse("https://api.example.com/v1/chat?x=1");
  EXPECT_EQ(u.scheme, "https");
  EXPECT_EQ(u.host, "api.example.com");
  EXPECT_EQ(u.port, "443");
  EXPECT_EQ(u.target, "/v1/chat?x=1");
  auto v = Url::parse("http://[::1]:8080");
  EXPECT_EQ(v.host, "::1");
  EXPECT_EQ(v.port, "8080");
  EXPECT_EQ(v.target, "/");
  EXPECT_THROW(Url::parse("ftp://x"), std::exception);
  EXPECT_THROW(Url::parse("localhost:8000"), std::exception);
  EXPECT_THROW(Url::parse("http://h:99999/"), std::exception);
}

TEST(HttpClient, BlockingGetAndPost) {
  ScriptedEndpoint ep;
  auto r = get(ep.base_url() + "/v1/models");
  ASSERT_TRUE(r.ok()) << r.error_message;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(header_value(r.headers, "server"), "scripted-endpoint");
  EXPECT_EQ(json::parse(r.body)["data"][0]["id"], "scripted-model");
  auto p = post_json(ep.base_url() + "/v1/chat/completions", chat_body(false));
  ASSERT_TRUE(p.ok()) << p.error_message;
  EXPECT_EQ(p.status, 200);
  EXPECT_EQ(json::parse(p.body)["usage"]["completion_tokens"], 8);
  auto bad = post_json(ep.base_url() + "/v1/chat/completions", chat_body(false, "nope"));
  EXPECT_TRUE(bad.ok());
  EXPECT_EQ(bad.status, 404);
}

TEST(HttpClient, StreamingPiecesCarryReadTimesOnSchedule) {
  ScriptedEndpoint ep(schedule(40, 15, 6));
  std::vector<Clock::time_point> times;
  std::vector<std::string> datas;
  SseParser sse([&](const SseEvent& e) { datas.push_back(e.data); });
  Handlers h;
  h.on_body = [&](std::string_view piece, Clock::time_point t) {
    size_t before = datas.size();
    sse.feed(piece);
    for (size_t i = before; i < datas.size(); ++i) times.push_back(t);
  };
  Response done = run_one(chat_req(ep, true), h);
  ASSERT_TRUE(done.ok()) << done.error_message;
  EXPECT_EQ(done.status, 200);
  EXPECT_EQ(header_value(done.headers, "content-type"), "text/event-stream");
  ASSERT_EQ(datas.size(), 1u + 6 + 1 + 1);  // role chunk, 6 tokens, finish, [DONE]
  EXPECT_EQ(datas.back(), "[DONE]");
  auto ms = [](Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); };
  // The server writes the first token 40 ms after it read the request, then one every 15 ms:
  // no piece can be stamped earlier than that (one-sided, as a busy machine only delays).
  EXPECT_GE(ms(times[1] - done.t_start), 39.5);
  EXPECT_GE(ms(times[6] - done.t_start), 40 + 5 * 15 - 0.5);
  for (size_t i = 1; i < times.size(); ++i) EXPECT_GE(times[i], times[i - 1]);
  EXPECT_GE(done.t_first_byte, done.t_connected);  // (kernel receive times may precede the write handler)
  EXPECT_GE(done.t_end, times.back());
  EXPECT_TRUE(done.body.empty());  // consumed by on_body
}

TEST(HttpClient, KeepAliveReusesConnections) {
  ScriptedEndpoint ep(schedule(1, 1, 2));
  asio::io_context io;
  HttpClient c(io);
  int done = 0, reused = 0;
  std::function<void()> next = [&] {
    Handlers h;
    h.on_done = [&](Response&& r) {
      EXPECT_TRUE(r.ok()) << r.error_message;
      reused += r.reused_connection;
      if (++done < 5) next();
    };
    c.start(chat_req(ep, true), h);
  };
  next();
  io.run();
  EXPECT_EQ(done, 5);
  EXPECT_EQ(reused, 4);
  EXPECT_EQ(ep.connections(), 1u);
  EXPECT_EQ(c.idle_connections(), 1u);
}

TEST(HttpClient, StalePooledConnectionIsRetriedOnce) {
  Schedule s;
  s.close_after_response = false;
  auto ep = std::make_unique<ScriptedEndpoint>(s);
  asio::io_context io;
  HttpClient c(io);
  Response r1, r2;
  Handlers h;
  h.on_done = [&](Response&& r) { r1 = std::move(r); };
  c.start(chat_req(*ep, false), h);
  io.run();
  ASSERT_TRUE(r1.ok());
  ASSERT_EQ(c.idle_connections(), 1u);
  // The server goes away: the pooled socket is closed by the peer. The next request notices the
  // stale connection, retries once on a fresh one, and that connect is refused.
  std::string url = ep->base_url();
  ep.reset();  // the pooled socket is now closed by the peer
  io.restart();
  ClientRequest rq;
  rq.url = url + "/v1/models";
  Handlers h2;
  h2.on_done = [&](Response&& r) { r2 = std::move(r); };
  c.start(rq, h2);
  io.run();
  // Retried on a fresh connection, which is refused (the server is gone): a connect error, not io.
  EXPECT_EQ(r2.error, ErrorKind::connect) << r2.error_message;
}

TEST(HttpClient, UnreachableAndBadUrl) {
  // A port with nothing listening.
  asio::io_context tmp;
  asio::ip::tcp::acceptor a(tmp, {asio::ip::make_address("127.0.0.1"), 0});
  int port = a.local_endpoint().port();
  a.close();
  auto r = get("http://127.0.0.1:" + std::to_string(port) + "/");
  EXPECT_EQ(r.error, ErrorKind::connect);
  EXPECT_NE(r.error_message.find("cannot connect"), std::string::npos);
  auto b = get("nonsense");
  EXPECT_EQ(b.error, ErrorKind::bad_url);
  auto d = get("http://no-such-host.invalid/");
  EXPECT_EQ(d.error, ErrorKind::resolve);
}

TEST(HttpClient, FirstByteAndTotalTimeouts) {
  {
    RawServer srv("", 600);  // accepts, reads, never answers
    ClientRequest r;
    r.url = srv.url();
    r.timeouts.first_byte = std::chrono::milliseconds(100);
    auto t0 = Clock::now();
    auto resp = fetch(r);
    EXPECT_EQ(resp.error, ErrorKind::timeout_first_byte) << resp.error_message;
    EXPECT_LT(Clock::now() - t0, std::chrono::milliseconds(500));
  }
  {
    ScriptedEndpoint ep(schedule(10, 100, 20));
    ClientRequest r = chat_req(ep, true);
    r.timeouts.total = std::chrono::milliseconds(250);
    auto resp = fetch(r);
    EXPECT_EQ(resp.error, ErrorKind::timeout_total) << resp.error_message;
    EXPECT_EQ(resp.status, 200);
  }
}

TEST(HttpClient, MalformedResponseAndEarlyClose) {
  {
    RawServer srv("HTTP/1.1 abc\r\n\r\n");
    auto r = get(srv.url());
    EXPECT_EQ(r.error, ErrorKind::protocol) << r.error_message;
  }
  {
    RawServer srv("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial");
    auto r = get(srv.url());
    EXPECT_EQ(r.error, ErrorKind::io) << r.error_message;
    EXPECT_EQ(r.status, 200);
  }
  {
    // No length, no chunking: the body ends at EOF (HTTP/1.0 style) and is complete.
    RawServer srv("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it");
    auto r = get(srv.url());
    ASSERT_TRUE(r.ok()) << r.error_message;
    EXPECT_EQ(r.body, "all of it");
  }
}

// A body that arrives at once, larger than one read, on a connection the server keeps open: with
// kernel receive timestamps each read first waits for readability, so bytes already buffered must
// still complete that wait (an edge-triggered wait that did not would stall until the server's
// next bytes or close; here the total timeout would fire first). This guards it.
TEST(HttpClient, LargeBodyArrivingAtOnceIsReadToTheEnd) {
  const std::string body(300 * 1024 + 17, 'x');
  RawServer srv("HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body, 1500);
  Timeouts t;
  t.total = std::chrono::milliseconds(1000);
  auto r = get(srv.url(), {}, t);
  ASSERT_TRUE(r.ok()) << r.error_message;
  EXPECT_EQ(r.body.size(), body.size());
}

TEST(HttpClient, CancelStopsAStream) {
  ScriptedEndpoint ep(schedule(5, 50, 100));
  int pieces = 0;
  std::shared_ptr<RequestHandle> handle;
  Handlers h;
  h.on_body = [&](std::string_view, Clock::time_point) {
    if (++pieces == 3) handle->cancel();
  };
  Response done = run_one(chat_req(ep, true), h, &handle);
  EXPECT_EQ(done.error, ErrorKind::cancelled);
  EXPECT_GE(pieces, 3);
  EXPECT_LT(pieces, 10);
}

TEST(HttpClient, ThousandConcurrentStreamsOnOneThread) {
  ScriptedEndpoint ep(schedule(200, 20, 5));
  asio::io_context io;
  HttpClient c(io);
  const int n = 1000;
  int ok = 0, events = 0;
  std::vector<std::unique_ptr<SseParser>> parsers;
  for (int i = 0; i < n; ++i) {
    parsers.push_back(std::make_unique<SseParser>([&](const SseEvent&) { ++events; }));
    Handlers h;
    SseParser* p = parsers.back().get();
    h.on_body = [p](std::string_view piece, Clock::time_point) { p->feed(piece); };
    h.on_done = [&](Response&& r) {
      EXPECT_TRUE(r.ok()) << r.error_message;
      ok += r.ok() && r.status == 200;
    };
    c.start(chat_req(ep, true), h);
  }
  io.run();
  EXPECT_EQ(ok, n);
  EXPECT_EQ(events, n * (1 + 5 + 1 + 1));
  EXPECT_GE(ep.max_open_streams(), static_cast<size_t>(n * 9 / 10));  // they really overlapped
}
