// Nothing a client sends crashes the server: hundreds of randomly mutated requests (truncated,
// byte-flipped, fields of the wrong type, extreme values, deep nesting, invalid UTF-8) against
// every POST route each get a well-formed 2xx/4xx answer, and the server stays healthy.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <random>

#include "server_fixture.h"

using namespace v4;
using json = nlohmann::json;

namespace {

json random_value(std::mt19937& rng, int depth) {
  switch (rng() % (depth > 3 ? 6 : 8)) {
    case 0: return nullptr;
    case 1: return static_cast<bool>(rng() & 1);
    case 2: return static_cast<int64_t>(rng()) - (1ll << 31);
    case 3: return std::ldexp(static_cast<double>(rng() % 1000) - 500, static_cast<int>(rng() % 200) - 100);
    case 4: return std::string(rng() % 40, static_cast<char>('a' + rng() % 26));
    case 5: return std::string("\xf0\x9f\x98\x80 \xe4\xbd\xa0\xe5\xa5\xbd <\xef\xbd\x9c" "DSML\xef\xbd\x9c" "invoke name=\"x\">");
    case 6: {
      json a = json::array();
      for (int i = static_cast<int>(rng() % 4); i > 0; --i) a.push_back(random_value(rng, depth + 1));
      return a;
    }
    default: {
      json o = json::object();
      for (int i = static_cast<int>(rng() % 4); i > 0; --i) o["k" + std::to_string(rng() % 5)] = random_value(rng, depth + 1);
      return o;
    }
  }
}

json base_request(const std::string& route, std::mt19937& rng) {
  json tool = {{"type", "function"}, {"function", {{"name", "f"}, {"parameters", {{"type", "object"}, {"properties", {{"a", {{"type", "integer"}}}}}}}}}};
  if (route == "/v1/completions") return {{"model", "test-model"}, {"prompt", "hi"}, {"max_tokens", 2}};
  if (route == "/v1/messages")
    return {{"model", "test-model"}, {"max_tokens", 2}, {"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"tools", {{{"name", "f"}, {"input_schema", {{"type", "object"}}}}}}};
  json b = {{"model", "test-model"}, {"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"max_tokens", 2}};
  if (rng() % 2) b["tools"] = {tool};
  if (rng() % 3 == 0) b["response_format"] = {{"type", "json_object"}};
  return b;
}

std::string mutate(const json& req, std::mt19937& rng) {
  json j = req;
  switch (rng() % 6) {
    case 0: {  // a field replaced by a random value of any type
      auto it = j.begin();
      std::advance(it, static_cast<long>(rng() % j.size()));
      it.value() = random_value(rng, 0);
      break;
    }
    case 1:  // unknown or well-known extra field with a random value
      for (const char* k : {"temperature", "top_p", "stop", "tool_choice", "logprobs", "top_logprobs", "stream", "n",
                            "response_format", "thinking", "reasoning_effort", "seed", "chat_template_kwargs"})
        if (rng() % 4 == 0) j[k] = random_value(rng, 0);
      break;
    case 2:  // messages mangled
      if (j.contains("messages")) j["messages"].push_back(random_value(rng, 0));
      break;
    case 3: {  // deep nesting
      json deep = 1;
      for (int i = 0; i < 200; ++i) deep = json::array({deep});
      j["messages"] = deep;
      break;
    }
    default:
      break;
  }
  std::string s = j.dump();
  switch (rng() % 4) {
    case 0: s.resize(rng() % (s.size() + 1)); break;                      // truncated
    case 1: s[rng() % s.size()] = static_cast<char>(rng() & 0xff); break;  // byte flip (may be invalid UTF-8)
    default: break;
  }
  return s;
}

TEST(HttpRobustness, RandomMalformedRequestsNeverBreakTheServer) {
  test::ServerFixture f;
  ServeOptions o;
  o.sched.ctx = 512;
  o.max_body_bytes = 1 << 20;
  std::string why = f.start(o, 3);
  if (!why.empty()) GTEST_SKIP() << why;
  auto c = f.client();
  std::mt19937 rng(20261129);
  const char* routes[] = {"/v1/chat/completions", "/v1/completions", "/v1/messages"};
  int ok = 0, client_errors = 0;
  for (int i = 0; i < 240; ++i) {
    const std::string route = routes[i % 3];
    const std::string body = mutate(base_request(route, rng), rng);
    auto r = c.Post(route.c_str(), body, "application/json");
    ASSERT_TRUE(r) << "no response to " << route << " body " << body.substr(0, 200);
    ASSERT_TRUE(r->status == 200 || (r->status >= 400 && r->status < 500)) << r->status << " for " << body.substr(0, 300) << "\n" << r->body;
    if (r->status == 200) {
      ++ok;
      continue;
    }
    ++client_errors;
    json e = json::parse(r->body, nullptr, false);
    ASSERT_FALSE(e.is_discarded()) << r->body;
    if (route == "/v1/messages") EXPECT_EQ(e["type"], "error") << r->body;
    else EXPECT_TRUE(e.contains("error") && e["error"].contains("message")) << r->body;
  }
  EXPECT_GT(ok, 0);
  EXPECT_GT(client_errors, 0);
  auto h = c.Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
}

}  // namespace
