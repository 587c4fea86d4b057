#include "server/sse.h"

#include <httplib.h>

#include <chrono>

namespace v4 {

std::string sse_data(const std::string& json) { return "data: " + json + "\n\n"; }
std::string sse_event(const std::string& event, const std::string& json) {
  return "event: " + event + "\ndata: " + json + "\n\n";
}

void respond_sse(httplib::Response& res, std::shared_ptr<RequestHandle> h, SseCallbacks cb, double keepalive_s) {
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  auto closed = std::make_shared<bool>(false);
  auto finished = std::make_shared<bool>(false);
  res.set_chunked_content_provider(
      "text/event-stream",
      [h, cb, keepalive_s, finished](size_t, httplib::DataSink& sink) {
        using Clock = std::chrono::steady_clock;
        auto last_write = Clock::now();
        auto write = [&](const std::string& s) {
          if (!sink.is_writable() || !sink.write(s.data(), s.size())) return false;
          last_write = Clock::now();
          return true;
        };
        std::vector<TokenEvent> ev;
        for (;;) {
          ev.clear();
          const bool done = h->poll(ev, std::chrono::milliseconds(200));
          bool stop = false;
          if (!ev.empty())
            for (auto& s : cb.on_tokens(ev, &stop))
              if (!write(s)) {
                h->cancel();
                return false;
              }
          if (stop) h->cancel();
          if (done || stop) {
            for (auto& s : cb.on_finish())
              if (!write(s)) {
                h->cancel();
                return false;
              }
            *finished = true;
            sink.done();
            return true;
          }
          if (std::chrono::duration<double>(Clock::now() - last_write).count() >= keepalive_s) {
            if (!write(": keep-alive\n\n")) {
              h->cancel();  // the client is gone: free its sequence now
              return false;
            }
          } else if (!sink.is_writable()) {
            h->cancel();
            return false;
          }
        }
      },
      [h, cb, finished, closed](bool success) {
        if (*closed) return;
        *closed = true;
        if (!*finished) h->cancel();
        if (cb.on_close) cb.on_close(success && *finished);
      });
}

}  // namespace v4
