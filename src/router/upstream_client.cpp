#include "router/upstream_client.h"

#include <chrono>

#include "net/http_client.h"

namespace v4::router {

namespace {

std::chrono::milliseconds ms(double s) { return std::chrono::milliseconds(static_cast<int64_t>(s * 1000)); }

UpError map_error(net::ErrorKind k) {
  using E = net::ErrorKind;
  switch (k) {
    case E::none: return UpError::none;
    case E::timeout_connect: case E::timeout_first_byte: case E::timeout_total: return UpError::timeout;
    case E::bad_url: case E::resolve: case E::connect: case E::tls: return UpError::connect;
    case E::io: return UpError::io;
    case E::protocol: return UpError::protocol;
    case E::cancelled: return UpError::cancelled;
  }
  return UpError::io;
}

UpResult convert(net::Response&& r) {
  UpResult u;
  u.error = map_error(r.error);
  u.error_message = std::move(r.error_message);
  u.status = r.status;
  u.headers = std::move(r.headers);
  u.body = std::move(r.body);
  return u;
}

struct Cancel final : UpCancel {
  std::shared_ptr<net::RequestHandle> h;
  void cancel() override {
    if (h) h->cancel();
  }
};

}  // namespace

std::string header_of(const HeaderList& h, std::string_view name) { return net::header_value(h, name); }

struct UpClient::Impl {
  net::HttpClient client;
  // The proxy forwards bytes and never reads on_body's instants: no kernel timestamps.
  explicit Impl(boost::asio::io_context& io) : client(io, net::ClientOptions{.kernel_timestamps = false}) {}
};

UpClient::UpClient(boost::asio::io_context& io) : impl_(std::make_unique<Impl>(io)) {}
UpClient::~UpClient() = default;

std::shared_ptr<UpCancel> UpClient::start(UpCall call, UpHandlers h) {
  net::ClientRequest r;
  r.method = std::move(call.method);
  r.url = std::move(call.url);
  r.headers = std::move(call.headers);
  r.body = std::move(call.body);
  r.timeouts.connect = ms(call.connect_s);
  r.timeouts.first_byte = ms(call.first_byte_s);
  r.timeouts.total = ms(call.total_s);
  net::Handlers nh;
  if (h.on_head) nh.on_head = [f = std::move(h.on_head)](const net::Response& head) { f(head.status, head.headers); };
  if (h.on_body) nh.on_body = [f = std::move(h.on_body)](std::string_view p, net::Clock::time_point) { f(p); };
  nh.on_done = [f = std::move(h.on_done)](net::Response&& r) { f(convert(std::move(r))); };
  auto c = std::make_shared<Cancel>();
  c->h = impl_->client.start(std::move(r), std::move(nh));
  return c;
}

UpResult post_json_blocking(const std::string& url, const std::string& body, double timeout_s) {
  net::Timeouts t;
  t.connect = t.first_byte = t.total = ms(timeout_s);
  return convert(net::post_json(url, body, {}, t));
}

UpResult get_blocking(const std::string& url, double timeout_s) {
  net::Timeouts t;
  t.connect = t.first_byte = t.total = ms(timeout_s);
  return convert(net::get(url, {}, t));
}

std::string url_origin(const std::string& url) {
  try {
    return net::Url::parse(url).origin();
  } catch (const std::exception&) {
    return "";
  }
}

}  // namespace v4::router
