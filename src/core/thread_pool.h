// A small fixed thread pool with a blocking parallel_for; kernels split work by output rows.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace v4 {

class ThreadPool {
 public:
  explicit ThreadPool(int threads = 0);  // 0 = hardware concurrency (or V4HOST_THREADS)
  ~ThreadPool();
  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls fn(begin, end) on disjoint chunks of [0, n) across the pool (caller participates).
  // Chunks are at least `grain` long and handed out one at a time (a thread that finishes early
  // takes the next). Nested calls from inside a task run serially.
  void parallel_for(size_t n, size_t grain, const std::function<void(size_t, size_t)>& fn);

  static ThreadPool& global();

 private:
  void worker_loop(int id);
  void run_chunks();
  std::vector<std::thread> workers_;
  // A decode step makes a few thousand calls of tens to hundreds of microseconds each: the
  // workers spin briefly for the next call and the caller for the end of the current one before
  // they sleep, since waking a sleeping thread (a halted vCPU here) costs more than many calls.
  std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  const std::function<void(size_t, size_t)>* job_ = nullptr;
  size_t n_ = 0, chunk_ = 0;
  std::atomic<size_t> next_{0};
  std::atomic<int> active_{0};
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<bool> caller_sleeping_{false};
  std::atomic<bool> stop_{false};
};

// Convenience wrapper over the global pool.
inline void parallel_for(size_t n, size_t grain, const std::function<void(size_t, size_t)>& fn) {
  ThreadPool::global().parallel_for(n, grain, fn);
}

// Calls fn(i) for every i in [0, n) on the global pool, one index at a time in index order,
// whatever n (parallel_for groups more than 16 per thread into chunks of consecutive indices):
// for a list of uneven pieces whose handout order matters, e.g. kinds of work interleaved so
// that both cores mix them.
inline void parallel_each(size_t n, const std::function<void(size_t)>& fn) {
  std::atomic<size_t> next{0};
  parallel_for(static_cast<size_t>(ThreadPool::global().size()), 1, [&](size_t, size_t) {
    for (size_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < n;) fn(i);
  });
}

}  // namespace v4
