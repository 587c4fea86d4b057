// A generic asynchronous HTTP/1.1 server on Boost.Beast, for `v4host serve` and the router.
//
// One io_context run by a few I/O threads; every connection is a state machine on its own strand
// (no thread per connection), so thousands of idle, slow or streaming connections cost memory
// only. Handlers are written against net::Request / net::Reply (http_exchange.h) and may answer
// at once, later from any thread, or as a chunked stream.
//
// What the server does on its own, so no handler has to:
//  - timeouts: a connection with no request waits at most idle_timeout_s (also between
//    keep-alive requests); once a request's first byte has arrived its header must be complete
//    within header_timeout_s and its body within body_timeout_s (a trickled header or body is
//    answered 408 and closed); a write that makes no progress for write_timeout_s closes the
//    connection (a stalled reader of a stream), as does a stream with more than
//    stream_buffer_bytes queued for a client that reads too slowly;
//  - limits: header larger than max_header_bytes -> 431, body larger than max_body_bytes -> 413
//    (answered before reading the body when Content-Length says so), malformed -> 400;
//  - keep-alive (HTTP/1.1 default; HTTP/1.0 with "Connection: keep-alive"), Expect: 100-continue,
//    HEAD on every GET route (headers only), OPTIONS (Allow; a CORS preflight when cors_origin is
//    set), 404 for an unknown path, 405 + Allow for a known path with another method;
//  - CORS (cors_origin "*" or one origin): preflights answered, Access-Control-Allow-Origin added
//    to every reply;
//  - disconnect detection while a reply is pending or streaming (the connection keeps a read
//    outstanding: EOF or an error means the peer is gone) -> Reply::on_disconnect callbacks;
//  - a completion hook called once per request (every route, errors included) for logging and
//    metrics.
// Routes marked offload run on a small worker pool instead of an I/O thread: use it for handlers
// that do real work before answering (parsing, tokenising), so probes like /health answered
// inline on the I/O threads are never stuck behind them.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "net/http_exchange.h"

namespace boost::asio {
class io_context;
}

namespace v4::net {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 0;                         // 0 = any free port (bind() returns it)
  int io_threads = 2;
  int worker_threads = 2;               // for routes with RouteOptions::offload
  double idle_timeout_s = 60;           // no request yet / between keep-alive requests
  double header_timeout_s = 10;         // first byte -> end of header
  double body_timeout_s = 30;           // end of header -> end of body
  double write_timeout_s = 30;          // one write making no progress
  size_t max_header_bytes = 64 << 10;   // 431 above
  size_t max_body_bytes = 8 << 20;      // 413 above
  size_t stream_buffer_bytes = 4 << 20; // queued stream bytes before the client counts as too slow
  std::string cors_origin;              // "" = no CORS headers; "*" or "https://app.example"
  bool raise_fd_limit = true;           // RLIMIT_NOFILE soft -> hard at construction
  // External event loops (optional). When given, every connection is placed on one of these
  // io_contexts (round-robin) and all its handlers run there; Request::loop says which. The owner
  // runs each loop on one thread, keeps them running until this server is destroyed, and may do
  // its own I/O on them: a handler that talks to another server on its connection's loop (the
  // router) then needs no thread hop, and a reply or stream write made on that loop's thread
  // starts at once (no strand, no queued handler). The server's own io_threads then only accept.
  std::vector<boost::asio::io_context*> loops;
};

struct RouteOptions {
  bool offload = false;  // run the handler on the worker pool, not on an I/O thread
};

// What the completion hook learns about a finished request.
struct Completion {
  int status = 0;           // as sent; 499 if the peer left before a reply could be sent
  double seconds = 0;       // from the request having been read to the end of the reply
  uint64_t bytes_out = 0;   // body bytes written (stream chunks included)
  bool streamed = false;
  bool disconnected = false;  // the peer went away (or was cut off) before the reply completed
};

class HttpServer {
 public:
  explicit HttpServer(ServerOptions opt);
  ~HttpServer();  // stops and joins
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Patterns are paths with "{name}" segments (one segment) or a final "{name*}" (the rest,
  // slashes included); values land percent-decoded in Request::params. Register before bind().
  void route(const std::string& method, const std::string& pattern, Handler h, RouteOptions ro = {});
  // Called once per request when its reply has completed (or the request was cut off: then
  // Request::method may be empty). Runs on an I/O thread.
  void on_complete(std::function<void(const Request&, const Reply&, const Completion&)> fn);
  // Fills in the body of replies the server makes itself (400, 404, 405, 408, 413, 431, 500 for
  // a handler that threw or dropped its reply); the default is a JSON {"error": {"message"}}.
  void on_error(std::function<void(Reply&, int status, const std::string& message)> fn);

  int bind();    // throws std::runtime_error naming host:port if it cannot listen; returns the port
  void start();  // accepts on the I/O threads; returns at once
  void run();    // start() + blocks until stop()
  void stop();   // closes the listener and every connection; idempotent, any thread
  void request_stop() noexcept;  // makes run() return (async-signal-safe: only sets a flag)

  size_t connections() const;  // open connections now
  const ServerOptions& options() const;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

// Raises the soft RLIMIT_NOFILE to the hard limit; returns the new soft limit.
uint64_t raise_fd_limit();

}  // namespace v4::net
