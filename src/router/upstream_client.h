// The router's view of the HTTP client (src/net/http_client.h): requests to upstreams on the
// router's upstream io_context. A separate translation unit because net/http_client.h and
// net/http_exchange.h (the server side) used to both declare v4::net::Request and v4::net::Headers
// (the client types are now net::ClientRequest / net::ClientHeaders).
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace boost::asio {
class io_context;
}

namespace v4::router {

using HeaderList = std::vector<std::pair<std::string, std::string>>;
std::string header_of(const HeaderList& h, std::string_view name);  // case-insensitive, "" if absent

struct UpCall {
  std::string method = "POST", url, body;
  HeaderList headers;
  double connect_s = 5, first_byte_s = 60, total_s = 600;
};

enum class UpError { none, timeout, connect, io, protocol, cancelled };

struct UpResult {
  UpError error = UpError::none;
  std::string error_message;
  int status = 0;
  HeaderList headers;
  std::string body;  // only when no on_body handler was given
  bool ok() const { return error == UpError::none; }
};

struct UpHandlers {
  std::function<void(int status, const HeaderList& headers)> on_head;
  std::function<void(std::string_view piece)> on_body;
  std::function<void(UpResult&&)> on_done;
};

class UpCancel {
 public:
  virtual ~UpCancel() = default;
  virtual void cancel() = 0;
};

class UpClient {
 public:
  explicit UpClient(boost::asio::io_context& io);
  ~UpClient();
  // Runs on the io_context's thread; handlers too.
  std::shared_ptr<UpCancel> start(UpCall call, UpHandlers h);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Blocking POST (own io_context), for classifier endpoints.
UpResult post_json_blocking(const std::string& url, const std::string& body, double timeout_s);
UpResult get_blocking(const std::string& url, double timeout_s);
// scheme://host:port of a URL; "" if it does not parse.
std::string url_origin(const std::string& url);

}  // namespace v4::router
