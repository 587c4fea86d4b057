#include "core/thread_priority.h"

#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <future>

namespace v4 {

namespace {
struct SchedAttr {  // struct sched_attr (glibc has no wrapper)
  uint32_t size, sched_policy;
  uint64_t sched_flags;
  int32_t sched_nice;
  uint32_t sched_priority;
  uint64_t sched_runtime, sched_deadline, sched_period;
  uint32_t sched_util_min, sched_util_max;
};
}  // namespace

bool request_short_slice(uint64_t ns) {
  SchedAttr a{};
  a.size = sizeof a;
  a.sched_policy = SCHED_OTHER;
  a.sched_nice = getpriority(PRIO_PROCESS, 0);
  a.sched_runtime = ns;
  return syscall(SYS_sched_setattr, 0, &a, 0u) == 0;
}

bool request_short_slice_us(int us) { return us > 0 && request_short_slice(static_cast<uint64_t>(us) * 1000); }

uint64_t thread_slice_ns(pid_t tid) {
  SchedAttr a{};
  if (syscall(SYS_sched_getattr, tid, &a, static_cast<unsigned>(sizeof a), 0u) != 0) return 0;
  return a.sched_runtime;
}

std::string raise_io_thread_priority() {
  sched_param sp{};
  sp.sched_priority = 1;
  const int rc = pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp);
  if (rc == 0) return {};
  const bool slice = request_short_slice(100'000);
  return std::string("SCHED_FIFO refused: ") + std::strerror(rc) +
         (slice ? "; asked for a 100 us EEVDF slice instead" : "; a short EEVDF slice was refused too");
}

std::thread start_io_thread(bool realtime, std::function<void()> body, std::string* refused) {
  std::promise<std::string> tried;
  auto result = tried.get_future();
  std::thread t([realtime, body = std::move(body), tried = std::move(tried)]() mutable {
    tried.set_value(realtime ? raise_io_thread_priority() : std::string());
    body();
  });
  *refused = result.get();
  return t;
}

}  // namespace v4
