#include "bench/runner.h"

#include <algorithm>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cmath>
#include <deque>
#include <memory>
#include <optional>
#include <thread>
#include <unordered_map>

#include "core/thread_priority.h"
#include "stats/bootstrap.h"
#include "stats/summary.h"
#include "text/tokenizer.h"

namespace v4::bench {

namespace asio = boost::asio;
using net::Clock;

std::string LoadSpec::label() const {
  char b[64];
  if (mode == by_concurrency) std::snprintf(b, sizeof b, "c=%d", concurrency);
  else if (mode == by_rate) std::snprintf(b, sizeof b, "rate=%g", rate);
  else std::snprintf(b, sizeof b, "replay");
  return b;
}

double gamma_sample(double k, double theta, uint64_t& state) {
  stats::SplitMix64 g(state);
  auto u = [&] { return std::max(g.uniform(), 1e-300); };
  auto normal = [&] { return std::sqrt(-2 * std::log(u())) * std::cos(2 * M_PI * u()); };
  double boost = 1;
  if (k < 1) {  // Gamma(k) = Gamma(k+1) * U^(1/k)
    boost = std::pow(u(), 1.0 / k);
    k += 1;
  }
  double d = k - 1.0 / 3, c = 1 / std::sqrt(9 * d), v = 0;
  while (true) {
    double x = normal();
    v = 1 + c * x;
    if (v <= 0) continue;
    v = v * v * v;
    double uu = u();
    if (uu < 1 - 0.0331 * x * x * x * x || std::log(uu) < 0.5 * x * x + d * (1 - v + std::log(v))) break;
  }
  state = g.next();
  return d * v * theta * boost;
}

namespace {

double ms_between(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double, std::milli>(b - a).count(); }

// One I/O thread of the client: its own io_context and HttpClient (connection pool), so streams on
// different shards never share a lock or a cache line on the per-piece path.
struct Shard {
  asio::io_context io{1};  // concurrency hint 1: this context is run by one thread only
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> guard{asio::make_work_guard(io)};
  net::HttpClient client{io};
  std::thread thread;
};

int io_thread_count(int requested) {
  if (requested > 0) return requested;
  unsigned hw = std::thread::hardware_concurrency();
  return static_cast<int>(std::clamp(hw == 0 ? 1u : hw, 1u, 4u));
}

class Runner {
 public:
  Runner(const Target& t, const LoadSpec& s, Workload& wl, const ProgressFn& p, std::atomic<bool>* stop)
      : t_(t), s_(s), wl_(wl), progress_(p), stop_(stop), arrivals_(io_), tick_(io_) {
    url_ = t_.base_url + api_path(t_.api);
    headers_ = request_headers(t_.api, t_.api_key);
    rng_ = s_.seed * 0x9E3779B97F4A7C15ull + 17;
    for (int i = io_thread_count(t_.io_threads); i > 0; --i) {
      auto sh = std::make_unique<Shard>();
      Shard* raw = sh.get();
      // Target::io_realtime, measured at capacity under other sessions' load: 3.8-6.0% of the
      // pieces read late with the EEVDF-slice fallback, 12.7-15.9% at normal priority, none at
      // SCHED_FIFO. (Asio's resolver thread, started from an I/O thread at its first lookup,
      // inherits the setting; it only sleeps in getaddrinfo.)
      std::string why;
      sh->thread = start_io_thread(t_.io_realtime, [raw] { raw->io.run(); }, &why);
      if (!why.empty() && realtime_error_.empty()) realtime_error_ = why;
      shards_.push_back(std::move(sh));
    }
  }
  bool io_realtime() const { return t_.io_realtime && realtime_error_.empty(); }
  const std::string& io_realtime_error() const { return realtime_error_; }
  ~Runner() {
    // Every request has finished (phase() returns only then): the shards' contexts run out of work.
    for (auto& sh : shards_) sh->guard.reset();
    for (auto& sh : shards_) sh->thread.join();
  }

  // Runs `limit` requests (or until duration / stop); returns the records.
  std::vector<RequestRecord> phase(long limit, double duration_s, bool warmup, int first_unit) {
    limit_ = limit;
    duration_s_ = duration_s;
    warmup_ = warmup;
    started_ = done_ = errors_ = 0;
    out_tokens_ = 0;
    next_unit_ = first_unit;
    records_.clear();
    reasoning_texts_.clear();
    ttfts_.clear();
    closed_ = false;
    t_begin_ = Clock::now();
    io_.restart();
    if (s_.mode == LoadSpec::by_concurrency) {
      for (int i = 0; i < s_.concurrency; ++i) start_unit(-1);
    } else {
      next_arrival_ = t_begin_;
      schedule_arrival(true);
    }
    arm_tick();
    io_.run();
    return std::move(records_);
  }

  bool interrupted() const { return interrupted_; }
  int units_used() const { return next_unit_; }
  const net::ClientHeaders& server_headers() const { return server_headers_; }

 private:
  // One request. Created on the control thread; from the post that starts it until on_done, only
  // its shard's thread touches it (the per-piece path: SSE parsing, classification, piece times).
  struct Live {
    Shard* shard = nullptr;
    RequestRecord rec;
    WorkItem item;
    Clock::time_point t0;
    StreamState st;
    std::unique_ptr<net::SseParser> sse;
    Clock::time_point cur;
    std::string err_body;
    std::shared_ptr<net::RequestHandle> handle;
  };

  bool may_start() const {
    if (closed_ || interrupted_) return false;
    if (limit_ > 0 && started_ >= limit_) return false;
    if (duration_s_ > 0 && std::chrono::duration<double>(Clock::now() - t_begin_).count() >= duration_s_) return false;
    return true;
  }

  void start_unit(double scheduled_s) {
    if (!may_start()) return;
    long sz = wl_.size();
    if (s_.mode == LoadSpec::replay && sz > 0 && next_unit_ >= sz) return;
    WorkItem w = wl_.first(next_unit_++);
    launch(std::move(w), scheduled_s);
  }

  void schedule_arrival(bool first) {
    if (!may_start()) return;
    if (s_.mode == LoadSpec::replay) {
      if (next_unit_ >= wl_.size()) return;
      double ts = wl_.first(next_unit_).timestamp;
      next_arrival_ = t_begin_ + std::chrono::microseconds(static_cast<int64_t>(std::max(0.0, ts) / s_.replay_speed * 1e6));
    } else if (!first) {
      double gap = gamma_sample(s_.burstiness, 1.0 / (s_.rate * s_.burstiness), rng_);
      next_arrival_ += std::chrono::microseconds(static_cast<int64_t>(gap * 1e6));
    }
    arrivals_.expires_at(next_arrival_);
    arrivals_.async_wait([this](boost::system::error_code ec) {
      if (ec) return;
      double sched = std::chrono::duration<double>(next_arrival_ - t_begin_).count();
      if (s_.max_concurrency > 0 && in_flight_ >= s_.max_concurrency) queued_.push_back(sched);
      else start_unit(sched);
      schedule_arrival(false);
    });
  }

  void launch(WorkItem w, double scheduled_s) {
    if (!may_start()) return;
    auto L = std::make_shared<Live>();
    L->item = std::move(w);
    RequestRecord& r = L->rec;
    r.index = static_cast<int>(started_);
    r.unit = L->item.unit;
    r.turn = L->item.turn;
    r.warmup = warmup_;
    r.max_tokens = L->item.req.max_tokens;
    r.input_tokens_local = L->item.input_tokens;
    r.scheduled_s = scheduled_s;
    ++started_;
    ++in_flight_;
    r.in_flight = in_flight_;
    net::ClientRequest q;
    q.method = "POST";
    q.url = url_;
    q.headers = headers_;
    q.body = build_body(t_.api, t_.model, L->item.req, t_.stream);
    q.timeouts = t_.timeouts;
    q.headers.emplace_back("X-Request-Id", "v4bench-" + std::to_string(r.index));
    Live* raw = L.get();
    L->sse = std::make_unique<net::SseParser>([this, raw](const net::SseEvent& ev) { on_event(*raw, ev); });
    net::Handlers h;
    h.on_head = [raw](const net::Response& head) { raw->rec.status = head.status; };
    h.on_body = [raw](std::string_view piece, Clock::time_point at) {
      if (raw->rec.status == 200 && raw->st.done == false) {
        raw->cur = at;
        raw->sse->feed(piece);
      } else if (raw->rec.status != 200 && raw->err_body.size() < 4096) {
        raw->err_body.append(piece.substr(0, 4096 - raw->err_body.size()));
      }
    };
    if (!t_.stream) h.on_body = nullptr;
    // The record goes back to the control thread, which owns the run's bookkeeping.
    h.on_done = [this, L](net::Response&& resp) {
      asio::post(io_, [this, L, resp = std::move(resp)]() mutable { finish(L, std::move(resp)); });
    };
    live_[r.index] = L;
    Shard& sh = *shards_[static_cast<size_t>(r.index) % shards_.size()];
    L->shard = &sh;
    asio::post(sh.io, [this, L, q = std::move(q), h = std::move(h)]() mutable {
      // t0 is taken on the thread that sends, right before the client starts the request.
      L->t0 = Clock::now();
      L->rec.start_s = std::chrono::duration<double>(L->t0 - t_begin_).count();
      L->rec.start_steady_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(L->t0.time_since_epoch()).count();
      L->handle = L->shard->client.start(std::move(q), std::move(h));
    });
  }

  void on_event(Live& L, const net::SseEvent& ev) {
    int rb = L.st.reasoning_pieces;
    int n = L.st.feed(t_.api, ev);
    if (n <= 0) return;
    double ms = ms_between(L.t0, L.cur);
    RequestRecord& r = L.rec;
    int nr = L.st.reasoning_pieces - rb;
    for (int i = 0; i < n; ++i) r.piece_ms.push_back(ms);
    if (std::isnan(r.first_token_ms)) r.first_token_ms = ms;
    if (nr > 0) r.last_reasoning_ms = ms;
    if (n > nr && std::isnan(r.first_answer_ms)) r.first_answer_ms = ms;
  }

  void finish(const std::shared_ptr<Live>& L, net::Response&& resp) {
    RequestRecord& r = L->rec;
    live_.erase(r.index);
    --in_flight_;
    ++done_;
    r.status = resp.status;
    if (resp.t_first_byte != Clock::time_point{}) r.first_byte_ms = ms_between(L->t0, resp.t_first_byte);
    r.end_ms = ms_between(L->t0, resp.t_end == Clock::time_point{} ? Clock::now() : resp.t_end);
    if (!t_.stream && resp.ok() && resp.status == 200) {
      parse_full_response(t_.api, resp.body, L->st);
      r.first_token_ms = r.first_answer_ms = r.end_ms;
      r.piece_ms.push_back(r.end_ms);
    }
    if (!resp.ok()) {
      r.error_kind = net::error_kind_name(resp.error);
      r.error = resp.error_message;
    } else if (resp.status != 200) {
      r.error_kind = "http_" + std::to_string(resp.status);
      json j = json::parse(t_.stream ? L->err_body : resp.body, nullptr, false);
      r.error = j.is_object() && j.contains("error") && j["error"].is_object() ? j["error"].value("message", "") : (t_.stream ? L->err_body : resp.body).substr(0, 300);
    } else if (!L->st.error.empty()) {
      r.error_kind = "stream_error";
      r.error = L->st.error;
    } else if (t_.stream && !L->st.done) {
      r.error_kind = "stream_incomplete";
      r.error = "the stream ended without its terminator";
    } else if (server_headers_.empty()) {
      server_headers_ = resp.headers;
    }
    r.prompt_tokens = L->st.prompt_tokens;
    r.completion_tokens = L->st.completion_tokens;
    r.reasoning_tokens = L->st.reasoning_tokens;
    r.cached_tokens = L->st.cached_tokens;
    r.finish_reason = L->st.finish_reason;
    r.reasoning_pieces = L->st.reasoning_pieces;
    r.answer_pieces = L->st.answer_pieces;
    // Token counting with the local tokenizer happens after the run (not on the timing thread).
    r.answer_text = std::move(L->st.answer);
    reasoning_texts_[r.index] = std::move(L->st.reasoning);
    if (!r.ok()) ++errors_;
    else {
      out_tokens_ += r.output_tokens();
      if (!std::isnan(r.first_token_ms)) ttfts_.push_back(r.first_token_ms);
    }
    // Agent sessions continue with the next turn.
    WorkItem next;
    bool cont = r.ok() && wl_.next_turn(L->item, r.answer_text, next);
    records_.push_back(std::move(r));
    if (cont && may_start()) {
      launch(std::move(next), -1);
      return;
    }
    // A slot is free.
    if (s_.mode == LoadSpec::by_concurrency) start_unit(-1);
    else if (!queued_.empty() && may_start()) {
      double sched = queued_.front();
      queued_.pop_front();
      start_unit(sched);
    }
    maybe_end();
  }

  void maybe_end() {
    if (in_flight_ > 0) return;
    bool more = may_start() && (s_.mode != LoadSpec::by_concurrency) && (s_.mode != LoadSpec::replay || next_unit_ < wl_.size());
    if (s_.mode == LoadSpec::by_concurrency && may_start()) more = true;
    if (!more) {
      closed_ = true;
      arrivals_.cancel();
      tick_.cancel();
      report(true);
    }
  }

  void arm_tick() {
    tick_.expires_after(std::chrono::milliseconds(100));
    tick_.async_wait([this](boost::system::error_code ec) {
      if (ec) return;
      if (stop_ && stop_->load() && !interrupted_) {
        interrupted_ = true;
        closed_ = true;
        arrivals_.cancel();
        for (auto& [i, L] : live_)  // after the post that started it (same context, FIFO)
          asio::post(L->shard->io, [L] {
            if (L->handle) L->handle->cancel();
          });
      }
      if (!may_start() && s_.mode != LoadSpec::by_concurrency) arrivals_.cancel();
      if (++ticks_ % 10 == 0) report(false);
      if (in_flight_ == 0 && !may_start()) {
        closed_ = true;
        report(true);
        return;
      }
      arm_tick();
    });
  }

  void report(bool final) {
    if (!progress_ || warmup_) return;
    if (final && reported_final_) return;
    reported_final_ = final;
    Progress p;
    p.done = done_;
    p.started = started_;
    p.errors = errors_;
    p.target = limit_;
    p.elapsed_s = std::chrono::duration<double>(Clock::now() - t_begin_).count();
    p.output_tokens = out_tokens_;
    p.ttft_p50_ms = ttfts_.empty() ? 0 : stats::percentile(ttfts_, 50);
    progress_(p, final);
  }

 public:
  std::unordered_map<int, std::string> reasoning_texts_;

 private:
  const Target& t_;
  const LoadSpec& s_;
  Workload& wl_;
  ProgressFn progress_;
  std::atomic<bool>* stop_;
  asio::io_context io_;  // control thread: arrivals, progress, finished requests
  std::vector<std::unique_ptr<Shard>> shards_;
  std::string realtime_error_;
  asio::steady_timer arrivals_, tick_;
  std::string url_;
  net::ClientHeaders headers_;
  net::ClientHeaders server_headers_;
  uint64_t rng_;
  long limit_ = 0, started_ = 0, done_ = 0, errors_ = 0;
  double duration_s_ = 0, out_tokens_ = 0;
  bool warmup_ = false, closed_ = false, interrupted_ = false, reported_final_ = false;
  int next_unit_ = 0, in_flight_ = 0;
  long ticks_ = 0;
  Clock::time_point t_begin_, next_arrival_;
  std::deque<double> queued_;
  std::vector<RequestRecord> records_;
  std::vector<double> ttfts_;
  std::unordered_map<int, std::shared_ptr<Live>> live_;
};

}  // namespace

RunResult run_load(const Target& t, const LoadSpec& spec, Workload& wl, const text::Tokenizer* tok, const ProgressFn& progress,
                   std::atomic<bool>* stop) {
  Runner run(t, spec, wl, progress, stop);
  RunResult res;
  int first_unit = 0;
  if (spec.warmup > 0 && spec.mode != LoadSpec::replay) {
    run.phase(spec.warmup, 0, true, 0);
    first_unit = run.units_used();
  }
  if (!run.interrupted()) {
    // Measured units continue after the warmup's (distinct prompts), except replays.
    res.records = run.phase(spec.requests, spec.duration_s, false, spec.mode == LoadSpec::replay ? 0 : first_unit);
  }
  res.interrupted = run.interrupted();
  res.server_headers = run.server_headers();
  res.io_realtime = run.io_realtime();
  res.io_realtime_error = run.io_realtime_error();
  std::sort(res.records.begin(), res.records.end(), [](const RequestRecord& a, const RequestRecord& b) { return a.index < b.index; });
  double first = 1e300, last = 0;
  for (auto& r : res.records) {
    first = std::min(first, r.start_s);
    last = std::max(last, r.start_s + (std::isnan(r.end_ms) ? 0 : r.end_ms / 1000));
    if (tok) {
      r.output_tokens_local = static_cast<int>(tok->encode(r.answer_text).size());
      auto it = run.reasoning_texts_.find(r.index);
      if (it != run.reasoning_texts_.end()) {
        r.reasoning_tokens_local = static_cast<int>(tok->encode(it->second).size());
        r.output_tokens_local += r.reasoning_tokens_local;
      }
    }
    r.answer_text.clear();
  }
  res.duration_s = res.records.empty() ? 0 : last - first;
  return res;
}

}  // namespace v4::bench
