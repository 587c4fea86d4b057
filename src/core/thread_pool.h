// A small fixed thread pool with a blocking parallel_for; kernels split work by output rows.
#pragma once
#include <condition_variable>
#include <cstddef>
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
  // Chunks are at least `grain` long. Nested calls from inside a task run serially.
  void parallel_for(size_t n, size_t grain, const std::function<void(size_t, size_t)>& fn);

  static ThreadPool& global();

 private:
  void worker_loop(int id);
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  const std::function<void(size_t, size_t)>* job_ = nullptr;
  size_t n_ = 0, chunk_ = 0, next_ = 0;
  int active_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
};

// Convenience wrapper over the global pool.
inline void parallel_for(size_t n, size_t grain, const std::function<void(size_t, size_t)>& fn) {
  ThreadPool::global().parallel_for(n, grain, fn);
}

}  // namespace v4
