// A request's way in: the client's key, parse, features, rules, and the plan of its chain
// (residency, cost cap, budgets and their in-flight reservations).
#include <charconv>
#include <limits>

#include "router/proxy_impl.h"

namespace v4::router {

// The client's key: Authorization: Bearer / x-api-key. Returns false (and answers 401) when the
// config requires a known key and this is not one.
bool Proxy::Impl::authorize(const net::Request& req, net::Reply& res, Dialect d, const Principal** out) {
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

void Proxy::Impl::bad_request(net::Reply& res, Dialect d, int status, const std::string& msg, const std::string& param,
                              const std::string& code) {
  res.status = status;
  res.set_content(error_body(d, status, msg, code, param), "application/json");
  metrics.inc("v4host_route_requests_total", {{"route", "none"}, {"upstream", "none"}, {"outcome", "bad_request"}});
}

namespace {
// The client's cap on this request's cost, from `x-v4host-max-cost: USD` (OpenRouter-style
// per-request max price, as a header so that it reads the same in all four APIs). False when the
// header is there but is not a finite number > 0. `v`: the header's value, "" when absent.
bool read_max_cost(const std::string& v, double& out) {
  out = 0;
  if (v.empty()) return true;
  const char* b = v.data();
  const char* e = b + v.size();
  while (b < e && *b == ' ') ++b;
  while (e > b && e[-1] == ' ') --e;
  auto [p, ec] = std::from_chars(b, e, out);
  return ec == std::errc() && p == e && std::isfinite(out) && out > 0;
}
}  // namespace

void Proxy::Impl::generate(Dialect d, const net::Request& hreq, net::Reply& res) {
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
  if (const std::string v = hreq.header("x-v4host-max-cost"); !read_max_cost(v, ex->max_cost_usd))
    return bad_request(res, d, 400,
                       "x-v4host-max-cost must be a positive number of US dollars (the most this request may cost), got '" + v + "'",
                       "x-v4host-max-cost");
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

void Proxy::Impl::decide(Exchange& ex) {
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
void Proxy::Impl::skip(Exchange& ex, const Upstream& u, const std::string& outcome, const std::string& detail) {
  HopRecord h;
  h.upstream = u.name;
  h.outcome = outcome;
  h.detail = detail;
  ex.rec.hops.push_back(h);
  metrics.inc("v4host_route_hops_total", {{"upstream", u.name}, {"outcome", outcome}});
}

// Residency allowed for this request: the key's, its team's and the route's labels together.
bool Proxy::Impl::residency_ok(const Exchange& ex, const Upstream& u) {
  for (const std::vector<std::string>* l : {ex.key ? &ex.key->residency : nullptr, ex.team ? &ex.team->residency : nullptr, &ex.route->residency})
    if (l && !l->empty() && std::find(l->begin(), l->end(), u.residency) == l->end()) return false;
  return true;
}

std::string Proxy::Impl::scope_key(Ledger::Scope s, const std::string& name) {
  return (s == Ledger::Scope::Key ? "k|" : s == Ledger::Scope::Team ? "t|" : "r|") + name;
}

bool Proxy::Impl::has_budget(const Exchange& ex) const {
  return (ex.key && ex.key->budget.any()) || (ex.team && ex.team->budget.any()) || ex.route->budget.any();
}

// "" when every budget of this request can take `worst` more on top of what is spent and what
// requests in flight have reserved, else why not. Called with reserve_mu held.
std::string Proxy::Impl::budget_block(const Exchange& ex, std::time_t now, double worst) {
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
void Proxy::Impl::reserve(Exchange& ex, double usd) {
  if (usd <= 0) return;
  ex.reserved_usd = usd;
  if (ex.key && ex.key->budget.any()) ex.reserved_in.push_back(scope_key(Ledger::Scope::Key, ex.key->name));
  if (ex.team && ex.team->budget.any()) ex.reserved_in.push_back(scope_key(Ledger::Scope::Team, ex.team->name));
  if (ex.route->budget.any()) ex.reserved_in.push_back(scope_key(Ledger::Scope::Route, ex.route->name));
  for (auto& k : ex.reserved_in) reserved[k] += usd;
}

// After the ledger has the request's actual cost (Ledger::record adds it to the sums at once).
void Proxy::Impl::release(Exchange& ex) {
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

namespace {
// The cap a request's priced hops are held to: the route's and the client's, whichever is lower
// (either may be 0 = none); `client` says the client's is the one that binds, for the messages.
struct CostCap {
  double usd = 0;
  bool client = false;
};
CostCap cost_cap(double route_usd, double client_usd) {
  if (client_usd > 0 && (route_usd <= 0 || client_usd < route_usd)) return {client_usd, true};
  return {route_usd, false};
}
}  // namespace

void Proxy::Impl::start(const std::shared_ptr<Exchange>& ex) {
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
    const CostCap cap = cost_cap(ex->route->cost_cap_usd, ex->max_cost_usd);
    double cheapest_capped = std::numeric_limits<double>::infinity();
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
      if (cap.usd > 0 && u.cost.priced() && worst > cap.usd) {
        skip(*ex, u, "cost_cap", fmt::format("worst case ${:.6f} > {} ${}", worst, cap.client ? "the request's max cost" : "cap", cap.usd));
        cap_skipped = true;
        cheapest_capped = std::min(cheapest_capped, worst);
        continue;
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
    if (cap_skipped && cap.client)
      return refuse(ex, 400,
                    fmt::format("request over its max cost (${} from x-v4host-max-cost; the cheapest upstream of route '{}' could cost "
                                "up to ${:.6f} at max_tokens); raise it or lower max_tokens",
                                cap.usd, ex->route->name, cheapest_capped),
                    "cost_cap_exceeded", "refused_cost");
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
std::vector<std::string> Proxy::Impl::order_chain(Exchange& ex) {
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

}  // namespace v4::router
