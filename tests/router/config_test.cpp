// Router config: parsing, defaults per upstream kind, errors naming field and line, residency
// checked over every chain a restricted key or team can reach.
#include <gtest/gtest.h>

#include <cstdlib>

#include "config_fixtures.h"
#include "router/config.h"
#include "router/cost.h"

using namespace v4::router;

namespace {

const char* kBase = R"(listen: {port: 9000}
upstreams:
  flash:
    kind: v4host
    base_url: http://127.0.0.1:8000/v1/
    residency: on-prem
    cost: {amortised_per_hour: 3.6}
  pro:
    kind: deepseek
    base_url: https://api.deepseek.com
    api_key_env: DEEPSEEK_API_KEY
    model: deepseek-v4-pro
    residency: cn
    timeouts: {connect: 2s, first_token: 30s, total: 5m}
    cost:
      tariff:
        - {from: 2026-01-01, input: 0.5, cached_input: 0.1, output: 2.0}
        - from: 2026-06-01
          input: 0.4
          cached_input: 0.1
          output: 1.6
          off_peak: {window: "16:30-00:30", input: 0.2, output: 0.8}
routes:
  coding:
    chain: [flash, pro]
    verify: [non_empty, json_schema, {regex: "^[^x]"}, {command: [python3, check.py], timeout: 3s}]
  hard:
    chain: [pro]
    stream: first_byte
  local:
    chain: [flash]
    residency: [on-prem]
rules:
  - match: {reasoning_effort: [high, max]}
    route: hard
  - match: {header: {x-lane: local}}
    route: local
)";

std::string with(const std::string& extra) { return std::string(kBase) + extra; }

std::string error_of(const std::string& yaml) { return router_test::config_error(yaml); }

}  // namespace

TEST(RouterConfig, ParsesAndAppliesKindDefaults) {
  Config c = load_config_text(with("teams:\n  secure: {residency: [on-prem], routes: [local]}\n"), "t.yaml");
  EXPECT_EQ(c.port, 9000);
  ASSERT_EQ(c.upstreams.size(), 2u);
  const Upstream* f = c.upstream("flash");
  EXPECT_EQ(f->base_url, "http://127.0.0.1:8000/v1");  // trailing slash dropped
  EXPECT_EQ(f->dialect, ReasoningDialect::ReasoningEffort);
  EXPECT_EQ(f->health.path, "/health");
  const Upstream* p = c.upstream("pro");
  EXPECT_EQ(p->dialect, ReasoningDialect::Thinking);
  EXPECT_TRUE(p->echo_reasoning_content);
  EXPECT_DOUBLE_EQ(p->timeouts.total_s, 300);
  EXPECT_EQ(p->health.path, "");  // hosted: not polled by default
  ASSERT_EQ(p->cost.tariff.size(), 2u);
  EXPECT_TRUE(p->cost.tariff[1].has_off_peak);
  EXPECT_DOUBLE_EQ(p->cost.tariff[1].off_cached_input, 0.1);  // inherits the peak cached price
  const Route* r = c.route("coding");
  ASSERT_EQ(r->verify.size(), 4u);
  EXPECT_EQ(r->verify[3].kind, Verifier::Command);
  EXPECT_DOUBLE_EQ(r->verify[3].timeout_s, 3);
  EXPECT_EQ(c.route("hard")->stream, StreamMode::FirstByte);
  EXPECT_EQ(c.default_route, "coding");  // first route
  std::string d = describe_config(c);
  EXPECT_NE(d.find("coding: flash -> pro"), std::string::npos) << d;
  EXPECT_NE(d.find("reasoning_effort in [high, max] -> hard"), std::string::npos) << d;
}

TEST(RouterConfig, ErrorsNameFieldAndLine) {
  EXPECT_EQ(error_of("upstreams:\n  a: {kind: v4host, base_url: http://x}\nroutes:\n  r: {chain: [a]}\nbogus: 1\n"),
            "t.yaml:5: config.bogus: unknown field (expected one of: listen, ledger, tokenizer, access_log, log_prompts, require_key, "
            "default_route, upstreams, routes, rules, keys, teams)");
  std::string e = error_of("upstreams:\n  a:\n    kind: tpu\n    base_url: http://x\nroutes:\n  r: {chain: [a]}\n");
  EXPECT_EQ(e.rfind("t.yaml:3: upstreams.a.kind: unknown kind 'tpu'", 0), 0u) << e;
  e = error_of("upstreams:\n  a: {kind: v4host, base_url: http://x}\nroutes:\n  r:\n    chain: [a, b]\n");
  EXPECT_EQ(e, "t.yaml:5: routes.r.chain: unknown upstream 'b'");
  e = error_of("upstreams:\n  a: {kind: v4host, base_url: http://x, timeouts: {connect: fast}}\nroutes:\n  r: {chain: [a]}\n");
  EXPECT_NE(e.find("t.yaml:2: upstreams.a.timeouts.connect: expected a duration"), std::string::npos) << e;
  e = error_of("upstreams:\n  a: {kind: v4host, base_url: http://x, api_key: sk-123}\nroutes:\n  r: {chain: [a]}\n");
  EXPECT_NE(e.find("upstreams.a.api_key"), std::string::npos) << e;
  e = error_of("upstreams: [\n");
  EXPECT_NE(e.find("YAML syntax"), std::string::npos) << e;
  e = error_of(with("  - match: {tools: maybe}\n    route: hard\n"));
  EXPECT_NE(e.find("t.yaml:38: rules[2].match.tools: expected true or false"), std::string::npos) << e;
  e = error_of("upstreams:\n  a:\n    kind: deepseek\n    base_url: http://x\n    cost:\n      tariff:\n        - {from: 2026-13-01, input: 1, output: 2}\nroutes:\n  r: {chain: [a]}\n");
  EXPECT_NE(e.find("t.yaml:7: upstreams.a.cost.tariff[0].from: expected a date"), std::string::npos) << e;
}

TEST(RouterConfig, ResidencyViolationsRefusedNamingTheChain) {
  // A route that declares on-prem but chains to a hosted upstream.
  std::string e = error_of("upstreams:\n  a: {kind: v4host, base_url: http://x, residency: on-prem}\n  b: {kind: deepseek, base_url: "
                           "https://y, residency: cn}\nroutes:\n  r:\n    chain: [a, b]\n    residency: [on-prem]\n");
  EXPECT_NE(e.find("routes.r.residency: chain [a -> b] could send data to upstream 'b' (residency 'cn')"), std::string::npos) << e;
  // A restricted team with no route list can ask for any alias, and "coding" falls back to pro.
  e = error_of(with("teams:\n  secure: {residency: [on-prem]}\n"));
  EXPECT_NE(e.find("teams.secure.residency: chain 'coding' [flash -> pro] could send secure's data to upstream 'pro'"), std::string::npos) << e;
  // Pinned to the local route it is fine (rules to other routes are skipped for it); a key of that
  // team inherits the restriction, and a key with no route list reaches the rule targets.
  setenv("ROUTER_TEST_KEY", "k", 1);
  EXPECT_EQ(error_of(with("teams:\n  secure: {residency: [on-prem], routes: [local]}\nkeys:\n  alice: {team: secure, key_env: ROUTER_TEST_KEY}\n")), "");
  e = error_of(with("keys:\n  alice: {residency: [on-prem, cn], key_env: ROUTER_TEST_KEY}\n  carol: {residency: [cn], key_env: ROUTER_TEST_KEY}\n"));
  EXPECT_NE(e.find("keys.carol.residency: chain 'coding' [flash -> pro] could send carol's data to upstream 'flash' (residency 'on-prem')"),
            std::string::npos) << e;
  // A cost-cap "cheaper" route is reachable too.
  e = error_of("upstreams:\n  a: {kind: v4host, base_url: http://x, residency: on-prem}\n  b: {kind: deepseek, base_url: https://y, residency: cn}\n"
               "routes:\n  r:\n    chain: [a]\n    cost_cap: {usd: 0.1, over: s}\n  s: {chain: [b]}\nteams:\n  t: {residency: [on-prem], routes: [r]}\n");
  EXPECT_NE(e.find("chain 's' [b]"), std::string::npos) << e;
  // An unset key variable is a startup error.
  e = error_of(with("keys:\n  bob: {key_env: ROUTER_TEST_UNSET_VAR}\n"));
  EXPECT_NE(e.find("keys.bob.key_env: environment variable ROUTER_TEST_UNSET_VAR is not set"), std::string::npos) << e;
}

TEST(RouterCost, DatedTariffOffPeakAndAmortised) {
  Config c = load_config_text(with(""), "t.yaml");
  const Cost& cost = c.upstream("pro")->cost;
  auto at = [](const char* iso) {  // "2026-03-01T10:00"
    std::tm tm{};
    strptime(iso, "%Y-%m-%dT%H:%M", &tm);
    return timegm(&tm);
  };
  EXPECT_DOUBLE_EQ(prices_at(cost, at("2025-12-31T10:00")).input, 0);  // before any tariff
  Prices p = prices_at(cost, at("2026-03-01T10:00"));
  EXPECT_DOUBLE_EQ(p.input, 0.5);
  EXPECT_FALSE(p.off_peak);
  p = prices_at(cost, at("2026-07-01T10:00"));
  EXPECT_DOUBLE_EQ(p.output, 1.6);
  p = prices_at(cost, at("2026-07-01T23:59"));  // inside the window that wraps midnight
  EXPECT_TRUE(p.off_peak);
  EXPECT_DOUBLE_EQ(p.input, 0.2);
  EXPECT_TRUE(prices_at(cost, at("2026-07-02T00:10")).off_peak);
  EXPECT_FALSE(prices_at(cost, at("2026-07-02T00:30")).off_peak);
  EXPECT_FALSE(prices_at(cost, at("2026-07-02T16:29")).off_peak);
  // 1M prompt tokens, 250k of them cached, 100k out at peak prices.
  Prices q = prices_at(cost, at("2026-07-01T10:00"));
  EXPECT_NEAR(token_cost(q, 1000000, 250000, 100000), 0.75 * 0.4 + 0.25 * 0.1 + 0.1 * 1.6, 1e-12);
  EXPECT_NEAR(worst_case_cost(q, 1000, 0.5, 2000), (500 * 0.4 + 500 * 0.1 + 2000 * 1.6) / 1e6, 1e-15);
  // $3.60/h: one second alone is $0.001; shared by four in flight, a quarter.
  EXPECT_NEAR(amortised_cost(c.upstream("flash")->cost, 1.0, 1), 0.001, 1e-12);
  EXPECT_NEAR(amortised_cost(c.upstream("flash")->cost, 1.0, 4), 0.00025, 1e-12);
  EXPECT_EQ(utc_day(at("2026-07-02T00:10")), "2026-07-02");
  EXPECT_EQ(utc_month(at("2026-07-02T00:10")), "2026-07");
}

TEST(RouterConfig, Durations) {
  EXPECT_DOUBLE_EQ(parse_duration("500ms"), 0.5);
  EXPECT_DOUBLE_EQ(parse_duration("2"), 2);
  EXPECT_DOUBLE_EQ(parse_duration("1.5m"), 90);
  EXPECT_DOUBLE_EQ(parse_duration("1h"), 3600);
  EXPECT_LT(parse_duration("fast"), 0);
  EXPECT_LT(parse_duration("-1s"), 0);
  EXPECT_LT(parse_duration("3d"), 0);
}
