#include "server/service.h"

#include <httplib.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <ctime>
#include <filesystem>

#include "core/error.h"
#include "server/api_error.h"
#include "server/chat_run.h"
#include "server/sse.h"
#include "server/token_mask.h"

namespace v4 {

using json = nlohmann::json;

nlohmann::ordered_json parse_body(const std::string& body) {
  if (body.empty()) throw ApiError(400, "the request body is empty; expected a JSON object");
  try {
    return nlohmann::ordered_json::parse(body);
  } catch (const nlohmann::ordered_json::parse_error& e) {
    throw ApiError(400, std::string("the request body is not valid JSON: ") + e.what());
  }
}

std::string new_id(const char* prefix, uint64_t n) {
  char b[64];
  std::snprintf(b, sizeof b, "%s%llx%06llx", prefix, static_cast<unsigned long long>(std::time(nullptr)),
                static_cast<unsigned long long>(n));
  return b;
}

// ---- transport: cpp-httplib behind the net:: exchange types (to be replaced by net::HttpServer) ----

namespace {

struct HlStream final : net::Stream {
  mutable std::mutex mu;
  std::condition_variable cv;
  std::deque<std::string> q;
  size_t bytes = 0, cap = 8u << 20;
  bool closing = false, broken = false;
  double ka = 0;
  std::string ka_comment;
  std::function<void()> drain;
  bool write(std::string d) override {
    std::lock_guard<std::mutex> lk(mu);
    if (closing || broken) return false;
    if (bytes + d.size() > cap) {
      broken = true;
      cv.notify_all();
      return false;
    }
    bytes += d.size();
    q.push_back(std::move(d));
    cv.notify_all();
    return true;
  }
  void close() override {
    std::lock_guard<std::mutex> lk(mu);
    closing = true;
    cv.notify_all();
  }
  bool closed() const override {
    std::lock_guard<std::mutex> lk(mu);
    return closing || broken;
  }
  size_t buffered() const override {
    std::lock_guard<std::mutex> lk(mu);
    return bytes;
  }
  void on_drain(std::function<void()> fn) override {
    std::lock_guard<std::mutex> lk(mu);
    drain = std::move(fn);
  }
  void keep_alive(double s, std::string c) override {
    std::lock_guard<std::mutex> lk(mu);
    ka = s;
    ka_comment = std::move(c);
    cv.notify_all();
  }
};

struct HlReply final : net::Reply, std::enable_shared_from_this<HlReply> {
  net::Request req;
  mutable std::mutex mu;
  std::condition_variable cv;
  enum State { Pending, Deferred, Sent, Streaming } state = Pending;
  std::shared_ptr<HlStream> stream;
  std::vector<std::function<void()>> on_gone;
  bool gone = false;
  const net::Request& request() const override { return req; }
  void send() override {
    std::lock_guard<std::mutex> lk(mu);
    if (state == Sent || state == Streaming) return;
    state = Sent;
    cv.notify_all();
  }
  std::shared_ptr<net::Reply> defer() override {
    std::lock_guard<std::mutex> lk(mu);
    if (state == Pending) state = Deferred;
    return shared_from_this();
  }
  std::shared_ptr<net::Stream> start_stream(std::string content_type) override {
    std::lock_guard<std::mutex> lk(mu);
    headers.set("Content-Type", std::move(content_type));
    if (!stream) stream = std::make_shared<HlStream>();
    state = Streaming;
    cv.notify_all();
    return stream;
  }
  void on_disconnect(std::function<void()> fn) override {
    {
      std::lock_guard<std::mutex> lk(mu);
      if (!gone) {
        on_gone.push_back(std::move(fn));
        return;
      }
    }
    fn();
  }
  void fire_gone() {
    std::vector<std::function<void()>> fns;
    {
      std::lock_guard<std::mutex> lk(mu);
      if (gone) return;
      gone = true;
      fns.swap(on_gone);
    }
    for (auto& f : fns) f();
  }
  bool disconnected() const override {
    std::lock_guard<std::mutex> lk(mu);
    return gone;
  }
  bool answered() const override {
    std::lock_guard<std::mutex> lk(mu);
    return state == Sent || state == Streaming;
  }
};

}  // namespace

struct Service::Http {
  httplib::Server srv;
  // Called once per finished request: status, seconds, streamed, disconnected.
  std::function<void(const net::Request&, const net::Reply&, double, bool)> on_complete;

  void route(const std::string& method, const std::string& pattern, net::Handler h) {
    // "{name}" -> a capture group
    std::string re;
    std::vector<std::string> names;
    for (size_t i = 0; i < pattern.size(); ++i) {
      if (pattern[i] == '{') {
        size_t e = pattern.find('}', i);
        names.push_back(pattern.substr(i + 1, e - i - 1));
        re += "([^/]+)";
        i = e;
      } else {
        re += pattern[i];
      }
    }
    auto fn = [this, h, names, pattern](const httplib::Request& hr, httplib::Response& out) {
      const auto t0 = std::chrono::steady_clock::now();
      auto r = std::make_shared<HlReply>();
      r->req.method = hr.method;
      r->req.target = hr.target;
      r->req.path = hr.path;
      r->req.route = pattern;
      for (auto& [k, v] : hr.headers) r->req.headers.add(k, v);
      r->req.body = hr.body;
      r->req.remote = hr.remote_addr + ":" + std::to_string(hr.remote_port);
      for (auto& [k, v] : hr.params) r->req.query.emplace_back(k, v);
      for (size_t i = 0; i < names.size() && i + 1 < hr.matches.size(); ++i) r->req.params[names[i]] = hr.matches[i + 1];
      h(r->req, *r);
      {
        std::unique_lock<std::mutex> lk(r->mu);
        if (r->state == HlReply::Pending) r->state = HlReply::Sent;
        r->cv.wait(lk, [&] { return r->state == HlReply::Sent || r->state == HlReply::Streaming; });
      }
      out.status = r->status;
      std::string ctype = r->headers.get("Content-Type", "text/plain");
      for (auto& f : r->headers.fields())
        if (!net::iequals(f.name, "Content-Type")) out.set_header(f.name, f.value);
      if (r->state == HlReply::Sent) {
        out.set_content(r->body, ctype);
        on_complete(r->req, *r, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), false);
        return;
      }
      auto st = r->stream;
      out.set_chunked_content_provider(
          ctype,
          [st, r](size_t, httplib::DataSink& sink) {
            for (;;) {
              std::deque<std::string> batch;
              bool timed_out = false, closing = false;
              std::function<void()> drain;
              double ka = 0;
              std::string comment;
              {
                std::unique_lock<std::mutex> lk(st->mu);
                auto pred = [&] { return !st->q.empty() || st->closing || st->broken; };
                const double wait_s = st->ka > 0 ? st->ka : 1.0;
                timed_out = !st->cv.wait_for(lk, std::chrono::duration<double>(wait_s), pred);
                if (st->broken) {
                  lk.unlock();
                  r->fire_gone();
                  return false;
                }
                batch.swap(st->q);
                st->bytes = 0;
                closing = st->closing;
                drain = st->drain;
                ka = st->ka;
                comment = st->ka_comment;
              }
              auto fail = [&] {
                {
                  std::lock_guard<std::mutex> lk(st->mu);
                  st->broken = true;
                }
                r->fire_gone();
                return false;
              };
              for (auto& b : batch)
                if (!sink.is_writable() || !sink.write(b.data(), b.size())) return fail();
              if (timed_out && ka > 0 && (!sink.is_writable() || !sink.write(comment.data(), comment.size()))) return fail();
              if (timed_out && !sink.is_writable()) return fail();
              if (!batch.empty() && drain) drain();
              if (closing) {
                sink.done();
                return true;
              }
            }
          },
          [this, r, t0](bool) {
            if (!r->stream->closing) r->fire_gone();
            on_complete(r->req, *r, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), true);
          });
    };
    if (method == "GET") srv.Get(re, fn);
    else if (method == "POST") srv.Post(re, fn);
    else if (method == "DELETE") srv.Delete(re, fn);
    else if (method == "PUT") srv.Put(re, fn);
  }
};

Service::Service(const ServeOptions& opt, const ModelWeights& weights, Engine& engine, const text::Tokenizer& tok)
    : opt_(opt), weights_(weights), engine_(engine), tok_(tok), http_(std::make_unique<Http>()) {
  model_id_ = opt.served_model_name;
  if (model_id_.empty()) model_id_ = std::filesystem::path(weights.store().dir()).filename().string();
  if (model_id_.empty()) model_id_ = "deepseek-v4";
  created_ = static_cast<int64_t>(std::time(nullptr));
  metrics_.describe("v4host_requests_total", "counter", "HTTP requests by route and status");
  metrics_.describe("v4host_reasoning_tokens_total", "counter", "Generated tokens inside reasoning (<think>)");
  metrics_.describe("v4host_tool_call_parse_failures_total", "counter", "Model outputs whose tool-call markup failed to parse or validate");
  metrics_.describe("v4host_client_disconnects_total", "counter", "Generation requests cancelled because the client went away");
  // Token masks are built over the model's vocabulary (rows beyond the tokenizer's are never allowed).
  std::vector<std::string> vocab(static_cast<size_t>(weights.cfg.vocab_size));
  TokenMasker::Options mo;
  for (int32_t i = 0; i < weights.cfg.vocab_size && i < tok.vocab_size(); ++i) {
    vocab[static_cast<size_t>(i)] = tok.token_bytes(i);
    if (tok.is_added(i)) mo.special_ids.push_back(i);
  }
  masker_ = std::make_unique<TokenMasker>(vocab, weights.cfg.eos_id, mo);
  grammars_ = std::make_unique<GrammarCache>(64);
  sched_ = std::make_unique<Scheduler>(engine, opt.sched, &metrics_);
  routes();
}

Service::~Service() {
  stop();
  sched_->stop();
}

int Service::bind() {
  int port = opt_.port;
  auto& s = http_->srv;
  if (port == 0) {
    port = s.bind_to_any_port(opt_.host.c_str());
    if (port < 0) throw InputError("cannot bind " + opt_.host);
  } else if (!s.bind_to_port(opt_.host.c_str(), port)) {
    throw InputError("cannot bind " + opt_.host + ":" + std::to_string(port) + " (in use?)");
  }
  opt_.port = port;
  return port;
}

void Service::serve() { http_->srv.listen_after_bind(); }

void Service::stop() {
  if (http_ && http_->srv.is_running()) http_->srv.stop();
}

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
  return [this, r = res.defer(), h](bool completed) {
    if (!completed) metrics_.inc("v4host_client_disconnects_total");
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
  Http& h = *http_;
  httplib::Server& s = h.srv;
  s.new_task_queue = [n = opt_.http_threads] { return new httplib::ThreadPool(static_cast<size_t>(n)); };
  s.set_payload_max_length(opt_.max_body_bytes);
  s.set_read_timeout(30, 0);
  s.set_write_timeout(30, 0);
  // One log line and one counter per request, on every route.
  h.on_complete = [this](const net::Request& req, const net::Reply& res, double secs, bool streamed) {
    (void)streamed;
    std::fprintf(stderr, "%s %s %d %.3fs%s%s\n", req.method.c_str(), req.path.c_str(), res.status, secs,
                 res.note.empty() ? "" : " ", res.note.c_str());
    std::string route = req.route == "/v1/chat/completions" ? "chat_completions"
                        : req.route == "/v1/completions"    ? "completions"
                        : req.route == "/v1/messages"       ? "messages"
                        : req.route.empty()                 ? "other"
                                                            : req.route;
    metrics_.inc("v4host_requests_total", {{"route", route}, {"status", std::to_string(res.status)}});
  };
  // Errors httplib raises itself (oversize body, unknown route, bad method) get the OpenAI shape.
  s.set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    std::string msg = res.status == 413   ? "request body exceeds the server's limit of " + std::to_string(opt_.max_body_bytes) + " bytes"
                      : res.status == 404 ? "no route " + req.method + " " + req.path
                      : res.status == 405 ? "method not allowed"
                                          : "request failed";
    res.set_content(ApiError(res.status, msg).body_for(req.path), "application/json");
    std::fprintf(stderr, "%s %s %d\n", req.method.c_str(), req.path.c_str(), res.status);
    metrics_.inc("v4host_requests_total", {{"route", "other"}, {"status", std::to_string(res.status)}});
  });
  s.set_exception_handler([](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
    std::string msg = "internal error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      msg = e.what();
    } catch (...) {
    }
    res.status = 500;
    res.set_content(ApiError(500, msg).body_for(req.path), "application/json");
  });
  h.route("GET", "/health", [this](const net::Request&, net::Reply& res) {
    json j = {{"status", "ok"}, {"model", model_id_}, {"running", sched_->running()}, {"queued", sched_->queued()}};
    res.set_content(wire(j), "application/json");
  });
  h.route("GET", "/metrics", [this](const net::Request&, net::Reply& res) {
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
  h.route("GET", "/v1/models/{id}", [this, model_json](const net::Request& req, net::Reply& res) {
    if (!authorized(req, res)) return;
    const std::string id = net::url_decode(req.param("id"));
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
  h.route("POST", "/v1/chat/completions", guarded(&Service::handle_chat));
  h.route("POST", "/v1/completions", guarded(&Service::handle_completions));
  h.route("POST", "/v1/messages", guarded(&Service::handle_messages));
}

}  // namespace v4
