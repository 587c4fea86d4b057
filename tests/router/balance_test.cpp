// Replica groups: the per-request order of a group's members (session affinity by rendezvous
// hashing with bounded loads, least loaded), the affinity key a request yields, and the config
// form (nested lists in a chain, `balance:`), with errors naming field and line.
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "router/balance.h"
#include "config_fixtures.h"
#include "router/config.h"

using namespace v4::router;

namespace {

const std::vector<std::string> kThree = {"flash-a", "flash-b", "flash-c"};

std::string first(const Balance& b, const std::string& key, const std::vector<std::string>& m, const std::vector<double>& load,
                  uint64_t tie = 7) {
  return m[order_replicas(b, key, m, load, tie)[0]];
}

std::string error_of(const std::string& yaml) { return router_test::config_error(yaml); }

}  // namespace

TEST(RouterBalance, SessionKeysStickSpreadAndMoveOnlyWhenTheirReplicaGoes) {
  Balance b;
  const std::vector<double> idle(3, 0.0);
  std::map<std::string, int> count;
  std::map<std::string, std::string> where;
  for (int i = 0; i < 3000; ++i) {
    const std::string key = "k:session-" + std::to_string(i);
    const std::string r = first(b, key, kThree, idle, i);
    EXPECT_EQ(r, first(b, key, kThree, idle, i + 1000)) << key;  // the tie value plays no part with a key
    ++count[r];
    where[key] = r;
  }
  for (auto& m : kThree) {  // rendezvous hashing spreads keys evenly: 1000 expected each
    EXPECT_GT(count[m], 850) << m;
    EXPECT_LT(count[m], 1150) << m;
  }
  // flash-c leaves the group: its keys move, every other key stays where it was.
  const std::vector<std::string> two = {"flash-a", "flash-b"};
  int moved = 0;
  for (auto& [key, r] : where) {
    const std::string now = first(b, key, two, {0, 0});
    if (r == "flash-c") ++moved;
    else EXPECT_EQ(now, r) << key;
  }
  EXPECT_EQ(moved, count["flash-c"]);
}

TEST(RouterBalance, BoundedLoadPassesOverAnOverloadedReplicaButKeepsItAsFallback) {
  Balance b;  // bounded_load 1.25
  const std::string key = "k:hot";
  const std::vector<size_t> base = order_replicas(b, key, kThree, {0, 0, 0}, 1);
  std::vector<double> load(3, 1.0);
  load[base[0]] = 8;  // 10 in flight: capacity ceil(1.25 * 11 / 3) = 5
  const std::vector<size_t> o = order_replicas(b, key, kThree, load, 1);
  EXPECT_EQ(o[0], base[1]);  // the next in the key's own ranking
  EXPECT_EQ(o[1], base[0]);  // the preferred one is still tried before the rest
  EXPECT_EQ(o[2], base[2]);
  load[base[0]] = 3;  // 5 in flight: capacity ceil(1.25 * 6 / 3) = 3, so 3 is at it
  EXPECT_EQ(order_replicas(b, key, kThree, load, 1)[0], base[1]);
  load[base[0]] = 2;  // under it: back to its replica
  EXPECT_EQ(order_replicas(b, key, kThree, load, 1), base);
  b.bounded_load = 100;  // effectively unbounded
  load[base[0]] = 50;
  EXPECT_EQ(order_replicas(b, key, kThree, load, 1), base);
}

TEST(RouterBalance, LeastLoadedFirstTiesSpreadAtRandom) {
  Balance b;
  b.by = Balance::LeastLoaded;
  EXPECT_EQ(first(b, "", kThree, {4, 1, 2}), "flash-b");
  const std::vector<size_t> o = order_replicas(b, "", kThree, {4, 1, 2}, 3);
  EXPECT_EQ(o, (std::vector<size_t>{1, 2, 0}));
  std::map<std::string, int> count;
  for (uint64_t t = 0; t < 900; ++t) ++count[first(b, "", kThree, {0, 0, 0}, t)];
  for (auto& m : kThree) EXPECT_GT(count[m], 220) << m;
  // No key with session balance: the tie value stands in for it, so requests spread too.
  Balance s;
  count.clear();
  for (uint64_t t = 0; t < 900; ++t) ++count[first(s, "", kThree, {0, 0, 0}, t)];
  for (auto& m : kThree) EXPECT_GT(count[m], 220) << m;
}

TEST(RouterBalance, SessionKeyFromTheRequest) {
  v4::protocol::Request r;
  r.messages.push_back({});
  r.messages[0].role = v4::protocol::Role::System;
  r.messages[0].text = "You are a coding agent.";
  r.messages.push_back({});
  r.messages[1].role = v4::protocol::Role::User;
  r.messages[1].text = "fix the build";
  const char* why = nullptr;
  const std::string opening = session_key(r, "", &why);
  EXPECT_STREQ(why, "conversation opening");
  // A later turn of the same conversation has the same opening, so the same key.
  v4::protocol::Request later = r;
  later.messages.push_back({});
  later.messages[2].role = v4::protocol::Role::Assistant;
  later.messages[2].text = "done";
  later.messages.push_back({});
  later.messages[3].role = v4::protocol::Role::User;
  later.messages[3].text = "now the tests";
  EXPECT_EQ(session_key(later, "", &why), opening);
  v4::protocol::Request other = r;
  other.messages[1].text = "write docs";
  EXPECT_NE(session_key(other, "", &why), opening);
  EXPECT_EQ(session_key(r, "abc", &why), "h:abc");
  EXPECT_STREQ(why, "session header");
  r.metadata = {{"user_id", "user_x_session_42"}};
  EXPECT_EQ(session_key(r, "abc", &why), "u:user_x_session_42");
  EXPECT_STREQ(why, "metadata.user_id");
  r.prompt_cache_key = "conv-9";
  EXPECT_EQ(session_key(r, "abc", &why), "k:conv-9");
  EXPECT_STREQ(why, "prompt_cache_key");
  EXPECT_EQ(session_key(v4::protocol::Request{}, "", &why), "");
  EXPECT_STREQ(why, "none");
}

TEST(RouterBalance, ConfigGroupsAndErrors) {
  const std::string ups =
      "upstreams:\n"
      "  a: {kind: v4host, base_url: http://x:1/v1, residency: on-prem}\n"
      "  b: {kind: vllm, base_url: http://x:2/v1, residency: on-prem}\n"
      "  c: {kind: deepseek, base_url: https://y, residency: cn}\n";
  Config cfg = load_config_text(ups + "routes:\n  r:\n    chain: [[a, b], c]\n    balance: {by: session, bounded_load: 1.5}\n", "t.yaml");
  const Route* r = cfg.route("r");
  EXPECT_EQ(r->chain, (std::vector<std::string>{"a", "b", "c"}));
  ASSERT_EQ(r->groups.size(), 1u);
  EXPECT_EQ(r->groups[0], (std::pair<size_t, size_t>{0, 2}));
  EXPECT_DOUBLE_EQ(r->balance.bounded_load, 1.5);
  const std::string d = describe_config(cfg);
  EXPECT_NE(d.find("r: {a | b} (by session, bounded load 1.5) -> c"), std::string::npos) << d;
  cfg = load_config_text(ups + "routes:\n  r: {chain: [c, [a, b]], balance: least_loaded}\n", "t.yaml");
  EXPECT_EQ(cfg.route("r")->groups[0], (std::pair<size_t, size_t>{1, 3}));
  EXPECT_EQ(cfg.route("r")->balance.by, Balance::LeastLoaded);
  EXPECT_EQ(load_config_text(ups + "routes:\n  r: {chain: [[a, b]]}\n", "t.yaml").route("r")->balance.by, Balance::Session);

  EXPECT_EQ(error_of(ups + "routes:\n  r:\n    chain: [[a], c]\n"),
            "t.yaml:7: routes.r.chain[0]: a replica group needs at least two upstreams (or write the one name)");
  EXPECT_EQ(error_of(ups + "routes:\n  r:\n    chain: [[a, z], c]\n"), "t.yaml:7: routes.r.chain: unknown upstream 'z'");
  EXPECT_EQ(error_of(ups + "routes:\n  r:\n    chain: [[a, b], a]\n"), "t.yaml:7: routes.r.chain: upstream 'a' appears twice");
  EXPECT_EQ(error_of(ups + "routes:\n  r:\n    chain: [[a, b]]\n    balance: fastest\n"),
            "t.yaml:8: routes.r.balance.by: expected session or least_loaded, got 'fastest'");
  EXPECT_EQ(error_of(ups + "routes:\n  r:\n    chain: [a, c]\n    balance: session\n"),
            "t.yaml:8: routes.r.balance: the chain has no replica group (write one as a nested list: [[a, b], c])");
  EXPECT_EQ(error_of(ups + "routes:\n  r:\n    chain: [[a, b]]\n    balance: {by: session, bounded_load: 0.5}\n"),
            "t.yaml:8: routes.r.balance.bounded_load: must be >= 1 (1 = strictly even shares)");
  // Every member of a group may receive the data: residency is checked over all of them.
  const std::string e = error_of(ups + "routes:\n  r:\n    chain: [[a, c]]\n    residency: [on-prem]\n");
  EXPECT_NE(e.find("could send data to upstream 'c' (residency 'cn')"), std::string::npos) << e;
}
