#include "core/thread_pool.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>

#include <sched.h>

namespace v4 {

namespace {
thread_local bool t_in_pool_task = false;

// How long a worker spins for the next call, and the caller for the last chunk of its call,
// before sleeping (V4HOST_POOL_SPIN_US sets both; 0 = sleep at once). The calls of a decode
// step follow each other within microseconds; between steps or requests the threads sleep, so
// an idle pool costs no CPU.
std::chrono::microseconds spin_limit(int deflt) {
  static const int us = [] {
    const char* e = std::getenv("V4HOST_POOL_SPIN_US");
    return e && *e ? std::max(0, std::atoi(e)) : -1;
  }();
  return std::chrono::microseconds(us >= 0 ? us : deflt);
}

// Spins until pred() or the deadline, yielding the core on every turn: on a machine whose cores
// are oversubscribed a spinning thread would take the core from the very thread it waits for
// (the pool's other thread or the caller), so it steps aside whenever anything else is runnable
// and costs a system call per turn when nothing is.
template <class P>
bool spin_until(P pred, std::chrono::microseconds limit) {
  if (limit.count() == 0) return pred();
  const auto end = std::chrono::steady_clock::now() + limit;
  for (;;) {
    for (int i = 0; i < 4; ++i) {
      if (pred()) return true;
      sched_yield();
    }
    if (std::chrono::steady_clock::now() >= end) return pred();
  }
}
}  // namespace

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

void ThreadPool::run_chunks() {
  const size_t n = n_, c = chunk_;
  const auto& fn = *job_;
  for (;;) {
    const size_t b = next_.fetch_add(c, std::memory_order_relaxed);
    if (b >= n) break;
    fn(b, std::min(n, b + c));
  }
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
  // Chunks handed out one by one: many small chunks keep the threads finishing together (the
  // slower thread, e.g. one sharing its core with a neighbour, takes fewer), at one atomic
  // add per chunk.
  const size_t parts = std::min<size_t>(static_cast<size_t>(size()) * 16, (n + grain - 1) / grain);
  job_ = &fn;
  n_ = n;
  chunk_ = (n + parts - 1) / parts;
  next_.store(0, std::memory_order_relaxed);
  active_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_seq_cst);  // publishes the job
  if (sleepers_.load(std::memory_order_seq_cst) > 0) {
    std::lock_guard<std::mutex> lk(mu_);
    cv_.notify_all();
  }
  t_in_pool_task = true;
  run_chunks();
  t_in_pool_task = false;
  auto done = [&] { return active_.load(std::memory_order_seq_cst) == 0; };
  if (!spin_until(done, spin_limit(100))) {
    std::unique_lock<std::mutex> lk(mu_);
    caller_sleeping_.store(true, std::memory_order_seq_cst);
    done_cv_.wait(lk, done);
    caller_sleeping_.store(false, std::memory_order_relaxed);
  }
  job_ = nullptr;
}

void ThreadPool::worker_loop(int) {
  uint64_t seen = 0;
  t_in_pool_task = true;
  for (;;) {
    auto ready = [&] { return stop_.load(std::memory_order_acquire) || generation_.load(std::memory_order_seq_cst) != seen; };
    if (!spin_until(ready, spin_limit(200))) {
      std::unique_lock<std::mutex> lk(mu_);
      sleepers_.fetch_add(1, std::memory_order_seq_cst);
      cv_.wait(lk, ready);
      sleepers_.fetch_sub(1, std::memory_order_relaxed);
    }
    if (stop_.load(std::memory_order_acquire)) return;
    seen = generation_.load(std::memory_order_acquire);
    run_chunks();
    if (active_.fetch_sub(1, std::memory_order_seq_cst) == 1 && caller_sleeping_.load(std::memory_order_seq_cst)) {
      std::lock_guard<std::mutex> lk(mu_);
      done_cv_.notify_all();
    }
  }
}

}  // namespace v4
