// State behind /v1/responses: the sealed reasoning blob (round trip, tampering and a foreign key
// refused) and the bounded response store (LRU by bytes, get refreshes, erase).
#include <gtest/gtest.h>

#include "server/reasoning_seal.h"
#include "server/response_store.h"

namespace v4 {
namespace {

TEST(ReasoningSeal, RoundTripsExactlyAndRefusesTampering) {
  ReasoningSeal s("k1");
  const std::string text = "step 1: \xE6\x80\x9D\xE8\x80\x83\n\t\"quoted\" \\ and a NUL-free tail";
  const std::string blob = s.seal(text);
  EXPECT_EQ(blob.find(text), std::string::npos) << "opaque";
  ASSERT_TRUE(s.open(blob));
  EXPECT_EQ(*s.open(blob), text);
  EXPECT_EQ(*s.open(s.seal("")), "");
  std::string t = blob;
  t[t.size() / 2] = t[t.size() / 2] == 'A' ? 'B' : 'A';
  EXPECT_FALSE(s.open(t));
  EXPECT_FALSE(s.open(blob.substr(0, blob.size() - 4)));
  EXPECT_FALSE(s.open("not a blob"));
  EXPECT_FALSE(ReasoningSeal("k2").open(blob)) << "another key";
  EXPECT_EQ(*ReasoningSeal("k1").open(blob), text) << "the same --secret across processes";
  EXPECT_FALSE(ReasoningSeal().open(ReasoningSeal().seal("x"))) << "random keys differ";
}

ResponseStore::Entry entry(size_t bytes) {
  ResponseStore::Entry e;
  e.object = std::string(bytes, 'x');
  protocol::Message m;
  m.text = "hi";
  e.conversation.push_back(m);
  return e;
}

TEST(ResponseStore, BoundedLeastRecentlyUsed) {
  ResponseStore st(10000);
  st.put("a", entry(2500));
  st.put("b", entry(2500));
  st.put("c", entry(2500));
  EXPECT_EQ(st.size(), 3u);
  ASSERT_TRUE(st.get("a"));  // refreshes a: b is now the oldest
  st.put("d", entry(2500));
  EXPECT_FALSE(st.get("b"));
  EXPECT_TRUE(st.get("a") && st.get("c") && st.get("d"));
  EXPECT_LE(st.bytes(), 10000u);
  EXPECT_EQ(st.get("d")->conversation.at(0).text, "hi");
  EXPECT_TRUE(st.erase("a"));
  EXPECT_FALSE(st.erase("a"));
  EXPECT_FALSE(st.get("a"));
  st.put("huge", entry(20000));  // larger than the whole store: not kept, nothing else lost
  EXPECT_FALSE(st.get("huge"));
  EXPECT_TRUE(st.get("c"));
  ResponseStore none(0);
  none.put("x", entry(1));
  EXPECT_EQ(none.size(), 0u);
}

}  // namespace
}  // namespace v4
