#include "net/event_loop.h"

#include <sched.h>

#include <boost/asio/io_context.hpp>

namespace v4::net {

void run_loop(boost::asio::io_context& io, std::chrono::microseconds spin) {
  if (spin.count() <= 0) {
    io.run();
    return;
  }
  using Clock = std::chrono::steady_clock;
  while (io.run_one() > 0) {  // blocks until a handler ran; 0 once stopped or out of work
    auto last = Clock::now();
    for (;;) {
      if (io.poll() > 0) {
        last = Clock::now();
        continue;
      }
      if (io.stopped()) return;
      if (Clock::now() - last >= spin) break;
      // Let a runnable thread on this CPU (the client, the upstream) go first: a spinning loop
      // should take only the time nothing else wants. sched_yield returns at once when nothing
      // else is runnable here. (A SCHED_FIFO thread's yield lets no normal thread run, which is
      // why the router spins at normal priority only.)
      sched_yield();
    }
  }
}

}  // namespace v4::net
