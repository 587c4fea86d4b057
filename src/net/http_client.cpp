// HttpClient: one Exchange object per request, driven by asynchronous operations on one
// io_context. The response is parsed by a Beast basic_parser fed from our own socket reads, so the
// time each read completed is known when the parser hands out the body bytes it carried.
#include "net/http_client.h"
#include "net/http_exchange.h"  // iequals
#include "net/serialize.h"

#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/basic_parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <linux/net_tstamp.h>
#include <sys/socket.h>
#include <limits>
#include <map>
#include <optional>
#include <unordered_map>

#include "core/error.h"

namespace v4::net {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;

// ---------------------------------------------------------------------------------------------
// URL and headers

std::string Url::origin() const { return scheme + "://" + host + ":" + port; }

Url Url::parse(std::string_view s) {
  Url u;
  auto p = s.find("://");
  if (p == std::string_view::npos) throw InputError("URL '" + std::string(s) + "' has no scheme (expected http:// or https://)");
  u.scheme = std::string(s.substr(0, p));
  for (auto& c : u.scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (u.scheme != "http" && u.scheme != "https")
    throw InputError("URL '" + std::string(s) + "': unsupported scheme '" + u.scheme + "' (expected http or https)");
  std::string_view rest = s.substr(p + 3);
  auto slash = rest.find_first_of("/?");
  std::string_view authority = rest.substr(0, slash);
  u.target = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  if (!u.target.empty() && u.target[0] == '?') u.target = "/" + u.target;
  if (auto at = authority.rfind('@'); at != std::string_view::npos) authority = authority.substr(at + 1);
  if (authority.empty()) throw InputError("URL '" + std::string(s) + "' has no host");
  if (authority[0] == '[') {
    auto close = authority.find(']');
    if (close == std::string_view::npos) throw InputError("URL '" + std::string(s) + "': unterminated IPv6 literal");
    u.host = std::string(authority.substr(1, close - 1));
    auto after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') throw InputError("URL '" + std::string(s) + "': junk after IPv6 literal");
      u.port = std::string(after.substr(1));
    }
  } else {
    auto colon = authority.rfind(':');
    u.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) u.port = std::string(authority.substr(colon + 1));
  }
  if (u.host.empty()) throw InputError("URL '" + std::string(s) + "' has no host");
  if (u.port.empty()) u.port = u.tls() ? "443" : "80";
  for (char c : u.port)
    if (!std::isdigit(static_cast<unsigned char>(c))) throw InputError("URL '" + std::string(s) + "': bad port '" + u.port + "'");
  if (std::stoul(u.port) == 0 || std::stoul(u.port) > 65535) throw InputError("URL '" + std::string(s) + "': port out of range");
  return u;
}

std::string header_value(const ClientHeaders& h, std::string_view name) {
  for (const auto& [k, v] : h)
    if (iequals(k, name)) return v;
  return {};
}

const char* error_kind_name(ErrorKind k) {
  switch (k) {
    case ErrorKind::none: return "none";
    case ErrorKind::bad_url: return "bad_url";
    case ErrorKind::resolve: return "resolve";
    case ErrorKind::connect: return "connect";
    case ErrorKind::tls: return "tls";
    case ErrorKind::timeout_connect: return "timeout_connect";
    case ErrorKind::timeout_first_byte: return "timeout_first_byte";
    case ErrorKind::timeout_total: return "timeout_total";
    case ErrorKind::io: return "io";
    case ErrorKind::protocol: return "protocol";
    case ErrorKind::cancelled: return "cancelled";
  }
  return "?";
}

// ---------------------------------------------------------------------------------------------
// Connections and the pool

namespace {

struct Conn {
  std::string origin;
  std::unique_ptr<tcp::socket> plain;
  std::unique_ptr<ssl::stream<tcp::socket>> tls;
  bool kernel_ts = false;  // SO_TIMESTAMPING receive timestamps enabled (plain TCP)
  tcp::socket& lowest() { return tls ? tls->next_layer() : *plain; }
  // Runs f on whichever stream this connection uses (f is instantiated for both types).
  template <class F>
  void with(F&& f) {
    if (tls) f(*tls);
    else f(*plain);
  }
  void close() {
    error_code ec;
    lowest().shutdown(tcp::socket::shutdown_both, ec);
    lowest().close(ec);
  }
};

}  // namespace

struct HttpClient::Impl : std::enable_shared_from_this<HttpClient::Impl> {
  asio::io_context& io;
  ClientOptions opt;
  ssl::context tls_ctx{ssl::context::tls_client};
  std::unordered_map<std::string, std::vector<std::unique_ptr<Conn>>> idle;
  std::map<std::string, tcp::resolver::results_type> dns;  // host:port -> endpoints (client lifetime)
  tcp::resolver resolver;

  Impl(asio::io_context& io_, ClientOptions o) : io(io_), opt(std::move(o)), resolver(io_) {
    tls_ctx.set_default_verify_paths();
    tls_ctx.set_verify_mode(opt.verify_tls ? ssl::verify_peer : ssl::verify_none);
  }

  std::unique_ptr<Conn> take_idle(const std::string& origin) {
    auto it = idle.find(origin);
    if (it == idle.end() || it->second.empty()) return nullptr;
    auto c = std::move(it->second.back());
    it->second.pop_back();
    return c;
  }
  void put_idle(std::unique_ptr<Conn> c) {
    auto& v = idle[c->origin];
    if (v.size() >= opt.max_idle_per_origin) {
      c->close();
      return;
    }
    v.push_back(std::move(c));
  }
};

namespace {

class Exchange;

// Beast parser whose callbacks forward to the Exchange (body pieces carry the read instant).
class RespParser final : public http::basic_parser<false> {
 public:
  explicit RespParser(Exchange* ex) : ex_(ex) {}

 private:
  Exchange* ex_;
  void on_request_impl(http::verb, boost::beast::string_view, boost::beast::string_view, int, error_code&) override {}
  void on_response_impl(int code, boost::beast::string_view, int, error_code&) override;
  void on_field_impl(http::field, boost::beast::string_view name, boost::beast::string_view value, error_code&) override;
  void on_header_impl(error_code&) override;
  void on_body_init_impl(boost::optional<std::uint64_t> const&, error_code&) override {}
  std::size_t on_body_impl(boost::beast::string_view s, error_code&) override;
  void on_chunk_header_impl(std::uint64_t, boost::beast::string_view, error_code&) override {}
  std::size_t on_chunk_body_impl(std::uint64_t, boost::beast::string_view s, error_code&) override;
  void on_finish_impl(error_code&) override {}
};

class Exchange final : public RequestHandle, public std::enable_shared_from_this<Exchange> {
 public:
  Exchange(std::shared_ptr<HttpClient::Impl> client, ClientRequest req, Handlers h)
      : client_(std::move(client)), req_(std::move(req)), h_(std::move(h)), timer_(client_->io) {}

  void start() {
    resp_.t_start = Clock::now();
    try {
      url_ = Url::parse(req_.url);
    } catch (const std::exception& e) {
      auto self = shared_from_this();
      asio::post(client_->io, [self, msg = std::string(e.what())] { self->fail(ErrorKind::bad_url, msg); });
      return;
    }
    build_message();
    total_deadline_ = resp_.t_start + req_.timeouts.total;
    phase_ = Phase::connect;
    arm_timer(std::min(total_deadline_, resp_.t_start + req_.timeouts.connect));
    if (auto c = client_->take_idle(url_.origin())) {
      conn_ = std::move(c);
      resp_.reused_connection = true;
      connected();
    } else {
      open_connection();
    }
  }

  void cancel() override {
    auto self = shared_from_this();
    asio::post(client_->io, [self] { self->fail(ErrorKind::cancelled, "request cancelled"); });
  }

  // Parser callbacks.
  void on_status(int code) { resp_.status = code; }
  void on_field(std::string_view n, std::string_view v) { resp_.headers.emplace_back(std::string(n), std::string(v)); }
  void on_header() {
    resp_.t_head = read_at_;
    if (h_.on_head) h_.on_head(resp_);
  }
  void on_body(std::string_view s) {
    if (s.empty()) return;
    resp_.body_bytes += s.size();
    if (h_.on_body) h_.on_body(s, read_at_);
    else resp_.body.append(s);
  }

 private:
  enum class Phase { connect, first_byte, body };

  void build_message() {
    http::verb v = http::string_to_verb(req_.method);
    msg_.method(v == http::verb::unknown ? http::verb::get : v);
    if (v == http::verb::unknown) msg_.method_string(req_.method);
    msg_.target(url_.target);
    msg_.version(11);
    bool has_host = false, has_ua = false;
    for (const auto& [k, val] : req_.headers) {
      if (iequals(k, "host")) has_host = true;
      if (iequals(k, "user-agent")) has_ua = true;
      if (iequals(k, "content-length") || iequals(k, "transfer-encoding")) continue;
      msg_.insert(k, val);
    }
    if (!has_host) {
      bool default_port = (url_.tls() && url_.port == "443") || (!url_.tls() && url_.port == "80");
      std::string host = url_.host.find(':') != std::string::npos ? "[" + url_.host + "]" : url_.host;
      msg_.set(http::field::host, default_port ? host : host + ":" + url_.port);
    }
    if (!has_ua) msg_.set(http::field::user_agent, client_->opt.user_agent);
    msg_.body() = req_.body;
    if (!req_.body.empty() || msg_.method() == http::verb::post || msg_.method() == http::verb::put) msg_.prepare_payload();
    msg_.keep_alive(true);
  }

  void arm_timer(Clock::time_point when) {
    timer_.expires_at(when);
    auto self = shared_from_this();
    timer_.async_wait([self, gen = ++timer_gen_](error_code ec) {
      if (ec || self->done_ || gen != self->timer_gen_) return;
      switch (self->phase_) {
        case Phase::connect:
          if (Clock::now() >= self->total_deadline_) self->fail(ErrorKind::timeout_total, "total timeout while connecting to " + self->url_.origin());
          else self->fail(ErrorKind::timeout_connect, "connect timeout (" + std::to_string(self->req_.timeouts.connect.count()) + " ms) to " + self->url_.origin());
          break;
        case Phase::first_byte:
          if (Clock::now() >= self->total_deadline_) self->fail(ErrorKind::timeout_total, "total timeout waiting for the response of " + self->req_.url);
          else self->fail(ErrorKind::timeout_first_byte, "no response byte within " + std::to_string(self->req_.timeouts.first_byte.count()) + " ms from " + self->req_.url);
          break;
        case Phase::body:
          self->fail(ErrorKind::timeout_total, "total timeout (" + std::to_string(self->req_.timeouts.total.count()) + " ms) reading " + self->req_.url);
          break;
      }
    });
  }

  void open_connection() {
    resp_.reused_connection = false;
    conn_ = std::make_unique<Conn>();
    conn_->origin = url_.origin();
    if (url_.tls()) {
      conn_->tls = std::make_unique<ssl::stream<tcp::socket>>(client_->io, client_->tls_ctx);
      if (!SSL_set_tlsext_host_name(conn_->tls->native_handle(), url_.host.c_str())) {
        fail(ErrorKind::tls, "cannot set TLS server name " + url_.host);
        return;
      }
      if (client_->opt.verify_tls) conn_->tls->set_verify_callback(ssl::host_name_verification(url_.host));
    } else {
      conn_->plain = std::make_unique<tcp::socket>(client_->io);
    }
    std::string key = url_.host + ":" + url_.port;
    auto it = client_->dns.find(key);
    if (it != client_->dns.end()) {
      connect_to(it->second);
      return;
    }
    auto self = shared_from_this();
    client_->resolver.async_resolve(url_.host, url_.port, [self, key](error_code ec, tcp::resolver::results_type res) {
      if (self->done_) return;
      if (ec) {
        self->fail(ErrorKind::resolve, "cannot resolve host '" + self->url_.host + "': " + ec.message());
        return;
      }
      self->client_->dns[key] = res;
      self->connect_to(res);
    });
  }

  void connect_to(const tcp::resolver::results_type& eps) {
    auto self = shared_from_this();
    asio::async_connect(conn_->lowest(), eps, [self](error_code ec, const tcp::endpoint&) {
      if (self->done_) return;
      if (ec) {
        self->fail(ErrorKind::connect, "cannot connect to " + self->url_.origin() + ": " + ec.message());
        return;
      }
      error_code ig;
      self->conn_->lowest().set_option(tcp::no_delay(true), ig);
      if (!self->conn_->tls && self->client_->opt.kernel_timestamps) {
        int flags = SOF_TIMESTAMPING_RX_SOFTWARE | SOF_TIMESTAMPING_SOFTWARE;
        self->conn_->kernel_ts = ::setsockopt(self->conn_->plain->native_handle(), SOL_SOCKET, SO_TIMESTAMPING, &flags, sizeof flags) == 0;
      }
      if (self->conn_->tls) {
        self->conn_->tls->async_handshake(ssl::stream_base::client, [self](error_code ec2) {
          if (self->done_) return;
          if (ec2) {
            self->fail(ErrorKind::tls, "TLS handshake with " + self->url_.origin() + " failed: " + ec2.message());
            return;
          }
          self->connected();
        });
      } else {
        self->connected();
      }
    });
  }

  void connected() {
    resp_.t_connected = Clock::now();
    auto self = shared_from_this();
    if (wire_.empty()) serialize_to(msg_, wire_);  // once: a stale pooled connection's retry resends the same bytes
    conn_->with([&](auto& stream) {
      asio::async_write(stream, asio::buffer(wire_), [self](error_code ec, std::size_t) {
        if (self->done_) return;
        if (ec) {
          if (self->retry_stale()) return;
          self->fail(ErrorKind::io, "sending the request to " + self->url_.origin() + " failed: " + ec.message());
          return;
        }
        self->sent();
      });
    });
  }

  void sent() {
    resp_.t_sent = Clock::now();
    phase_ = Phase::first_byte;
    arm_timer(std::min(total_deadline_, resp_.t_sent + req_.timeouts.first_byte));
    parser_.emplace(this);
    parser_->eager(true);
    parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
    parser_->header_limit(256 * 1024);
    if (msg_.method() == http::verb::head) parser_->skip(true);
    read_more();
  }

  void read_more() {
    auto self = shared_from_this();
    if (!conn_->tls && conn_->kernel_ts) {
      // Plain TCP: wait for readability, then recvmsg ourselves to get the kernel's receive
      // timestamp of the data (immune to this thread being scheduled late).
      conn_->plain->async_wait(tcp::socket::wait_read, [self](error_code ec) {
        if (self->done_) return;
        if (ec) {
          self->on_read(ec, 0, Clock::now());
          return;
        }
        self->recv_now();
      });
      return;
    }
    auto bufs = buf_.prepare(64 * 1024);
    conn_->with([&](auto& stream) {
      stream.async_read_some(bufs, [self](error_code ec, std::size_t n) { self->on_read(ec, n, Clock::now()); });
    });
  }

  void recv_now() {
    auto bufs = buf_.prepare(64 * 1024);
    iovec iov{bufs.data(), bufs.size()};
    alignas(cmsghdr) char ctrl[256];
    msghdr m{};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = ctrl;
    m.msg_controllen = sizeof ctrl;
    ssize_t n = ::recvmsg(conn_->plain->native_handle(), &m, MSG_DONTWAIT);
    Clock::time_point now = Clock::now();
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
        read_more();
        return;
      }
      on_read(error_code(errno, boost::system::system_category()), 0, now);
      return;
    }
    if (n == 0) {
      on_read(asio::error::eof, 0, now);
      return;
    }
    Clock::time_point at = now;
    for (cmsghdr* c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPING) {
        timespec ts[3];
        std::memcpy(ts, CMSG_DATA(c), sizeof ts);
        if (ts[0].tv_sec == 0 && ts[0].tv_nsec == 0) break;
        // Kernel time is CLOCK_REALTIME: its age now, subtracted from the steady clock.
        timespec rt;
        clock_gettime(CLOCK_REALTIME, &rt);
        int64_t age_ns = (rt.tv_sec - ts[0].tv_sec) * 1'000'000'000LL + (rt.tv_nsec - ts[0].tv_nsec);
        if (age_ns >= 0 && age_ns < 60'000'000'000LL) at = now - std::chrono::nanoseconds(age_ns);
      }
    }
    on_read({}, static_cast<std::size_t>(n), at);
  }

  void on_read(error_code ec, std::size_t n, Clock::time_point at) {
    if (done_) return;
    read_at_ = at;
    if (n > 0) {
      buf_.commit(n);
      got_bytes_ = true;
      if (phase_ == Phase::first_byte) {
        resp_.t_first_byte = read_at_;
        phase_ = Phase::body;
        arm_timer(total_deadline_);
      }
      if (!parse_buffered()) return;
      if (parser_->is_done()) {
        finish(true);
        return;
      }
    }
    if (ec) {
      bool eof = ec == asio::error::eof || ec == ssl::error::stream_truncated;
      if (!got_bytes_ && retry_stale()) return;
      if (eof && parser_->got_some()) {
        error_code pe;
        parser_->put_eof(pe);
        if (!pe && parser_->is_done()) {
          finish(false);
          return;
        }
      }
      fail(ErrorKind::io, std::string(got_bytes_ ? "connection closed mid-response" : "connection closed before a response") +
                              " from " + url_.origin() + ": " + ec.message());
      return;
    }
    read_more();
  }

  // Feeds buffered bytes to the parser; false when it failed (and the exchange is finished).
  bool parse_buffered() {
    while (buf_.size() > 0 && !parser_->is_done()) {
      error_code pe;
      std::size_t used = parser_->put(buf_.data(), pe);
      buf_.consume(used);
      if (done_) return false;  // a handler cancelled
      if (pe == http::error::need_more) break;
      if (pe) {
        fail(ErrorKind::protocol, "malformed HTTP response from " + url_.origin() + ": " + pe.message());
        return false;
      }
      if (used == 0) break;
    }
    return true;
  }

  // A pooled connection the server had closed: retry once on a fresh one.
  bool retry_stale() {
    if (!resp_.reused_connection || retried_ || got_bytes_) return false;
    retried_ = true;
    conn_->close();
    old_conns_.push_back(std::move(conn_));
    buf_.consume(buf_.size());
    parser_.reset();
    phase_ = Phase::connect;
    arm_timer(std::min(total_deadline_, Clock::now() + req_.timeouts.connect));
    open_connection();
    return true;
  }

  void finish(bool may_keep) {
    done_ = true;
    ++timer_gen_;
    timer_.cancel();
    resp_.t_end = read_at_;
    bool keep = may_keep && parser_->keep_alive() && buf_.size() == 0;
    if (keep) client_->put_idle(std::move(conn_));
    else if (conn_) conn_->close();
    deliver();
  }

  void fail(ErrorKind k, std::string msg) {
    if (done_) return;
    done_ = true;
    ++timer_gen_;
    timer_.cancel();
    if (conn_) conn_->close();  // pending operations complete with errors and see done_
    resp_.error = k;
    resp_.error_message = std::move(msg);
    resp_.t_end = Clock::now();
    deliver();
  }

  void deliver() {
    auto h = std::move(h_.on_done);
    h_ = {};
    if (h) h(std::move(resp_));
  }

  std::shared_ptr<HttpClient::Impl> client_;
  ClientRequest req_;
  Handlers h_;
  Url url_;
  http::request<http::string_body> msg_;
  std::string wire_;  // msg_ serialised (serialize.h)
  asio::steady_timer timer_;
  uint64_t timer_gen_ = 0;
  Phase phase_ = Phase::connect;
  Clock::time_point total_deadline_;
  std::unique_ptr<Conn> conn_;
  std::vector<std::unique_ptr<Conn>> old_conns_;  // closed, kept until pending handlers ran
  boost::beast::flat_buffer buf_;
  std::optional<RespParser> parser_;
  Clock::time_point read_at_;
  Response resp_;
  bool done_ = false, retried_ = false, got_bytes_ = false;
};

void RespParser::on_response_impl(int code, boost::beast::string_view, int, error_code&) { ex_->on_status(code); }
void RespParser::on_field_impl(http::field, boost::beast::string_view n, boost::beast::string_view v, error_code&) {
  ex_->on_field({n.data(), n.size()}, {v.data(), v.size()});
}
void RespParser::on_header_impl(error_code&) { ex_->on_header(); }
std::size_t RespParser::on_body_impl(boost::beast::string_view s, error_code&) {
  ex_->on_body({s.data(), s.size()});
  return s.size();
}
std::size_t RespParser::on_chunk_body_impl(std::uint64_t, boost::beast::string_view s, error_code&) {
  ex_->on_body({s.data(), s.size()});
  return s.size();
}

}  // namespace

// ---------------------------------------------------------------------------------------------

HttpClient::HttpClient(asio::io_context& io, ClientOptions opt) : impl_(std::make_shared<Impl>(io, std::move(opt))) {}
HttpClient::~HttpClient() { close_idle(); }

std::shared_ptr<RequestHandle> HttpClient::start(ClientRequest req, Handlers h) {
  auto ex = std::make_shared<Exchange>(impl_, std::move(req), std::move(h));
  ex->start();
  return ex;
}

size_t HttpClient::idle_connections() const {
  size_t n = 0;
  for (const auto& [k, v] : impl_->idle) n += v.size();
  return n;
}

void HttpClient::close_idle() {
  for (auto& [k, v] : impl_->idle)
    for (auto& c : v) c->close();
  impl_->idle.clear();
}

Response fetch(const ClientRequest& req, ClientOptions opt) {
  asio::io_context io;
  Response out;
  {
    HttpClient c(io, std::move(opt));
    Handlers h;
    h.on_done = [&](Response&& r) { out = std::move(r); };
    c.start(req, std::move(h));
    io.run();
  }
  return out;
}

Response get(const std::string& url, const ClientHeaders& headers, Timeouts t) {
  ClientRequest r;
  r.url = url;
  r.headers = headers;
  r.timeouts = t;
  return fetch(r);
}

Response post_json(const std::string& url, const std::string& json, const ClientHeaders& headers, Timeouts t) {
  ClientRequest r;
  r.method = "POST";
  r.url = url;
  r.headers = headers;
  if (header_value(r.headers, "content-type").empty()) r.headers.emplace_back("Content-Type", "application/json");
  r.body = json;
  r.timeouts = t;
  return fetch(r);
}

}  // namespace v4::net
