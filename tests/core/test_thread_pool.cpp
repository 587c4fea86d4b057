// The pool's two ways of spreading work: every index is run exactly once, for sizes below,
// at and above the number of chunks the pool hands out (16 per thread).
#include <gtest/gtest.h>

#include <atomic>
#include <vector>

#include "core/thread_pool.h"

namespace v4 {
namespace {

TEST(ThreadPool, ParallelForCoversEveryIndexOnce) {
  for (size_t n : {0u, 1u, 7u, 33u, 1000u, 4099u})
    for (size_t grain : {1u, 3u, 64u}) {
      std::vector<std::atomic<int>> hits(n);
      parallel_for(n, grain, [&](size_t b, size_t e) {
        ASSERT_LE(b, e);
        ASSERT_LE(e, n);
        for (size_t i = b; i < e; ++i) hits[i].fetch_add(1);
      });
      for (size_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "n " << n << " grain " << grain << " index " << i;
    }
}

TEST(ThreadPool, ParallelEachRunsEveryIndexOnce) {
  for (size_t n : {0u, 1u, 2u, 31u, 32u, 33u, 5000u}) {
    std::vector<std::atomic<int>> hits(n);
    parallel_each(n, [&](size_t i) {
      ASSERT_LT(i, n);
      hits[i].fetch_add(1);
    });
    for (size_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "n " << n << " index " << i;
  }
}

}  // namespace
}  // namespace v4
