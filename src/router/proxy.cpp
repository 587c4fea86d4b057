// The router's HTTP front (router/proxy.h): set-up, the HTTP routes, /health and /metrics, the
// active health checks, and the Proxy object's own methods. The request's way in, its upstream
// hops, the stream and the endings are in proxy_request/hop/stream/finish.cpp.
#include "router/proxy_impl.h"

#include <algorithm>
#include <chrono>
#include <thread>

#include "net/event_loop.h"

namespace v4::router {

namespace proxy_detail {

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

std::string error_body(Dialect d, int status, const std::string& msg, const std::string& code, const std::string& param) {
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

double retry_after_s(const HeaderList& h) {
  std::string v = header_of(h, "retry-after");
  if (v.empty()) return -1;
  char* end = nullptr;
  double s = std::strtod(v.c_str(), &end);
  if (end == v.c_str() || s < 0) return -1;
  return s;
}

}  // namespace proxy_detail

UpstreamState* Proxy::Impl::state(const std::string& name) {
  for (auto& s : states)
    if (s->cfg.name == name) return s.get();
  return nullptr;
}

void Proxy::Impl::init() {
  LedgerOptions lo;
  lo.writer_slice_us = opt.io_realtime ? 0 : opt.io_slice_us;  // measured at normal priority only
  ledger = std::make_unique<Ledger>(cfg.ledger, lo);
  // Default: the server's connections and the upstream calls share event loops (one thread each):
  // a request, its upstream exchange and its reply stay on one thread, with no wake-up of another
  // thread per request or per streamed frame. upstream_threads > 0: separate upstream threads.
  shared_loops = opt.upstream_threads <= 0;
  if (opt.io_threads <= 0) opt.io_threads = static_cast<int>(std::clamp(std::thread::hardware_concurrency(), 1u, 4u));
  int n = shared_loops ? opt.io_threads : opt.upstream_threads;
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

void Proxy::Impl::describe_metrics() {
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
void Proxy::Impl::register_routes() {
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

void Proxy::Impl::health(net::Reply& res) {
  ojson ups = ojson::object();
  for (auto& s : states) {
    Pressure p = s->pressure();
    ups[s->cfg.name] = {{"healthy", s->healthy()}, {"breaker", s->breaker_state()}, {"in_flight", s->in_flight.load()},
                        {"queue_depth", p.queue_depth < 0 ? ojson(nullptr) : ojson(p.queue_depth)}};
  }
  res.set_content(protocol::wire({{"status", "ok"}, {"upstreams", ups}}), "application/json");
}

void Proxy::Impl::refresh_gauges() {
  for (auto& s : states) {
    Metrics::Labels l{{"upstream", s->cfg.name}};
    metrics.set("v4host_route_upstream_healthy", l, s->healthy() ? 1 : 0);
    metrics.set("v4host_route_upstream_breaker_open", l, s->breaker_state() == "closed" ? 0 : 1);
    metrics.set("v4host_route_upstream_in_flight", l, s->in_flight.load());
    Pressure p = s->pressure();
    if (p.queue_depth >= 0) metrics.set("v4host_route_upstream_queue_depth", l, p.queue_depth);
  }
  metrics.set("v4host_route_ledger_write_failures_total", {}, static_cast<double>(ledger->write_failures()));
}

// ---------------------------------------------------------------- health checks
void Proxy::Impl::start_health_checks() {
  for (auto& s : states) {
    const Upstream& u = s->cfg;
    if (u.health.path.empty() || u.health.interval_s <= 0) continue;
    health_timers.push_back(std::make_unique<asio::steady_timer>(shards[0]->io));
    poll(s.get(), health_timers.back().get());
  }
}

void Proxy::Impl::poll(UpstreamState* s, asio::steady_timer* timer) {
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
    const int slice_us = im->opt.io_realtime ? 0 : im->opt.io_slice_us;
    const std::chrono::microseconds spin(im->opt.io_realtime ? 0 : im->opt.io_spin_us);
    sh->th = start_io_thread(im->opt.io_realtime, [s = sh.get(), slice_us, spin] {
      // Named, so that top -H, perf and the benchmark can tell the router's loops apart.
      pthread_setname_np(pthread_self(), "route-loop");
      request_short_slice_us(slice_us);
      net::run_loop(s->io, spin);
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
int Proxy::io_loops() const { return impl_->opt.io_threads; }
Metrics& Proxy::metrics() { return impl_->metrics; }

}  // namespace v4::router
