#include "router/proxy.h"

#include <openssl/sha.h>
#include <pthread.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <random>
#include <set>
#include <thread>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <fmt/format.h>

#include "core/thread_priority.h"
#include "net/http_server.h"
#include "protocol/protocol.h"
#include "router/balance.h"
#include "router/cost.h"
#include "router/fast_chat.h"
#include "router/ledger.h"
#include "router/metrics.h"
#include "router/rules.h"
#include "router/upstream.h"
#include "router/upstream_client.h"
#include "router/verify.h"
#include "text/tokenizer.h"

namespace v4::router {

namespace asio = boost::asio;
using protocol::Dialect;
using protocol::ojson;
using SClock = std::chrono::steady_clock;

namespace {

double since_ms(SClock::time_point t0) { return std::chrono::duration<double, std::milli>(SClock::now() - t0).count(); }

std::string sha256_hex(const std::string& s) {
  unsigned char d[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(s.data()), s.size(), d);
  std::string h;
  for (unsigned char c : d) h += fmt::format("{:02x}", c);
  return h;
}

std::string random_id() {
  static std::atomic<uint64_t> seq{0};
  static const uint64_t boot = std::random_device{}() ^ (static_cast<uint64_t>(std::time(nullptr)) << 20);
  return fmt::format("rt-{:012x}{:06x}", boot & 0xffffffffffffull, seq.fetch_add(1) & 0xffffff);
}

// An error body in the client's dialect.
std::string error_body(Dialect d, int status, const std::string& msg, const std::string& code, const std::string& param = "") {
  if (d == Dialect::AnthropicMessages) {
    std::string type = status == 429 ? "rate_limit_error" : status == 401 ? "authentication_error" : status == 403 ? "permission_error"
                       : status == 404 ? "not_found_error" : status >= 500 ? "api_error" : "invalid_request_error";
    return protocol::wire({{"type", "error"}, {"error", {{"type", type}, {"message", msg}}}});
  }
  std::string type = status == 429 ? "rate_limit_error" : status >= 500 ? "server_error" : status == 401 ? "authentication_error"
                                                                                                          : "invalid_request_error";
  ojson e = {{"message", msg}, {"type", type}, {"code", code.empty() ? nullptr : ojson(code)}, {"param", param.empty() ? nullptr : ojson(param)}};
  return protocol::wire({{"error", e}});
}

// The message of an upstream's JSON error body (OpenAI or Anthropic shape), or the raw start.
std::string upstream_error_message(const std::string& body) {
  auto j = ojson::parse(body, nullptr, false);
  if (!j.is_discarded() && j.is_object() && j.contains("error")) {
    auto& e = j["error"];
    if (e.is_object() && e.contains("message") && e["message"].is_string()) return e["message"].get<std::string>();
    if (e.is_string()) return e.get<std::string>();
  }
  std::string s = body.substr(0, 200);
  for (char& c : s)
    if (static_cast<unsigned char>(c) < 0x20) c = ' ';
  return s;
}

// Retry-After in seconds (delta-seconds form; an HTTP date is treated as unknown), -1 if absent.
double retry_after_s(const HeaderList& h) {
  std::string v = header_of(h, "retry-after");
  if (v.empty()) return -1;
  char* end = nullptr;
  double s = std::strtod(v.c_str(), &end);
  if (end == v.c_str() || s < 0) return -1;
  return s;
}

}  // namespace

// One upstream I/O thread: its own io_context, HTTP client (and connection pool) and RNG. An
// exchange is pinned to one shard for its whole life, so its state needs no lock; exchanges are
// spread over the shards round-robin, so upstream I/O uses every core, not one thread.
struct Shard {
  asio::io_context io{1};
  asio::executor_work_guard<asio::io_context::executor_type> guard{io.get_executor()};
  std::unique_ptr<UpClient> client;
  std::mt19937_64 rng{std::random_device{}()};
  std::thread th;
  Shard() : client(std::make_unique<UpClient>(io)) {}
};

// One client request in flight. Touched only on its shard's thread.
struct Exchange {
  Shard* shard = nullptr;
  std::shared_ptr<net::Reply> reply;
  Dialect dialect = Dialect::ChatCompletions;
  std::string raw_body;  // as the client sent it: a plain Chat Completions body is edited, not re-emitted
  ojson body;
  protocol::Request req;
  std::string client_model;
  const Route* route = nullptr;
  std::string route_why;
  std::string session_header;  // `session_id` / `x-session-id`, read only when a route has replica groups
  const Principal* key = nullptr;
  const Principal* team = nullptr;
  Features features;
  RequestRecord rec;
  SClock::time_point t0;
  std::vector<UpstreamState*> plan;
  size_t next = 0;
  int attempt = 0;
  // Current hop.
  UpstreamState* up = nullptr;
  std::shared_ptr<UpCancel> handle;
  std::unique_ptr<asio::steady_timer> idle_timer, total_timer, backoff_timer;
  SClock::time_point idle_deadline{};
  bool idle_armed = false;
  uint64_t hop_gen = 0;
  std::unique_ptr<protocol::StreamReader> reader;
  protocol::SseDecoder decoder;
  protocol::ResponseAccumulator acc;
  std::vector<protocol::StreamEvent> events;  // held until commit (buffer mode: until verified)
  int up_status = 0;
  std::string up_error_body;
  HeaderList up_headers;
  bool got_token = false, timed_out = false, garbage = false, cancelled_by_client = false;
  std::string garbage_msg, hop_note;
  SClock::time_point hop_t0;
  int hop_sharing = 1;
  // Passthrough (same dialect, first_byte, no verifiers, no tools): upstream frames go to the
  // client as they are; only the frames carrying the finish, usage or an error are parsed.
  bool passthrough = false, saw_done = false, pt_error = false;
  std::vector<std::string> held, tail;  // before the first token / the end, held until commit
  std::string outbuf;                   // frames of the current upstream read, written at once
  std::string pt_buf;                   // an incomplete event of the upstream stream (raw bytes)
  bool pt_raw = true;                   // events are split on raw bytes (false once a CR line end shows up)
  // Chat Completions upstream: plain delta frames are read with a SAX scan, the rest by `reader`.
  bool fast_chat = false, reader_started = false;
  fastchat::Delta delta;
  // Non-streaming client, Chat Completions upstream: the whole stream is read by the lean reader
  // (no JSON document at all) unless a frame it does not handle shows up; then the frames so far
  // are replayed into the protocol reader.
  bool lean_on = false;
  fastchat::LeanReader lean;
  std::vector<std::string> lean_frames;
  std::vector<protocol::StreamEvent> lean_events;
  protocol::Usage pt_usage;
  std::string pt_error_msg;
  // Client side.
  bool committed = false, finished = false, client_gone = false;
  std::shared_ptr<net::Stream> stream;
  std::unique_ptr<protocol::StreamWriter> writer;
  double ttft_ms = 0;
  // Budget reservation: the worst case of the planned priced hops, held against each budgeted
  // scope (key, team, route) from planning until the ledger has the actual cost.
  double reserved_usd = 0;
  std::vector<std::string> reserved_in;
  // Last failure, for the answer when every hop failed.
  int fail_status = 502;
  std::string fail_msg = "no upstream answered", fail_code = "upstream_error";
  double fail_retry_after = -1;
};

struct Proxy::Impl : std::enable_shared_from_this<Proxy::Impl> {
  Config cfg;
  const text::Tokenizer* tok;
  ProxyOptions opt;
  Metrics metrics;
  std::unique_ptr<Ledger> ledger;
  std::vector<std::unique_ptr<Shard>> shards;
  std::atomic<size_t> next_shard{0};
  bool shared_loops = true;
  asio::thread_pool blocking{4};
  std::unique_ptr<net::HttpServer> server;
  std::vector<std::unique_ptr<UpstreamState>> states;
  std::vector<std::unique_ptr<asio::steady_timer>> health_timers;
  ReasoningMemo memo;
  std::map<std::string, const Principal*> key_by_secret;  // env keys
  std::map<std::string, const Principal*> key_by_hash;
  bool has_classifier = false;
  std::set<std::string> rule_headers;  // lower-case header names some rule matches on
  bool any_groups = false;             // some route's chain holds a replica group
  FILE* access = nullptr;
  std::mutex access_mu;
  std::atomic<bool> realtime_ok{true};  // every loop thread got SCHED_FIFO (io_realtime)
  std::atomic<bool> stopping{false};
  // In-flight budget reservations by scope ("k|name", "t|name", "r|name"): checked and taken under
  // one lock, so concurrent requests cannot together spend past a budget.
  std::mutex reserve_mu;
  std::map<std::string, double> reserved;

  Impl(Config c, const text::Tokenizer* t, ProxyOptions o) : cfg(std::move(c)), tok(t), opt(o) {}

  UpstreamState* state(const std::string& name) {
    for (auto& s : states)
      if (s->cfg.name == name) return s.get();
    return nullptr;
  }

  void init() {
    ledger = std::make_unique<Ledger>(cfg.ledger);
    // Default: the server's connections and the upstream calls share event loops (one thread each):
    // a request, its upstream exchange and its reply stay on one thread, with no wake-up of another
    // thread per request or per streamed frame. upstream_threads > 0: separate upstream threads.
    shared_loops = opt.upstream_threads <= 0;
    int n = shared_loops ? std::max(1, opt.io_threads) : opt.upstream_threads;
    for (int i = 0; i < n; ++i) shards.push_back(std::make_unique<Shard>());
    for (auto& u : cfg.upstreams) states.push_back(std::make_unique<UpstreamState>(u));
    for (auto& k : cfg.keys) {
      if (!k.key_env.empty()) key_by_secret[std::getenv(k.key_env.c_str())] = &k;
      if (!k.key_sha256.empty()) key_by_hash[k.key_sha256] = &k;
    }
    for (auto& r : cfg.routes) any_groups = any_groups || !r.groups.empty();
    for (auto& r : cfg.rules) {
      has_classifier = has_classifier || r.classifier.has_value();
      for (auto& [name, value] : r.match.headers) rule_headers.insert(name);
    }
    if (cfg.access_log == "-") access = nullptr;
    else if (cfg.access_log.empty()) access = stderr;
    else {
      access = std::fopen(cfg.access_log.c_str(), "a");
      if (!access) throw InputError("access_log: cannot open " + cfg.access_log);
    }
    describe_metrics();
    net::ServerOptions so;
    so.host = cfg.host;
    so.port = cfg.port;
    so.io_threads = shared_loops ? 1 : opt.io_threads;  // shared loops: the server's own thread only accepts
    if (shared_loops)
      for (auto& sh : shards) so.loops.push_back(&sh->io);
    so.worker_threads = 1;
    so.idle_timeout_s = 120;
    so.write_timeout_s = 60;
    server = std::make_unique<net::HttpServer>(so);
    register_routes();
  }

  void describe_metrics() {
    metrics.describe("v4host_route_requests_total", "counter", "Requests by route, answering upstream and outcome");
    metrics.describe("v4host_route_hops_total", "counter", "Upstream attempts by upstream and outcome");
    metrics.describe("v4host_route_replica_picks_total", "counter", "First choice within a replica group, by route, upstream and what chose it");
    metrics.describe("v4host_route_fallbacks_total", "counter", "Moves to the next hop of a chain, by route, upstream left and reason");
    metrics.describe("v4host_route_verification_failures_total", "counter", "Answers rejected by a verifier, by route, upstream and verifier");
    metrics.describe("v4host_route_spend_usd_total", "counter", "Spend by route, upstream and kind (tariff or amortised)");
    metrics.describe("v4host_route_tokens_total", "counter", "Tokens by upstream and type (prompt, cached, completion)");
    metrics.describe("v4host_route_upstream_healthy", "gauge", "1 if the last active health check passed");
    metrics.describe("v4host_route_upstream_breaker_open", "gauge", "1 while the circuit breaker is open");
    metrics.describe("v4host_route_upstream_in_flight", "gauge", "Requests now at the upstream");
    metrics.describe("v4host_route_upstream_queue_depth", "gauge", "Waiting requests the upstream reported");
    metrics.describe("v4host_route_ledger_write_failures_total", "counter", "Ledger records that failed to commit");
    metrics.describe_histogram("v4host_route_request_duration_seconds", "Client request duration by route",
                               {0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120});
    metrics.describe_histogram("v4host_route_upstream_duration_seconds", "Upstream attempt duration by upstream",
                               {0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120});
    metrics.describe_histogram("v4host_route_time_to_first_token_seconds", "Time to the first token sent, by route",
                               {0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30});
  }

  // ---------------------------------------------------------------- HTTP front
  void register_routes() {
    auto self = this;
    server->on_error([](net::Reply& r, int status, const std::string& msg) {
      r.set_content(error_body(Dialect::ChatCompletions, status, msg, ""), "application/json");
    });
    server->route("GET", "/health", [self](const net::Request&, net::Reply& res) { self->health(res); });
    server->route("GET", "/metrics", [self](const net::Request&, net::Reply& res) {
      self->refresh_gauges();
      res.set_content(self->metrics.render(), "text/plain; version=0.0.4");
    });
    server->route("GET", "/v1/models", [self](const net::Request& req, net::Reply& res) {
      if (!self->authorize(req, res, Dialect::ChatCompletions)) return;
      ojson data = ojson::array();
      for (auto& r : self->cfg.routes)
        data.push_back({{"id", r.name}, {"object", "model"}, {"created", 0}, {"owned_by", "v4host-route"}, {"type", "model"},
                        {"display_name", r.name}, {"created_at", "1970-01-01T00:00:00Z"}});
      res.set_content(protocol::wire({{"object", "list"}, {"data", data}, {"has_more", false}}), "application/json");
    });
    for (Dialect d : {Dialect::ChatCompletions, Dialect::Completions, Dialect::Responses, Dialect::AnthropicMessages})
      server->route("POST", protocol::dialect_path(d), [self, d](const net::Request& req, net::Reply& res) { self->generate(d, req, res); });
  }

  void health(net::Reply& res) {
    ojson ups = ojson::object();
    for (auto& s : states) {
      Pressure p = s->pressure();
      ups[s->cfg.name] = {{"healthy", s->healthy()}, {"breaker", s->breaker_state()}, {"in_flight", s->in_flight.load()},
                          {"queue_depth", p.queue_depth < 0 ? ojson(nullptr) : ojson(p.queue_depth)}};
    }
    res.set_content(protocol::wire({{"status", "ok"}, {"upstreams", ups}}), "application/json");
  }

  void refresh_gauges() {
    for (auto& s : states) {
      Labels l{{"upstream", s->cfg.name}};
      metrics.set("v4host_route_upstream_healthy", l, s->healthy() ? 1 : 0);
      metrics.set("v4host_route_upstream_breaker_open", l, s->breaker_state() == "closed" ? 0 : 1);
      metrics.set("v4host_route_upstream_in_flight", l, s->in_flight.load());
      Pressure p = s->pressure();
      if (p.queue_depth >= 0) metrics.set("v4host_route_upstream_queue_depth", l, p.queue_depth);
    }
    metrics.set("v4host_route_ledger_write_failures_total", {}, static_cast<double>(ledger->write_failures()));
  }

  // The client's key: Authorization: Bearer / x-api-key. Returns false (and answers 401) when the
  // config requires a known key and this is not one.
  bool authorize(const net::Request& req, net::Reply& res, Dialect d, const Principal** out = nullptr) {
    std::string k = req.header("authorization");
    if (k.rfind("Bearer ", 0) == 0 || k.rfind("bearer ", 0) == 0) k = k.substr(7);
    else k.clear();
    if (k.empty()) k = req.header("x-api-key");
    const Principal* p = nullptr;
    if (!k.empty()) {
      auto it = key_by_secret.find(k);
      if (it != key_by_secret.end()) p = it->second;
      else if (!key_by_hash.empty()) {
        auto h = key_by_hash.find(sha256_hex(k));
        if (h != key_by_hash.end()) p = h->second;
      }
    }
    if (!p && cfg.require_key) {
      res.status = 401;
      res.set_content(error_body(d, 401, k.empty() ? "missing API key (Authorization: Bearer KEY)" : "unknown API key", "invalid_api_key"),
                      "application/json");
      return false;
    }
    if (out) *out = p;
    return true;
  }

  void bad_request(net::Reply& res, Dialect d, int status, const std::string& msg, const std::string& param = "",
                   const std::string& code = "invalid_request_error") {
    res.status = status;
    res.set_content(error_body(d, status, msg, code, param), "application/json");
    metrics.inc("v4host_route_requests_total", {{"route", "none"}, {"upstream", "none"}, {"outcome", "bad_request"}});
  }

  void generate(Dialect d, const net::Request& hreq, net::Reply& res) {
    auto ex = std::make_shared<Exchange>();
    ex->t0 = SClock::now();
    ex->dialect = d;
    if (!authorize(hreq, res, d, &ex->key)) return;
    ex->raw_body = hreq.body;
    ex->body = ojson::parse(ex->raw_body, nullptr, false);
    if (ex->body.is_discarded() || !ex->body.is_object()) return bad_request(res, d, 400, "the request body is not a JSON object");
    try {
      ex->req = protocol::parse_request(d, ex->body);
    } catch (const protocol::ProtocolError& e) {
      return bad_request(res, d, e.status, e.what(), e.param, e.code.empty() ? "invalid_request_error" : e.code);
    }
    if (!ex->req.previous_response_id.empty())
      return bad_request(res, d, 400, "previous_response_id is not supported by the router (it keeps no conversation state): send the full input",
                         "previous_response_id");
    ex->client_model = ex->req.model;
    if (ex->key && !ex->key->team.empty()) ex->team = cfg.team(ex->key->team);
    ex->features = request_features(ex->req, tok);
    if (!rule_headers.empty())  // only the headers a rule looks at (no per-request copy of all of them)
      for (auto& f : hreq.headers.fields()) {
        std::string n = f.name;
        for (auto& c : n) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        if (rule_headers.count(n)) ex->features.headers[n] = f.value;
      }
    ex->features.tag = hreq.header("x-v4host-tag");
    if (ex->features.tag.empty() && ex->req.metadata.is_object() && ex->req.metadata.contains("tag") && ex->req.metadata["tag"].is_string())
      ex->features.tag = ex->req.metadata["tag"].get<std::string>();
    if (ex->key) ex->features.key = ex->key->name;
    if (ex->team) ex->features.team = ex->team->name;
    if (any_groups) {
      ex->session_header = hreq.header("session_id");
      if (ex->session_header.empty()) ex->session_header = hreq.header("x-session-id");
    }
    ex->rec.id = random_id();
    ex->rec.ts = static_cast<double>(std::chrono::duration_cast<std::chrono::microseconds>(
                                         std::chrono::system_clock::now().time_since_epoch()).count()) / 1e6;
    ex->rec.api = protocol::dialect_name(d);
    ex->rec.stream = ex->req.stream;
    ex->rec.key = ex->key ? ex->key->name : "";
    ex->rec.team = ex->team ? ex->team->name : "";
    ex->rec.prompt_tokens = ex->features.prompt_tokens;
    ex->reply = res.defer();
    std::weak_ptr<Exchange> wex = ex;
    auto self = shared_from_this();
    Shard* shard = ex->shard = shared_loops ? shards[static_cast<size_t>(hreq.loop) % shards.size()].get()
                                            : shards[next_shard.fetch_add(1, std::memory_order_relaxed) % shards.size()].get();
    ex->reply->on_disconnect([shard, wex] {
      asio::post(shard->io, [wex] {
        if (auto e = wex.lock()) {
          e->client_gone = true;
          if (e->handle) e->handle->cancel();
        }
      });
    });
    if (has_classifier) {
      // Classifiers may block (a command, an HTTP call): decide on the blocking pool.
      asio::post(blocking, [self, ex] {
        self->decide(*ex);
        asio::post(ex->shard->io, [self, ex] { self->start(ex); });
      });
    } else {
      decide(*ex);
      // Shared loops: this handler already runs on the exchange's loop, so the upstream call
      // starts now rather than after another pass of the loop.
      if (shared_loops) start(ex);
      else asio::post(ex->shard->io, [self, ex] { self->start(ex); });
    }
  }

  void decide(Exchange& ex) {
    RuleEnv env;
    env.pressure = [this](const std::string& u) {
      UpstreamState* s = state(u);
      return s ? s->pressure() : Pressure{};
    };
    env.classify = [this](const Classifier& c, const std::string& body) -> std::string {
      if (!c.command.empty()) return run_classifier_command(c.command, body, c.timeout_s);
      UpResult r = post_json_blocking(c.url, body, c.timeout_s);
      if (!r.ok() || r.status != 200) return "";
      auto j = ojson::parse(r.body, nullptr, false);
      if (!j.is_discarded() && j.is_object() && j.contains("route") && j["route"].is_string()) return j["route"].get<std::string>();
      return "";
    };
    const std::vector<std::string>* allowed = nullptr;
    if (ex.key && !ex.key->routes.empty()) allowed = &ex.key->routes;
    else if (ex.team && !ex.team->routes.empty()) allowed = &ex.team->routes;
    env.allowed_routes = allowed;
    RouteChoice ch = choose_route(cfg, ex.features, has_classifier ? protocol::wire(ex.body) : std::string(), env);
    ex.route = cfg.route(ch.route);
    ex.route_why = ch.why;
  }

  // ---------------------------------------------------------------- planning
  void skip(Exchange& ex, const Upstream& u, const std::string& outcome, const std::string& detail) {
    HopRecord h;
    h.upstream = u.name;
    h.outcome = outcome;
    h.detail = detail;
    ex.rec.hops.push_back(h);
    metrics.inc("v4host_route_hops_total", {{"upstream", u.name}, {"outcome", outcome}});
  }

  // Residency allowed for this request: the key's, its team's and the route's labels together.
  bool residency_ok(const Exchange& ex, const Upstream& u) {
    for (const std::vector<std::string>* l : {ex.key ? &ex.key->residency : nullptr, ex.team ? &ex.team->residency : nullptr, &ex.route->residency})
      if (l && !l->empty() && std::find(l->begin(), l->end(), u.residency) == l->end()) return false;
    return true;
  }

  static std::string scope_key(Ledger::Scope s, const std::string& name) {
    return (s == Ledger::Scope::Key ? "k|" : s == Ledger::Scope::Team ? "t|" : "r|") + name;
  }

  bool has_budget(const Exchange& ex) const {
    return (ex.key && ex.key->budget.any()) || (ex.team && ex.team->budget.any()) || ex.route->budget.any();
  }

  // "" when every budget of this request can take `worst` more on top of what is spent and what
  // requests in flight have reserved, else why not. Called with reserve_mu held.
  std::string budget_block(const Exchange& ex, std::time_t now, double worst) {
    auto check = [&](Ledger::Scope s, const Budget& b, const std::string& name, const char* what) -> std::string {
      if (!b.any()) return "";
      double held = 0;
      auto it = reserved.find(scope_key(s, name));
      if (it != reserved.end()) held = it->second;
      auto over = [&](double spent, double limit, const char* period) -> std::string {
        if (spent + held + worst <= limit && spent < limit) return "";
        std::string w = fmt::format("{} '{}' has spent ${:.4f} of its ${} {} budget", what, name, spent, limit, period);
        if (held > 0) w += fmt::format(", ${:.6f} is reserved by requests in flight", held);
        if (worst > 0 && spent < limit) w += fmt::format(", and this request could cost up to ${:.6f}", worst);
        return w;
      };
      std::string w;
      if (b.day_usd > 0 && !(w = over(ledger->spent_today(s, name, now), b.day_usd, "daily")).empty()) return w;
      if (b.month_usd > 0 && !(w = over(ledger->spent_month(s, name, now), b.month_usd, "monthly")).empty()) return w;
      return "";
    };
    std::string w;
    if (ex.key && (w = check(Ledger::Scope::Key, ex.key->budget, ex.key->name, "key")) != "") return w;
    if (ex.team && (w = check(Ledger::Scope::Team, ex.team->budget, ex.team->name, "team")) != "") return w;
    return check(Ledger::Scope::Route, ex.route->budget, ex.route->name, "route");
  }

  // Called with reserve_mu held, once the plan is made.
  void reserve(Exchange& ex, double usd) {
    if (usd <= 0) return;
    ex.reserved_usd = usd;
    if (ex.key && ex.key->budget.any()) ex.reserved_in.push_back(scope_key(Ledger::Scope::Key, ex.key->name));
    if (ex.team && ex.team->budget.any()) ex.reserved_in.push_back(scope_key(Ledger::Scope::Team, ex.team->name));
    if (ex.route->budget.any()) ex.reserved_in.push_back(scope_key(Ledger::Scope::Route, ex.route->name));
    for (auto& k : ex.reserved_in) reserved[k] += usd;
  }

  // After the ledger has the request's actual cost (Ledger::record adds it to the sums at once).
  void release(Exchange& ex) {
    if (ex.reserved_in.empty()) return;
    std::lock_guard<std::mutex> l(reserve_mu);
    for (auto& k : ex.reserved_in) {
      auto it = reserved.find(k);
      if (it == reserved.end()) continue;
      it->second -= ex.reserved_usd;
      if (it->second <= 1e-12) reserved.erase(it);
    }
    ex.reserved_in.clear();
    ex.reserved_usd = 0;
  }

  void start(const std::shared_ptr<Exchange>& ex) {
    if (ex->client_gone) return finish_gone(ex);
    std::time_t now = std::time(nullptr);
    int64_t max_out = ex->req.max_tokens.value_or(0);
    // Plan the chain; a route whose every hop is over the cost cap may hand over to a cheaper one.
    for (int depth = 0; depth <= static_cast<int>(cfg.routes.size()); ++depth) {
      ex->plan.clear();
      ex->rec.route = ex->route->name;
      // Budgets: checked against spend plus in-flight reservations, and this request's worst case
      // reserved, under one lock (only when a budget applies: no lock on the common path).
      std::unique_lock<std::mutex> lk(reserve_mu, std::defer_lock);
      bool budgeted = has_budget(*ex);
      if (budgeted) lk.lock();
      std::string budget_why;
      double reserve_usd = 0;
      bool cap_skipped = false, budget_skipped = false, residency_skipped = false;
      std::vector<std::string> ordered;  // the chain with its replica groups in this request's order
      if (!ex->route->groups.empty()) ordered = order_chain(*ex);
      for (auto& name : ex->route->groups.empty() ? ex->route->chain : ordered) {
        UpstreamState* s = state(name);
        const Upstream& u = s->cfg;
        if (!residency_ok(*ex, u)) {
          skip(*ex, u, "residency", "upstream residency '" + u.residency + "' not allowed for this request");
          residency_skipped = true;
          continue;
        }
        Prices p = prices_at(u.cost, now);
        double worst = u.cost.priced() ? worst_case_cost(p, ex->features.prompt_tokens, s->cached_share(), max_out > 0 ? max_out : u.max_output_tokens) : 0;
        if (u.cost.priced() && budgeted) {  // an unpriced (local) tier is never blocked by money
          std::string w = budget_block(*ex, now, worst);
          if (!w.empty()) {
            skip(*ex, u, "budget", w);
            budget_why = w;
            budget_skipped = true;
            continue;
          }
        }
        if (ex->route->cost_cap_usd > 0 && u.cost.priced()) {
          if (worst > ex->route->cost_cap_usd) {
            skip(*ex, u, "cost_cap", fmt::format("worst case ${:.6f} > cap ${}", worst, ex->route->cost_cap_usd));
            cap_skipped = true;
            continue;
          }
        }
        ex->plan.push_back(s);
        reserve_usd = std::max(reserve_usd, worst);
      }
      if (!ex->plan.empty()) {
        if (budgeted) reserve(*ex, reserve_usd);
        break;
      }
      if (lk.owns_lock()) lk.unlock();
      if (cap_skipped && !ex->route->over_cap_route.empty()) {
        ex->route_why += "; over the cost cap of " + ex->route->name;
        ex->route = cfg.route(ex->route->over_cap_route);
        continue;
      }
      if (budget_skipped) return refuse(ex, 429, "budget exhausted: " + budget_why, "budget_exhausted", "refused_budget");
      if (cap_skipped)
        return refuse(ex, 400,
                      fmt::format("request over the cost cap of route '{}' (${} per request, worst case at max_tokens); lower max_tokens",
                                  ex->route->name, ex->route->cost_cap_usd),
                      "cost_cap_exceeded", "refused_cost");
      if (residency_skipped)
        return refuse(ex, 403, "no upstream of route '" + ex->route->name + "' is allowed to receive this request's data", "residency",
                      "refused_residency");
      return refuse(ex, 503, "route has no upstream", "no_upstream", "failed");
    }
    try_next(ex);
  }

  // The route's chain with each replica group ordered for this request (router/balance.h).
  std::vector<std::string> order_chain(Exchange& ex) {
    const Route& r = *ex.route;
    std::vector<std::string> out = r.chain;
    const char* why = "least loaded";
    const std::string key = r.balance.by == Balance::Session ? session_key(ex.req, ex.session_header, &why) : std::string();
    const uint64_t tie = ex.shard->rng();
    for (auto [begin, end] : r.groups) {
      std::vector<std::string> members(r.chain.begin() + static_cast<std::ptrdiff_t>(begin), r.chain.begin() + static_cast<std::ptrdiff_t>(end));
      std::vector<double> load;
      for (auto& m : members) {
        UpstreamState* st = state(m);
        load.push_back(st->in_flight.load(std::memory_order_relaxed) + std::max(0.0, st->pressure().queue_depth));
      }
      std::vector<size_t> order = order_replicas(r.balance, key, members, load, tie);
      for (size_t i = 0; i < order.size(); ++i) out[begin + i] = members[order[i]];
      metrics.inc("v4host_route_replica_picks_total", {{"route", r.name}, {"upstream", out[begin]}, {"by", why}});
    }
    ex.route_why += std::string("; replicas by ") + why;
    return out;
  }

  // ---------------------------------------------------------------- hops
  void try_next(const std::shared_ptr<Exchange>& ex) {
    while (ex->next < ex->plan.size()) {
      UpstreamState* s = ex->plan[ex->next];
      auto now = SClock::now();
      bool tried = false;
      for (auto& h : ex->rec.hops) tried = tried || (h.outcome != "circuit_open" && h.outcome != "busy" && h.outcome != "residency" &&
                                                     h.outcome != "budget" && h.outcome != "cost_cap");
      if (!tried) {  // what the client hears if nothing gets to try
        ex->fail_status = 503;
        ex->fail_code = "upstream_unavailable";
        ex->fail_msg = "no upstream of route '" + ex->route->name + "' is available now (circuit breakers open or concurrency limits reached)";
      }
      if (!s->allow(now)) {
        skip(*ex, s->cfg, "circuit_open", "circuit breaker open");
        metrics.inc("v4host_route_fallbacks_total", {{"route", ex->route->name}, {"from", s->cfg.name}, {"reason", "circuit_open"}});
        ex->next++;
        ex->attempt = 0;
        continue;
      }
      if (s->in_flight >= s->cfg.concurrency) {
        skip(*ex, s->cfg, "busy", fmt::format("{} requests in flight (limit {})", s->in_flight.load(), s->cfg.concurrency));
        metrics.inc("v4host_route_fallbacks_total", {{"route", ex->route->name}, {"from", s->cfg.name}, {"reason", "busy"}});
        ex->next++;
        ex->attempt = 0;
        continue;
      }
      return launch(ex, s);
    }
    fail_all(ex);
  }

  void launch(const std::shared_ptr<Exchange>& ex, UpstreamState* s) {
    if (ex->client_gone) return finish_gone(ex);
    const Upstream& u = s->cfg;
    ClientBody cb{ex->raw_body, &ex->body};
    WireRequest w = build_wire_request(u, ex->req, memo, &cb);
    ex->up = s;
    ex->hop_note = w.note;
    ex->hop_gen++;
    ex->idle_armed = false;
    ex->reader = protocol::make_stream_reader(w.dialect);
    ex->passthrough = ex->req.stream && ex->route->stream == StreamMode::FirstByte && ex->route->verify.empty() && ex->req.tools.empty() &&
                      w.dialect == ex->dialect && ex->dialect == Dialect::ChatCompletions;
    ex->saw_done = ex->pt_error = false;
    ex->pt_buf.clear();
    ex->pt_raw = true;
    ex->fast_chat = w.dialect == Dialect::ChatCompletions;
    ex->reader_started = false;
    ex->lean_on = ex->fast_chat && !ex->req.stream;
    ex->lean = fastchat::LeanReader();
    ex->lean_frames.clear();
    ex->held.clear();
    ex->tail.clear();
    ex->pt_usage = {};
    ex->pt_error_msg.clear();
    ex->decoder = protocol::SseDecoder();
    ex->acc = protocol::ResponseAccumulator();
    ex->events.clear();
    ex->up_status = 0;
    ex->up_error_body.clear();
    ex->up_headers.clear();
    ex->got_token = ex->timed_out = ex->garbage = false;
    ex->garbage_msg.clear();
    ex->hop_t0 = SClock::now();
    s->in_flight++;
    ex->hop_sharing = s->in_flight;
    UpCall r;
    r.url = std::move(w.url);
    r.headers = std::move(w.headers);
    // The ledger's id goes to every hop, so an upstream's own log lines can be matched to the
    // router's record (and the benchmark matches the upstream's write times to the client's reads).
    r.headers.emplace_back("X-Request-Id", ex->rec.id);
    r.body = std::move(w.body);
    r.connect_s = u.timeouts.connect_s;
    r.first_byte_s = u.timeouts.first_token_s;
    r.total_s = u.timeouts.total_s;
    auto self = shared_from_this();
    UpHandlers h;
    h.on_head = [ex](int status, const HeaderList& headers) {
      ex->up_status = status;
      ex->up_headers = headers;
    };
    h.on_body = [self, ex](std::string_view piece) { self->on_piece(ex, piece); };
    h.on_done = [self, ex, s](UpResult&& resp) {
      s->in_flight--;
      self->on_hop_done(ex, std::move(resp));
    };
    arm_idle(ex, u.timeouts.first_token_s);
    ex->handle = ex->shard->client->start(std::move(r), std::move(h));
  }

  // A hop that sends nothing for first_token seconds (before the first token, or between pieces
  // after it) is cancelled as timed out: a hang is found without waiting for the total limit.
  // The deadline moves with every piece; the timer is re-armed only when it fires early (one
  // wait per silence, not a cancel and a new wait per piece).
  void arm_idle(const std::shared_ptr<Exchange>& ex, double seconds) {
    if (!ex->idle_timer) ex->idle_timer = std::make_unique<asio::steady_timer>(ex->shard->io);
    ex->idle_deadline = SClock::now() + std::chrono::duration_cast<SClock::duration>(std::chrono::duration<double>(seconds));
    if (ex->idle_armed) return;
    ex->idle_armed = true;
    wait_idle(ex, ex->hop_gen);
  }

  void wait_idle(const std::shared_ptr<Exchange>& ex, uint64_t gen) {
    ex->idle_timer->expires_at(ex->idle_deadline);
    std::weak_ptr<Exchange> wex = ex;
    auto self = shared_from_this();
    ex->idle_timer->async_wait([self, wex, gen](const boost::system::error_code& ec) {
      auto e = wex.lock();
      if (!e || e->hop_gen != gen) return;  // a later hop owns the timer now
      if (ec) {
        e->idle_armed = false;
        return;
      }
      if (SClock::now() < e->idle_deadline) return self->wait_idle(e, gen);
      e->idle_armed = false;
      e->timed_out = true;
      if (e->handle) e->handle->cancel();
    });
  }

  void on_piece(const std::shared_ptr<Exchange>& ex, std::string_view piece) {
    if (ex->up_status != 200) {
      if (ex->up_error_body.size() < 65536) ex->up_error_body.append(piece.substr(0, 65536 - ex->up_error_body.size()));
      return;
    }
    if (ex->garbage) return;
    arm_idle(ex, ex->up->cfg.timeouts.first_token_s);
    if (ex->passthrough) return pt_piece(ex, piece);
    try {
      for (auto& f : ex->decoder.feed(piece)) read_frame(ex, f);
    } catch (const std::exception& e) {
      ex->garbage = true;
      ex->garbage_msg = e.what();
      ex->handle->cancel();
    }
    flush_out(ex);
  }

  // One upstream frame into events: a plain Chat Completions delta by the SAX scan, anything else
  // (and the first frame, which starts the reader) by the protocol layer's reader.
  void read_frame(const std::shared_ptr<Exchange>& ex, const protocol::SseFrame& f) {
    if (ex->lean_on) {
      if (f.event.empty() && ex->lean.read(f.data, ex->lean_events)) {
        ex->lean_frames.push_back(f.data);
        for (auto& ev : ex->lean_events) on_event(ex, std::move(ev));
        ex->lean_events.clear();
        return;
      }
      // Not the plain shape: the protocol reader takes over from the start of the stream (only
      // the accumulated answer has seen the events: a non-streaming client got nothing yet).
      ex->lean_on = false;
      ex->acc = protocol::ResponseAccumulator();
      ex->reader = protocol::make_stream_reader(Dialect::ChatCompletions);
      ex->reader_started = true;
      std::vector<std::string> seen = std::move(ex->lean_frames);
      ex->lean_frames.clear();
      for (auto& d : seen)
        for (auto& ev : ex->reader->read(protocol::SseFrame{"", d})) on_event(ex, std::move(ev));
    }
    if (ex->fast_chat && ex->reader_started && f.event.empty() && !ex->reader->complete() && fastchat::scan_plain_delta(f.data, ex->delta)) {
      if (!ex->delta.reasoning.empty()) on_event(ex, protocol::StreamEvent::reasoning(std::move(ex->delta.reasoning)));
      if (!ex->delta.content.empty()) on_event(ex, protocol::StreamEvent::content(std::move(ex->delta.content)));
      return;
    }
    ex->reader_started = true;
    for (auto& ev : ex->reader->read(f)) on_event(ex, std::move(ev));
  }

  void flush_out(const std::shared_ptr<Exchange>& ex) {
    if (ex->outbuf.empty() || !ex->stream || ex->stream->closed()) {
      ex->outbuf.clear();
      return;
    }
    // A client that reads too slowly overruns the stream's buffer cap: the server closes it and
    // write() says so; stop the upstream then (memory per stream stays bounded).
    if (!ex->stream->write(std::move(ex->outbuf))) {
      ex->client_gone = true;
      if (ex->handle) ex->handle->cancel();
    }
    ex->outbuf.clear();
  }

  void pt_piece(const std::shared_ptr<Exchange>& ex, std::string_view piece) {
    pt_frames(ex, piece);
    // One write per upstream read, not one per frame: fewer wake-ups of the client's I/O thread.
    if (!ex->outbuf.empty()) pt_write(ex, std::move(ex->outbuf));
    ex->outbuf.clear();
  }

  // Splits the upstream's bytes into events without decoding them: a plain `data:` event is
  // forwarded as the bytes that came (byte-exact), the rest goes through the SSE decoder.
  void pt_frames(const std::shared_ptr<Exchange>& ex, std::string_view piece) {
    if (ex->pt_raw && piece.find('\r') != std::string_view::npos) {  // CR line ends: the decoder from here on
      ex->pt_raw = false;
      std::string rest = std::move(ex->pt_buf);
      ex->pt_buf.clear();
      if (!rest.empty()) pt_decoded(ex, rest);
    }
    if (!ex->pt_raw) return pt_decoded(ex, piece);
    std::string_view view = piece;
    bool buffered = !ex->pt_buf.empty();
    if (buffered) {
      ex->pt_buf.append(piece);
      view = ex->pt_buf;
    }
    size_t pos = 0;
    while (!ex->garbage) {
      std::string_view data;
      bool plain = false;
      size_t n = fastchat::next_event(view.substr(pos), data, plain);
      if (n == 0) break;
      if (plain) pt_frame(ex, view.substr(pos, n), data);
      else pt_decoded(ex, view.substr(pos, n));
      pos += n;
    }
    if (buffered) ex->pt_buf.erase(0, pos);
    else ex->pt_buf.assign(view.substr(pos));
  }

  void pt_decoded(const std::shared_ptr<Exchange>& ex, std::string_view bytes) {
    for (auto& f : ex->decoder.feed(bytes)) {
      if (ex->garbage) return;
      std::string w = f.wire();
      pt_frame(ex, w, f.data);
    }
  }

  // One event of a passed-through stream: `raw` its bytes, `data` its payload. Only the frames
  // that may carry the finish, the usage or an error are parsed.
  void pt_frame(const std::shared_ptr<Exchange>& ex, std::string_view raw, std::string_view data) {
    if (ex->saw_done) return;
    if (data == "[DONE]") {
      ex->saw_done = true;
      ex->tail.emplace_back(raw);
      return;
    }
    if (fastchat::may_end(data)) {
      fastchat::End end;
      std::string stripped;
      if (fastchat::scan_end(data, end) &&
          !(end.usage && end.finish && !ex->req.include_usage && !fastchat::strip_usage(data, stripped))) {
        if (end.usage) {
          ex->pt_usage = end.counts;
          if (!ex->req.include_usage) {  // the router asked for it; the client did not
            if (!end.finish) return;
            ex->tail.push_back("data: " + stripped + "\n\n");
            return;
          }
        }
        if (end.finish || end.usage) {  // the end: held until the ledger has the request
          ex->tail.emplace_back(raw);
          return;
        }
        return pt_token_frame(ex, raw, data);  // only looked like an end
      }
      // An error, an unusual shape, or usage to strip from the finish chunk: the full parse.
      auto j = ojson::parse(data, nullptr, false);
      if (j.is_discarded() || !j.is_object()) {
        ex->garbage = true;
        ex->garbage_msg = "a stream chunk is not JSON";
        ex->handle->cancel();
        return;
      }
      if (j.contains("error")) {
        ex->pt_error = true;
        ex->pt_error_msg = upstream_error_message(std::string(data));
        return;
      }
      bool is_finish = false;
      if (j.contains("choices") && j["choices"].is_array())
        for (auto& c : j["choices"]) is_finish = is_finish || (c.is_object() && c.contains("finish_reason") && c["finish_reason"].is_string());
      bool has_usage = j.contains("usage") && j["usage"].is_object();
      if (has_usage) {
        ex->pt_usage = protocol::chat::parse_usage(j["usage"]);
        if (!ex->req.include_usage) {  // the router asked for it; the client did not
          if (!is_finish) return;
          j.erase("usage");
          ex->tail.push_back(protocol::SseFrame{"", protocol::wire(j)}.wire());
          return;
        }
      }
      if (is_finish || has_usage) {  // the end: held until the ledger has the request
        ex->tail.emplace_back(raw);
        return;
      }
      // Only looked like an end (e.g. a token that spells "error"): an ordinary frame.
    }
    pt_token_frame(ex, raw, data);
  }

  void pt_token_frame(const std::shared_ptr<Exchange>& ex, std::string_view raw, std::string_view data) {
    if (!ex->committed) {
      ex->held.emplace_back(raw);
      if (!fastchat::carries_token(data)) return;
      ex->got_token = true;
      commit_stream(ex);
      for (auto& h : ex->held) ex->outbuf += h;
      ex->held.clear();
      return;
    }
    ex->outbuf.append(raw);
  }

  void pt_write(const std::shared_ptr<Exchange>& ex, std::string bytes) {
    if (!ex->stream || ex->stream->closed()) return;
    if (!ex->stream->write(std::move(bytes))) {
      ex->client_gone = true;
      if (ex->handle) ex->handle->cancel();
    }
  }

  static bool is_token(const protocol::StreamEvent& e) {
    using K = protocol::StreamEvent::Kind;
    return e.kind == K::TextDelta || e.kind == K::ReasoningDelta || e.kind == K::ToolCallStart;
  }

  void on_event(const std::shared_ptr<Exchange>& ex, protocol::StreamEvent ev) {
    using K = protocol::StreamEvent::Kind;
    ex->acc.add(ev);
    if (is_token(ev) && !ex->got_token) ex->got_token = true;
    bool pass_through = ex->req.stream && ex->route->stream == StreamMode::FirstByte && !ex->client_gone;
    if (!pass_through || ev.kind == K::Finish || ev.kind == K::Error) {
      // Held: the whole answer (buffer mode, non-streaming clients), or the end of a passed-through
      // stream, which goes out only after the ledger commit.
      if (ex->req.stream && (!pass_through || ev.kind == K::Finish)) ex->events.push_back(std::move(ev));
      return;
    }
    if (!ex->committed) {
      ex->events.push_back(std::move(ev));
      if (!is_token(ex->events.back())) return;
      commit_stream(ex);
      for (auto& e : ex->events) write_event(ex, e);
      ex->events.clear();
      return;
    }
    write_event(ex, ev);
  }

  // Starts the client's stream (status and headers go out).
  void commit_stream(const std::shared_ptr<Exchange>& ex) {
    ex->committed = true;
    ex->ttft_ms = since_ms(ex->t0);
    auto& r = *ex->reply;
    r.set_header("x-v4host-request-id", ex->rec.id);
    r.set_header("x-v4host-route", ex->route->name);
    r.set_header("x-v4host-upstream", ex->up->cfg.name);
    r.set_header("x-v4host-hops", std::to_string(ex->rec.hops.size() + 1));
    r.set_header("Cache-Control", "no-cache");
    ex->stream = r.start_stream("text/event-stream");
    protocol::StreamMeta meta;
    meta.id = (ex->dialect == Dialect::AnthropicMessages ? "msg_" : ex->dialect == Dialect::Responses ? "resp_" : ex->dialect == Dialect::Completions ? "cmpl-" : "chatcmpl-") + ex->rec.id;
    meta.model = ex->client_model;
    meta.created = static_cast<int64_t>(ex->rec.ts);
    meta.include_usage = ex->req.include_usage;
    meta.request = ex->req;
    ex->writer = protocol::make_stream_writer(ex->dialect, std::move(meta));
    metrics.observe("v4host_route_time_to_first_token_seconds", {{"route", ex->route->name}}, ex->ttft_ms / 1000);
  }

  // Appends the event's frames to the pending output (flush_out writes it).
  void write_event(const std::shared_ptr<Exchange>& ex, const protocol::StreamEvent& e) {
    if (!ex->stream || ex->stream->closed()) return;
    for (auto& f : ex->writer->write(e)) ex->outbuf += f.wire();
  }

  void on_hop_done(const std::shared_ptr<Exchange>& ex, UpResult&& resp) {
    if (ex->idle_timer) ex->idle_timer->cancel();
    ex->handle.reset();
    UpstreamState* s = ex->up;
    const Upstream& u = s->cfg;
    double lat = since_ms(ex->hop_t0);
    metrics.observe("v4host_route_upstream_duration_seconds", {{"upstream", u.name}}, lat / 1000);
    HopRecord hop;
    hop.upstream = u.name;
    hop.status = resp.status;
    hop.latency_ms = lat;
    hop.detail = ex->hop_note;
    std::string outcome;  // "" = answered
    double retry_after = -1;
    bool retryable = true, health_failure = true;
    if (ex->up_status == 200 && resp.ok() && !ex->garbage && !ex->passthrough) {
      try {
        for (auto& f : ex->decoder.finish()) read_frame(ex, f);
        if (ex->lean_on) {
          ex->lean.end(ex->lean_events);
          for (auto& ev : ex->lean_events) on_event(ex, std::move(ev));
          ex->lean_events.clear();
        } else {
          for (auto& ev : ex->reader->end()) on_event(ex, std::move(ev));
        }
      } catch (const std::exception& e) {
        ex->garbage = true;
        ex->garbage_msg = e.what();
      }
      flush_out(ex);
    }
    if (ex->client_gone && !ex->finished) {
      outcome = "client_gone";
    } else if (ex->garbage) {
      outcome = "garbage";
      hop.detail = "malformed answer: " + ex->garbage_msg;
    } else if (ex->timed_out) {
      outcome = "timeout";
      hop.detail = fmt::format("no data for {}s{}", u.timeouts.first_token_s, ex->got_token ? " mid-stream" : " before the first token");
    } else if (!resp.ok()) {
      switch (resp.error) {
        case UpError::timeout: outcome = "timeout"; break;
        case UpError::io: outcome = ex->up_status ? "truncated" : "connect_error"; break;
        case UpError::protocol: outcome = "garbage"; break;
        default: outcome = "connect_error";
      }
      hop.detail = resp.error_message;
    } else if (ex->up_status == 429) {
      outcome = "http_429";
      retry_after = retry_after_s(ex->up_headers);
      hop.detail = upstream_error_message(ex->up_error_body);
      health_failure = false;
    } else if (ex->up_status >= 500) {
      outcome = "http_5xx";
      hop.detail = upstream_error_message(ex->up_error_body);
      retry_after = retry_after_s(ex->up_headers);
    } else if (ex->up_status != 200) {
      outcome = "http_4xx";
      hop.detail = upstream_error_message(ex->up_error_body);
      retryable = false;
      health_failure = false;
    } else if (ex->passthrough && ex->pt_error) {
      outcome = "upstream_error";
      hop.detail = ex->pt_error_msg;
    } else if (ex->passthrough ? !ex->saw_done : (!(ex->lean_on ? ex->lean.complete() : ex->reader->complete()) || !ex->acc.finished())) {
      outcome = "truncated";
      hop.detail = "the stream ended before the answer finished";
    } else if (!ex->passthrough && ex->acc.response().finish == protocol::FinishReason::Error) {
      outcome = "upstream_error";
      hop.detail = ex->acc.response().error_message;
    }
    // Tokens and money, for every hop that produced any.
    if (ex->passthrough) ex->acc.response().usage = ex->pt_usage;
    const protocol::Response& res = ex->acc.response();
    hop.prompt_tokens = res.usage.input_tokens > 0 ? res.usage.input_tokens : (ex->up_status == 200 ? ex->features.prompt_tokens : 0);
    hop.cached_tokens = res.usage.cached_tokens;
    hop.completion_tokens = res.usage.output_tokens;
    if (hop.completion_tokens == 0 && !res.content.empty())
      hop.completion_tokens = tok ? static_cast<int64_t>(tok->encode(res.content).size()) : static_cast<int64_t>(res.content.size() / 4);
    std::time_t now = std::time(nullptr);
    if (ex->up_status == 200) {
      hop.cost_usd = token_cost(prices_at(u.cost, now), hop.prompt_tokens, hop.cached_tokens, hop.completion_tokens);
      s->observe_cache(res.usage.input_tokens, res.usage.cached_tokens);
    }
    hop.amortised_usd = amortised_cost(u.cost, lat / 1000, ex->hop_sharing);
    if (outcome == "client_gone") {
      record_hop(ex, hop, "client_gone");
      return finish_gone(ex);
    }
    if (!outcome.empty()) {
      if (health_failure) s->failure(SClock::now());
      record_hop(ex, hop, outcome);
      if (ex->committed) return finish_broken(ex, hop.detail);
      remember_failure(ex, outcome, hop.detail, retry_after);
      // Retry this hop (backoff with full jitter; Retry-After honoured up to max_backoff), else next.
      const Retry& rt = ex->route->retry;
      if (retryable && ex->attempt + 1 < rt.attempts && (retry_after < 0 || retry_after <= rt.max_backoff_s)) {
        double cap = std::min(rt.max_backoff_s, rt.backoff_s * std::pow(2.0, ex->attempt));
        double d = std::uniform_real_distribution<double>(0, cap)(ex->shard->rng);
        if (retry_after >= 0) d = std::max(d, retry_after);
        ex->attempt++;
        if (!ex->backoff_timer) ex->backoff_timer = std::make_unique<asio::steady_timer>(ex->shard->io);
        ex->backoff_timer->expires_after(std::chrono::duration_cast<SClock::duration>(std::chrono::duration<double>(d)));
        auto self = shared_from_this();
        ex->backoff_timer->async_wait([self, ex, s](const boost::system::error_code& ec) {
          if (!ec) self->launch(ex, s);
        });
        return;
      }
      metrics.inc("v4host_route_fallbacks_total", {{"route", ex->route->name}, {"from", u.name}, {"reason", outcome}});
      ex->next++;
      ex->attempt = 0;
      return try_next(ex);
    }
    s->success();
    // Remember the reasoning behind tool calls, for upstreams that demand it back next turn.
    if (res.reasoning && !res.tool_calls.empty())
      for (auto& tc : res.tool_calls) memo.put(tc.id, *res.reasoning);
    Verdict v = verify_inline(ex->route->verify, ex->req, res);
    if (v.ok && has_command_verifier(ex->route->verify)) {
      // Commands run off the upstream thread; the answer stays held meanwhile.
      auto self = shared_from_this();
      asio::post(blocking, [self, ex, hop, res] {
        Verdict cv = verify_commands(ex->route->verify, ex->body, res, ex->route->name, hop.upstream);
        asio::post(ex->shard->io, [self, ex, hop, cv] { self->after_verify(ex, hop, cv); });
      });
      return;
    }
    after_verify(ex, hop, v);
  }

  void after_verify(const std::shared_ptr<Exchange>& ex, HopRecord hop, const Verdict& v) {
    bool has_verifiers = !ex->route->verify.empty();
    if (!v.ok) {
      metrics.inc("v4host_route_verification_failures_total", {{"route", ex->route->name}, {"upstream", hop.upstream}, {"verifier", v.verifier}});
      hop.detail = v.verifier + ": " + v.reason;
      if (!ex->committed && !ex->client_gone) {
        record_hop(ex, hop, "verify_failed");
        remember_failure(ex, "verify_failed", hop.detail, -1);
        metrics.inc("v4host_route_fallbacks_total", {{"route", ex->route->name}, {"from", hop.upstream}, {"reason", "verify_failed"}});
        ex->next++;
        ex->attempt = 0;
        return try_next(ex);
      }
      // first_byte mode: the answer is already on its way; record that it failed.
      record_hop(ex, hop, "verify_failed");
      ex->rec.verification = "failed";
    } else {
      record_hop(ex, hop, "ok");
      ex->rec.verification = has_verifiers ? "passed" : "none";
    }
    finish_ok(ex);
  }

  void record_hop(const std::shared_ptr<Exchange>& ex, const HopRecord& hop, const std::string& outcome) {
    HopRecord h = hop;
    h.outcome = outcome;
    ex->rec.cost_usd += h.cost_usd;
    ex->rec.amortised_usd += h.amortised_usd;
    metrics.inc("v4host_route_hops_total", {{"upstream", h.upstream}, {"outcome", outcome}});
    if (h.cost_usd > 0) metrics.inc("v4host_route_spend_usd_total", {{"route", ex->route->name}, {"upstream", h.upstream}, {"kind", "tariff"}}, h.cost_usd);
    if (h.amortised_usd > 0)
      metrics.inc("v4host_route_spend_usd_total", {{"route", ex->route->name}, {"upstream", h.upstream}, {"kind", "amortised"}}, h.amortised_usd);
    if (h.prompt_tokens) metrics.inc("v4host_route_tokens_total", {{"upstream", h.upstream}, {"type", "prompt"}}, static_cast<double>(h.prompt_tokens));
    if (h.cached_tokens) metrics.inc("v4host_route_tokens_total", {{"upstream", h.upstream}, {"type", "cached"}}, static_cast<double>(h.cached_tokens));
    if (h.completion_tokens)
      metrics.inc("v4host_route_tokens_total", {{"upstream", h.upstream}, {"type", "completion"}}, static_cast<double>(h.completion_tokens));
    ex->rec.hops.push_back(std::move(h));
  }

  void remember_failure(const std::shared_ptr<Exchange>& ex, const std::string& outcome, const std::string& detail, double retry_after) {
    const std::string& up = ex->rec.hops.back().upstream;
    if (outcome == "http_4xx") {
      ex->fail_status = ex->up_status;
      ex->fail_msg = "upstream " + up + " refused the request: " + detail;
      ex->fail_code = "upstream_rejected";
    } else if (outcome == "http_429") {
      ex->fail_status = 429;
      ex->fail_msg = "upstream " + up + " is rate limiting: " + detail;
      ex->fail_code = "rate_limited";
      ex->fail_retry_after = retry_after;
    } else if (outcome == "timeout") {
      ex->fail_status = 504;
      ex->fail_msg = "upstream " + up + " timed out: " + detail;
      ex->fail_code = "upstream_timeout";
    } else if (outcome == "verify_failed") {
      ex->fail_status = 502;
      ex->fail_msg = "no upstream's answer passed verification (last: " + up + ", " + detail + ")";
      ex->fail_code = "verification_failed";
    } else {
      ex->fail_status = 502;
      ex->fail_msg = "upstream " + up + " failed (" + outcome + "): " + detail;
      ex->fail_code = "bad_gateway";
    }
  }

  // ---------------------------------------------------------------- endings
  void fill_record(const std::shared_ptr<Exchange>& ex, int status, const std::string& outcome) {
    auto& r = ex->rec;
    r.status = status;
    r.outcome = outcome;
    r.latency_ms = since_ms(ex->t0);
    r.ttft_ms = ex->ttft_ms;
    if (r.verification.empty()) r.verification = "none";
    if (!ex->route) return;
    r.route = ex->route->name;
  }

  // Metrics now; the access log line is returned for the ledger thread to write ("" = no log).
  std::string observe_end(const std::shared_ptr<Exchange>& ex) {
    const auto& r = ex->rec;
    metrics.inc("v4host_route_requests_total", {{"route", r.route}, {"upstream", r.upstream.empty() ? "none" : r.upstream}, {"outcome", r.outcome}});
    metrics.observe("v4host_route_request_duration_seconds", {{"route", r.route}}, r.latency_ms / 1000);
    if (!access) return "";
    ojson j = {{"ts", r.ts}, {"id", r.id}, {"api", r.api}, {"stream", r.stream}, {"status", r.status}, {"route", r.route},
               {"why", ex->route_why}, {"upstream", r.upstream}, {"outcome", r.outcome}, {"verification", r.verification},
               {"hops", r.hops.size()}, {"key", r.key}, {"team", r.team}, {"prompt_tokens", r.prompt_tokens},
               {"completion_tokens", r.completion_tokens}, {"cost_usd", r.cost_usd}, {"amortised_usd", r.amortised_usd},
               {"latency_ms", std::round(r.latency_ms * 1000) / 1000}};
    ojson hops = ojson::array();
    for (auto& h : r.hops) hops.push_back({{"upstream", h.upstream}, {"outcome", h.outcome}, {"detail", h.detail}});
    j["hop_detail"] = hops;
    if (cfg.log_prompts) j["request"] = ex->body;
    return protocol::wire(j) + "\n";
  }

  // Ledger first, then the final bytes (from the commit's completion). The access log line is
  // written there too, on the ledger's thread: still before the final bytes, but a log write
  // that blocks (a full pipe, a slow disk) no longer stalls the event loop and its streams.
  void commit_then(const std::shared_ptr<Exchange>& ex, std::function<void()> send) {
    std::string line = observe_end(ex);
    ledger->record(ex->rec, [this, shard = ex->shard, send = std::move(send), line = std::move(line)](bool) {
      if (!line.empty()) {
        std::lock_guard<std::mutex> l(access_mu);
        std::fputs(line.c_str(), access);
        std::fflush(access);
      }
      asio::post(shard->io, send);
    });
    release(*ex);  // the ledger's sums hold the actual cost now
  }

  void refuse(const std::shared_ptr<Exchange>& ex, int status, const std::string& msg, const std::string& code, const std::string& outcome) {
    ex->finished = true;
    fill_record(ex, status, outcome);
    commit_then(ex, [ex, status, msg, code] {
      auto& r = *ex->reply;
      r.status = status;
      r.set_header("x-v4host-request-id", ex->rec.id);
      r.set_header("x-v4host-route", ex->rec.route);
      r.set_content(error_body(ex->dialect, status, msg, code), "application/json");
      r.send();
    });
  }

  void fail_all(const std::shared_ptr<Exchange>& ex) {
    ex->finished = true;
    fill_record(ex, ex->fail_status, "failed");
    commit_then(ex, [ex] {
      auto& r = *ex->reply;
      r.status = ex->fail_status;
      r.set_header("x-v4host-request-id", ex->rec.id);
      r.set_header("x-v4host-route", ex->rec.route);
      r.set_header("x-v4host-hops", std::to_string(ex->rec.hops.size()));
      if (ex->fail_status == 429 && ex->fail_retry_after >= 0)
        r.set_header("Retry-After", std::to_string(static_cast<int64_t>(std::ceil(ex->fail_retry_after))));
      r.set_content(error_body(ex->dialect, ex->fail_status, ex->fail_msg, ex->fail_code), "application/json");
      r.send();
    });
  }

  void finish_gone(const std::shared_ptr<Exchange>& ex) {
    if (ex->finished) return;
    ex->finished = true;
    fill_record(ex, 499, "client_gone");
    commit_then(ex, [ex] {
      if (ex->stream) ex->stream->close();
      else ex->reply->send();
    });
  }

  // A passed-through stream broke after its first byte: end it with the dialect's error event.
  void finish_broken(const std::shared_ptr<Exchange>& ex, const std::string& why) {
    ex->finished = true;
    ex->rec.upstream = ex->up->cfg.name;
    const auto& res = ex->acc.response();
    ex->rec.completion_tokens = ex->rec.hops.back().completion_tokens;
    (void)res;
    fill_record(ex, 200, "truncated");
    auto self = shared_from_this();
    commit_then(ex, [self, ex, why] {
      if (ex->stream && !ex->stream->closed()) {
        for (auto& f : ex->writer->abort("upstream " + ex->rec.upstream + " broke off the stream: " + why)) ex->outbuf += f.wire();
        self->flush_out(ex);
        ex->stream->close();
      }
    });
  }

  void finish_ok(const std::shared_ptr<Exchange>& ex) {
    ex->finished = true;
    const HopRecord& last = ex->rec.hops.back();
    ex->rec.upstream = last.upstream;
    ex->rec.prompt_tokens = last.prompt_tokens;
    ex->rec.cached_tokens = last.cached_tokens;
    ex->rec.completion_tokens = last.completion_tokens;
    size_t answered = 0;
    for (auto& h : ex->rec.hops) answered += h.outcome != "ok";
    fill_record(ex, 200, answered ? "fallback_ok" : "ok");
    auto self = shared_from_this();
    commit_then(ex, [self, ex] {
      if (ex->client_gone) {
        if (ex->stream) ex->stream->close();
        else ex->reply->send();
        return;
      }
      if (ex->passthrough) {
        if (!ex->committed) self->commit_stream(ex);
        std::string out = std::move(ex->outbuf);
        ex->outbuf.clear();
        for (auto& h : ex->held) out += h;
        for (auto& t : ex->tail) out += t;
        ex->held.clear();
        ex->tail.clear();
        self->pt_write(ex, std::move(out));
        ex->stream->close();
        return;
      }
      if (ex->req.stream) {
        if (!ex->committed) self->commit_stream(ex);
        for (auto& e : ex->events) self->write_event(ex, e);
        ex->events.clear();
        if (ex->writer && !ex->writer->complete())
          for (auto& f : ex->writer->abort("the upstream stream ended without a finish")) ex->outbuf += f.wire();
        self->flush_out(ex);
        ex->stream->close();
        return;
      }
      protocol::Response res = ex->acc.response();
      res.id = (ex->dialect == Dialect::AnthropicMessages ? "msg_" : ex->dialect == Dialect::Responses ? "resp_" : ex->dialect == Dialect::Completions ? "cmpl-" : "chatcmpl-") + ex->rec.id;
      res.model = ex->client_model;
      res.created = static_cast<int64_t>(ex->rec.ts);
      auto& r = *ex->reply;
      r.set_header("x-v4host-request-id", ex->rec.id);
      r.set_header("x-v4host-route", ex->rec.route);
      r.set_header("x-v4host-upstream", ex->rec.upstream);
      r.set_header("x-v4host-hops", std::to_string(ex->rec.hops.size()));
      r.set_header("x-v4host-cost-usd", fmt::format("{:.8f}", ex->rec.cost_usd));
      std::string body;
      if (ex->dialect != Dialect::ChatCompletions || !fastchat::emit_simple_response(res, body))
        body = protocol::wire(protocol::emit_response(ex->dialect, res, ex->req));
      r.set_content(std::move(body), "application/json");
      r.send();
    });
  }

  // ---------------------------------------------------------------- health checks
  void start_health_checks() {
    for (auto& s : states) {
      const Upstream& u = s->cfg;
      if (u.health.path.empty() || u.health.interval_s <= 0) continue;
      health_timers.push_back(std::make_unique<asio::steady_timer>(shards[0]->io));
      poll(s.get(), health_timers.back().get());
    }
  }

  void poll(UpstreamState* s, asio::steady_timer* timer) {
    const Upstream& u = s->cfg;
    std::string root = url_origin(u.base_url);
    if (root.empty()) return;
    bool watched = false;
    for (auto& r : cfg.rules) watched = watched || (r.overflow && r.overflow->upstream == u.name);
    auto self = shared_from_this();
    double lim = std::max(0.2, std::min(2.0, u.health.interval_s));
    UpCall hr;
    hr.method = "GET";
    hr.url = root + u.health.path;
    hr.connect_s = hr.first_byte_s = hr.total_s = lim;
    UpHandlers h;
    h.on_done = [self, s, timer, watched, root, lim](UpResult&& r) {
      bool ok = r.ok() && r.status == 200;
      s->set_healthy(ok, SClock::now());
      PressureSample p = ok ? parse_health_json(r.body) : PressureSample{};
      auto next = [self, s, timer] {
        if (self->stopping) return;
        timer->expires_after(std::chrono::duration_cast<SClock::duration>(std::chrono::duration<double>(s->cfg.health.interval_s)));
        timer->async_wait([self, s, timer](const boost::system::error_code& ec) {
          if (!ec && !self->stopping) self->poll(s, timer);
        });
      };
      if (!ok || !watched) {
        if (ok) s->update_pressure(p);
        return next();
      }
      UpCall mr;
      mr.method = "GET";
      mr.url = root + s->cfg.health.metrics_path;
      mr.connect_s = mr.first_byte_s = mr.total_s = lim;
      UpHandlers mh;
      mh.on_done = [s, p, next](UpResult&& m) {
        PressureSample q = p;
        if (m.ok() && m.status == 200) {
          PressureSample pm = parse_prometheus(m.body);
          if (pm.queue_depth >= 0) q.queue_depth = pm.queue_depth;
          if (pm.running >= 0) q.running = pm.running;
          q.ttft_sum = pm.ttft_sum;
          q.ttft_count = pm.ttft_count;
        }
        s->update_pressure(q);
        next();
      };
      self->shards[0]->client->start(std::move(mr), std::move(mh));
    };
    shards[0]->client->start(std::move(hr), std::move(h));
  }
};

Proxy::Proxy(Config cfg, const text::Tokenizer* tok, ProxyOptions opt) : impl_(std::make_shared<Impl>(std::move(cfg), tok, opt)) {
  impl_->init();
}

Proxy::~Proxy() {
  stop();
  impl_->server.reset();
  for (auto& sh : impl_->shards) {
    sh->guard.reset();
    sh->io.stop();
  }
  for (auto& sh : impl_->shards)
    if (sh->th.joinable()) sh->th.join();
  impl_->blocking.join();
  impl_->ledger->flush();
  if (impl_->access && impl_->access != stderr) std::fclose(impl_->access);
}

int Proxy::bind() { return impl_->server->bind(); }

void Proxy::serve() {
  auto im = impl_;
  for (auto& sh : im->shards) {
    std::string why;
    sh->th = start_io_thread(im->opt.io_realtime, [s = sh.get()] {
      // Named, so that top -H, perf and the benchmark can tell the router's loops apart.
      pthread_setname_np(pthread_self(), "route-loop");
      s->io.run();
    }, &why);
    if (!why.empty()) {
      if (im->realtime_ok.exchange(false) && !im->opt.quiet)
        std::fprintf(stderr, "v4host route: --io-realtime: %s\n", why.c_str());
    }
  }
  if (!im->opt.io_realtime) im->realtime_ok = false;
  asio::post(im->shards[0]->io, [im] { im->start_health_checks(); });
  im->server->run();
}

void Proxy::stop() {
  impl_->stopping = true;
  if (impl_->server) impl_->server->stop();
}

void Proxy::request_stop() noexcept {
  impl_->stopping = true;
  impl_->server->request_stop();
}

const Config& Proxy::config() const { return impl_->cfg; }
bool Proxy::io_realtime_granted() const { return impl_->realtime_ok; }
Metrics& Proxy::metrics() { return impl_->metrics; }

}  // namespace v4::router
