// v4host serve: the OpenAI- and Anthropic-compatible HTTP service over the scheduler.
// Routes: POST /v1/chat/completions, POST /v1/completions, POST /v1/responses,
// GET/DELETE /v1/responses/{id}, POST /v1/messages, POST /v1/messages/count_tokens,
// GET /v1/models, GET /health, GET /metrics.
#pragma once
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "core/prometheus.h"
#include "sched/scheduler.h"
#include "text/tokenizer.h"

#include "net/http_exchange.h"
#include "net/http_server.h"

namespace v4 {

class TokenMasker;
class GrammarCache;
class ChatRun;
class ResponseStore;
class ReasoningSeal;

struct ServeOptions {
  std::string host = "127.0.0.1";
  int port = 8000;
  std::string api_key;             // empty = no authentication
  std::string served_model_name;   // default: the model directory's name
  bool log_prompts = false;
  bool default_thinking = true;    // reasoning mode when a request does not say
  double keepalive_s = 5.0;        // SSE comment interval while nothing else is sent
  // The HTTP front end (net::ServerOptions; docs/serve.md "Front end").
  size_t max_body_bytes = 8u << 20;      // 413 above
  size_t max_header_bytes = 64u << 10;   // 431 above
  int io_threads = 2;                    // I/O threads (every connection, probes answered here)
  int worker_threads = 2;                // generation handlers up to submitting their request
  double idle_timeout_s = 60;            // an idle (keep-alive) connection is closed after this
  double header_timeout_s = 10;          // a request header must arrive within this (408)
  double body_timeout_s = 30;            // ... and its body within this after the header (408)
  double write_timeout_s = 30;           // a client that reads nothing for this long is dropped
  size_t stream_buffer_bytes = 4u << 20; // stream bytes queued for a slow reader before it is dropped
  std::string cors_origin;               // --cors: "*" or an origin; "" = no CORS
  int max_output_tokens = 0;       // cap on generated tokens per request (0 = context room only)
  size_t response_store_bytes = 64u << 20;  // stored /v1/responses (store: true), LRU
  std::string secret;              // key of reasoning encrypted_content (empty = random per process)
  SchedulerOptions sched;
};

class Service {
 public:
  Service(const ServeOptions& opt, const ModelWeights& weights, Engine& engine, const text::Tokenizer& tok);
  ~Service();

  // Binds; returns the bound port (opt.port 0 = any free port). Throws InputError if it cannot bind.
  int bind();
  void serve();   // blocks until stop()
  void stop();
  void request_stop() noexcept;  // makes serve() return; safe in a signal handler
  const std::string& model_id() const { return model_id_; }
  Metrics& metrics() { return metrics_; }
  Scheduler& scheduler() { return *sched_; }

  // The think-max floor: contexts below this are refused for reasoning_effort max.
  static constexpr int64_t kThinkMaxMinCtx = 393216;

 private:
  friend struct ChatHandler;
  friend struct CompletionHandler;
  friend struct MessagesHandler;
  void routes();
  bool authorized(const net::Request& req, net::Reply& res);
  void check_model(const std::string& model) const;
  // Token counts and a note (finish reason) for this request's log line, written when it completes.
  void log_request(net::Reply& res, int prompt, int completion, const std::string& extra);
  std::vector<int32_t> tokenize(const std::string& text) const;
  // Counters every finished chat generation feeds (reasoning tokens, tool-call parse failures).
  void record_chat(const ChatRun& run);
  // The log note and disconnect counter of a finished SSE stream.
  std::function<void(bool)> stream_logger(net::Reply& res, std::shared_ptr<RequestHandle> h);

  void handle_chat(const net::Request& req, net::Reply& res);
  void handle_completions(const net::Request& req, net::Reply& res);
  void handle_messages(const net::Request& req, net::Reply& res);
  void handle_count_tokens(const net::Request& req, net::Reply& res);
  void handle_responses(const net::Request& req, net::Reply& res);
  void handle_response_get(const net::Request& req, net::Reply& res);
  void handle_response_delete(const net::Request& req, net::Reply& res);

  ServeOptions opt_;
  const ModelWeights& weights_;
  Engine& engine_;
  const text::Tokenizer& tok_;
  Metrics metrics_;
  std::unique_ptr<Scheduler> sched_;
  std::unique_ptr<TokenMasker> masker_;  // constrained decoding over this vocabulary
  std::unique_ptr<GrammarCache> grammars_;  // compiled grammars reused across requests
  std::unique_ptr<ResponseStore> responses_;  // POST /v1/responses with store: true
  std::unique_ptr<ReasoningSeal> seal_;       // reasoning encrypted_content
  class RequestLog;
  std::unique_ptr<RequestLog> log_;  // declared before http_: outlives the hooks that write to it
  std::unique_ptr<net::HttpServer> http_;
  std::string model_id_;
  int64_t created_ = 0;
  std::atomic<uint64_t> next_id_{1};
};

net::ServerOptions net_options(const ServeOptions& o);

// Parses a JSON request body; throws ApiError 400 with the parser's message.
nlohmann::ordered_json parse_body(const std::string& body);
std::string new_id(const char* prefix, uint64_t n);

}  // namespace v4
