// The prefix cache's eviction: plain LRU without cache keys; with keys (prompt_cache_key) the
// byte budget is shared fairly, so one key's burst evicts its own oldest entries, not another
// key's. Lookups are exact whoever stored the entry.
#include <gtest/gtest.h>

#include <random>

#include "../common/synth_model.h"
#include "sched/prefix_cache.h"

using namespace v4;

namespace {

const ModelConfig& cfg() {
  static test::SynthModel m("pcache", 5, false);
  return m.w->cfg;
}

std::vector<int32_t> toks(int n, int seed) {
  std::mt19937 rng(static_cast<unsigned>(seed));
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (auto& x : t) x = static_cast<int32_t>(2 + rng() % 500);
  return t;
}

// A state whose position marks which entry it came from, so a hit can be told apart.
SequenceState state_at(int64_t pos) {
  SequenceState s(cfg(), false);
  s.pos = pos;
  return s;
}

size_t entry_bytes(size_t len) { return state_at(0).bytes().total() + len * sizeof(int32_t); }

bool hits(PrefixCache& c, const std::vector<int32_t>& t, int64_t want_pos) {
  SequenceState out;
  const size_t n = c.lookup(t, t.size(), &out);
  return n == t.size() && out.pos == want_pos;
}

}  // namespace

TEST(PrefixCacheEviction, WithoutKeysIsLru) {
  const size_t len = 40;
  PrefixCache c(3 * entry_bytes(len) + entry_bytes(len) / 2);  // room for three
  std::vector<std::vector<int32_t>> t;
  for (int i = 0; i < 4; ++i) t.push_back(toks(static_cast<int>(len), 100 + i));
  c.insert(t[0], len, state_at(10));
  c.insert(t[1], len, state_at(11));
  c.insert(t[2], len, state_at(12));
  ASSERT_TRUE(hits(c, t[0], 10));  // t[0] becomes the most recent; t[1] is now the LRU one
  c.insert(t[3], len, state_at(13));
  EXPECT_EQ(c.entries(), 3u);
  EXPECT_LE(c.bytes(), c.budget());
  EXPECT_TRUE(hits(c, t[0], 10));
  EXPECT_FALSE(hits(c, t[1], 11));
  EXPECT_TRUE(hits(c, t[2], 12));
  EXPECT_TRUE(hits(c, t[3], 13));
}

TEST(PrefixCacheEviction, OneKeysBurstKeepsAnotherKeysEntry) {
  const size_t len = 40;
  PrefixCache c(3 * entry_bytes(len) + entry_bytes(len) / 2);
  const auto b = toks(static_cast<int>(len), 7);
  c.insert(b, len, state_at(70), "session-b");  // the oldest entry
  std::vector<std::vector<int32_t>> a;
  for (int i = 0; i < 5; ++i) {
    a.push_back(toks(static_cast<int>(len), 200 + i));
    c.insert(a.back(), len, state_at(200 + i), "session-a");
  }
  // Plain LRU would have dropped session-b's entry first; here session-a gave up its own.
  EXPECT_TRUE(hits(c, b, 70));
  EXPECT_EQ(c.entries(), 3u);
  EXPECT_LE(c.bytes(), c.budget());
  EXPECT_TRUE(hits(c, a[4], 204));
  EXPECT_TRUE(hits(c, a[3], 203));
  EXPECT_FALSE(hits(c, a[0], 200));
  EXPECT_FALSE(hits(c, a[2], 202));
}

TEST(PrefixCacheEviction, KeyedLookupIsExactAcrossKeysAndPrefixes) {
  const size_t len = 60;
  PrefixCache c(4 * entry_bytes(len));
  const auto t = toks(static_cast<int>(len), 9);
  c.insert(t, 30, state_at(30), "k1");
  // Another key's longer prompt with the same first 30 tokens finds k1's snapshot.
  SequenceState out;
  EXPECT_EQ(c.lookup(t, t.size() - 1, &out), 30u);
  EXPECT_EQ(out.pos, 30);
  // Re-inserting the same prefix under another key refreshes it, does not duplicate it.
  c.insert(t, 30, state_at(30), "k2");
  EXPECT_EQ(c.entries(), 1u);
  c.clear();
  EXPECT_EQ(c.entries(), 0u);
  EXPECT_EQ(c.bytes(), 0u);
  c.insert(t, 30, state_at(31), "k2");
  EXPECT_TRUE(c.lookup(t, 30, &out) == 30u && out.pos == 31);
}
