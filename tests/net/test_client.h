// A minimal blocking HTTP/1.1 client for tests (Boost.Beast, one connection per request): just
// enough to drive the in-process servers; the project's real client is src/net/http_client.h.
#pragma once
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace v4::test {

using Headers = std::vector<std::pair<std::string, std::string>>;

struct HttpResult {
  int status = 0;
  std::string body;
  Headers headers;
  std::string header(const std::string& name) const {
    for (auto& [k, v] : headers)
      if (boost::beast::iequals(k, name)) return v;
    return "";
  }
};

class HttpClient {
 public:
  HttpClient(std::string host, int port) : host_(std::move(host)), port_(port) {}
  void set_read_timeout(int secs, int = 0) { timeout_s_ = secs; }

  std::optional<HttpResult> request(const std::string& method, const std::string& target, const Headers& h = {},
                                    const std::string& body = "", const std::string& ctype = "") {
    namespace beast = boost::beast;
    namespace http = beast::http;
    namespace asio = boost::asio;
    try {
      asio::io_context ioc;
      beast::tcp_stream s(ioc);
      s.expires_after(std::chrono::seconds(timeout_s_));
      s.connect(asio::ip::tcp::endpoint(asio::ip::make_address(host_), static_cast<unsigned short>(port_)));
      http::request<http::string_body> req(http::string_to_verb(method), target, 11);
      req.set(http::field::host, host_ + ":" + std::to_string(port_));
      for (auto& [k, v] : h) req.set(k, v);
      if (!ctype.empty()) req.set(http::field::content_type, ctype);
      req.body() = body;
      if (!body.empty() || method == "POST" || method == "PUT") req.prepare_payload();
      http::write(s, req);
      beast::flat_buffer buf;
      http::response_parser<http::string_body> p;
      p.body_limit(1u << 30);
      p.skip(method == "HEAD");
      http::read(s, buf, p);
      HttpResult r;
      auto& m = p.get();
      r.status = static_cast<int>(m.result_int());
      r.body = m.body();
      for (auto& f : m) r.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
      beast::error_code ec;
      s.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ec);
      return r;
    } catch (const std::exception&) {
      return std::nullopt;
    }
  }
  std::optional<HttpResult> Get(const std::string& path, const Headers& h = {}) { return request("GET", path, h); }
  std::optional<HttpResult> Post(const std::string& path, const Headers& h, const std::string& body, const std::string& ctype) {
    return request("POST", path, h, body, ctype);
  }
  std::optional<HttpResult> Post(const std::string& path, const std::string& body, const std::string& ctype) {
    return request("POST", path, {}, body, ctype);
  }

 private:
  std::string host_;
  int port_;
  int timeout_s_ = 120;
};

}  // namespace v4::test
