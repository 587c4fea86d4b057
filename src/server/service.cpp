#include "server/service.h"

#include <httplib.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>

#include "core/error.h"
#include "server/api_error.h"
#include "server/chat_run.h"
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

Service::Service(const ServeOptions& opt, const ModelWeights& weights, Engine& engine, const text::Tokenizer& tok)
    : opt_(opt), weights_(weights), engine_(engine), tok_(tok), http_(std::make_unique<httplib::Server>()) {
  model_id_ = opt.served_model_name;
  if (model_id_.empty()) model_id_ = std::filesystem::path(weights.store().dir()).filename().string();
  if (model_id_.empty()) model_id_ = "deepseek-v4";
  created_ = static_cast<int64_t>(std::time(nullptr));
  metrics_.describe("v4host_requests_total", "counter", "HTTP requests by route and status");
  metrics_.describe("v4host_reasoning_tokens_total", "counter", "Generated tokens inside reasoning (<think>)");
  metrics_.describe("v4host_tool_call_parse_failures_total", "counter", "Model outputs whose tool-call markup failed to parse or validate");
  metrics_.describe("v4host_client_disconnects_total", "counter", "Streams cancelled because the client went away");
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
  if (port == 0) {
    port = http_->bind_to_any_port(opt_.host.c_str());
    if (port < 0) throw InputError("cannot bind " + opt_.host);
  } else if (!http_->bind_to_port(opt_.host.c_str(), port)) {
    throw InputError("cannot bind " + opt_.host + ":" + std::to_string(port) + " (in use?)");
  }
  opt_.port = port;
  return port;
}

void Service::serve() { http_->listen_after_bind(); }

void Service::stop() {
  if (http_ && http_->is_running()) http_->stop();
}

bool Service::authorized(const httplib::Request& req, httplib::Response& res) {
  if (opt_.api_key.empty()) return true;
  std::string got;
  auto auth = req.get_header_value("Authorization");
  if (auth.rfind("Bearer ", 0) == 0) got = auth.substr(7);
  if (got.empty()) got = req.get_header_value("x-api-key");  // Anthropic clients
  if (got == opt_.api_key) return true;
  ApiError e(401, got.empty() ? "missing API key: send 'Authorization: Bearer <key>'" : "invalid API key", "", "invalid_api_key");
  res.status = 401;
  res.set_content(e.body_for(req.path), "application/json");
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

std::function<void(bool)> Service::stream_logger(const httplib::Request& req, std::chrono::steady_clock::time_point t0,
                                                 std::shared_ptr<RequestHandle> h) {
  return [this, path = req.path, t0, h](bool completed) {
    if (!completed) metrics_.inc("v4host_client_disconnects_total");
    std::fprintf(stderr, "POST %s 200 %.3fs prompt=%d completion=%d stream%s\n", path.c_str(),
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), h->prompt_tokens,
                 h->completion_tokens(), completed ? "" : " (client disconnected)");
  };
}

void Service::log_request(const httplib::Request& req, int status, double secs, int prompt, int completion,
                          const std::string& extra) {
  std::fprintf(stderr, "%s %s %d %.3fs prompt=%d completion=%d%s%s\n", req.method.c_str(), req.path.c_str(), status, secs,
               prompt, completion, extra.empty() ? "" : " ", extra.c_str());
}

void Service::routes() {
  httplib::Server& s = *http_;
  s.new_task_queue = [n = opt_.http_threads] { return new httplib::ThreadPool(static_cast<size_t>(n)); };
  s.set_payload_max_length(opt_.max_body_bytes);
  s.set_read_timeout(30, 0);
  s.set_write_timeout(30, 0);
  // Errors httplib raises itself (oversize body, unknown route, bad method) get the OpenAI shape.
  s.set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    std::string msg = res.status == 413   ? "request body exceeds the server's limit of " + std::to_string(opt_.max_body_bytes) + " bytes"
                      : res.status == 404 ? "no route " + req.method + " " + req.path
                      : res.status == 405 ? "method not allowed"
                                          : "request failed";
    res.set_content(ApiError(res.status, msg).body_for(req.path), "application/json");
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
  s.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    json j = {{"status", "ok"}, {"model", model_id_}, {"running", sched_->running()}, {"queued", sched_->queued()}};
    res.set_content(wire(j), "application/json");
  });
  s.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_.render(), "text/plain; version=0.0.4");
  });
  s.Get("/v1/models", [this](const httplib::Request& req, httplib::Response& res) {
    if (!authorized(req, res)) return;
    json m = {{"id", model_id_}, {"object", "model"}, {"created", created_}, {"owned_by", "v4host"},
              {"max_model_len", opt_.sched.ctx}};
    res.set_content(wire(json{{"object", "list"}, {"data", json::array({m})}}), "application/json");
  });
  s.Get(R"(/v1/models/(.+))", [this](const httplib::Request& req, httplib::Response& res) {
    if (!authorized(req, res)) return;
    if (req.matches[1] != model_id_) {
      res.status = 404;
      res.set_content(ApiError(404, "the model '" + std::string(req.matches[1]) + "' does not exist", "model", "model_not_found").body_for(""),
                      "application/json");
      return;
    }
    res.set_content(wire(json{{"id", model_id_}, {"object", "model"}, {"created", created_}, {"owned_by", "v4host"}}),
                    "application/json");
  });
  auto guarded = [this](const char* route, void (Service::*fn)(const httplib::Request&, httplib::Response&)) {
    return [this, route, fn](const httplib::Request& req, httplib::Response& res) {
      if (!authorized(req, res)) {
        metrics_.inc("v4host_requests_total", {{"route", route}, {"status", "401"}});
        return;
      }
      const auto t0 = std::chrono::steady_clock::now();
      try {
        (this->*fn)(req, res);
      } catch (const ApiError& e) {
        res.status = e.status;
        if (e.status == 429) res.set_header("Retry-After", "1");
        res.set_content(e.body_for(req.path), "application/json");
        log_request(req, e.status, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 0, 0, e.what());
      } catch (const InputError& e) {
        res.status = 400;
        res.set_content(ApiError(400, e.what()).body_for(req.path), "application/json");
        log_request(req, 400, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 0, 0, e.what());
      }
      metrics_.inc("v4host_requests_total", {{"route", route}, {"status", std::to_string(res.status)}});
    };
  };
  s.Post("/v1/chat/completions", guarded("chat_completions", &Service::handle_chat));
  s.Post("/v1/completions", guarded("completions", &Service::handle_completions));
  s.Post("/v1/messages", guarded("messages", &Service::handle_messages));
}

}  // namespace v4
