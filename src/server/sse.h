// Delivering a scheduler request to an HTTP reply without a thread blocked per request: the
// handle's on_event notification posts a delivery task to a small pool (off the scheduler
// thread and off the I/O threads), which converts new tokens to events (streaming) or, once
// the request has finished, builds the whole response (non-streaming). A client that goes away
// has its request cancelled at once, streaming or not, so the scheduler frees its sequence.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "net/http_exchange.h"
#include "server/api_error.h"
#include "sched/scheduler.h"

namespace v4 {

struct SseCallbacks {
  // New tokens -> encoded SSE events ("data: ...\n\n"). May ask to stop (stop string hit).
  std::function<std::vector<std::string>(const std::vector<TokenEvent>&, bool* stop)> on_tokens;
  // The request finished (or was stopped) -> final events.
  std::function<std::vector<std::string>()> on_finish;
  // Called once when the stream ends, `completed` false if the client disconnected.
  std::function<void(bool completed)> on_close;
};

// Streams `h` as server-sent events on `res` (comment lines every keepalive_s while idle).
void respond_sse(net::Reply& res, std::shared_ptr<RequestHandle> h, SseCallbacks cb, double keepalive_s);

// Answers `res` once `h` has finished: `done(res, tokens)` fills in the response (it runs on a
// delivery thread; an ApiError it throws becomes the error reply).
using DoneFn = std::function<void(net::Reply& res, std::vector<TokenEvent>& tokens)>;
void respond_when_done(net::Reply& res, std::shared_ptr<RequestHandle> h, DoneFn done);

// Fills `res` with the error in the shape the client of its path expects (+ Retry-After on 429).
void reply_error(net::Reply& res, const ApiError& e);

std::string sse_data(const std::string& json);
std::string sse_event(const std::string& event, const std::string& json);

}  // namespace v4
