#include "net/http_server.h"

#include "net/serialize.h"

#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <charconv>
#include <chrono>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <thread>
#include <unordered_map>

namespace v4::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using error_code = boost::system::error_code;

uint64_t raise_fd_limit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
  if (rl.rlim_cur < rl.rlim_max) {
    rlimit up = rl;
    up.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &up) == 0) return up.rlim_cur;
  }
  return rl.rlim_cur;
}

namespace {

class Session;

struct Route {
  std::string method, pattern;
  std::vector<std::string> segs;  // "{x}" = parameter, last "{x*}" = the rest
  Handler h;
  RouteOptions ro;
};

std::vector<std::string_view> split_path(std::string_view p) {
  std::vector<std::string_view> out;
  if (!p.empty() && p[0] == '/') p.remove_prefix(1);
  for (;;) {
    size_t s = p.find('/');
    out.push_back(p.substr(0, s));
    if (s == std::string_view::npos) break;
    p.remove_prefix(s + 1);
  }
  return out;
}

bool match(const Route& r, const std::vector<std::string_view>& segs, std::map<std::string, std::string>* params) {
  std::map<std::string, std::string> got;
  for (size_t i = 0; i < r.segs.size(); ++i) {
    const std::string& p = r.segs[i];
    const bool param = p.size() > 2 && p.front() == '{' && p.back() == '}';
    if (param && p[p.size() - 2] == '*') {  // the rest of the path
      if (i >= segs.size()) return false;
      std::string rest;
      for (size_t j = i; j < segs.size(); ++j) rest += (j > i ? "/" : "") + std::string(segs[j]);
      if (rest.empty()) return false;
      got[p.substr(1, p.size() - 3)] = url_decode(rest);
      if (params) *params = std::move(got);
      return true;
    }
    if (i >= segs.size()) return false;
    if (param) {
      if (segs[i].empty()) return false;
      got[p.substr(1, p.size() - 2)] = url_decode(segs[i]);
    } else if (segs[i] != p) {
      return false;
    }
  }
  if (segs.size() != r.segs.size()) return false;
  if (params) *params = std::move(got);
  return true;
}

// Shared between a stream's handle (the producer's side) and its connection.
struct StreamState {
  std::mutex mu;
  std::string pending;      // queued, not yet handed to the socket
  size_t inflight = 0;      // handed to the socket, not yet written
  bool closing = false;     // producer called close() (or dropped the handle)
  bool broken = false;      // the connection is gone or too slow
  bool flush_posted = false;
  bool start_on_write = false;  // start_stream_on_write: the header goes out with the first write
  size_t cap = 0;
  double ka = 0;
  std::string ka_comment;
  std::function<void()> drain;
};

}  // namespace

struct HttpServer::Impl {
  ServerOptions opt;
  std::unique_ptr<asio::io_context> ioc;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  std::unique_ptr<tcp::acceptor> acceptor;
  std::unique_ptr<asio::thread_pool> workers;
  std::unique_ptr<asio::steady_timer> accept_retry;
  std::vector<Route> routes;
  std::function<void(const Request&, const Reply&, const Completion&)> complete_hook;
  std::function<void(Reply&, int, const std::string&)> error_hook;
  std::vector<std::thread> threads;
  std::mutex mu;  // sessions, threads
  std::unordered_map<Session*, std::weak_ptr<Session>> sessions;
  std::atomic<size_t> nconn{0};
  size_t next_loop = 0;  // accept handlers run on the acceptor's strand
  std::atomic<bool> stopping{false}, stop_requested{false};
  bool started = false;

  ~Impl();
  void accept();
  void stop();
  void fill_error(Reply& r, int status, const std::string& msg) {
    r.status = status;
    r.headers.erase("Content-Length");
    if (error_hook) return error_hook(r, status, msg);
    nlohmann::json j = {{"error", {{"message", msg}, {"code", status}}}};
    r.set_content(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), "application/json");
  }
  // The methods of every route whose pattern matches `segs` (HEAD with GET; OPTIONS always).
  std::string allowed(const std::vector<std::string_view>& segs) const {
    std::vector<std::string> m;
    for (auto& r : routes)
      if (match(r, segs, nullptr) && std::find(m.begin(), m.end(), r.method) == m.end()) {
        m.push_back(r.method);
        if (r.method == "GET" && std::find(m.begin(), m.end(), "HEAD") == m.end()) m.push_back("HEAD");
      }
    if (m.empty()) return "";
    m.push_back("OPTIONS");
    std::string s;
    for (auto& x : m) s += (s.empty() ? "" : ", ") + x;
    return s;
  }
};

namespace {

class ReplyImpl;

class StreamHandle final : public Stream {
 public:
  StreamHandle(std::shared_ptr<StreamState> st, std::weak_ptr<Session> s) : st_(std::move(st)), s_(std::move(s)) {}
  ~StreamHandle() override { close(); }  // a dropped stream ends like a closed one
  bool write(std::string data) override { return append(data); }
  bool append(std::string_view data) override;
  void close() override;
  bool closed() const override {
    std::lock_guard<std::mutex> lk(st_->mu);
    return st_->closing || st_->broken;
  }
  size_t buffered() const override {
    std::lock_guard<std::mutex> lk(st_->mu);
    return st_->pending.size() + st_->inflight;
  }
  void on_drain(std::function<void()> fn) override {
    std::lock_guard<std::mutex> lk(st_->mu);
    st_->drain = std::move(fn);
  }
  void keep_alive(double interval_s, std::string comment) override;

 private:
  void post_flush();
  std::shared_ptr<StreamState> st_;
  std::weak_ptr<Session> s_;
};

class ReplyImpl final : public Reply, public std::enable_shared_from_this<ReplyImpl> {
 public:
  Request req;
  std::weak_ptr<Session> session;
  Clock::time_point t0;
  bool head = false;

  const Request& request() const override { return req; }
  void send() override;
  std::shared_ptr<Reply> defer() override;
  std::shared_ptr<Stream> start_stream(std::string content_type) override { return begin_stream(std::move(content_type), false); }
  std::shared_ptr<Stream> start_stream_on_write(std::string content_type) override { return begin_stream(std::move(content_type), true); }
  std::shared_ptr<Stream> begin_stream(std::string content_type, bool on_write);
  void on_disconnect(std::function<void()> fn) override {
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (!gone_) {
        on_gone_.push_back(std::move(fn));
        return;
      }
    }
    fn();
  }
  bool disconnected() const override {
    std::lock_guard<std::mutex> lk(mu_);
    return gone_;
  }
  bool answered() const override {
    std::lock_guard<std::mutex> lk(mu_);
    return answered_;
  }
  bool was_deferred() const {
    std::lock_guard<std::mutex> lk(mu_);
    return deferred_;
  }
  bool streaming() const {
    std::lock_guard<std::mutex> lk(mu_);
    return stream_ != nullptr;
  }
  std::shared_ptr<StreamState> stream_state() const {
    std::lock_guard<std::mutex> lk(mu_);
    return stream_;
  }
  void fire_gone() {
    std::vector<std::function<void()>> fns;
    std::shared_ptr<StreamState> st;
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (gone_) return;
      gone_ = true;
      fns.swap(on_gone_);
      st = stream_;
    }
    if (st) {
      std::lock_guard<std::mutex> lk(st->mu);
      st->broken = true;
    }
    for (auto& f : fns) f();
  }
  bool completed = false;  // the completion hook has run (strand only)
  bool abandoned = false;  // every deferred handle was dropped without send()

 private:
  struct Guard {
    std::shared_ptr<ReplyImpl> r;
    ~Guard();
  };
  mutable std::mutex mu_;
  bool answered_ = false, deferred_ = false, gone_ = false;
  std::weak_ptr<Guard> guard_;
  std::shared_ptr<StreamState> stream_;
  std::vector<std::function<void()>> on_gone_;
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  // `own`: the connection runs on an external loop (ServerOptions::loops), which its owner runs
  // on one thread: no strand, and a reply or stream write made on that thread runs at once.
  Session(HttpServer::Impl* srv, tcp::socket sock, int loop = 0, asio::io_context* own = nullptr)
      : srv_(srv), loop_(loop), own_(own), sock_(std::move(sock)), read_timer_(sock_.get_executor()), write_timer_(sock_.get_executor()),
        ka_timer_(sock_.get_executor()) {
    ++srv_->nconn;
    error_code ec;
    auto ep = sock_.remote_endpoint(ec);
    if (!ec) remote_ = ep.address().to_string() + ":" + std::to_string(ep.port());
  }
  ~Session() {
    --srv_->nconn;
    std::lock_guard<std::mutex> lk(srv_->mu);
    srv_->sessions.erase(this);
  }

  void start() {
    {
      std::lock_guard<std::mutex> lk(srv_->mu);
      srv_->sessions[this] = weak_from_this();
    }
    asio::dispatch(sock_.get_executor(), [self = shared_from_this()] { self->await_bytes(); });
  }
  template <class F>
  void post(F&& f) {
    asio::post(sock_.get_executor(), std::forward<F>(f));
  }
  // From a Reply / Stream method: on the connection's own single-threaded loop, now (the write
  // starts within the producer's handler: no second pass of the loop, no queued handler per
  // streamed chunk); from any other thread, or on a strand, queued like post().
  template <class F>
  void run_or_post(F&& f) {
    if (own_ && own_->get_executor().running_in_this_thread()) return f();
    post(std::forward<F>(f));
  }
  // Called on the strand.
  void do_send(std::shared_ptr<ReplyImpl> r);
  void do_stream_start(std::shared_ptr<ReplyImpl> r);
  void do_flush();
  void rearm_keepalive() {
    if (stream_ && stream_started_ && !writing_ && st_ != St::Closed) arm_keepalive();
  }
  void abort(bool forget_self = false);  // close the connection now (peer gone, timeout, too slow)
  // Server stopping: close now. A request in flight completes (and reaches the hook) only if its
  // handler answers while the I/O threads still run.
  void shutdown_now() {
    abort();
    hold_.reset();
  }
  void release_hold() { hold_.reset(); }

 private:
  enum class St { Idle, Header, Body, Busy, Closed };
  void arm_read(double secs) {
    const uint64_t gen = ++read_gen_;
    read_timer_.expires_after(std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(secs)));
    read_timer_.async_wait([self = shared_from_this(), gen](error_code ec) {
      if (ec || gen != self->read_gen_) return;
      self->on_read_timeout();
    });
  }
  void disarm_read() {
    ++read_gen_;
    read_timer_.cancel();
  }
  // A write that makes no progress for write_timeout_s closes the connection. Each write moves
  // the deadline; one wait is outstanding at a time and re-arms itself only when it fires before
  // the current deadline, so a streamed chunk or a reply costs no timer operation (no cancel, no
  // aborted handler). The wait holds the session weakly: a pending one never keeps it alive.
  void arm_write() {
    write_deadline_ = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(srv_->opt.write_timeout_s));
    write_busy_ = true;
    if (write_waiting_) return;
    write_waiting_ = true;
    wait_write();
  }
  void wait_write() {
    write_timer_.expires_at(write_deadline_);
    write_timer_.async_wait([w = weak_from_this()](error_code ec) {
      auto self = w.lock();
      if (!self) return;
      self->write_waiting_ = false;
      if (ec || !self->write_busy_ || self->st_ == St::Closed) return;
      if (Clock::now() < self->write_deadline_) {
        self->write_waiting_ = true;
        return self->wait_write();
      }
      self->abort();  // a reader that stopped reading
    });
  }
  void disarm_write() { write_busy_ = false; }
  void on_read_timeout() {
    if (st_ == St::Idle) return abort();  // idle keep-alive connection: close quietly
    if (st_ == St::Header || st_ == St::Body) {
      timed_out_ = true;
      error_code ec;
      sock_.cancel(ec);  // the pending read completes with operation_aborted
    }
  }

  // Waits for the next request's first bytes (idle) or for the peer to go away (busy).
  void await_bytes() {
    if (st_ == St::Closed || awaiting_) return;
    awaiting_ = true;
    if (st_ == St::Idle) arm_read(srv_->opt.idle_timeout_s);
    sock_.async_read_some(buf_.prepare(4096), [self = shared_from_this()](error_code ec, size_t n) { self->on_bytes(ec, n); });
  }
  void on_bytes(error_code ec, size_t n) {
    awaiting_ = false;
    if (st_ == St::Closed) return;
    if (ec) {
      if (st_ == St::Busy) return peer_gone();
      return abort();
    }
    buf_.commit(n);
    if (st_ == St::Idle) {
      disarm_read();
      read_header();
    }
    // Busy: a pipelined request; it waits in the buffer until this reply is done.
  }

  void read_header() {
    st_ = St::Header;
    timed_out_ = false;
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(srv_->opt.max_header_bytes));
    parser_->body_limit(srv_->opt.max_body_bytes);
    // The bytes await_bytes read usually hold the whole request: parse them here. Beast's
    // async_read_header and async_read complete through a post even when nothing is left to
    // read, so each phase would wait for another pass of the loop, behind every handler ready
    // in it (other streams' chunks), before the request reaches its handler.
    while (buf_.size() > 0 && !parser_->is_done()) {
      if (parser_->is_header_done() && beast::iequals(parser_->get()[http::field::expect], "100-continue")) break;  // on_header answers it
      error_code ec;
      const std::size_t used = parser_->put(buf_.data(), ec);
      buf_.consume(used);
      if (ec == http::error::need_more) break;
      if (ec) return read_failed(ec, parser_->is_header_done() ? "the request body" : "the request header");
      if (used == 0) break;
    }
    if (parser_->is_done()) return on_request();
    if (parser_->is_header_done()) return on_header({});
    arm_read(srv_->opt.header_timeout_s);
    http::async_read_header(sock_, buf_, *parser_, [self = shared_from_this()](error_code ec, size_t) { self->on_header(ec); });
  }
  void on_header(error_code ec) {
    disarm_read();
    if (st_ == St::Closed) return;
    if (ec) return read_failed(ec, "the request header");
    auto& m = parser_->get();
    if (parser_->is_done()) return on_request();
    if (beast::iequals(m[http::field::expect], "100-continue")) {
      static const std::string cont = "HTTP/1.1 100 Continue\r\n\r\n";
      arm_write();
      asio::async_write(sock_, asio::buffer(cont), [self = shared_from_this()](error_code ec2, size_t) {
        self->disarm_write();
        if (ec2) return self->abort();
        self->read_body();
      });
      return;
    }
    read_body();
  }
  void read_body() {
    st_ = St::Body;
    arm_read(srv_->opt.body_timeout_s);
    http::async_read(sock_, buf_, *parser_, [self = shared_from_this()](error_code ec, size_t) {
      self->disarm_read();
      if (self->st_ == St::Closed) return;
      if (ec) return self->read_failed(ec, "the request body");
      self->on_request();
    });
  }
  // A request that could not be read: answer what can be answered, then close.
  void read_failed(error_code ec, const char* what) {
    int status = 0;
    std::string msg;
    if (timed_out_) {
      status = 408;
      msg = std::string(what) + " did not arrive within " +
            std::to_string(static_cast<int>(st_ == St::Header ? srv_->opt.header_timeout_s : srv_->opt.body_timeout_s)) + " s";
    } else if (ec == http::error::body_limit) {
      status = 413;
      msg = "request body exceeds the server's limit of " + std::to_string(srv_->opt.max_body_bytes) + " bytes";
    } else if (ec == http::error::header_limit) {
      status = 431;
      msg = "request header exceeds the server's limit of " + std::to_string(srv_->opt.max_header_bytes) + " bytes";
    } else if (ec == http::error::end_of_stream || ec == http::error::partial_message || ec == asio::error::eof ||
               ec == asio::error::connection_reset || ec == asio::error::operation_aborted) {
      return abort();  // the peer went away mid-request
    } else {
      status = 400;
      msg = "malformed HTTP request: " + ec.message();
    }
    auto r = new_reply();
    if (parser_) {  // whatever of the start line was parsed
      auto& m = parser_->get();
      r->req.method = std::string(m.method_string());
      r->req.target = std::string(m.target());
      r->req.path = url_decode(r->req.target.substr(0, r->req.target.find('?')));
    }
    parser_.reset();
    keep_alive_ = false;
    st_ = St::Busy;
    hold_ = shared_from_this();
    cur_ = r;
    srv_->fill_error(*r, status, msg);
    r->send();
  }

  std::shared_ptr<ReplyImpl> new_reply() {
    auto r = std::make_shared<ReplyImpl>();
    r->session = weak_from_this();
    r->req.remote = remote_;
    r->req.loop = loop_;
    r->t0 = Clock::now();
    bytes_out_ = 0;
    return r;
  }

  void on_request() {
    st_ = St::Busy;
    hold_ = shared_from_this();  // kept while the reply is pending, whatever the socket does
    auto r = new_reply();
    auto& m = parser_->get();
    Request& q = r->req;
    q.method = std::string(m.method_string());
    q.target = std::string(m.target());
    const size_t qm = q.target.find('?');
    const std::string raw_path = q.target.substr(0, qm);
    q.path = url_decode(raw_path);
    if (qm != std::string::npos) {
      q.query_string = q.target.substr(qm + 1);
      q.query = parse_query(q.query_string);
    }
    for (auto& f : m) q.headers.add(std::string(f.name_string()), std::string(f.value()));
    q.body = std::move(m.body());
    keep_alive_ = m.keep_alive();
    version_ = m.version();
    r->head = m.method() == http::verb::head;
    parser_.reset();
    cur_ = r;
    if (buf_.size() == 0) await_bytes();  // notice a peer that goes away while we work
    dispatch(r, raw_path);
  }

  void dispatch(const std::shared_ptr<ReplyImpl>& r, const std::string& raw_path) {
    Request& q = r->req;
    const auto segs = split_path(raw_path);
    if (q.target.empty() || q.target[0] != '/') {
      srv_->fill_error(*r, 400, "the request target must be an absolute path");
      return r->send();
    }
    if (q.method == "OPTIONS") {
      const std::string allow = srv_->allowed(segs);
      if (allow.empty()) {
        srv_->fill_error(*r, 404, "no route OPTIONS " + q.path);
        return r->send();
      }
      r->status = 204;
      r->set_header("Allow", allow);
      if (!srv_->opt.cors_origin.empty() && q.has_header("Access-Control-Request-Method")) {
        r->set_header("Access-Control-Allow-Methods", allow);
        std::string hdrs = q.header("Access-Control-Request-Headers");
        r->set_header("Access-Control-Allow-Headers", hdrs.empty() ? "Authorization, Content-Type" : hdrs);
        r->set_header("Access-Control-Max-Age", "86400");
      }
      return r->send();
    }
    const Route* found = nullptr;
    const std::string want = r->head ? "GET" : q.method;
    for (auto& rt : srv_->routes)
      if (rt.method == want && match(rt, segs, &q.params)) {
        found = &rt;
        break;
      }
    if (!found) {
      const std::string allow = srv_->allowed(segs);
      if (allow.empty()) {
        srv_->fill_error(*r, 404, "no route " + q.method + " " + q.path);
      } else {
        srv_->fill_error(*r, 405, "method " + q.method + " is not allowed on " + q.path + " (allowed: " + allow + ")");
        r->set_header("Allow", allow);
      }
      return r->send();
    }
    q.route = found->pattern;
    auto run = [r, h = found->h, srv = srv_] {
      try {
        h(r->req, *r);
      } catch (const std::exception& e) {
        if (!r->answered()) {
          srv->fill_error(*r, 500, std::string("internal error: ") + e.what());
          r->send();
        }
        return;
      }
      if (!r->answered() && !r->was_deferred()) r->send();
    };
    if (found->ro.offload) asio::post(*srv_->workers, std::move(run));
    else run();
  }

  void peer_gone() {
    auto r = cur_;
    abort();
    (void)r;
  }

  template <class Msg>
  void add_cors(Msg& m) {
    const std::string& o = srv_->opt.cors_origin;
    if (o.empty()) return;
    m.set(http::field::access_control_allow_origin, o);
    if (o != "*") m.set(http::field::vary, "Origin");
    m.set(http::field::access_control_expose_headers, "*");
  }
  template <class Msg>
  void fill_head(Msg& m, ReplyImpl& r) {
    m.version(version_ == 10 ? 10 : 11);
    m.result(static_cast<unsigned>(r.status));
    for (auto& f : r.headers.fields()) {
      if (iequals(f.name, "Content-Length") || iequals(f.name, "Transfer-Encoding") || iequals(f.name, "Connection"))
        continue;
      m.insert(f.name, f.value);
    }
    add_cors(m);
    m.keep_alive(keep_alive_);
  }

 public:
  void complete(ReplyImpl& r, int status, bool disconnected) {
    if (r.completed) return;
    r.completed = true;
    if (!srv_->complete_hook) return;
    Completion c;
    c.status = status;
    c.seconds = std::chrono::duration<double>(Clock::now() - r.t0).count();
    c.bytes_out = bytes_out_;
    c.streamed = r.streaming();
    c.disconnected = disconnected;  // a peer that closes after reading the whole reply has not left early
    try {
      srv_->complete_hook(r.req, r, c);
    } catch (const std::exception&) {
    }
  }
  // The exchange is over: the next request on this connection, or close.
  void next() {
    cur_.reset();
    sres_.reset();
    res_.reset();
    disarm_write();
    ka_timer_.cancel();
    stream_.reset();
    stream_started_ = false;
    auto keep = std::move(hold_);
    if (st_ == St::Closed) return;
    if (!keep_alive_ || srv_->stopping) {
      error_code ec;
      sock_.shutdown(tcp::socket::shutdown_send, ec);
      return abort();
    }
    st_ = St::Idle;
    if (buf_.size() > 0) return read_header();
    if (awaiting_) arm_read(srv_->opt.idle_timeout_s);  // the read started while busy goes on
    else await_bytes();
  }

 private:
  void arm_keepalive() {
    auto st = stream_;
    if (!st) return;
    double ka;
    {
      std::lock_guard<std::mutex> lk(st->mu);
      ka = st->ka;
    }
    if (ka <= 0) return;
    ka_timer_.expires_after(std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(ka)));
    ka_timer_.async_wait([self = shared_from_this(), st](error_code ec) {
      if (ec || self->stream_ != st || self->writing_) return;
      {
        std::lock_guard<std::mutex> lk(st->mu);
        if (st->closing || st->broken || !st->pending.empty()) return;
        st->pending = st->ka_comment;
      }
      self->do_flush();
    });
  }

  HttpServer::Impl* srv_;
  int loop_ = 0;
  asio::io_context* own_ = nullptr;
  tcp::socket sock_;
  beast::flat_buffer buf_;
  asio::steady_timer read_timer_, write_timer_, ka_timer_;
  uint64_t read_gen_ = 0;
  Clock::time_point write_deadline_{};
  bool write_busy_ = false, write_waiting_ = false;
  std::optional<http::request_parser<http::string_body>> parser_;
  St st_ = St::Idle;
  bool awaiting_ = false, writing_ = false, timed_out_ = false, keep_alive_ = true;
  unsigned version_ = 11;
  std::string remote_;
  std::shared_ptr<ReplyImpl> cur_;
  std::shared_ptr<Session> hold_;
  uint64_t bytes_out_ = 0;
  std::shared_ptr<http::response<http::string_body>> res_;
  std::unique_ptr<http::response_serializer<http::string_body>> res_sr_;
  std::unique_ptr<http::response<http::empty_body>> sres_;
  std::shared_ptr<StreamState> stream_;
  std::string head_;  // a stream's header, serialised to go out with its first bytes
  std::string chunk_;
  // The bytes of the current stream write (header, chunk framing and `chunk_`) in one buffer: a
  // write of one contiguous buffer is a small Asio operation that the loop's handler memory
  // recycles, where a write of Beast's chunk buffer sequence (up to 64 prepared buffers) needs a
  // fresh heap block of more than 1 KB per streamed chunk. Its capacity is kept between writes.
  std::string wire_;
  // A large reply's copy is not kept for the connection's life (memory per idle connection stays small).
  void trim_wire() {
    if (wire_.capacity() > 64 * 1024) std::string().swap(wire_);
  }
  // wire_ = [head] + chunk_ framed as one HTTP/1.1 chunk: its size in hex, CRLF, the bytes, CRLF
  // (the bytes Beast's make_chunk gives without extensions; iterating its buffer sequence to copy
  // it cost ~1,000 instructions per chunk, this a few dozen).
  void frame_chunk(bool with_head) {
    char size[20];
    auto [end, ec] = std::to_chars(size, size + sizeof size, chunk_.size(), 16);
    (void)ec;
    wire_.clear();
    if (with_head) wire_ += head_;
    wire_.append(size, end).append("\r\n").append(chunk_).append("\r\n");
  }
  bool last_sent_ = false;
  bool stream_started_ = false;  // the stream's header has been written
};

// ---- Reply / Stream methods (any thread) -> the connection's strand ----

void ReplyImpl::send() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (answered_) return;
    answered_ = true;
  }
  if (auto s = session.lock()) s->run_or_post([s, r = shared_from_this()] { s->do_send(r); });
}

ReplyImpl::Guard::~Guard() {
  if (r->answered()) return;
  r->abandoned = true;
  r->send();  // do_send turns an abandoned reply into a 500
}

std::shared_ptr<Reply> ReplyImpl::defer() {
  std::lock_guard<std::mutex> lk(mu_);
  deferred_ = true;
  auto g = guard_.lock();
  if (!g) {
    g = std::make_shared<Guard>();
    g->r = shared_from_this();
    guard_ = g;
  }
  return std::shared_ptr<Reply>(g, this);
}

std::shared_ptr<Stream> ReplyImpl::begin_stream(std::string content_type, bool on_write) {
  std::shared_ptr<StreamState> st;
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (stream_) return std::make_shared<StreamHandle>(stream_, session);
    st = std::make_shared<StreamState>();
    st->start_on_write = on_write;
    if (answered_ || gone_) st->broken = true;  // too late: a closed stream
    stream_ = st;
    if (!answered_) {
      answered_ = true;
      headers.set("Content-Type", std::move(content_type));
    }
  }
  auto s = session.lock();
  if (s) {
    // Queued, so that the producer's first frames, written right after this call, go out in the
    // same write as the header (one segment, one wake-up of the reader for the first token).
    // start_stream_on_write: the first write (or close) starts it instead (do_flush).
    if (!on_write) s->post([s, r = shared_from_this()] { s->do_stream_start(r); });
  } else {
    std::lock_guard<std::mutex> lk(st->mu);
    st->broken = true;
  }
  return std::make_shared<StreamHandle>(st, session);
}

void StreamHandle::post_flush() {
  if (auto s = s_.lock()) s->run_or_post([s] { s->do_flush(); });
}

bool StreamHandle::append(std::string_view data) {
  bool too_slow = false;
  {
    std::lock_guard<std::mutex> lk(st_->mu);
    if (st_->closing || st_->broken) return false;
    if (data.empty()) return true;
    if (st_->cap && st_->pending.size() + st_->inflight + data.size() > st_->cap) {
      st_->broken = true;
      too_slow = true;
    } else {
      st_->pending += data;
      if (st_->flush_posted) return true;
      st_->flush_posted = true;
    }
  }
  if (too_slow) {
    if (auto s = s_.lock()) s->post([s] { s->abort(); });
    return false;
  }
  post_flush();
  return true;
}

void StreamHandle::close() {
  {
    std::lock_guard<std::mutex> lk(st_->mu);
    if (st_->closing) return;
    st_->closing = true;
  }
  post_flush();
}

void StreamHandle::keep_alive(double interval_s, std::string comment) {
  {
    std::lock_guard<std::mutex> lk(st_->mu);
    st_->ka = interval_s;
    st_->ka_comment = std::move(comment);
  }
  // (Re)arm the timer: the stream's header may already be out, with no interval set at the time.
  if (auto s = s_.lock()) s->post([s] { s->rearm_keepalive(); });
}

// ---- strand side ----

void Session::do_send(std::shared_ptr<ReplyImpl> r) {
  if (r != cur_ || r->completed) return;
  if (r->streaming()) return;  // answered by its stream
  if (st_ == St::Closed) {  // nobody to send it to
    complete(*r, 499, true);
    return next();
  }
  if (r->abandoned) srv_->fill_error(*r, 500, "the handler dropped the request without answering");
  res_ = std::make_shared<http::response<http::string_body>>();
  fill_head(*res_, *r);
  res_->body() = std::move(r->body);
  res_->prepare_payload();
  bytes_out_ = r->head ? 0 : res_->body().size();
  arm_write();
  auto done = [self = shared_from_this(), r](error_code ec, size_t) {
    self->disarm_write();
    self->trim_wire();
    if (ec) {
      self->abort();
      self->complete(*r, r->status, true);
      return self->next();
    }
    self->complete(*r, r->status, false);
    self->next();
  };
  if (r->head) {
    res_sr_ = std::make_unique<http::response_serializer<http::string_body>>(*res_);
    http::async_write_header(sock_, *res_sr_, std::move(done));
  } else {
    serialize_to(*res_, wire_);  // one buffer (serialize.h)
    asio::async_write(sock_, asio::buffer(wire_), std::move(done));
  }
}

void Session::do_stream_start(std::shared_ptr<ReplyImpl> r) {
  if (r != cur_ || r->completed) return;
  stream_ = r->stream_state();
  {
    std::lock_guard<std::mutex> lk(stream_->mu);
    stream_->cap = srv_->opt.stream_buffer_bytes;
  }
  if (st_ == St::Closed) return do_flush();  // completes once the producer closes
  sres_ = std::make_unique<http::response<http::empty_body>>();
  fill_head(*sres_, *r);
  sres_->chunked(true);
  serialize_header_to(*sres_, head_);  // the status line and fields (serialize.h)
  // Whatever the producer queued meanwhile goes in the same write as the header.
  {
    std::lock_guard<std::mutex> lk(stream_->mu);
    if (!stream_->broken && !stream_->pending.empty()) {
      chunk_.swap(stream_->pending);
      stream_->pending.clear();
      stream_->inflight = chunk_.size();
    }
    stream_->flush_posted = false;
  }
  writing_ = true;
  last_sent_ = false;
  arm_write();
  auto done = [self = shared_from_this(), st = stream_](error_code ec, size_t) {
    self->writing_ = false;
    self->disarm_write();
    {
      std::lock_guard<std::mutex> lk(st->mu);
      st->inflight = 0;
    }
    if (ec) return self->abort();
    self->stream_started_ = true;
    self->bytes_out_ += self->chunk_.size();
    self->chunk_.clear();
    self->head_.clear();
    self->trim_wire();
    self->arm_keepalive();
    self->do_flush();
  };
  if (chunk_.empty()) asio::async_write(sock_, asio::buffer(head_), std::move(done));
  else {
    frame_chunk(true);
    asio::async_write(sock_, asio::buffer(wire_), std::move(done));
  }
}

void Session::do_flush() {
  auto st = stream_;
  // start_stream_on_write: the producer's first write (or close) starts the stream, with these
  // frames in the header's write; inline when made on the connection's own loop.
  if (!st && cur_ && !cur_->completed) {
    auto s = cur_->stream_state();
    if (s && s->start_on_write) return do_stream_start(cur_);
  }
  if (!st || !cur_) return;
  std::function<void()> drain;
  bool closing = false;
  {
    std::lock_guard<std::mutex> lk(st->mu);
    st->flush_posted = false;
    if (st_ == St::Closed) st->broken = true;
    closing = st->closing;
    if (st->broken) {
      st->pending.clear();
    } else if (!writing_ && !st->pending.empty()) {
      chunk_.swap(st->pending);
      st->pending.clear();
      st->inflight = chunk_.size();
    } else if (writing_) {
      return;  // the running write flushes again when it completes
    } else {
      drain = st->drain;
    }
  }
  if (st_ == St::Closed) {
    if (closing && !cur_->completed) {  // the producer is done with a stream nobody reads
      complete(*cur_, cur_->status, true);
      next();
    }
    return;
  }
  if (!chunk_.empty()) {
    writing_ = true;
    ka_timer_.cancel();
    arm_write();
    frame_chunk(false);
    asio::async_write(sock_, asio::buffer(wire_), [self = shared_from_this(), st](error_code ec, size_t) {
      self->writing_ = false;
      self->disarm_write();
      {
        std::lock_guard<std::mutex> lk(st->mu);
        st->inflight = 0;
      }
      if (ec) return self->abort();
      self->bytes_out_ += self->chunk_.size();
      self->chunk_.clear();
      self->trim_wire();
      self->arm_keepalive();
      self->do_flush();
    });
    return;
  }
  if (closing && !last_sent_) {
    last_sent_ = true;
    writing_ = true;
    ka_timer_.cancel();
    arm_write();
    asio::async_write(sock_, http::make_chunk_last(), [self = shared_from_this()](error_code ec, size_t) {
      self->writing_ = false;
      self->disarm_write();
      auto r = self->cur_;
      if (ec) {
        self->abort();
        if (r) self->complete(*r, r->status, true);
        return self->next();
      }
      if (r) self->complete(*r, r->status, false);
      self->next();
    });
    return;
  }
  if (drain) drain();
}

void Session::abort(bool) {
  if (st_ == St::Closed) return;
  st_ = St::Closed;
  error_code ec;
  sock_.close(ec);
  disarm_read();
  disarm_write();
  ka_timer_.cancel();
  if (cur_) {
    cur_->fire_gone();
    if (stream_) {
      // Wakes the stream up so a producer that already closed it completes the request.
      post([self = shared_from_this()] { self->do_flush(); });
    } else if (cur_->answered() && !cur_->streaming()) {
      // do_send already ran (its write fails) or is queued (it sees Closed): either completes.
    }
  } else {
    hold_.reset();
  }
}

}  // namespace

// ---- the server ----

HttpServer::Impl::~Impl() {
  stop();
  // Every session must be gone before the io_context: drop the self-references of those waiting
  // for a reply, then run the handlers of their cancelled operations (which hold the rest).
  std::vector<std::shared_ptr<Session>> open;
  {
    std::lock_guard<std::mutex> lk(mu);
    for (auto& [p, w] : sessions)
      if (auto s = w.lock()) open.push_back(std::move(s));
  }
  for (auto& s : open) s->release_hold();
  open.clear();  // (a session's destructor takes mu)
  for (int i = 0; i < 300; ++i) {
    ioc->restart();
    ioc->poll();
    std::lock_guard<std::mutex> lk(mu);
    if (sessions.empty()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  acceptor.reset();
  accept_retry.reset();
  ioc.reset();  // destroys pending handlers (and the sessions they hold) while the rest is alive
  workers.reset();
}

void HttpServer::Impl::accept() {
  // With external loops the connection goes to the next loop; the accept itself stays here.
  const int loop = opt.loops.empty() ? 0 : static_cast<int>(next_loop++ % opt.loops.size());
  asio::io_context& where = opt.loops.empty() ? *ioc : *opt.loops[static_cast<size_t>(loop)];
  // An external loop runs on one thread (its owner's promise): its connections need no strand.
  // The server's own io_context may run on several threads: each connection gets a strand.
  auto accepted = [this, loop, own = opt.loops.empty() ? nullptr : &where](error_code ec, tcp::socket sock) {
    if (stopping) return;
    if (ec) {
      // Out of descriptors (or a transient error): wait a little instead of spinning.
      accept_retry->expires_after(std::chrono::milliseconds(ec == asio::error::no_descriptors ? 100 : 10));
      accept_retry->async_wait([this](error_code e) {
        if (!e && !stopping) accept();
      });
      return;
    }
    error_code e2;
    sock.set_option(tcp::no_delay(true), e2);
    std::make_shared<Session>(this, std::move(sock), loop, own)->start();
    accept();
  };
  if (opt.loops.empty()) acceptor->async_accept(asio::make_strand(where), std::move(accepted));
  else acceptor->async_accept(where.get_executor(), std::move(accepted));
}

void HttpServer::Impl::stop() {
  if (stopping.exchange(true)) {
    std::vector<std::thread> th;
    {
      std::lock_guard<std::mutex> lk(mu);
      th.swap(threads);
    }
    for (auto& t : th)
      if (t.joinable()) t.join();
    return;
  }
  if (acceptor) asio::post(acceptor->get_executor(), [this] {
    error_code ec;
    acceptor->close(ec);
    accept_retry->cancel();
  });
  std::vector<std::shared_ptr<Session>> open;
  {
    std::lock_guard<std::mutex> lk(mu);
    for (auto& [p, w] : sessions)
      if (auto s = w.lock()) open.push_back(s);
  }
  for (auto& s : open) s->post([s] { s->shutdown_now(); });
  open.clear();
  work.reset();
  // Let the closes run, then stop whatever is left (a producer still writing to a dead stream).
  const auto deadline = Clock::now() + std::chrono::seconds(2);
  while (nconn > 0 && Clock::now() < deadline && started) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  if (ioc) ioc->stop();
  std::vector<std::thread> th;
  {
    std::lock_guard<std::mutex> lk(mu);
    th.swap(threads);
  }
  for (auto& t : th)
    if (t.joinable() && t.get_id() != std::this_thread::get_id()) t.join();
    else if (t.joinable()) t.detach();
}

HttpServer::HttpServer(ServerOptions opt) : impl_(std::make_shared<Impl>()) {
  impl_->opt = std::move(opt);
  if (impl_->opt.raise_fd_limit) raise_fd_limit();
  impl_->ioc = std::make_unique<asio::io_context>(std::max(1, impl_->opt.io_threads));
  impl_->work.emplace(impl_->ioc->get_executor());
  impl_->workers = std::make_unique<asio::thread_pool>(static_cast<size_t>(std::max(1, impl_->opt.worker_threads)));
  impl_->accept_retry = std::make_unique<asio::steady_timer>(*impl_->ioc);
}

HttpServer::~HttpServer() { impl_->stop(); }

void HttpServer::route(const std::string& method, const std::string& pattern, Handler h, RouteOptions ro) {
  Route r;
  r.method = method;
  r.pattern = pattern;
  for (auto s : split_path(pattern)) r.segs.emplace_back(s);
  r.h = std::move(h);
  r.ro = ro;
  impl_->routes.push_back(std::move(r));
}

void HttpServer::on_complete(std::function<void(const Request&, const Reply&, const Completion&)> fn) {
  impl_->complete_hook = std::move(fn);
}
void HttpServer::on_error(std::function<void(Reply&, int, const std::string&)> fn) { impl_->error_hook = std::move(fn); }

int HttpServer::bind() {
  auto& o = impl_->opt;
  error_code ec;
  auto addr = asio::ip::make_address(o.host == "localhost" ? "127.0.0.1" : o.host, ec);
  if (ec) throw std::runtime_error("cannot bind " + o.host + ": not an IP address");
  tcp::endpoint ep(addr, static_cast<unsigned short>(o.port));
  auto acc = std::make_unique<tcp::acceptor>(asio::make_strand(*impl_->ioc));
  acc->open(ep.protocol(), ec);
  if (!ec) acc->set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acc->bind(ep, ec);
  if (!ec) acc->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) throw std::runtime_error("cannot bind " + o.host + ":" + std::to_string(o.port) + " (" + ec.message() + ")");
  o.port = acc->local_endpoint().port();
  impl_->acceptor = std::move(acc);
  return o.port;
}

void HttpServer::start() {
  if (!impl_->acceptor) bind();
  std::lock_guard<std::mutex> lk(impl_->mu);
  if (impl_->started) return;
  impl_->started = true;
  impl_->accept();
  for (int i = 0; i < std::max(1, impl_->opt.io_threads); ++i)
    impl_->threads.emplace_back([impl = impl_.get()] {
      for (;;) {
        try {
          impl->ioc->run();
          return;
        } catch (const std::exception& e) {  // a handler threw on an I/O thread: log, keep serving
          std::fprintf(stderr, "v4host: I/O thread: %s\n", e.what());
        }
      }
    });
}

void HttpServer::run() {
  start();
  // Polls rather than waits so that request_stop() can be called from a signal handler.
  while (!impl_->stopping && !impl_->stop_requested) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  impl_->stop();
}

void HttpServer::request_stop() noexcept { impl_->stop_requested = true; }

void HttpServer::stop() { impl_->stop(); }

size_t HttpServer::connections() const { return impl_->nconn; }
const ServerOptions& HttpServer::options() const { return impl_->opt; }

}  // namespace v4::net
