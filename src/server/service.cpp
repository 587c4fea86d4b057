#include "server/service.h"

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <utility>
#include <cstdio>
#include <ctime>
#include <filesystem>

#include "core/error.h"
#include "core/memory.h"
#include "net/http_server.h"
#include "server/api_error.h"
#include "server/chat_run.h"
#include "server/reasoning_seal.h"
#include "server/response_store.h"
#include "server/sse.h"
#include "grammar/token_mask.h"
#include "text/py_json.h"

namespace v4 {

using json = nlohmann::json;

// Request bodies keep integers of any size exactly (nlohmann alone turns those beyond 64 bits
// into doubles): an Anthropic tool_use.input re-rendered into the prompt must carry the digits
// the official encoder (Python json) would. A big integer where a field wants a number is then a
// 400 naming that field, not a silently rounded value.
nlohmann::ordered_json parse_body(const std::string& body) {
  if (body.empty()) throw ApiError(400, "the request body is empty; expected a JSON object");
  try {
    return text::parse_json_exact(body, "the request body");
  } catch (const InputError& e) {
    throw ApiError(400, e.what());  // "the request body is not valid JSON: <parser message>"
  }
}

// The request log: lines are written to stderr by a thread of their own, so that a slow reader
// of stderr (a full pipe) never blocks the I/O threads that produce them. Bounded: beyond 10,000
// waiting lines, lines are dropped and counted.
class Service::RequestLog {
 public:
  RequestLog() : th_([this] { loop(); }) {}
  ~RequestLog() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    th_.join();
  }
  void write(std::string line) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (q_.size() >= 10000) {
        ++dropped_;
        return;
      }
      q_.push_back(std::move(line));
    }
    cv_.notify_one();
  }

 private:
  void loop() {
    std::unique_lock<std::mutex> lk(mu_);
    for (;;) {
      cv_.wait(lk, [&] { return stop_ || !q_.empty(); });
      std::deque<std::string> batch;
      batch.swap(q_);
      const uint64_t dropped = std::exchange(dropped_, 0);
      const bool stop = stop_;
      lk.unlock();
      for (auto& l : batch) std::fputs(l.c_str(), stderr);
      if (dropped) std::fprintf(stderr, "v4host: %llu request log lines dropped (stderr too slow)\n", static_cast<unsigned long long>(dropped));
      std::fflush(stderr);
      lk.lock();
      if (stop && q_.empty()) return;
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> q_;
  uint64_t dropped_ = 0;
  bool stop_ = false;
  std::thread th_;
};

net::ServerOptions net_options(const ServeOptions& o) {
  net::ServerOptions n;
  n.host = o.host;
  n.port = o.port;
  n.io_threads = o.io_threads;
  n.worker_threads = o.worker_threads;
  n.idle_timeout_s = o.idle_timeout_s;
  n.header_timeout_s = o.header_timeout_s;
  n.body_timeout_s = o.body_timeout_s;
  n.write_timeout_s = o.write_timeout_s;
  n.max_header_bytes = o.max_header_bytes;
  n.max_body_bytes = o.max_body_bytes;
  n.stream_buffer_bytes = o.stream_buffer_bytes;
  n.cors_origin = o.cors_origin;
  return n;
}

std::string new_id(const char* prefix, uint64_t n) {
  char b[64];
  std::snprintf(b, sizeof b, "%s%llx%06llx", prefix, static_cast<unsigned long long>(std::time(nullptr)),
                static_cast<unsigned long long>(n));
  return b;
}

Service::Service(const ServeOptions& opt, const ModelWeights& weights, Engine& engine, const text::Tokenizer& tok)
    : opt_(opt), weights_(weights), engine_(engine), tok_(tok), log_(std::make_unique<RequestLog>()), http_(std::make_unique<net::HttpServer>(net_options(opt))) {
  model_id_ = opt.served_model_name;
  if (model_id_.empty()) model_id_ = std::filesystem::path(weights.store().dir()).filename().string();
  if (model_id_.empty()) model_id_ = "deepseek-v4";
  created_ = static_cast<int64_t>(std::time(nullptr));
  metrics_.describe("v4host_requests_total", "counter", "HTTP requests by route and status");
  metrics_.describe("v4host_reasoning_tokens_total", "counter", "Generated tokens inside reasoning (<think>)");
  metrics_.describe("v4host_tool_call_parse_failures_total", "counter", "Model outputs whose tool-call markup failed to parse or validate");
  metrics_.describe("v4host_heap_bytes", "gauge", "Bytes the allocator has handed out and not had back (a leak grows this; the resident size also holds freed pages)");
  metrics_.describe("v4host_client_disconnects_total", "counter", "Generation requests (streaming or not) cancelled because the client went away");
  // Token masks are built over the model's vocabulary (rows beyond the tokenizer's are never allowed).
  std::vector<std::string> vocab(static_cast<size_t>(weights.cfg.vocab_size));
  TokenMasker::Options mo;
  for (int32_t i = 0; i < weights.cfg.vocab_size && i < tok.vocab_size(); ++i) {
    vocab[static_cast<size_t>(i)] = tok.token_bytes(i);
    if (tok.is_added(i)) mo.special_ids.push_back(i);
  }
  masker_ = std::make_unique<TokenMasker>(vocab, weights.cfg.eos_id, mo);
  grammars_ = std::make_unique<GrammarCache>(64);
  responses_ = std::make_unique<ResponseStore>(opt.response_store_bytes);
  seal_ = std::make_unique<ReasoningSeal>(opt.secret);
  sched_ = std::make_unique<Scheduler>(engine, opt.sched, &metrics_);
  routes();
}

Service::~Service() {
  stop();
  sched_->stop();
}

int Service::bind() {
  try {
    opt_.port = http_->bind();
  } catch (const std::runtime_error& e) {
    throw InputError(std::string(e.what()) + (opt_.port ? " (in use?)" : ""));
  }
  return opt_.port;
}

void Service::serve() { http_->run(); }
void Service::stop() { http_->stop(); }
void Service::request_stop() noexcept { http_->request_stop(); }

bool Service::authorized(const net::Request& req, net::Reply& res) {
  if (opt_.api_key.empty()) return true;
  std::string got;
  auto auth = req.header("Authorization");
  if (auth.rfind("Bearer ", 0) == 0) got = auth.substr(7);
  if (got.empty()) got = req.header("x-api-key");  // Anthropic clients
  if (got == opt_.api_key) return true;
  reply_error(res, ApiError(401, got.empty() ? "missing API key: send 'Authorization: Bearer <key>'" : "invalid API key", "",
                            "invalid_api_key"));
  return false;
}

void Service::check_model(const std::string& model) const {
  if (model != model_id_)
    throw ApiError(404, "the model '" + model + "' does not exist; this server serves '" + model_id_ + "'", "model",
                   "model_not_found");
}

std::vector<int32_t> Service::tokenize(const std::string& text) const { return tok_.encode(text); }

void Service::record_chat(const ChatRun& run) {
  metrics_.inc("v4host_reasoning_tokens_total", {}, run.reasoning_tokens());
  if (int f = run.tool_call_failures()) metrics_.inc("v4host_tool_call_parse_failures_total", {}, f);
}

std::function<void(bool)> Service::stream_logger(net::Reply& res, std::shared_ptr<RequestHandle> h) {
  return [r = res.defer(), h](bool completed) {
    char b[128];
    std::snprintf(b, sizeof b, "prompt=%d completion=%d stream%s", h->prompt_tokens, h->completion_tokens(),
                  completed ? "" : " (client disconnected)");
    r->note = b;
  };
}

void Service::log_request(net::Reply& res, int prompt, int completion, const std::string& extra) {
  char b[96];
  std::snprintf(b, sizeof b, "prompt=%d completion=%d", prompt, completion);
  res.note = b;
  if (!extra.empty()) res.note += " " + extra;
}

void Service::routes() {
  net::HttpServer& h = *http_;
  // One log line and one counter per request, on every route (404s, timeouts and 413s included).
  h.on_complete([this](const net::Request& req, const net::Reply& res, const net::Completion& c) {
    std::string note = res.note;
    if (c.disconnected && note.find("disconnected") == std::string::npos)
      note += note.empty() ? "(client disconnected)" : " (client disconnected)";
    char head[96];
    std::snprintf(head, sizeof head, " %d %.3fs", c.status, c.seconds);
    log_->write((req.method.empty() ? "-" : req.method) + " " + (req.path.empty() ? "-" : req.path) + head +
                (note.empty() ? "" : " ") + note + "\n");
    std::string route = req.route == "/v1/chat/completions" ? "chat_completions"
                        : req.route == "/v1/completions"    ? "completions"
                        : req.route == "/v1/messages"       ? "messages"
                        : req.route.empty()                 ? "other"
                                                            : req.route;
    metrics_.inc("v4host_requests_total", {{"route", route}, {"status", std::to_string(c.status)}});
    // Every POST under /v1 is a generation (or work for one): count the clients that left.
    if (c.disconnected && req.method == "POST" && req.route.rfind("/v1/", 0) == 0)
      metrics_.inc("v4host_client_disconnects_total");
  });
  // Answers the server makes itself (404, 405, 408, 413, 431, 400 for malformed HTTP) in the
  // shape the route's clients expect.
  h.on_error([](net::Reply& res, int status, const std::string& msg) {
    res.set_content(ApiError(status, msg).body_for(res.request().path), "application/json");
  });
  // Probes and model listings answer on the I/O threads: they take no lock generation holds.
  h.route("GET", "/health", [this](const net::Request&, net::Reply& res) {
    json j = {{"status", "ok"},         {"model", model_id_},
              {"running", sched_->running()}, {"queued", sched_->queued()},
              {"kv_bytes", sched_->kv_bytes_in_use()}, {"connections", http_->connections()}};
    res.set_content(wire(j), "application/json");
  });
  // Claude Code (and load balancers) probe `HEAD /` before the first request: answer it rather
  // than log a 404 for every session.
  h.route("GET", "/", [this](const net::Request&, net::Reply& res) {
    res.set_content(wire(json{{"status", "ok"}, {"model", model_id_}}), "application/json");
  });
  h.route("GET", "/metrics", [this](const net::Request&, net::Reply& res) {
    // Only here, not in /health: counting the heap walks every arena's free lists under their
    // locks (see heap_in_use_bytes), not something to do for a probe answered many times a
    // second under load.
    if (auto heap = heap_in_use_bytes()) metrics_.set("v4host_heap_bytes", static_cast<double>(*heap));
    res.set_content(metrics_.render(), "text/plain; version=0.0.4");
  });
  auto model_json = [this] {
    return json{{"id", model_id_}, {"object", "model"}, {"created", created_}, {"owned_by", "v4host"},
                {"max_model_len", opt_.sched.ctx}};
  };
  h.route("GET", "/v1/models", [this, model_json](const net::Request& req, net::Reply& res) {
    if (!authorized(req, res)) return;
    res.set_content(wire(json{{"object", "list"}, {"data", json::array({model_json()})}}), "application/json");
  });
  h.route("GET", "/v1/models/{id*}", [this, model_json](const net::Request& req, net::Reply& res) {
    if (!authorized(req, res)) return;
    const std::string id = req.param("id");
    if (id != model_id_) return reply_error(res, ApiError(404, "the model '" + id + "' does not exist", "model", "model_not_found"));
    res.set_content(wire(model_json()), "application/json");
  });
  auto guarded = [this](void (Service::*fn)(const net::Request&, net::Reply&)) {
    return [this, fn](const net::Request& req, net::Reply& res) {
      if (!authorized(req, res)) return;
      try {
        (this->*fn)(req, res);
      } catch (const ApiError& e) {
        reply_error(res, e);
      } catch (const InputError& e) {
        reply_error(res, ApiError(400, e.what()));
      }
    };
  };
  // Generation handlers parse, tokenise and compile grammars before they submit: on the worker
  // pool, so none of that delays a probe.
  const net::RouteOptions work{.offload = true};
  h.route("POST", "/v1/chat/completions", guarded(&Service::handle_chat), work);
  h.route("POST", "/v1/completions", guarded(&Service::handle_completions), work);
  h.route("POST", "/v1/messages", guarded(&Service::handle_messages), work);
  h.route("POST", "/v1/messages/count_tokens", guarded(&Service::handle_count_tokens), work);
  h.route("POST", "/v1/responses", guarded(&Service::handle_responses), work);
  h.route("GET", "/v1/responses/{id}", guarded(&Service::handle_response_get));
  h.route("DELETE", "/v1/responses/{id}", guarded(&Service::handle_response_delete));
}

}  // namespace v4
