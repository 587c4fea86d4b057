// A scripted OpenAI/Anthropic-style streaming endpoint for client and bench tests, built on
// Boost.Beast: it answers POST /v1/chat/completions, /v1/completions, /v1/responses, /v1/messages
// and GET /v1/models with the wire format of the real APIs, on a KNOWN timing schedule measured from
// the moment the request was fully received:
//
//   t0            headers + an empty "role" chunk (as real servers send; must not count as a token)
//   t0 + d        first reasoning chunk (or first answer chunk when reasoning_chunks == 0)
//   t0 + d + i*iv chunk i (reasoning chunks first, then answer chunks)
//   after the last chunk: the finish chunk with usage, then the terminator ([DONE] / message_stop)
//
// Each chunk carries `tokens_per_chunk` words ("tok "), counted as that many tokens in usage. The
// number of answer chunks is Schedule::answer_chunks, or, when `follow_max_tokens` is set, the
// request's max_tokens / tokens_per_chunk. Non-streaming requests get the whole answer after the
// schedule. It runs `threads` io_contexts on as many threads (connections are spread over them);
// deadlines are absolute steady-clock instants, so a late timer does not shift the following
// chunks.
//
// ScriptedEndpointProcess runs one in a child process of its own session (so it is scheduled apart
// from the client under test, as a real server is) and brings the write times back at the end.
#pragma once
#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstring>
#include <sys/wait.h>
#include <unistd.h>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

namespace v4::testing {

struct Schedule {
  double first_token_ms = 50;   // d
  double interval_ms = 10;      // iv
  int reasoning_chunks = 0;
  int answer_chunks = 8;
  int tokens_per_chunk = 1;
  bool follow_max_tokens = false;
  int prompt_tokens = 12;       // reported in usage
  int cached_tokens = 0;        // reported as prompt_tokens_details.cached_tokens
  std::string model = "scripted-model";
  int error_status = 0;         // non-zero: answer every POST with this status and an error body
  bool close_after_response = false;  // Connection: close
};

class ScriptedEndpoint {
 public:
  explicit ScriptedEndpoint(Schedule s = {}, int threads = 1) : sched_(std::move(s)), acceptor_(io_) {
    namespace asio = boost::asio;
    for (int i = 1; i < threads; ++i) {
      extra_.push_back(std::make_unique<asio::io_context>(1));
      guards_.emplace_back(asio::make_work_guard(*extra_.back()));
    }
    asio::ip::tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), 0);
    acceptor_.open(ep.protocol());
    acceptor_.set_option(asio::socket_base::reuse_address(true));
    acceptor_.bind(ep);
    acceptor_.listen(4096);
    port_ = acceptor_.local_endpoint().port();
    accept();
    thread_ = std::thread([this] { io_.run(); });
    for (auto& io : extra_) threads_.emplace_back([p = io.get()] { p->run(); });
  }
  ~ScriptedEndpoint() {
    boost::asio::post(io_, [this] {
      boost::system::error_code ec;
      acceptor_.close(ec);
      io_.stop();
    });
    thread_.join();
    for (auto& io : extra_) io->stop();
    for (auto& t : threads_) t.join();
  }
  int port() const { return port_; }
  std::string base_url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  uint64_t requests() const { return requests_.load(); }
  uint64_t connections() const { return connections_.load(); }
  size_t max_open_streams() const { return max_streams_.load(); }
  // Bodies of the requests received so far (JSON text), in arrival order.
  std::vector<std::string> bodies() const {
    std::lock_guard<std::mutex> l(mu_);
    return bodies_;
  }
  // Steady-clock instants at which each scheduled piece of the request with this X-Request-Id was
  // written, then the finish/terminator write (empty if unknown).
  std::vector<std::chrono::steady_clock::time_point> sent_times(const std::string& id) const {
    std::lock_guard<std::mutex> l(mu_);
    auto it = sent_.find(id);
    return it == sent_.end() ? std::vector<std::chrono::steady_clock::time_point>{} : it->second;
  }
  // The instants those pieces were scheduled for (the absolute deadlines; sent_times minus these is
  // how late this server's own timer thread was), one per scheduled piece.
  std::vector<std::chrono::steady_clock::time_point> scheduled_times(const std::string& id) const {
    std::lock_guard<std::mutex> l(mu_);
    auto it = scheduled_.find(id);
    return it == scheduled_.end() ? std::vector<std::chrono::steady_clock::time_point>{} : it->second;
  }
  std::map<std::string, std::vector<std::chrono::steady_clock::time_point>> all_sent_times() const {
    std::lock_guard<std::mutex> l(mu_);
    return sent_;
  }

 private:
  using tcp = boost::asio::ip::tcp;
  using json = nlohmann::json;
  struct Session : std::enable_shared_from_this<Session> {
    ScriptedEndpoint* ep;
    tcp::socket sock;
    boost::beast::flat_buffer buf;
    boost::beast::http::request<boost::beast::http::string_body> req;
    boost::asio::steady_timer timer;
    // SSE events to send, one per scheduled chunk, chunk-framed; shared by every request with the
    // same API and length (built once: building them per request was most of this server's CPU).
    std::shared_ptr<const std::vector<std::string>> events;
    std::vector<std::chrono::steady_clock::time_point> at;
    std::string tail;                 // finish + terminator, sent right after the last chunk
    size_t next = 0;
    std::string id;
    std::vector<std::chrono::steady_clock::time_point> sent;
    std::string out;                  // keeps write buffers alive
    Session(ScriptedEndpoint* e, tcp::socket s) : ep(e), sock(std::move(s)), timer(sock.get_executor()) {}

    void read() {
      req = {};
      auto self = shared_from_this();
      boost::beast::http::async_read(sock, buf, req, [self](boost::system::error_code ec, size_t) {
        if (ec) return;
        self->handle();
      });
    }
    void write_raw(std::string s, std::function<void()> then) {
      auto self = shared_from_this();
      auto p = std::make_shared<std::string>(std::move(s));
      boost::asio::async_write(sock, boost::asio::buffer(*p), [self, p, then](boost::system::error_code ec, size_t) {
        if (!ec && then) then();
      });
    }
    std::string header(int status, const std::string& ctype, bool chunked, size_t len) {
      std::string h = "HTTP/1.1 " + std::to_string(status) + (status == 200 ? " OK" : " Error") + "\r\nContent-Type: " + ctype +
                      "\r\nServer: scripted-endpoint\r\nx-request-id: r" + std::to_string(ep->requests_.load()) + "\r\n";
      h += chunked ? "Transfer-Encoding: chunked\r\n" : "Content-Length: " + std::to_string(len) + "\r\n";
      if (ep->sched_.close_after_response) h += "Connection: close\r\n";
      return h + "\r\n";
    }
    static std::string chunk(const std::string& s) {
      char b[32];
      std::snprintf(b, sizeof b, "%zx\r\n", s.size());
      return b + s + "\r\n";
    }
    void simple(int status, const std::string& body) {
      auto self = shared_from_this();
      write_raw(header(status, "application/json", false, body.size()) + body, [self] { self->after(); });
    }
    void after() {
      if (ep->sched_.close_after_response) {
        boost::system::error_code ec;
        sock.shutdown(tcp::socket::shutdown_both, ec);
        return;
      }
      read();
    }
    void handle() {
      const Schedule& s = ep->sched_;
      auto t0 = std::chrono::steady_clock::now();
      std::string target(req.target());
      if (req.method() == boost::beast::http::verb::get && target == "/v1/models") {
        json j = {{"object", "list"}, {"data", json::array({{{"id", s.model}, {"object", "model"}, {"owned_by", "scripted"}}})}};
        simple(200, j.dump());
        return;
      }
      if (req.method() != boost::beast::http::verb::post) {
        simple(404, R"({"error":{"message":"not found","type":"invalid_request_error"}})");
        return;
      }
      ep->requests_++;
      {
        std::lock_guard<std::mutex> l(ep->mu_);
        ep->bodies_.push_back(req.body());
      }
      json body = json::parse(req.body(), nullptr, false);
      if (body.is_discarded()) {
        simple(400, R"({"error":{"message":"invalid JSON","type":"invalid_request_error"}})");
        return;
      }
      if (s.error_status) {
        simple(s.error_status, R"({"error":{"message":"scripted failure","type":"server_error"}})");
        return;
      }
      if (body.value("model", std::string()) != s.model) {
        simple(404, R"({"error":{"message":"The model does not exist","type":"invalid_request_error","code":"model_not_found"}})");
        return;
      }
      std::string api = target.find("chat/completions") != std::string::npos ? "chat"
                        : target.find("completions") != std::string::npos   ? "completions"
                        : target.find("responses") != std::string::npos     ? "responses"
                        : target.find("messages") != std::string::npos      ? "messages"
                                                                             : "";
      if (api.empty()) {
        simple(404, R"({"error":{"message":"unknown route","type":"invalid_request_error"}})");
        return;
      }
      int answer = s.answer_chunks;
      int mt = body.value("max_tokens", body.value("max_completion_tokens", body.value("max_output_tokens", 0)));
      if (s.follow_max_tokens && mt > 0) answer = std::max(1, mt / s.tokens_per_chunk);
      const int R = s.reasoning_chunks, N = R + answer, k = s.tokens_per_chunk;
      std::string words;
      for (int i = 0; i < k; ++i) words += "tok ";
      const int out_tokens = N * k, reasoning_tokens = R * k;
      bool stream = body.value("stream", false);
      auto at_i = [&](int i) {
        return t0 + std::chrono::microseconds(static_cast<int64_t>((s.first_token_ms + i * s.interval_ms) * 1000));
      };
      json usage_openai = {{"prompt_tokens", s.prompt_tokens}, {"completion_tokens", out_tokens}, {"total_tokens", s.prompt_tokens + out_tokens},
                           {"prompt_tokens_details", {{"cached_tokens", s.cached_tokens}}},
                           {"completion_tokens_details", {{"reasoning_tokens", reasoning_tokens}}}};
      if (!stream) {
        std::string reasoning, answer_text;
        for (int i = 0; i < R; ++i) reasoning += words;
        for (int i = 0; i < answer; ++i) answer_text += words;
        json r;
        if (api == "chat") r = {{"id", "c1"}, {"object", "chat.completion"}, {"model", s.model},
                                {"choices", json::array({{{"index", 0}, {"message", {{"role", "assistant"}, {"content", answer_text}, {"reasoning_content", reasoning}}}, {"finish_reason", "length"}}})},
                                {"usage", usage_openai}};
        else if (api == "completions") r = {{"id", "c1"}, {"object", "text_completion"}, {"model", s.model}, {"choices", json::array({{{"index", 0}, {"text", answer_text}, {"finish_reason", "length"}}})}, {"usage", usage_openai}};
        else if (api == "messages") r = {{"id", "m1"}, {"type", "message"}, {"role", "assistant"}, {"model", s.model},
                                         {"content", json::array({{{"type", "text"}, {"text", answer_text}}})}, {"stop_reason", "max_tokens"},
                                         {"usage", {{"input_tokens", s.prompt_tokens}, {"output_tokens", out_tokens}}}};
        else r = {{"id", "r1"}, {"object", "response"}, {"status", "completed"}, {"output", json::array({{{"type", "message"}, {"content", json::array({{{"type", "output_text"}, {"text", answer_text}}})}}})},
                  {"usage", {{"input_tokens", s.prompt_tokens}, {"output_tokens", out_tokens}}}};
        auto self = shared_from_this();
        std::string b = r.dump();
        timer.expires_at(at_i(N - 1));
        timer.async_wait([self, b](boost::system::error_code ec) {
          if (!ec) self->simple(200, b);
        });
        return;
      }
      at.clear();
      sent.clear();
      at.reserve(N);
      sent.reserve(N + 1);
      id = std::string(req["X-Request-Id"]);
      next = 0;
      auto sse = [](const std::string& ev, const json& j) { return (ev.empty() ? std::string() : "event: " + ev + "\n") + "data: " + j.dump() + "\n\n"; };
      std::string first;
      if (api == "chat") first = sse("", {{"id", "c1"}, {"object", "chat.completion.chunk"}, {"model", s.model}, {"choices", json::array({{{"index", 0}, {"delta", {{"role", "assistant"}, {"content", ""}}}, {"finish_reason", nullptr}}})}});
      else if (api == "messages") first = sse("message_start", {{"type", "message_start"}, {"message", {{"id", "m1"}, {"type", "message"}, {"role", "assistant"}, {"model", s.model}, {"content", json::array()}, {"usage", {{"input_tokens", s.prompt_tokens}, {"output_tokens", 1}}}}}});
      else if (api == "responses") first = sse("response.created", {{"type", "response.created"}, {"response", {{"id", "r1"}, {"status", "in_progress"}}}});
      std::unique_lock<std::mutex> cache_lock(ep->cache_mu_);
      auto& cached = ep->events_cache_[api + ":" + std::to_string(answer)];
      const bool build = !cached;
      std::vector<std::string> built;
      for (int i = 0; i < N; ++i) at.push_back(at_i(i));
      for (int i = 0; build && i < N; ++i) {
        bool reasoning = i < R;
        std::string e;
        if (api == "chat") e = sse("", {{"id", "c1"}, {"object", "chat.completion.chunk"}, {"model", s.model}, {"choices", json::array({{{"index", 0}, {"delta", {{reasoning ? "reasoning_content" : "content", words}}}, {"finish_reason", nullptr}}})}});
        else if (api == "completions") e = sse("", {{"id", "c1"}, {"object", "text_completion"}, {"model", s.model}, {"choices", json::array({{{"index", 0}, {"text", words}, {"finish_reason", nullptr}}})}});
        else if (api == "messages") {
          if (i == 0 || i == R) e += sse("content_block_start", {{"type", "content_block_start"}, {"index", reasoning ? 0 : (R ? 1 : 0)}, {"content_block", reasoning ? json{{"type", "thinking"}, {"thinking", ""}} : json{{"type", "text"}, {"text", ""}}}});
          e += sse("content_block_delta", {{"type", "content_block_delta"}, {"index", reasoning ? 0 : (R ? 1 : 0)}, {"delta", reasoning ? json{{"type", "thinking_delta"}, {"thinking", words}} : json{{"type", "text_delta"}, {"text", words}}}});
        } else e = sse(reasoning ? "response.reasoning_text.delta" : "response.output_text.delta", {{"type", reasoning ? "response.reasoning_text.delta" : "response.output_text.delta"}, {"delta", words}});
        built.push_back(chunk(e));  // framed once here: the per-piece path only writes
      }
      if (build) cached = std::make_shared<const std::vector<std::string>>(std::move(built));
      events = cached;
      cache_lock.unlock();
      tail.clear();
      if (api == "chat") tail = sse("", {{"id", "c1"}, {"object", "chat.completion.chunk"}, {"model", s.model}, {"choices", json::array({{{"index", 0}, {"delta", json::object()}, {"finish_reason", "length"}}})}}) +
                                (body.contains("stream_options") ? sse("", {{"id", "c1"}, {"object", "chat.completion.chunk"}, {"choices", json::array()}, {"usage", usage_openai}}) : "") + "data: [DONE]\n\n";
      else if (api == "completions") tail = sse("", {{"id", "c1"}, {"object", "text_completion"}, {"choices", json::array({{{"index", 0}, {"text", ""}, {"finish_reason", "length"}}})}, {"usage", usage_openai}}) + "data: [DONE]\n\n";
      else if (api == "messages") tail = sse("content_block_stop", {{"type", "content_block_stop"}, {"index", R ? 1 : 0}}) +
                                         sse("message_delta", {{"type", "message_delta"}, {"delta", {{"stop_reason", "max_tokens"}}}, {"usage", {{"output_tokens", out_tokens}, {"cache_read_input_tokens", s.cached_tokens}}}}) +
                                         sse("message_stop", {{"type", "message_stop"}});
      else tail = sse("response.completed", {{"type", "response.completed"}, {"response", {{"id", "r1"}, {"status", "completed"}, {"usage", {{"input_tokens", s.prompt_tokens}, {"output_tokens", out_tokens}, {"input_tokens_details", {{"cached_tokens", s.cached_tokens}}}, {"output_tokens_details", {{"reasoning_tokens", reasoning_tokens}}}}}}}});
      size_t open = ++ep->open_streams_;
      size_t m = ep->max_streams_.load();
      while (open > m && !ep->max_streams_.compare_exchange_weak(m, open)) {}
      auto self = shared_from_this();
      write_raw(header(200, "text/event-stream", true, 0) + (first.empty() ? std::string() : chunk(first)), [self] { self->tick(); });
    }
    void tick() {
      auto self = shared_from_this();
      if (next >= events->size()) {
        ep->open_streams_--;
        sent.push_back(std::chrono::steady_clock::now());
        if (!id.empty()) {
          std::lock_guard<std::mutex> l(ep->mu_);
          ep->sent_[id] = sent;
          ep->scheduled_[id] = at;
        }
        write_raw(chunk(tail) + "0\r\n\r\n", [self] { self->after(); });
        return;
      }
      timer.expires_at(at[next]);
      timer.async_wait([self](boost::system::error_code ec) {
        if (ec) return;
        // The event stays in `events` until the stream ends, so it is written in place (no copy or
        // allocation per piece: this server shares the CPU with the client under test).
        const std::string& e = (*self->events)[self->next++];
        self->sent.push_back(std::chrono::steady_clock::now());
        boost::asio::async_write(self->sock, boost::asio::buffer(e), [self](boost::system::error_code ec, size_t) {
          if (!ec) self->tick();
        });
      });
    }
  };

  void accept() {
    // New connections go round-robin to the io_contexts (the acceptor's own included).
    size_t k = accepted_++ % (extra_.size() + 1);
    boost::asio::io_context& ctx = k == 0 ? io_ : *extra_[k - 1];
    acceptor_.async_accept(ctx, [this](boost::system::error_code ec, tcp::socket s) {
      if (ec) return;
      connections_++;
      s.set_option(tcp::no_delay(true));
      std::make_shared<Session>(this, std::move(s))->read();
      accept();
    });
  }

  Schedule sched_;
  boost::asio::io_context io_;
  tcp::acceptor acceptor_;
  std::thread thread_;
  std::vector<std::unique_ptr<boost::asio::io_context>> extra_;  // threads > 1: one more context per thread
  std::vector<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> guards_;
  std::vector<std::thread> threads_;
  size_t accepted_ = 0;
  int port_ = 0;
  std::atomic<uint64_t> requests_{0}, connections_{0};
  std::atomic<size_t> open_streams_{0}, max_streams_{0};
  mutable std::mutex mu_;
  std::vector<std::string> bodies_;
  std::map<std::string, std::vector<std::chrono::steady_clock::time_point>> sent_, scheduled_;
  std::mutex cache_mu_;
  std::map<std::string, std::shared_ptr<const std::vector<std::string>>> events_cache_;
};

// A ScriptedEndpoint in a forked child process that starts its own session (setsid), so the kernel
// schedules it as a separate program (its own autogroup), as it schedules a real server started
// elsewhere: the client under test then competes for the CPU as it would in real use, not with
// the stand-in server inside its own process. Construct it before the test starts threads (fork).
// The write times come back through a pipe when the run is over (collect(), or the first
// sent_times / max_open_streams call).
class ScriptedEndpointProcess {
 public:
  using time_point = std::chrono::steady_clock::time_point;
  explicit ScriptedEndpointProcess(Schedule s = {}, int threads = 1) {
    int down[2], up[2];
    if (::pipe(down) != 0 || ::pipe(up) != 0) throw std::runtime_error("pipe failed");
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      ::close(down[1]);
      ::close(up[0]);
      ::setsid();
      int rc = 0;
      {
        ScriptedEndpoint ep(std::move(s), threads);
        int port = ep.port();
        put(up[1], &port, sizeof port);
        char c;
        (void)!::read(down[0], &c, 1);  // a byte or EOF (the parent died): report and exit
        auto all = ep.all_sent_times();
        uint64_t n = all.size(), peak = ep.max_open_streams();
        put(up[1], &peak, sizeof peak);
        put(up[1], &n, sizeof n);
        for (const auto& [id, v] : all) {
          uint64_t len = id.size(), cnt = v.size();
          put(up[1], &len, sizeof len);
          put(up[1], id.data(), len);
          put(up[1], &cnt, sizeof cnt);
          for (auto tp : v) {
            int64_t ns = tp.time_since_epoch().count();
            put(up[1], &ns, sizeof ns);
          }
        }
      }
      ::_exit(rc);  // no atexit handlers or gtest teardown in the child
    }
    ::close(down[0]);
    ::close(up[1]);
    down_ = down[1];
    up_ = up[0];
    if (!get(up_, &port_, sizeof port_)) throw std::runtime_error("scripted endpoint process did not start");
  }
  ~ScriptedEndpointProcess() {
    collect();
    ::close(up_);
    int st = 0;
    ::waitpid(pid_, &st, 0);
  }
  int port() const { return port_; }
  std::string base_url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  // Ends the server (after the run) and reads back every request's write times.
  void collect() {
    if (collected_) return;
    collected_ = true;
    char c = 'x';
    (void)!::write(down_, &c, 1);
    ::close(down_);
    uint64_t n = 0;
    if (!get(up_, &peak_, sizeof peak_) || !get(up_, &n, sizeof n)) return;
    for (uint64_t i = 0; i < n; ++i) {
      uint64_t len = 0, cnt = 0;
      if (!get(up_, &len, sizeof len)) return;
      std::string id(len, '\0');
      if (!get(up_, id.data(), len) || !get(up_, &cnt, sizeof cnt)) return;
      auto& v = sent_[id];
      for (uint64_t k = 0; k < cnt; ++k) {
        int64_t ns = 0;
        if (!get(up_, &ns, sizeof ns)) return;
        v.push_back(time_point(time_point::duration(ns)));  // CLOCK_MONOTONIC: the same in both processes
      }
    }
  }
  std::vector<time_point> sent_times(const std::string& id) {
    collect();
    auto it = sent_.find(id);
    return it == sent_.end() ? std::vector<time_point>{} : it->second;
  }
  size_t max_open_streams() {
    collect();
    return static_cast<size_t>(peak_);
  }

 private:
  static void put(int fd, const void* p, size_t n) {
    auto* c = static_cast<const char*>(p);
    while (n > 0) {
      ssize_t w = ::write(fd, c, n);
      if (w <= 0) return;
      c += w;
      n -= static_cast<size_t>(w);
    }
  }
  static bool get(int fd, void* p, size_t n) {
    auto* c = static_cast<char*>(p);
    while (n > 0) {
      ssize_t r = ::read(fd, c, n);
      if (r <= 0) return false;
      c += r;
      n -= static_cast<size_t>(r);
    }
    return true;
  }
  pid_t pid_ = -1;
  int down_ = -1, up_ = -1, port_ = 0;
  bool collected_ = false;
  uint64_t peak_ = 0;
  std::map<std::string, std::vector<time_point>> sent_;
};

}  // namespace v4::testing
