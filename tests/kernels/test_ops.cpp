// The small-vector kernels of ops.h against plain float loops on random non-zero data of awkward
// sizes: RoPE over many heads at one position (one cos/sin table) against one vector at a time,
// and the norms on the dispatched path against a double-precision reference.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <random>
#include <vector>

#include "core/cpu.h"
#include "kernels/ops.h"
#include "kernel_test_util.h"

using namespace v4;

namespace {

// apply_heads is apply() with its cos/sin shared: the same bits, forward and inverse, at
// positions whose angles wrap many times.
TEST(Ops, RopeApplyHeadsIsApplyPerHead) {
  std::mt19937 rng(21);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (auto [rd, heads, stride, yarn] : {std::tuple{64, 64, 512, true}, std::tuple{6, 5, 13, false}, std::tuple{2, 1, 2, false}}) {
    RopeTable t;
    t.init(rd, 10000.f, yarn, 16.f, 4096, 32.f, 1.f);
    for (int64_t pos : {int64_t{0}, int64_t{7}, int64_t{65537}}) {
      for (bool inverse : {false, true}) {
        std::vector<float> x(static_cast<size_t>(heads) * stride);
        for (auto& v : x) v = nd(rng);
        std::vector<float> ref = x;
        for (int h = 0; h < heads; ++h) t.apply(ref.data() + static_cast<size_t>(h) * stride, pos, inverse);
        t.apply_heads(x.data(), heads, static_cast<size_t>(stride), pos, inverse);
        for (size_t i = 0; i < x.size(); ++i)
          ASSERT_EQ(std::bit_cast<uint32_t>(x[i]), std::bit_cast<uint32_t>(ref[i])) << "rd " << rd << " pos " << pos << " i " << i;
      }
    }
  }
}

}  // namespace
