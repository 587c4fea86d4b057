// Asynchronous HTTP/1.1 client on Boost.Asio/Beast, with TLS (OpenSSL) for https:// URLs.
//
// What it offers
// - One HttpClient per io_context drives any number of concurrent requests (thousands of streams
//   on one thread): every request is a small state machine of asynchronous operations; nothing
//   blocks and there is no thread per request.
// - Keep-alive connection pooling per (scheme, host, port): a finished request whose response
//   allowed it returns its connection to the pool; the next request to the same origin reuses it.
//   A pooled connection the server closed meanwhile is detected (EOF / reset before any response
//   byte) and the request is retried once on a fresh connection.
// - Timeouts per request: connect (DNS + TCP + TLS handshake), first byte (request sent -> first
//   response byte), total (start -> end of body). Each failure has its own ErrorKind.
// - Streaming: Handlers::on_head gets the status line and headers; Handlers::on_body gets each piece
//   of (de-chunked) body together with the steady-clock time at which the bytes carrying it
//   arrived: on plain TCP the kernel's receive timestamp (SO_TIMESTAMPING, converted to the
//   steady clock), so a late-scheduled client thread does not shift the figures; over TLS the
//   instant the read completed (before parsing). Bytes that arrive while the thread is busy and
//   are read together share the time of the last of them.
// - Cancellation: RequestHandle::cancel() (thread-safe) aborts a request; on_done reports
//   ErrorKind::cancelled.
// - fetch(): a blocking convenience call (its own io_context) for non-hot paths: evals, tests,
//   health checks.
//
// Threading: HttpClient::start and all handlers run on the io_context's thread(s); run the
// io_context on one thread (the pool is not locked). RequestHandle::cancel may be called from
// any thread.
//
// Not supported (not needed by v4host): HTTP/2, proxies, redirects (3xx are returned as-is),
// request bodies larger than memory, Expect: 100-continue.
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace boost::asio {
class io_context;
}

namespace v4::net {

using Clock = std::chrono::steady_clock;

// scheme://host[:port][/target]; scheme http or https. Throws v4::InputError naming the problem.
struct Url {
  std::string scheme;  // "http" | "https"
  std::string host;    // without brackets for IPv6 literals
  std::string port;    // defaulted to 80 / 443
  std::string target;  // path + query, at least "/"
  bool tls() const { return scheme == "https"; }
  std::string origin() const;  // scheme://host:port
  static Url parse(std::string_view url);
};

// Case-insensitive header lookup helpers work on this list (order and duplicates kept).
using ClientHeaders = std::vector<std::pair<std::string, std::string>>;
// Value of the first header named `name` (case-insensitive), or empty.
std::string header_value(const ClientHeaders& h, std::string_view name);

struct Timeouts {
  std::chrono::milliseconds connect{10'000};
  std::chrono::milliseconds first_byte{120'000};
  std::chrono::milliseconds total{600'000};
};

struct ClientRequest {
  std::string method = "GET";
  std::string url;        // absolute http(s) URL
  ClientHeaders headers;        // Host, Content-Length and User-Agent are added when absent
  std::string body;
  Timeouts timeouts;
};

enum class ErrorKind {
  none,
  bad_url,             // the URL did not parse
  resolve,             // DNS failure
  connect,             // TCP connect refused / unreachable
  tls,                 // TLS handshake or certificate failure
  timeout_connect,
  timeout_first_byte,
  timeout_total,
  io,                  // read/write failure or connection closed mid-response
  protocol,            // malformed HTTP from the server
  cancelled,
};
const char* error_kind_name(ErrorKind k);

// Everything known about one finished (or failed) request. Times are steady-clock instants;
// an instant never reached is Clock::time_point{} (epoch). t_first_byte, t_head, t_end and the
// on_body instants are kernel receive times on plain TCP (SO_TIMESTAMPING, unless
// ClientOptions::kernel_timestamps is off), else the read completion; they can precede t_sent
// (when the write's completion handler ran).
struct Response {
  ErrorKind error = ErrorKind::none;
  std::string error_message;  // human-readable, empty when error == none
  int status = 0;             // HTTP status (0 when no status line arrived)
  ClientHeaders headers;
  std::string body;           // the whole body, unless Handlers::on_body consumed it
  uint64_t body_bytes = 0;    // de-chunked body bytes received
  bool reused_connection = false;
  Clock::time_point t_start, t_connected, t_sent, t_first_byte, t_head, t_end;
  bool ok() const { return error == ErrorKind::none; }
};

struct Handlers {
  // After the complete response header. Optional.
  std::function<void(const Response& head)> on_head;
  // Each piece of body, with the instant its bytes were read from the socket. When set, the body is
  // not accumulated in Response::body.
  std::function<void(std::string_view piece, Clock::time_point read_at)> on_body;
  // Exactly once per started request (also on error or cancel), after which no handler runs.
  std::function<void(Response&& r)> on_done;
};

// Handle to a request in flight; dropping it does not cancel the request.
class RequestHandle {
 public:
  virtual ~RequestHandle() = default;
  // Aborts the request if still running (thread-safe; on_done is called with ErrorKind::cancelled).
  virtual void cancel() = 0;
};

struct ClientOptions {
  size_t max_idle_per_origin = 1024;  // pooled idle connections kept per origin
  bool verify_tls = true;             // verify server certificates against the system store
  std::string user_agent = "v4host";
  // Kernel receive timestamps (SO_TIMESTAMPING) on plain TCP: each read then waits for
  // readability and calls recvmsg itself to get them. A client that ignores on_body's instants
  // (a proxy) turns this off and reads with one async read per piece.
  bool kernel_timestamps = true;
};

class HttpClient {
 public:
  explicit HttpClient(boost::asio::io_context& io, ClientOptions opt = {});
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Starts a request; returns at once. Errors (including a bad URL) arrive through on_done.
  std::shared_ptr<RequestHandle> start(ClientRequest req, Handlers h);

  // Idle pooled connections (for tests and diagnostics).
  size_t idle_connections() const;
  // Closes idle pooled connections.
  void close_idle();

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

// Blocking request on a private io_context (not for hot paths). Never throws for network errors:
// check Response::error.
Response fetch(const ClientRequest& req, ClientOptions opt = {});
// Shorthands.
Response get(const std::string& url, const ClientHeaders& headers = {}, Timeouts t = {});
Response post_json(const std::string& url, const std::string& json, const ClientHeaders& headers = {}, Timeouts t = {});

}  // namespace v4::net
