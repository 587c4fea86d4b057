// A scripted OpenAI-compatible endpoint whose answers are known: GET /v1/models and
// POST /v1/chat/completions answered by a test-supplied function of the request body, in the
// wire format of the real API (choices[0].message with content / reasoning_content / tool_calls,
// finish_reason, usage). Blocking Beast server, one thread per connection, keep-alive.
#pragma once
#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <functional>
#include <list>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

namespace v4::test {

using OJson = nlohmann::ordered_json;

// What the scripted model says: text, optional reasoning and tool calls ({name, arguments}).
struct Reply {
  std::string content;
  std::string reasoning;
  OJson tool_calls = OJson::array();
  int status = 200;  // non-200: an error body with this status
};

class AnswerServer {
 public:
  using Fn = std::function<Reply(const OJson& body)>;
  explicit AnswerServer(Fn fn, long context = 0) : fn_(std::move(fn)), context_(context), acc_(io_) {
    namespace asio = boost::asio;
    asio::ip::tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), 0);
    acc_.open(ep.protocol());
    acc_.set_option(asio::socket_base::reuse_address(true));
    acc_.bind(ep);
    acc_.listen(64);
    port_ = acc_.local_endpoint().port();
    th_ = std::thread([this] { loop(); });
  }
  ~AnswerServer() {
    stop_ = true;
    boost::system::error_code ec;
    // Wake the accept with a connection to ourselves.
    boost::asio::ip::tcp::socket s(io_);
    s.connect({boost::asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port_)}, ec);
    th_.join();
    std::lock_guard<std::mutex> l(mu_);
    for (auto& c : conns_) {
      boost::system::error_code e2;
      c.sock->shutdown(boost::asio::ip::tcp::socket::shutdown_both, e2);
    }
    for (auto& c : conns_) c.th.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/v1"; }
  // Request bodies received on /v1/chat/completions, in order.
  std::vector<OJson> bodies() const {
    std::lock_guard<std::mutex> l(mu_);
    return bodies_;
  }
  size_t requests() const {
    std::lock_guard<std::mutex> l(mu_);
    return bodies_.size();
  }

 private:
  struct Conn {
    std::shared_ptr<boost::asio::ip::tcp::socket> sock;
    std::thread th;
  };
  void loop() {
    for (;;) {
      auto sock = std::make_shared<boost::asio::ip::tcp::socket>(io_);
      boost::system::error_code ec;
      acc_.accept(*sock, ec);
      if (stop_ || ec) return;
      std::lock_guard<std::mutex> l(mu_);
      conns_.push_back({sock, std::thread([this, sock] { serve(*sock); })});
    }
  }
  void serve(boost::asio::ip::tcp::socket& sock) {
    namespace http = boost::beast::http;
    boost::beast::flat_buffer buf;
    for (;;) {
      http::request<http::string_body> req;
      boost::system::error_code ec;
      http::read(sock, buf, req, ec);
      if (ec) return;
      http::response<http::string_body> res;
      res.version(11);
      res.set(http::field::content_type, "application/json");
      res.set(http::field::server, "answer-server");
      std::string target(req.target());
      if (req.method() == http::verb::get && target == "/v1/models") {
        OJson m = {{"id", "scripted"}, {"object", "model"}, {"owned_by", "test"}};
        if (context_ > 0) m["max_model_len"] = context_;
        res.result(200);
        res.body() = OJson{{"object", "list"}, {"data", OJson::array({m})}}.dump();
      } else if (req.method() == http::verb::post && target == "/v1/chat/completions") {
        OJson body;
        try {
          body = OJson::parse(req.body());
        } catch (...) {
          res.result(400);
          res.body() = R"({"error":{"message":"bad json"}})";
        }
        if (!body.is_null()) {
          {
            std::lock_guard<std::mutex> l(mu_);
            bodies_.push_back(body);
          }
          Reply r = fn_(body);
          if (r.status != 200) {
            res.result(r.status);
            res.body() = OJson{{"error", {{"message", "scripted failure"}, {"type", "server_error"}}}}.dump();
          } else {
            OJson msg = {{"role", "assistant"}, {"content", r.content}};
            if (!r.reasoning.empty()) msg["reasoning_content"] = r.reasoning;
            if (!r.tool_calls.empty()) {
              OJson tcs = OJson::array();
              int i = 0;
              for (const auto& c : r.tool_calls)
                tcs.push_back({{"id", "call_" + std::to_string(i++)}, {"type", "function"},
                               {"function", {{"name", c["name"]}, {"arguments", c["arguments"].dump()}}}});
              msg["tool_calls"] = tcs;
              msg["content"] = nullptr;
            }
            res.result(200);
            res.body() = OJson{{"id", "chatcmpl-1"}, {"object", "chat.completion"}, {"model", body.value("model", "")},
                               {"choices", OJson::array({{{"index", 0}, {"message", msg}, {"finish_reason", r.tool_calls.empty() ? "stop" : "tool_calls"}}})},
                               {"usage", {{"prompt_tokens", 10}, {"completion_tokens", 3}, {"total_tokens", 13}}}}
                              .dump();
          }
        }
      } else {
        res.result(404);
        res.body() = R"({"error":{"message":"not found"}})";
      }
      res.keep_alive(req.keep_alive());
      res.prepare_payload();
      http::write(sock, res, ec);
      if (ec || !req.keep_alive()) return;
    }
  }
  Fn fn_;
  long context_;
  boost::asio::io_context io_;
  boost::asio::ip::tcp::acceptor acc_;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread th_;
  mutable std::mutex mu_;
  std::list<Conn> conns_;
  std::vector<OJson> bodies_;
};

// The last user message's text of a chat request.
inline std::string last_user(const OJson& body) {
  std::string s;
  for (const auto& m : body["messages"])
    if (m.value("role", "") == "user" && m["content"].is_string()) s = m["content"].get<std::string>();
  return s;
}

}  // namespace v4::test
