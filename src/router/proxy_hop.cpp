// Upstream attempts: the next hop of the plan (circuit breaker, concurrency limit), the call, the
// idle timeout, and what a hop's end means (verify, retry with backoff, fall back, or answer).
#include "router/proxy_impl.h"

namespace v4::router {

// ---------------------------------------------------------------- hops
void Proxy::Impl::try_next(const std::shared_ptr<Exchange>& ex) {
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

void Proxy::Impl::launch(const std::shared_ptr<Exchange>& ex, UpstreamState* s) {
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
void Proxy::Impl::arm_idle(const std::shared_ptr<Exchange>& ex, double seconds) {
  if (!ex->idle_timer) ex->idle_timer = std::make_unique<asio::steady_timer>(ex->shard->io);
  ex->idle_deadline = SClock::now() + std::chrono::duration_cast<SClock::duration>(std::chrono::duration<double>(seconds));
  if (ex->idle_armed) return;
  ex->idle_armed = true;
  wait_idle(ex, ex->hop_gen);
}

void Proxy::Impl::wait_idle(const std::shared_ptr<Exchange>& ex, uint64_t gen) {
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

void Proxy::Impl::on_hop_done(const std::shared_ptr<Exchange>& ex, UpResult&& resp) {
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

void Proxy::Impl::after_verify(const std::shared_ptr<Exchange>& ex, HopRecord hop, const Verdict& v) {
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

void Proxy::Impl::record_hop(const std::shared_ptr<Exchange>& ex, const HopRecord& hop, const std::string& outcome) {
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

void Proxy::Impl::remember_failure(const std::shared_ptr<Exchange>& ex, const std::string& outcome, const std::string& detail, double retry_after) {
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

}  // namespace v4::router
