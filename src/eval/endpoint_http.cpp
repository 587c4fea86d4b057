// The default transport of the evaluator: the project's blocking HTTP client (net::fetch).
#include <chrono>

#include "eval/endpoint.h"
#include "net/http_client.h"

namespace v4::eval {

HttpFn default_http() {
  return [](const std::string& method, const std::string& url, const HttpHeaders& headers, const std::string& body, double timeout_s) {
    net::ClientRequest req;
    req.method = method;
    req.url = url;
    for (const auto& h : headers) req.headers.push_back(h);
    req.body = body;
    const auto t = std::chrono::milliseconds(static_cast<long>(timeout_s * 1000));
    req.timeouts.connect = std::min(t, std::chrono::milliseconds(10'000));
    req.timeouts.first_byte = t;
    req.timeouts.total = t;
    net::Response r = net::fetch(req);
    HttpReply rep;
    if (!r.ok()) {
      rep.error = std::string(net::error_kind_name(r.error)) + ": " + r.error_message;
      return rep;
    }
    rep.status = r.status;
    rep.body = std::move(r.body);
    return rep;
  };
}

}  // namespace v4::eval
