// Route choice, verifiers, the wire request per upstream dialect, engine pressure parsing, the
// circuit breaker and the subprocess runner.
#include <gtest/gtest.h>

#include <chrono>

#include "config_fixtures.h"
#include "protocol/protocol.h"
#include "router/config.h"
#include "router/rules.h"
#include "router/subprocess.h"
#include "router/upstream.h"
#include "router/verify.h"

using namespace v4::router;
using v4::protocol::ojson;
namespace protocol = v4::protocol;

namespace {

const std::string kCfg = std::string(router_test::kFourUpstreams) + R"(routes:
  auto: {chain: [flash, pro]}
  hard: {chain: [pro]}
  big: {chain: [pro]}
  tools: {chain: [vllm]}
  classified: {chain: [flash]}
rules:
  - {match: {reasoning_effort: [high, max]}, route: hard}
  - {match: {prompt_tokens_over: 100}, route: big}
  - {match: {tools: true, header: {x-lane: agents}}, route: tools}
  - {overflow: {upstream: flash, queue_depth_over: 4}, route: hard}
  - {classifier: {command: [sh, -c, "cat >/dev/null; echo '{\"route\": \"classified\"}'"]}, route: auto}
)";

protocol::Request chat(const ojson& body) { return protocol::parse_request(protocol::Dialect::ChatCompletions, body); }

ojson user(const std::string& text) { return ojson::array({{{"role", "user"}, {"content", text}}}); }

}  // namespace

TEST(RouterRules, FirstMatchWinsThenAliasThenDefault) {
  Config c = load_config_text(kCfg, "t.yaml");
  RuleEnv env;
  Pressure pr;
  env.pressure = [&](const std::string&) { return pr; };
  env.classify = [](const Classifier& k, const std::string& in) { return run_classifier_command(k.command, in, 5); };
  auto route_of = [&](const ojson& body, std::map<std::string, std::string> headers = {}) {
    Features f = request_features(chat(body), nullptr);
    f.headers = headers;
    return choose_route(c, f, body.dump(), env);
  };
  EXPECT_EQ(route_of({{"model", "auto"}, {"messages", user("hi")}, {"reasoning_effort", "high"}}).route, "hard");
  EXPECT_EQ(route_of({{"model", "auto"}, {"messages", user(std::string(800, 'a') + " end")}}).route, "big");
  ojson tools = {{"model", "auto"}, {"messages", user("x")},
                 {"tools", ojson::array({{{"type", "function"}, {"function", {{"name", "f"}, {"parameters", {{"type", "object"}}}}}}})}};
  EXPECT_EQ(route_of(tools, {{"x-lane", "agents"}}).route, "tools");
  // Not the agents lane: the classifier command answers.
  RouteChoice ch = route_of(tools);
  EXPECT_EQ(ch.route, "classified");
  EXPECT_EQ(ch.why, "rule 5 (classifier)");
  pr.queue_depth = 9;  // local pressure: spill
  ch = route_of({{"model", "auto"}, {"messages", user("x")}});
  EXPECT_EQ(ch.route, "hard");
  EXPECT_NE(ch.why.find("overflow of flash: queue 9 > 4"), std::string::npos) << ch.why;
  pr.queue_depth = 1;
  // An allow-list skips rules that lead outside it; the alias still applies.
  std::vector<std::string> allowed = {"auto"};
  env.allowed_routes = &allowed;
  ch = route_of({{"model", "auto"}, {"messages", user("x")}, {"reasoning_effort", "max"}});
  EXPECT_EQ(ch.route, "auto");
  env.allowed_routes = nullptr;
  env.classify = nullptr;
  EXPECT_EQ(route_of({{"model", "hard"}, {"messages", user("x")}}).route, "auto");  // classifier default (no classifier ran)
}

TEST(RouterVerify, SchemaToolArgsNonEmptyRegexCommand) {
  ojson body = {{"model", "m"}, {"messages", user("x")},
                {"response_format", {{"type", "json_schema"}, {"json_schema", {{"name", "r"}, {"schema", {{"type", "object"}, {"required", {"a"}},
                                                                                                       {"properties", {{"a", {{"type", "integer"}}}}}}}}}}},
                {"tools", ojson::array({{{"type", "function"}, {"function", {{"name", "get"}, {"parameters", {{"type", "object"}, {"required", {"city"}},
                                                                                                          {"properties", {{"city", {{"type", "string"}}}}}}}}}}})}};
  protocol::Request req = chat(body);
  std::vector<Verifier> vs(3);
  vs[0].kind = Verifier::NonEmpty;
  vs[1].kind = Verifier::JsonSchema;
  vs[2].kind = Verifier::ToolArgs;
  protocol::Response res;
  res.content = " \n";
  Verdict v = verify_inline(vs, req, res);
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.verifier, "non_empty");
  res.content = "{\"a\": \"one\"}";
  v = verify_inline(vs, req, res);
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.verifier, "json_schema");
  EXPECT_NE(v.reason.find("/a: expected integer"), std::string::npos) << v.reason;
  res.content = "{\"a\": 1}";
  EXPECT_TRUE(verify_inline(vs, req, res).ok);
  res.tool_calls.push_back({"c1", "", "get", false, "{\"town\": 1}"});
  v = verify_inline(vs, req, res);
  EXPECT_EQ(v.verifier, "tool_args");
  EXPECT_NE(v.reason.find("arguments of 'get'"), std::string::npos) << v.reason;
  res.tool_calls[0].arguments = "{\"city\": \"Oslo\"}";
  EXPECT_TRUE(verify_inline(vs, req, res).ok);
  res.tool_calls[0].name = "put";
  EXPECT_EQ(verify_inline(vs, req, res).reason, "call to undeclared tool 'put'");
  res.tool_calls.clear();
  Verifier re;
  re.kind = Verifier::Regex;
  re.pattern = "^\\{\"a\": [0-9]+\\}$";
  EXPECT_TRUE(verify_inline({re}, req, res).ok);
  re.pattern = "^b";
  EXPECT_FALSE(verify_inline({re}, req, res).ok);
  EXPECT_NE(regex_error("(unclosed"), "");
  // The command gets request and answer as JSON on stdin; exit 0 accepts.
  Verifier cmd;
  cmd.kind = Verifier::Command;
  cmd.command = {"sh", "-c", R"(x=$(cat); case "$x" in *'"content":"{\"a\": 1}"'*'"route":"auto"'*) exit 0;; esac; echo 'wrong answer' >&2; exit 3)"};
  EXPECT_TRUE(verify_commands({cmd}, body, res, "auto", "flash").ok) << verify_commands({cmd}, body, res, "auto", "flash").reason;
  res.content = "{\"a\": 2}";
  v = verify_commands({cmd}, body, res, "auto", "flash");
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.reason, "sh exited 3: wrong answer");
  cmd.command = {"sleep", "5"};
  cmd.timeout_s = 0.2;
  auto t0 = std::chrono::steady_clock::now();
  v = verify_commands({cmd}, body, res, "auto", "flash");
  EXPECT_FALSE(v.ok);
  EXPECT_NE(v.reason.find("past its 0.2s limit"), std::string::npos);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(3));
  cmd.command = {"/nonexistent/verifier"};
  EXPECT_FALSE(verify_commands({cmd}, body, res, "auto", "flash").ok);
}

// A request routed to an Anthropic upstream asks for thinking only as that API takes it: a budget
// of at least 1024 tokens and below max_tokens (else a 400 upstream).
TEST(RouterUpstream, AnthropicThinkingBudgetFitsMaxTokens) {
  Config c = load_config_text(kCfg, "t.yaml");
  ReasoningMemo memo;
  const auto sent = [&](const ojson& body, std::string* note = nullptr) {
    const WireRequest w = build_wire_request(*c.upstream("claude"), chat(body), memo);
    if (note) *note = w.note;
    return ojson::parse(w.body);
  };
  ojson b = sent({{"model", "auto"}, {"messages", user("hi")}, {"reasoning_effort", "high"}, {"max_tokens", 4096}});
  EXPECT_EQ(b["thinking"]["type"], "enabled");
  EXPECT_EQ(b["thinking"]["budget_tokens"], 2048);
  // max_tokens 1024 or less leaves no room for the minimum budget: sent without thinking, noted.
  for (int small : {8, 1024}) {
    std::string note;
    b = sent({{"model", "auto"}, {"messages", user("hi")}, {"reasoning_effort", "high"}, {"max_tokens", small}}, &note);
    EXPECT_FALSE(b.contains("thinking")) << b.dump();
    EXPECT_EQ(b["max_tokens"], small);
    EXPECT_NE(note.find("thinking off"), std::string::npos) << note;
  }
  b = sent({{"model", "auto"}, {"messages", user("hi")}, {"reasoning_effort", "low"}, {"max_tokens", 1100}});
  EXPECT_EQ(b["thinking"]["budget_tokens"], 1024);
  // A budget over max_tokens is cut to max_tokens - 1.
  protocol::Request over = protocol::parse_request(protocol::Dialect::AnthropicMessages,
      ojson::parse(R"({"model": "auto", "max_tokens": 3000, "thinking": {"type": "enabled", "budget_tokens": 5000},
                       "messages": [{"role": "user", "content": "x"}]})"));
  b = ojson::parse(build_wire_request(*c.upstream("claude"), over, memo).body);
  EXPECT_EQ(b["thinking"]["budget_tokens"], 2999);
  // No reasoning asked for: no thinking.
  EXPECT_FALSE(sent({{"model", "auto"}, {"messages", user("hi")}, {"max_tokens", 4096}}).contains("thinking"));
}

TEST(RouterUpstream, ReasoningSwitchPerDialectAndEcho) {
  setenv("ROUTER_TEST_DS_KEY", "sk-test", 1);
  Config c = load_config_text(kCfg, "t.yaml");
  ReasoningMemo memo;
  ojson body = {{"model", "auto"}, {"messages", user("hi")}, {"reasoning_effort", "high"}, {"max_tokens", 10}};
  protocol::Request req = chat(body);
  WireRequest w = build_wire_request(*c.upstream("pro"), req, memo);
  ojson b = ojson::parse(w.body);
  EXPECT_EQ(w.url, "https://api.deepseek.com/chat/completions");
  EXPECT_EQ(b["model"], "deepseek-v4-pro");
  EXPECT_EQ(b["thinking"]["type"], "enabled");
  EXPECT_FALSE(b.contains("reasoning_effort"));
  EXPECT_EQ(b["stream"], true);
  EXPECT_EQ(header_of(w.headers, "authorization"), "Bearer sk-test");
  b = ojson::parse(build_wire_request(*c.upstream("vllm"), req, memo).body);
  EXPECT_EQ(b["chat_template_kwargs"]["thinking"], true);
  EXPECT_EQ(b["chat_template_kwargs"]["reasoning_effort"], "high");
  EXPECT_FALSE(b.contains("thinking"));
  b = ojson::parse(build_wire_request(*c.upstream("flash"), req, memo).body);
  EXPECT_EQ(b["reasoning_effort"], "high");
  EXPECT_EQ(b["model"], "auto");  // no model configured: the client's
  req = chat({{"model", "auto"}, {"messages", user("hi")}, {"thinking", {{"type", "disabled"}}}});
  b = ojson::parse(build_wire_request(*c.upstream("vllm"), req, memo).body);
  EXPECT_EQ(b["chat_template_kwargs"]["thinking"], false);
  b = ojson::parse(build_wire_request(*c.upstream("flash"), req, memo).body);
  EXPECT_EQ(b["reasoning_effort"], "none");
  // Anthropic upstream: the messages API with its headers.
  w = build_wire_request(*c.upstream("claude"), req, memo);
  EXPECT_EQ(w.url, "https://api.anthropic.com/v1/messages");
  EXPECT_EQ(w.dialect, protocol::Dialect::AnthropicMessages);
  EXPECT_TRUE(ojson::parse(w.body).contains("max_tokens"));  // required by that API
  // Tool turn without reasoning_content: filled from what the router saw, else thinking off.
  ojson turn = {{"model", "auto"}, {"reasoning_effort", "high"},
                {"messages", ojson::array({{{"role", "user"}, {"content", "weather?"}},
                                           {{"role", "assistant"}, {"content", nullptr},
                                            {"tool_calls", ojson::array({{{"id", "call_1"}, {"type", "function"},
                                                                          {"function", {{"name", "get"}, {"arguments", "{}"}}}}})}},
                                           {{"role", "tool"}, {"tool_call_id", "call_1"}, {"content", "sunny"}}})}};
  req = chat(turn);
  w = build_wire_request(*c.upstream("pro"), req, memo);
  b = ojson::parse(w.body);
  EXPECT_EQ(b["thinking"]["type"], "disabled");
  EXPECT_NE(w.note.find("thinking off"), std::string::npos);
  memo.put("call_1", "I should look it up.");
  b = ojson::parse(build_wire_request(*c.upstream("pro"), req, memo).body);
  EXPECT_EQ(b["thinking"]["type"], "enabled");
  EXPECT_EQ(b["messages"][1]["reasoning_content"], "I should look it up.");
  // An upstream that does not want it back does not get it.
  b = ojson::parse(build_wire_request(*c.upstream("vllm"), req, memo).body);
  EXPECT_FALSE(b["messages"][1].contains("reasoning_content"));
}

TEST(RouterUpstream, PressureFromHealthAndMetricsFormats) {
  PressureSample h = parse_health_json(R"({"status":"ok","model":"m","running":3,"queued":7})");
  EXPECT_EQ(h.queue_depth, 7);
  EXPECT_EQ(h.running, 3);
  PressureSample v = parse_prometheus(
      "# HELP vllm:num_requests_waiting x\nvllm:num_requests_waiting{model_name=\"m\"} 12.0\nvllm:num_requests_running{model_name=\"m\"} 4\n"
      "vllm:time_to_first_token_seconds_sum{model_name=\"m\"} 10\nvllm:time_to_first_token_seconds_count{model_name=\"m\"} 20\n");
  EXPECT_EQ(v.queue_depth, 12);
  EXPECT_EQ(v.running, 4);
  PressureSample s = parse_prometheus("sglang:num_queue_reqs{engine=\"0\"} 2\nsglang:num_queue_reqs{engine=\"1\"} 3\n");
  EXPECT_EQ(s.queue_depth, 5);
  EXPECT_EQ(parse_prometheus("v4host_queue_depth_requests 6\n").queue_depth, 6);
  Config c = load_config_text(kCfg, "t.yaml");
  UpstreamState st(*c.upstream("vllm"));
  EXPECT_LT(st.pressure().ttft_s, 0);
  st.update_pressure(v);
  EXPECT_DOUBLE_EQ(st.pressure().ttft_s, 0.5 * (1 + 12.0 / 4));  // mean TTFT stretched by the queue
  v.ttft_sum = 20;
  v.ttft_count = 30;  // the last 10 first tokens took 1 s each
  st.update_pressure(v);
  EXPECT_DOUBLE_EQ(st.pressure().ttft_s, 1.0 * 4);
}

TEST(RouterUpstream, CircuitBreakerOpensAndProbes) {
  Config c = load_config_text(kCfg, "t.yaml");
  UpstreamState s(*c.upstream("flash"));
  s.failures_to_open = 3;
  s.cooldown_s = 1;
  auto t = std::chrono::steady_clock::now();
  for (int i = 0; i < 2; ++i) s.failure(t);
  EXPECT_TRUE(s.allow(t));
  s.failure(t);
  EXPECT_EQ(s.breaker_state(), "open");
  EXPECT_FALSE(s.allow(t + std::chrono::milliseconds(500)));
  EXPECT_TRUE(s.allow(t + std::chrono::seconds(2)));   // one probe
  EXPECT_FALSE(s.allow(t + std::chrono::seconds(2)));  // not two
  s.failure(t + std::chrono::seconds(2));               // failed probe: open again
  EXPECT_FALSE(s.allow(t + std::chrono::milliseconds(2500)));
  EXPECT_TRUE(s.allow(t + std::chrono::seconds(4)));
  s.success();
  EXPECT_EQ(s.breaker_state(), "closed");
  s.set_healthy(false, t);  // a failed health check opens it at once
  EXPECT_FALSE(s.allow(t));
  s.set_healthy(true, t);
  EXPECT_TRUE(s.allow(t));
}

TEST(RouterSubprocess, StdinStdoutExitAndTimeout) {
  ProcessResult r = run_process({"sh", "-c", "tr a-z A-Z; echo err >&2; exit 4"}, "hello", 5);
  EXPECT_EQ(r.out, "HELLO");
  EXPECT_EQ(r.err, "err\n");
  EXPECT_EQ(r.exit_code, 4);
  // A command that ignores stdin and forks a child that hangs: the whole group is killed.
  auto t0 = std::chrono::steady_clock::now();
  r = run_process({"sh", "-c", "sleep 30 & sleep 30"}, std::string(1 << 20, 'x'), 0.3);
  EXPECT_TRUE(r.timed_out);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  EXPECT_TRUE(run_process({"/no/such/binary"}, "", 1).spawn_failed);
}
