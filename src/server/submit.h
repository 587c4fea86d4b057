// Submitting a generation to the scheduler with API-shaped errors (400 context overflow,
// 429 with Retry-After when the queue is full).
#pragma once
#include "server/api_error.h"
#include "sched/scheduler.h"

namespace v4 {

std::shared_ptr<RequestHandle> submit_or_throw(Scheduler& s, GenRequest req);
// Blocks until the request finishes; returns all its tokens.
std::vector<TokenEvent> collect_all(const std::shared_ptr<RequestHandle>& h);

}  // namespace v4
