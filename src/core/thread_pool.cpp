#include "core/thread_pool.h"

#include <algorithm>
#include <cstdlib>

namespace v4 {

namespace {
thread_local bool t_in_pool_task = false;
}

ThreadPool::ThreadPool(int threads) {
  if (threads <= 0) {
    if (const char* env = std::getenv("V4HOST_THREADS")) threads = std::atoi(env);
    if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  }
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
}

ThreadPool& ThreadPool::global() {
  static ThreadPool pool;
  return pool;
}

void ThreadPool::parallel_for(size_t n, size_t grain, const std::function<void(size_t, size_t)>& fn) {
  if (n == 0) return;
  grain = std::max<size_t>(grain, 1);
  if (workers_.empty() || t_in_pool_task || n <= grain) {
    fn(0, n);
    return;
  }
  // One job at a time; concurrent callers (e.g. server threads) serialise here.
  static std::mutex submit_mu;
  std::lock_guard<std::mutex> submit(submit_mu);
  const size_t parts = std::min<size_t>(static_cast<size_t>(size()) * 4, (n + grain - 1) / grain);
  {
    std::lock_guard<std::mutex> lk(mu_);
    job_ = &fn;
    n_ = n;
    chunk_ = (n + parts - 1) / parts;
    next_ = 0;
    active_ = static_cast<int>(workers_.size());
    ++generation_;
  }
  cv_.notify_all();
  t_in_pool_task = true;
  for (;;) {
    size_t b;
    {
      std::lock_guard<std::mutex> lk(mu_);
      b = next_;
      next_ += chunk_;
    }
    if (b >= n) break;
    fn(b, std::min(n, b + chunk_));
  }
  t_in_pool_task = false;
  std::unique_lock<std::mutex> lk(mu_);
  done_cv_.wait(lk, [&] { return active_ == 0; });
  job_ = nullptr;
}

void ThreadPool::worker_loop(int) {
  uint64_t seen = 0;
  t_in_pool_task = true;
  for (;;) {
    const std::function<void(size_t, size_t)>* job;
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      job = job_;
    }
    for (;;) {
      size_t b, n, c;
      {
        std::lock_guard<std::mutex> lk(mu_);
        b = next_;
        n = n_;
        c = chunk_;
        next_ += chunk_;
      }
      if (b >= n) break;
      (*job)(b, std::min(n, b + c));
    }
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (--active_ == 0) done_cv_.notify_all();
    }
  }
}

}  // namespace v4
