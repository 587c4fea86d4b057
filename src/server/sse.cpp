#include "server/sse.h"

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "core/error.h"

namespace v4 {

std::string sse_data(const std::string& json) { return "data: " + json + "\n\n"; }
std::string sse_event(const std::string& event, const std::string& json) {
  return "event: " + event + "\ndata: " + json + "\n\n";
}

void reply_error(net::Reply& res, const ApiError& e) {
  res.status = e.status;
  if (e.status == 429) res.set_header("Retry-After", "1");
  res.set_content(e.body_for(res.request().path), "application/json");
  res.note = e.what();
}

namespace {

// Two threads convert tokens to events for every open request. Per request the work is
// serialised (a request is queued at most once at a time, see Pump::kick).
class Delivery {
 public:
  static Delivery& get() {
    static Delivery d;
    return d;
  }
  void post(std::function<void()> fn) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      q_.push_back(std::move(fn));
    }
    cv_.notify_one();
  }
  ~Delivery() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : th_) t.join();
  }

 private:
  Delivery() {
    for (int i = 0; i < 2; ++i) th_.emplace_back([this] { loop(); });
  }
  void loop() {
    for (;;) {
      std::function<void()> fn;
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return stop_ || !q_.empty(); });
        if (q_.empty()) return;
        fn = std::move(q_.front());
        q_.pop_front();
      }
      try {
        fn();
      } catch (const std::exception& e) {
        std::fprintf(stderr, "v4host: delivery task failed: %s\n", e.what());
      }
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> q_;
  bool stop_ = false;
  std::vector<std::thread> th_;
};

// Shared by the streaming and the one-shot delivery: runs step() on a delivery thread whenever
// the handle (or the connection) has news, never twice at once.
struct Pump : std::enable_shared_from_this<Pump> {
  std::shared_ptr<RequestHandle> h;
  std::mutex mu;
  bool ended = false;
  std::atomic<bool> queued{false};
  virtual ~Pump() = default;
  virtual void step() = 0;  // called with mu held
  void kick() {
    if (queued.exchange(true)) return;
    Delivery::get().post([self = shared_from_this()] {
      self->queued = false;
      std::lock_guard<std::mutex> lk(self->mu);
      if (!self->ended) self->step();
    });
  }
};

struct SsePump final : Pump {
  SseCallbacks cb;
  std::shared_ptr<net::Stream> stream;
  std::vector<TokenEvent> ev;
  void end(bool completed) {
    ended = true;
    h->on_event(nullptr);  // the handle held this pump through its callback
    if (!completed) h->cancel();  // the client is gone: free its sequence now
    if (cb.on_close) cb.on_close(completed);
  }
  bool write_all(const std::vector<std::string>& out) {
    for (auto& s : out)
      if (!stream->write(s)) return false;
    return true;
  }
  void step() override {
    if (stream->closed()) return end(false);
    ev.clear();
    const bool done = h->poll(ev, std::chrono::milliseconds(0));
    bool stop = false;
    if (!ev.empty() && !write_all(cb.on_tokens(ev, &stop))) return end(false);
    if (stop) h->cancel();
    if (done || stop) {
      if (!write_all(cb.on_finish())) return end(false);
      end(true);
      stream->close();  // after on_close: its log note is part of this request's line
    }
  }
};

struct OncePump final : Pump {
  std::shared_ptr<net::Reply> reply;
  DoneFn done;
  std::vector<TokenEvent> ev;
  void step() override {
    if (!h->poll(ev, std::chrono::milliseconds(0))) return;
    ended = true;
    h->on_event(nullptr);
    try {
      done(*reply, ev);
    } catch (const ApiError& e) {
      reply_error(*reply, e);
    } catch (const InputError& e) {
      reply_error(*reply, ApiError(400, e.what()));
    } catch (const std::exception& e) {
      reply_error(*reply, ApiError(500, e.what()));
    }
    if (reply->disconnected()) reply->note += reply->note.empty() ? "(client disconnected)" : " (client disconnected)";
    reply->send();
  }
};

}  // namespace

void respond_sse(net::Reply& res, std::shared_ptr<RequestHandle> h, SseCallbacks cb, double keepalive_s) {
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  auto p = std::make_shared<SsePump>();
  p->h = h;
  p->cb = std::move(cb);
  p->stream = res.start_stream("text/event-stream");
  p->stream->keep_alive(keepalive_s);
  std::weak_ptr<SsePump> wp = p;
  res.on_disconnect([h, wp] {
    h->cancel();
    if (auto sp = wp.lock()) sp->kick();
  });
  h->on_event([p] { p->kick(); });  // the handle keeps the pump until it finishes
}

void respond_when_done(net::Reply& res, std::shared_ptr<RequestHandle> h, DoneFn done) {
  auto p = std::make_shared<OncePump>();
  p->h = h;
  p->reply = res.defer();
  p->done = std::move(done);
  res.on_disconnect([h] { h->cancel(); });  // the handle then finishes (cancelled) and the pump ends
  h->on_event([p] { p->kick(); });
}

}  // namespace v4
