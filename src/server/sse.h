// Server-sent-event responses driven by a scheduler request: tokens are converted to events as
// they arrive, comment lines keep the connection alive during long prefills, and a client that
// goes away has its request cancelled at once.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "server/scheduler.h"

namespace httplib {
struct Response;
}

namespace v4 {

struct SseCallbacks {
  // New tokens -> encoded SSE events ("data: ...\n\n"). May ask to stop (stop string hit).
  std::function<std::vector<std::string>(const std::vector<TokenEvent>&, bool* stop)> on_tokens;
  // The request finished (or was stopped) -> final events.
  std::function<std::vector<std::string>()> on_finish;
  // Called once when the stream ends, `completed` false if the client disconnected.
  std::function<void(bool completed)> on_close;
};

void respond_sse(httplib::Response& res, std::shared_ptr<RequestHandle> h, SseCallbacks cb, double keepalive_s);

std::string sse_data(const std::string& json);
std::string sse_event(const std::string& event, const std::string& json);

}  // namespace v4
