#include "server/submit.h"

#include "core/error.h"

namespace v4 {

std::shared_ptr<RequestHandle> submit_or_throw(Scheduler& s, GenRequest req) {
  try {
    return s.submit(std::move(req));
  } catch (const QueueFull& e) {
    throw ApiError(429, std::string(e.what()) + "; retry shortly", "", "queue_full");
  } catch (const KvBudgetExceeded& e) {
    throw ApiError(400, e.what(), "max_tokens", "kv_budget_exceeded");
  } catch (const InputError& e) {
    throw ApiError(400, e.what(), "messages", "context_length_exceeded");
  }
}

std::vector<TokenEvent> collect_all(const std::shared_ptr<RequestHandle>& h) {
  std::vector<TokenEvent> ev;
  while (!h->poll(ev, std::chrono::milliseconds(500))) {
  }
  return ev;
}

}  // namespace v4
