// net::HttpServer over real loopback sockets: routing (params, 404, 405, HEAD, OPTIONS), CORS,
// keep-alive, every timeout and limit, deferred and streamed replies, disconnect callbacks
// (streaming and not), slow readers, and that connections are released.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <memory>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "../common/loopback.h"
#include "net/http_server.h"
#include "test_client.h"

using namespace v4;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

// A raw client socket, for what a well-behaved client library would not do (trickle, stall).
struct Raw {
  int fd = -1;
  explicit Raw(int port) : fd(v4::test::connect_loopback(port)) {}
  ~Raw() {
    if (fd >= 0) ::close(fd);
  }
  bool send(const std::string& s) { return ::send(fd, s.data(), s.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(s.size()); }
  // Reads until `until` appears, the peer closes, or `timeout` passes. *closed set on EOF/reset.
  std::string read(std::chrono::milliseconds timeout, const std::string& until = "", bool* closed = nullptr) {
    std::string out;
    const auto end = Clock::now() + timeout;
    if (closed) *closed = false;
    while (Clock::now() < end) {
      if (!until.empty() && out.find(until) != std::string::npos) break;
      pollfd p{fd, POLLIN, 0};
      const int ms = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now()).count());
      if (::poll(&p, 1, std::max(ms, 1)) <= 0) continue;
      char b[4096];
      ssize_t n = ::recv(fd, b, sizeof b, 0);
      if (n <= 0) {
        if (closed) *closed = true;
        break;
      }
      out.append(b, static_cast<size_t>(n));
    }
    return out;
  }
};

int status_of(const std::string& resp) {
  if (resp.rfind("HTTP/1.", 0) != 0 || resp.size() < 12) return 0;
  return std::stoi(resp.substr(9, 3));
}

struct Log {
  std::mutex mu;
  std::vector<std::pair<net::Completion, std::string>> done;  // + "METHOD path"
  void add(const net::Request& q, const net::Completion& c) {
    std::lock_guard<std::mutex> lk(mu);
    done.push_back({c, q.method + " " + q.path});
  }
  std::optional<net::Completion> find(const std::string& what) {
    std::lock_guard<std::mutex> lk(mu);
    for (auto& [c, w] : done)
      if (w == what) return c;
    return std::nullopt;
  }
};

struct Server {
  int port = 0;
  Log log;
  std::atomic<int> disconnects{0};
  std::shared_ptr<net::Stream> held_stream;  // for tests that stream from the test thread
  std::mutex mu;
  std::condition_variable cv;
  net::HttpServer srv;  // last: destroyed (stopped) before the state its hooks use

  explicit Server(net::ServerOptions o = opts()) : srv(std::move(o)) {
    srv.route("GET", "/hello", [](const net::Request&, net::Reply& r) { r.set_content("hi", "text/plain"); });
    srv.route("GET", "/items/{id}", [](const net::Request& q, net::Reply& r) {
      r.set_content(q.param("id") + "|" + q.query_value("x"), "text/plain");
    });
    srv.route("GET", "/files/{path*}", [](const net::Request& q, net::Reply& r) { r.set_content(q.param("path"), "text/plain"); });
    srv.route("POST", "/echo", [](const net::Request& q, net::Reply& r) { r.set_content(q.body, "application/octet-stream"); });
    srv.route("POST", "/later", [](const net::Request&, net::Reply& r) {  // answered from another thread
      auto d = r.defer();
      std::thread([d] {
        std::this_thread::sleep_for(200ms);
        d->set_content("late", "text/plain");
        d->send();
      }).detach();
    }, {.offload = true});
    srv.route("POST", "/hang", [this](const net::Request&, net::Reply& r) {  // answers only when the peer leaves
      auto d = r.defer();
      r.on_disconnect([this, d] {
        ++disconnects;
        d->note = "gone";
        d->send();
      });
    });
    srv.route("POST", "/drop", [](const net::Request&, net::Reply& r) { (void)r.defer(); });
    srv.route("POST", "/throw", [](const net::Request&, net::Reply&) -> void { throw std::runtime_error("boom"); });
    srv.route("GET", "/stream", [this](const net::Request&, net::Reply& r) {
      r.on_disconnect([this] { ++disconnects; });
      auto s = r.start_stream("text/event-stream");
      s->keep_alive(0.2);
      s->write("data: 1\n\n");
      std::lock_guard<std::mutex> lk(mu);
      held_stream = s;
      cv.notify_all();
    });
    srv.on_complete([this](const net::Request& q, const net::Reply&, const net::Completion& c) { log.add(q, c); });
    port = srv.bind();
    srv.start();
  }
  static net::ServerOptions opts() {
    net::ServerOptions o;
    o.idle_timeout_s = 2;
    o.header_timeout_s = 0.6;
    o.body_timeout_s = 0.6;
    o.write_timeout_s = 1;
    o.max_header_bytes = 4096;
    o.max_body_bytes = 1000;
    o.stream_buffer_bytes = 64 * 1024;
    return o;
  }
  std::shared_ptr<net::Stream> wait_stream() {
    std::unique_lock<std::mutex> lk(mu);
    cv.wait_for(lk, 5s, [&] { return held_stream != nullptr; });
    auto s = held_stream;
    held_stream.reset();
    return s;
  }
  test::HttpClient client() { return test::HttpClient("127.0.0.1", port); }
  template <class Pred>
  bool eventually(Pred p, std::chrono::milliseconds t = 3s) {
    const auto end = Clock::now() + t;
    while (Clock::now() < end) {
      if (p()) return true;
      std::this_thread::sleep_for(10ms);
    }
    return p();
  }
};

TEST(HttpServer, RoutesParamsQueryAndUnknownPaths) {
  Server s;
  auto c = s.client();
  auto r = c.Get("/hello");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "hi");
  r = c.Get("/items/a%20b?x=1+2&y=3");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "a b|1 2");
  r = c.Get("/files/org/model-v4");
  EXPECT_EQ(r->body, "org/model-v4");
  r = c.Get("/nope");
  EXPECT_EQ(r->status, 404);
  EXPECT_NE(r->body.find("no route GET /nope"), std::string::npos) << r->body;
  r = c.Post("/hello", "x", "text/plain");
  EXPECT_EQ(r->status, 405);
  EXPECT_EQ(r->header("Allow"), "GET, HEAD, OPTIONS");
  r = c.Post("/echo", std::string(500, 'z'), "text/plain");
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, std::string(500, 'z'));
  // Every request, the 404 and 405 included, reached the completion hook.
  EXPECT_TRUE(s.eventually([&] { return s.log.find("GET /nope") && s.log.find("POST /hello"); }));
  EXPECT_EQ(s.log.find("GET /nope")->status, 404);
}

TEST(HttpServer, HeadAndOptions) {
  Server s;
  Raw k(s.port);
  ASSERT_TRUE(k.send("HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\n"));
  std::string resp = k.read(2s, "\r\n\r\n");
  EXPECT_EQ(status_of(resp), 200);
  EXPECT_NE(resp.find("Content-Length: 2"), std::string::npos) << resp;
  // No body follows; the connection serves the next request.
  ASSERT_TRUE(k.send("OPTIONS /echo HTTP/1.1\r\nHost: x\r\n\r\n"));
  resp = k.read(2s, "\r\n\r\n");
  EXPECT_EQ(status_of(resp), 204) << resp;
  EXPECT_NE(resp.find("Allow: POST, OPTIONS"), std::string::npos) << resp;
  EXPECT_EQ(resp.find("Access-Control"), std::string::npos) << "no CORS unless configured";
}

TEST(HttpServer, CorsPreflightAndHeaders) {
  auto o = Server::opts();
  o.cors_origin = "https://app.example";
  Server s(o);
  Raw k(s.port);
  ASSERT_TRUE(k.send("OPTIONS /echo HTTP/1.1\r\nHost: x\r\nOrigin: https://app.example\r\n"
                     "Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: authorization, content-type\r\n\r\n"));
  std::string resp = k.read(2s, "\r\n\r\n");
  EXPECT_EQ(status_of(resp), 204) << resp;
  EXPECT_NE(resp.find("Access-Control-Allow-Origin: https://app.example"), std::string::npos) << resp;
  EXPECT_NE(resp.find("Access-Control-Allow-Methods: POST, OPTIONS"), std::string::npos) << resp;
  EXPECT_NE(resp.find("Access-Control-Allow-Headers: authorization, content-type"), std::string::npos) << resp;
  EXPECT_NE(resp.find("Access-Control-Max-Age:"), std::string::npos) << resp;
  auto r = s.client().Get("/hello", {{"Origin", "https://app.example"}});
  EXPECT_EQ(r->header("Access-Control-Allow-Origin"), "https://app.example");
  r = s.client().Get("/nope");
  EXPECT_EQ(r->header("Access-Control-Allow-Origin"), "https://app.example") << "errors carry CORS headers too";
}

TEST(HttpServer, KeepAliveServesManyRequestsOnOneConnection) {
  Server s;
  Raw k(s.port);
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(k.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"));
    std::string resp = k.read(2s, "hi");
    EXPECT_EQ(status_of(resp), 200) << i;
  }
  // Pipelined: two requests in one write, two answers in order.
  ASSERT_TRUE(k.send("GET /items/1 HTTP/1.1\r\nHost: x\r\n\r\nGET /items/2 HTTP/1.1\r\nHost: x\r\n\r\n"));
  std::string both = k.read(2s, "2|");
  EXPECT_LT(both.find("1|"), both.find("2|")) << both;
  // HTTP/1.0 without keep-alive: answered, then closed.
  Raw k10(s.port);
  ASSERT_TRUE(k10.send("GET /hello HTTP/1.0\r\n\r\n"));
  bool closed = false;
  std::string resp = k10.read(2s, "", &closed);
  EXPECT_EQ(status_of(resp), 200);
  EXPECT_TRUE(closed);
}

TEST(HttpServer, TrickledHeaderIsCutOff) {
  Server s;
  Raw k(s.port);
  const auto t0 = Clock::now();
  bool closed = false;
  std::string got;
  // One byte every 100 ms: the header never completes within header_timeout (0.6 s).
  const std::string req = "GET /hello HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
  for (char ch : req) {
    if (!k.send(std::string(1, ch))) break;
    got += k.read(100ms, "", &closed);
    if (closed) break;
  }
  if (!closed) got += k.read(2s, "", &closed);
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  EXPECT_TRUE(closed);
  EXPECT_EQ(status_of(got), 408) << got;
  EXPECT_LT(secs, 2.0);
  EXPECT_GT(secs, 0.5);
}

TEST(HttpServer, TrickledBodyIsCutOff) {
  Server s;
  Raw k(s.port);
  ASSERT_TRUE(k.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789"));
  bool closed = false;
  std::string got = k.read(3s, "", &closed);
  EXPECT_EQ(status_of(got), 408) << got;
  EXPECT_NE(got.find("request body did not arrive"), std::string::npos) << got;
  EXPECT_TRUE(closed);
  EXPECT_TRUE(s.eventually([&] { return s.log.find("POST /echo").has_value(); }));
  EXPECT_EQ(s.log.find("POST /echo")->status, 408);
}

TEST(HttpServer, IdleConnectionIsClosedAfterTheIdleTimeout) {
  auto o = Server::opts();
  o.idle_timeout_s = 0.5;
  Server s(o);
  Raw k(s.port);
  ASSERT_TRUE(s.eventually([&] { return s.srv.connections() == 1; }));
  bool closed = false;
  const auto t0 = Clock::now();
  std::string got = k.read(3s, "", &closed);
  EXPECT_TRUE(closed);
  EXPECT_TRUE(got.empty()) << "an idle connection is closed quietly: " << got;
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 2.0);
  EXPECT_TRUE(s.eventually([&] { return s.srv.connections() == 0; }));
}

TEST(HttpServer, BodyAndHeaderLimits) {
  Server s;
  {  // Content-Length above the limit: 413 before the body is read.
    Raw k(s.port);
    ASSERT_TRUE(k.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n"));
    std::string got = k.read(2s, "}");
    EXPECT_EQ(status_of(got), 413) << got;
    EXPECT_NE(got.find("1000 bytes"), std::string::npos) << got;
  }
  {  // A chunked body that grows past the limit.
    Raw k(s.port);
    ASSERT_TRUE(k.send("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n" + std::string(1024, 'a') +
                       "\r\n"));
    EXPECT_EQ(status_of(k.read(2s, "}")), 413);
  }
  {
    Raw k(s.port);
    ASSERT_TRUE(k.send("GET /hello HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(5000, 'b') + "\r\n\r\n"));
    EXPECT_EQ(status_of(k.read(2s, "}")), 431);
  }
  {
    Raw k(s.port);
    ASSERT_TRUE(k.send("NOT HTTP AT ALL\r\n\r\n"));
    EXPECT_EQ(status_of(k.read(2s, "}")), 400);
  }
  auto r = s.client().Get("/hello");  // still serving
  EXPECT_EQ(r->status, 200);
}

TEST(HttpServer, DeferredReplyDoesNotHoldOtherConnections) {
  Server s;
  std::thread slow([&] {
    auto r = s.client().Post("/later", "", "text/plain");
    EXPECT_EQ(r->body, "late");
  });
  std::this_thread::sleep_for(20ms);
  const auto t0 = Clock::now();
  auto r = s.client().Get("/hello");
  EXPECT_EQ(r->status, 200);
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 0.15);
  slow.join();
}

TEST(HttpServer, DisconnectDuringANonStreamingReplyIsReported) {
  Server s;
  {
    Raw k(s.port);
    ASSERT_TRUE(k.send("POST /hang HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"));
    std::this_thread::sleep_for(100ms);
  }  // closed here
  ASSERT_TRUE(s.eventually([&] { return s.disconnects == 1; })) << "on_disconnect did not run";
  ASSERT_TRUE(s.eventually([&] { return s.log.find("POST /hang").has_value(); }));
  auto c = *s.log.find("POST /hang");
  EXPECT_TRUE(c.disconnected);
  EXPECT_EQ(c.status, 499);
  EXPECT_TRUE(s.eventually([&] { return s.srv.connections() == 0; }));
}

TEST(HttpServer, DroppedOrThrowingHandlersAnswer500) {
  Server s;
  auto r = s.client().Post("/drop", "", "text/plain");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 500);
  r = s.client().Post("/throw", "", "text/plain");
  EXPECT_EQ(r->status, 500);
  EXPECT_NE(r->body.find("boom"), std::string::npos);
}

TEST(HttpServer, StreamChunksKeepAliveAndClose) {
  Server s;
  Raw k(s.port);
  ASSERT_TRUE(k.send("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto st = s.wait_stream();
  ASSERT_TRUE(st);
  std::string got = k.read(2s, ": keep-alive");  // written after 0.2 s of silence
  EXPECT_EQ(status_of(got), 200);
  EXPECT_NE(got.find("Transfer-Encoding: chunked"), std::string::npos) << got;
  EXPECT_NE(got.find("data: 1"), std::string::npos);
  EXPECT_NE(got.find(": keep-alive"), std::string::npos);
  EXPECT_TRUE(st->write("data: 2\n\n"));
  st->close();
  got = k.read(2s, "0\r\n\r\n");
  EXPECT_NE(got.find("data: 2"), std::string::npos);
  EXPECT_NE(got.find("0\r\n\r\n"), std::string::npos) << "terminal chunk";
  EXPECT_FALSE(st->write("late")) << "a closed stream takes no more";
  ASSERT_TRUE(s.eventually([&] { return s.log.find("GET /stream").has_value(); }));
  EXPECT_TRUE(s.log.find("GET /stream")->streamed);
  EXPECT_FALSE(s.log.find("GET /stream")->disconnected);
  // The connection goes on with the next request.
  ASSERT_TRUE(k.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_EQ(status_of(k.read(2s, "hi")), 200);
}

TEST(HttpServer, StreamClientDisconnectStopsTheProducer) {
  Server s;
  std::shared_ptr<net::Stream> st;
  {
    Raw k(s.port);
    ASSERT_TRUE(k.send("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"));
    st = s.wait_stream();
    k.read(500ms, "data: 1");
  }
  ASSERT_TRUE(s.eventually([&] { return s.disconnects == 1; }));
  EXPECT_TRUE(s.eventually([&] { return !st->write("data: x\n\n"); }));
  EXPECT_TRUE(st->closed());
  st.reset();  // the producer lets go: the request completes
  ASSERT_TRUE(s.eventually([&] { return s.log.find("GET /stream").has_value(); }));
  EXPECT_TRUE(s.log.find("GET /stream")->disconnected);
  EXPECT_TRUE(s.eventually([&] { return s.srv.connections() == 0; }));
}

TEST(HttpServer, SlowStreamReaderIsDroppedNotBuffered) {
  Server s;  // stream_buffer_bytes 64 KiB, write timeout 1 s
  Raw k(s.port);
  int small = 4096;
  ::setsockopt(k.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  ASSERT_TRUE(k.send("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto st = s.wait_stream();
  ASSERT_TRUE(st);
  // The client reads nothing; the producer writes far more than the socket buffers can take.
  const std::string chunk(16 * 1024, 'x');
  bool refused = false;
  for (int i = 0; i < 2000 && !refused; ++i) {
    refused = !st->write(chunk);
    if (!refused) std::this_thread::sleep_for(2ms);
  }
  EXPECT_TRUE(refused) << "write() kept accepting for a reader that reads nothing";
  EXPECT_LE(st->buffered(), size_t(64 * 1024 + chunk.size()));
  EXPECT_TRUE(s.eventually([&] { return s.disconnects == 1; }));
}

TEST(HttpServer, ManyConnectionsAreReleased) {
  Server s;
  {
    std::vector<std::unique_ptr<Raw>> conns;
    for (int i = 0; i < 200; ++i) conns.push_back(std::make_unique<Raw>(s.port));
    EXPECT_TRUE(s.eventually([&] { return s.srv.connections() == 200; })) << s.srv.connections();
    auto r = s.client().Get("/hello");  // answered with 200 idle connections open
    EXPECT_EQ(r->status, 200);
  }
  EXPECT_TRUE(s.eventually([&] { return s.srv.connections() == 0; })) << s.srv.connections();
}

TEST(HttpServer, BindFailureNamesTheAddress) {
  Server s;
  net::ServerOptions o;
  o.port = s.port;  // taken
  net::HttpServer other(o);
  try {
    other.bind();
    FAIL() << "bound a port in use";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(std::to_string(s.port)), std::string::npos) << e.what();
  }
}

TEST(HttpExchange, HeadersQueryAndDecoding) {
  net::Headers h;
  h.add("Content-Type", "a");
  h.add("X-A", "1");
  h.add("x-a", "2");
  EXPECT_EQ(h.get("content-type"), "a");
  EXPECT_EQ(h.get("X-A"), "1");
  h.set("X-a", "3");
  EXPECT_EQ(h.get("x-A"), "3");
  EXPECT_EQ(h.fields().size(), 2u);
  EXPECT_EQ(net::url_decode("%2Fa%20b+c%zz%4"), "/a b+c%zz%4");
  auto q = net::parse_query("a=1&b=x+y%21&&c");
  ASSERT_EQ(q.size(), 3u);
  EXPECT_EQ(q[1].second, "x y!");
  EXPECT_EQ(q[2].first, "c");
  EXPECT_STREQ(net::status_text(429), "Too Many Requests");
}

}  // namespace

// ServerOptions::loops: connections on an external loop (one thread, as the router runs them)
// have no strand, and a reply or stream write made on that thread starts at once. The bytes are
// the same; a reader that reads nothing is still cut off at the stream's cap.
namespace {
struct OnOwnLoop {
  boost::asio::io_context loop{1};
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard{loop.get_executor()};
  std::thread th{[this] { loop.run(); }};
  std::unique_ptr<Server> s;
  OnOwnLoop() {
    net::ServerOptions o = Server::opts();
    o.loops = {&loop};
    s = std::make_unique<Server>(o);
    s->srv.route("GET", "/burst", [](const net::Request& q, net::Reply& r) {
      // On the connection's loop: header, three writes and the end, all from this handler.
      auto st = r.start_stream("text/event-stream");
      for (int i = 1; i <= 3; ++i) EXPECT_TRUE(st->write("data: " + std::to_string(i) + "\n\n"));
      EXPECT_EQ(q.loop, 0);
      st->close();
    });
    // start_stream_on_write: the header leaves with the first write (or with close()).
    s->srv.route("GET", "/on-write", [](const net::Request&, net::Reply& r) {
      auto st = r.start_stream_on_write("text/event-stream");
      EXPECT_TRUE(st->append("data: a\n\n"));
      EXPECT_TRUE(st->write("data: b\n\n"));
      st->close();
    });
    s->srv.route("GET", "/on-write-empty", [](const net::Request&, net::Reply& r) { r.start_stream_on_write()->close(); });
    s->srv.route("GET", "/on-write-later", [](const net::Request&, net::Reply& r) {
      // The first write comes from another thread after the handler returned.
      auto st = r.start_stream_on_write("text/event-stream");
      std::thread([st] {
        std::this_thread::sleep_for(50ms);
        st->append("data: late\n\n");
        st->append("data: later\n\n");
        st->close();
      }).detach();
    });
  }
  ~OnOwnLoop() {
    s.reset();
    guard.reset();
    loop.stop();
    th.join();
  }
};
}  // namespace

TEST(HttpServer, OwnLoopStreamsAndRepliesStartAtOnceSameBytes) {
  OnOwnLoop o;
  Raw k(o.s->port);
  ASSERT_TRUE(k.send("GET /burst HTTP/1.1\r\nHost: x\r\n\r\n"));
  std::string got = k.read(2s, "0\r\n\r\n");
  EXPECT_EQ(status_of(got), 200) << got;
  EXPECT_NE(got.find("Transfer-Encoding: chunked"), std::string::npos) << got;
  // The header, then the three frames (queued before the header went out: one chunk), then the end.
  const size_t body = got.find("\r\n\r\n");
  ASSERT_NE(body, std::string::npos);
  EXPECT_EQ(got.substr(body + 4), "1b\r\ndata: 1\n\ndata: 2\n\ndata: 3\n\n\r\n0\r\n\r\n") << got;
  // Plain replies and the next request on the same connection.
  ASSERT_TRUE(k.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_EQ(status_of(k.read(2s, "hi")), 200);
  auto r = o.s->client().Post("/echo", "abc", "text/plain");
  EXPECT_EQ(r->body, "abc");
  ASSERT_TRUE(o.s->eventually([&] { return o.s->log.find("GET /burst").has_value(); }));
  EXPECT_FALSE(o.s->log.find("GET /burst")->disconnected);
}

// The request is parsed from the bytes the connection's first read holds when they suffice, and
// by reading on when they do not: pipelined requests in one segment, a body split across
// segments, a header cut mid-line, and Expect: 100-continue (answered before the body is sent).
TEST(HttpServer, RequestsParsedFromWhatTheReadHoldsOrReadOn) {
  Server s;
  {
    Raw k(s.port);
    ASSERT_TRUE(k.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
                       "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"
                       "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nxy"));
    std::string got = k.read(3s, "\r\n\r\nxy");
    const size_t a = got.find("\r\n\r\nabc"), h = got.find("\r\n\r\nhi"), c = got.find("\r\n\r\nxy");
    ASSERT_NE(a, std::string::npos) << got;
    ASSERT_NE(h, std::string::npos) << got;
    ASSERT_NE(c, std::string::npos) << got;
    EXPECT_LT(a, h) << got;  // answered in order
    EXPECT_LT(h, c) << got;
  }
  {
    Raw k(s.port);  // header cut mid-line, then the body in two pieces
    ASSERT_TRUE(k.send("POST /echo HTTP/1.1\r\nHost: x\r\nConte"));
    std::this_thread::sleep_for(30ms);
    ASSERT_TRUE(k.send("nt-Length: 6\r\n\r\nhel"));
    std::this_thread::sleep_for(30ms);
    ASSERT_TRUE(k.send("lo!"));
    std::string got = k.read(3s, "hello!");
    EXPECT_EQ(status_of(got), 200) << got;
    EXPECT_NE(got.find("\r\n\r\nhello!"), std::string::npos) << got;
  }
  {
    Raw k(s.port);  // the client waits for 100 Continue before it sends the body
    ASSERT_TRUE(k.send("POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"));
    std::string got = k.read(2s, "100 Continue\r\n\r\n");
    EXPECT_EQ(status_of(got), 100) << got;
    ASSERT_TRUE(k.send("ping"));
    got = k.read(2s, "ping");
    EXPECT_EQ(status_of(got), 200) << got;
    EXPECT_NE(got.find("\r\n\r\nping"), std::string::npos) << got;
  }
  {
    Raw k(s.port);  // a body over the limit in the first segment: 413 naming it, no crash
    ASSERT_TRUE(k.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + std::string(5000, 'z')));
    std::string got = k.read(2s, "\r\n\r\n");
    EXPECT_EQ(status_of(got), 413) << got;
  }
  auto r = s.client().Get("/hello");  // the server still serves
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "hi");
}

TEST(HttpServer, StreamStartedOnFirstWriteSendsHeaderWithItsFrames) {
  OnOwnLoop o;
  Raw k(o.s->port);
  const auto body_of = [](const std::string& got) {
    const size_t b = got.find("\r\n\r\n");
    return b == std::string::npos ? std::string("(no header end)") : got.substr(b + 4);
  };
  // Written on the connection's own loop: the first write starts the stream at once (header and
  // that frame), the second frame is its own chunk, then the end.
  ASSERT_TRUE(k.send("GET /on-write HTTP/1.1\r\nHost: x\r\n\r\n"));
  std::string got = k.read(2s, "0\r\n\r\n");
  EXPECT_EQ(status_of(got), 200) << got;
  EXPECT_NE(got.find("Content-Type: text/event-stream"), std::string::npos) << got;
  EXPECT_EQ(body_of(got), "9\r\ndata: a\n\n\r\n9\r\ndata: b\n\n\r\n0\r\n\r\n") << got;
  // Closed without a write: the header still goes out, with an empty body.
  ASSERT_TRUE(k.send("GET /on-write-empty HTTP/1.1\r\nHost: x\r\n\r\n"));
  got = k.read(2s, "0\r\n\r\n");
  EXPECT_EQ(status_of(got), 200) << got;
  EXPECT_EQ(body_of(got), "0\r\n\r\n") << got;
  // The first write from another thread, after the handler returned; the connection stays usable.
  ASSERT_TRUE(k.send("GET /on-write-later HTTP/1.1\r\nHost: x\r\n\r\n"));
  got = k.read(3s, "0\r\n\r\n");
  EXPECT_EQ(status_of(got), 200) << got;
  const std::string b = body_of(got);
  EXPECT_NE(b.find("data: late\n\n"), std::string::npos) << got;
  EXPECT_NE(b.find("data: later\n\n"), std::string::npos) << got;
  EXPECT_LT(b.find("data: late\n\n"), b.find("data: later\n\n")) << got;
  EXPECT_EQ(b.substr(b.size() - 5), "0\r\n\r\n") << got;
  ASSERT_TRUE(k.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_EQ(status_of(k.read(2s, "hi")), 200);
}

TEST(HttpServer, OwnLoopSlowStreamReaderIsDroppedNotBuffered) {
  OnOwnLoop o;  // stream_buffer_bytes 64 KiB, write timeout 1 s
  Raw k(o.s->port);
  int small = 4096;
  ::setsockopt(k.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  ASSERT_TRUE(k.send("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto st = o.s->wait_stream();
  ASSERT_TRUE(st);
  // The writes run on the connection's own loop (the inline path); the client reads nothing.
  const std::string chunk(16 * 1024, 'x');
  std::atomic<bool> refused{false};
  for (int i = 0; i < 2000 && !refused; ++i) {
    boost::asio::post(o.loop, [&] { refused = refused || !st->write(chunk); });
    std::this_thread::sleep_for(2ms);
  }
  EXPECT_TRUE(refused) << "write() kept accepting for a reader that reads nothing";
  EXPECT_LE(st->buffered(), size_t(64 * 1024 + chunk.size()));
  EXPECT_TRUE(o.s->eventually([&] { return o.s->disconnects == 1; }));
  std::promise<void> drained;  // nothing queued on the loop refers to `st` or `refused` any more
  boost::asio::post(o.loop, [&] { drained.set_value(); });
  drained.get_future().wait();
}
