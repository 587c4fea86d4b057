// The endings: the ledger record and metrics, then the final bytes; refusals, failures, a client
// gone, a stream broken after its first byte.
#include "router/proxy_impl.h"

namespace v4::router {

// ---------------------------------------------------------------- endings
void Proxy::Impl::fill_record(const std::shared_ptr<Exchange>& ex, int status, const std::string& outcome) {
  auto& r = ex->rec;
  r.status = status;
  r.outcome = outcome;
  r.latency_ms = since_ms(ex->t0);
  r.ttft_ms = ex->ttft_ms;
  observe_ttft(*ex);
  if (r.verification.empty()) r.verification = "none";
  if (!ex->route) return;
  r.route = ex->route->name;
}

// Metrics now; the access log line is returned for the ledger thread to write ("" = no log).
std::string Proxy::Impl::observe_end(const std::shared_ptr<Exchange>& ex) {
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
void Proxy::Impl::commit_then(const std::shared_ptr<Exchange>& ex, std::function<void()> send) {
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

void Proxy::Impl::refuse(const std::shared_ptr<Exchange>& ex, int status, const std::string& msg, const std::string& code, const std::string& outcome) {
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

void Proxy::Impl::fail_all(const std::shared_ptr<Exchange>& ex) {
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

void Proxy::Impl::finish_gone(const std::shared_ptr<Exchange>& ex) {
  if (ex->finished) return;
  ex->finished = true;
  fill_record(ex, 499, "client_gone");
  commit_then(ex, [ex] {
    if (ex->stream) ex->stream->close();
    else ex->reply->send();
  });
}

// A passed-through stream broke after its first byte: end it with the dialect's error event.
void Proxy::Impl::finish_broken(const std::shared_ptr<Exchange>& ex, const std::string& why) {
  ex->finished = true;
  ex->rec.upstream = ex->up->cfg.name;
  const auto& res = ex->acc.response();
  ex->rec.completion_tokens = ex->rec.hops.back().completion_tokens;
  (void)res;
  fill_record(ex, 200, "truncated");
  auto self = shared_from_this();
  commit_then(ex, [self, ex, why] {
    if (ex->stream && !ex->stream->closed()) {
      if (!ex->writer) ex->writer = self->make_writer(*ex);
      for (auto& f : ex->writer->abort("upstream " + ex->rec.upstream + " broke off the stream: " + why)) ex->outbuf += f.wire();
      self->flush_out(ex);
      ex->stream->close();
    }
  });
}

void Proxy::Impl::finish_ok(const std::shared_ptr<Exchange>& ex) {
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
      self->pt_write(ex, out);
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

}  // namespace v4::router
