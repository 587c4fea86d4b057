// net::run_loop, the router's event loops with --io-spin-us (net/event_loop.h): a loop that spins
// after its events still runs every handler, stays awake between events that come within its
// spin, still sleeps when idle, and stops at once. Asserted on what the kernel counts for the
// loop's thread (voluntary context switches, CPU time), with margins of tenfold or more, never
// on how fast anything is.
#include <gtest/gtest.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <string>
#include <thread>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include "net/event_loop.h"

namespace asio = boost::asio;
using namespace std::chrono_literals;

namespace {

// One io_context run by net::run_loop on its own thread, kept alive by a work guard.
struct Loop {
  asio::io_context io{1};
  asio::executor_work_guard<asio::io_context::executor_type> guard{io.get_executor()};
  std::atomic<pid_t> tid{0};
  std::thread th;
  explicit Loop(std::chrono::microseconds spin) {
    th = std::thread([this, spin] {
      tid = static_cast<pid_t>(syscall(SYS_gettid));
      v4::net::run_loop(io, spin);
    });
    while (tid == 0) std::this_thread::yield();
  }
  ~Loop() {
    io.stop();
    if (th.joinable()) th.join();
  }
  // Times the loop's thread gave up the CPU by blocking (not by yielding or being preempted).
  long voluntary_switches() const {
    std::ifstream f("/proc/self/task/" + std::to_string(tid.load()) + "/status");
    std::string line;
    while (std::getline(f, line))
      if (line.rfind("voluntary_ctxt_switches:", 0) == 0) return std::stol(line.substr(24));
    return -1;
  }
  std::chrono::nanoseconds cpu() {
    clockid_t c{};
    timespec ts{};
    if (pthread_getcpuclockid(th.native_handle(), &c) != 0 || clock_gettime(c, &ts) != 0) return {};
    return std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
  }
  // Posts 20 handlers 5 ms apart and returns how many ran.
  int post_spaced() {
    std::atomic<int> ran{0};
    for (int i = 0; i < 20; ++i) {
      asio::post(io, [&] { ++ran; });
      std::this_thread::sleep_for(5ms);
    }
    while (ran < 20) std::this_thread::sleep_for(1ms);
    return ran;
  }
};

}  // namespace

// Without spin every event 5 ms after the last finds the loop asleep (one blocking wait each);
// with a 2 s spin the loop never blocks between them. Both run every handler.
TEST(RouterEventLoop, SpinKeepsTheLoopAwakeBetweenCloseEvents) {
  Loop plain(0us), spinning(2s);
  std::this_thread::sleep_for(20ms);  // both loops idle, blocked
  const long p0 = plain.voluntary_switches(), s0 = spinning.voluntary_switches();
  ASSERT_GE(p0, 0);
  ASSERT_GE(s0, 0);
  EXPECT_EQ(plain.post_spaced(), 20);
  EXPECT_EQ(spinning.post_spaced(), 20);
  EXPECT_GE(plain.voluntary_switches() - p0, 15) << "a loop that does not spin sleeps between events";
  // The first handler wakes it once; after that it polls through the 5 ms gaps (a few more for
  // page faults or locks are allowed, not one per event).
  EXPECT_LE(spinning.voluntary_switches() - s0, 5) << "a spinning loop stays awake between events closer than its spin";
}

// Once its spin has passed with no event the loop blocks again: over an idle 300 ms its thread
// uses a small fraction of the CPU a loop spinning all along would (300 ms).
TEST(RouterEventLoop, SpinningLoopSleepsWhenIdle) {
  Loop l(20ms);
  std::atomic<bool> ran{false};
  asio::post(l.io, [&] { ran = true; });
  while (!ran) std::this_thread::sleep_for(1ms);
  std::this_thread::sleep_for(100ms);  // well past the 20 ms spin
  const auto c0 = l.cpu();
  std::this_thread::sleep_for(300ms);
  EXPECT_LT(l.cpu() - c0, 30ms);
}

// io.stop() ends a spinning loop at its next pass, not at the end of its spin.
TEST(RouterEventLoop, StopEndsASpinningLoopAtOnce) {
  Loop l(std::chrono::seconds(30));
  std::atomic<bool> ran{false};
  asio::post(l.io, [&] { ran = true; });  // the loop is now spinning, for up to 30 s
  while (!ran) std::this_thread::sleep_for(1ms);
  const auto t0 = std::chrono::steady_clock::now();
  l.io.stop();
  l.th.join();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s) << "stop() waited out the spin";
}

// Out of work (the guard released), a spinning loop returns as io.run() does.
TEST(RouterEventLoop, SpinningLoopReturnsWhenOutOfWork) {
  Loop l(std::chrono::seconds(30));
  std::atomic<bool> ran{false};
  asio::post(l.io, [&] { ran = true; });
  while (!ran) std::this_thread::sleep_for(1ms);
  const auto t0 = std::chrono::steady_clock::now();
  l.guard.reset();
  l.th.join();
  EXPECT_TRUE(l.io.stopped());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);
}
