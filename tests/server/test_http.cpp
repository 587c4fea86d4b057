// The HTTP API end to end (in-process server, real sockets): every endpoint, streaming,
// reasoning modes, tool calls and constrained output, and every error case as a 4xx in the
// OpenAI shape.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "server_fixture.h"
#include "text/json_schema.h"
#include "text/py_json.h"

using namespace v4;
using json = nlohmann::json;

namespace {

// One server per test process, shut down (thread joined, model directory removed) at exit.
struct SharedServer {
  std::unique_ptr<test::ServerFixture> fixture;
  std::string why_not;  // skip reason when it could not start
  SharedServer() {
    fixture = std::make_unique<test::ServerFixture>();
    ServeOptions o;
    o.max_body_bytes = 64 * 1024;
    o.sched.ctx = 2048;
    o.keepalive_s = 0.5;
    why_not = fixture->start(o);
    if (!why_not.empty()) fixture.reset();
  }
};
SharedServer& shared_server() {
  static SharedServer s;
  return s;
}
test::ServerFixture& server() { return *shared_server().fixture; }
#define NEED_SERVER() \
  if (!shared_server().fixture) GTEST_SKIP() << shared_server().why_not

json post(const std::string& path, const json& body, int* status = nullptr, const test::Headers& h = {}) {
  auto c = server().client();
  auto r = c.Post(path.c_str(), h, body.dump(), "application/json");
  EXPECT_TRUE(r) << "no response";
  if (!r) return {};
  if (status) *status = r->status;
  return json::parse(r->body);
}

json chat(json extra) {
  if (extra.is_null()) extra = json::object();
  json b = {{"model", "test-model"}, {"messages", {{{"role", "user"}, {"content", "Hello there"}}}}, {"max_tokens", 16}};
  b.update(extra);
  return b;
}

// SSE body -> the JSON payloads of its data lines (without [DONE]); *done set if [DONE] seen.
std::vector<json> sse(const std::string& body, bool* done) {
  std::vector<json> out;
  size_t p = 0;
  while ((p = body.find("data: ", p)) != std::string::npos) {
    size_t e = body.find("\n\n", p);
    std::string d = body.substr(p + 6, e - p - 6);
    if (d == "[DONE]") *done = true;
    else out.push_back(json::parse(d));
    p = e;
  }
  return out;
}

TEST(Http, HealthModelsMetrics) {
  NEED_SERVER();
  auto c = server().client();
  auto h = c.Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  EXPECT_EQ(json::parse(h->body)["status"], "ok");
  // The root answers GET and HEAD (Claude Code probes `HEAD /`), HEAD without a body.
  auto root = c.Get("/");
  ASSERT_TRUE(root);
  EXPECT_EQ(root->status, 200);
  EXPECT_EQ(json::parse(root->body)["model"], "test-model");
  auto head = c.request("HEAD", "/");
  ASSERT_TRUE(head);
  EXPECT_EQ(head->status, 200);
  EXPECT_TRUE(head->body.empty());
  auto m = c.Get("/v1/models");
  ASSERT_TRUE(m);
  EXPECT_EQ(json::parse(m->body)["data"][0]["id"], "test-model");
  post("/v1/chat/completions", chat(json::object()));
  auto met = c.Get("/metrics");
  ASSERT_TRUE(met);
  for (const char* name : {"v4host_requests_total", "v4host_generated_tokens_total", "v4host_time_to_first_token_seconds_bucket",
                           "v4host_kv_bytes{family=\"window\"}", "v4host_prefix_cache_hit_tokens_total", "v4host_queue_depth_requests"})
    EXPECT_NE(met->body.find(name), std::string::npos) << name;
}

TEST(Http, ChatNonStreamAndUsage) {
  NEED_SERVER();
  json r = post("/v1/chat/completions", chat({{"thinking", {{"type", "disabled"}}}, {"max_tokens", 7}}));
  EXPECT_EQ(r["object"], "chat.completion");
  EXPECT_EQ(r["choices"][0]["message"]["role"], "assistant");
  EXPECT_TRUE(r["choices"][0]["message"]["content"].is_string());
  EXPECT_FALSE(r["choices"][0]["message"].contains("reasoning_content"));
  EXPECT_GT(r["usage"]["prompt_tokens"].get<int>(), 0);
  EXPECT_LE(r["usage"]["completion_tokens"].get<int>(), 7);
  EXPECT_EQ(r["usage"]["total_tokens"], r["usage"]["prompt_tokens"].get<int>() + r["usage"]["completion_tokens"].get<int>());
}

TEST(Http, ThinkingModeReturnsReasoningContent) {
  NEED_SERVER();
  json r = post("/v1/chat/completions", chat({{"reasoning_effort", "high"}, {"max_tokens", 6}}));
  ASSERT_TRUE(r["choices"][0]["message"].contains("reasoning_content")) << r.dump();
  EXPECT_GT(r["usage"]["completion_tokens_details"]["reasoning_tokens"].get<int>(), 0);
}

TEST(Http, ChatStreamWithUsage) {
  NEED_SERVER();
  auto c = server().client();
  json b = chat({{"stream", true}, {"stream_options", {{"include_usage", true}}}, {"max_tokens", 9}});
  auto r = c.Post("/v1/chat/completions", b.dump(), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  bool done = false;
  auto ev = sse(r->body, &done);
  EXPECT_TRUE(done);
  ASSERT_GE(ev.size(), 3u);
  EXPECT_EQ(ev.front()["choices"][0]["delta"]["role"], "assistant");
  EXPECT_TRUE(ev.back()["choices"].empty());
  EXPECT_EQ(ev.back()["usage"]["completion_tokens"], 9);
  EXPECT_EQ(ev[ev.size() - 2]["choices"][0]["finish_reason"], "length");
}

TEST(Http, ForcedToolCallIsValidAgainstTheSchema) {
  NEED_SERVER();
  json tool = json::parse(R"({"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object",
      "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1, "maximum": 7},
      "unit": {"type": "string", "enum": ["c", "f"]}}, "required": ["city", "days"]}}})");
  for (int seed = 0; seed < 3; ++seed) {
    json r = post("/v1/chat/completions", chat({{"tools", {tool}}, {"tool_choice", "required"}, {"seed", seed}, {"max_tokens", 250}}));
    auto& msg = r["choices"][0]["message"];
    ASSERT_TRUE(msg.contains("tool_calls")) << r.dump();
    EXPECT_EQ(r["choices"][0]["finish_reason"], "tool_calls");
    auto& call = msg["tool_calls"][0];
    EXPECT_EQ(call["function"]["name"], "get_weather");
    auto args = text::ojson::parse(call["function"]["arguments"].get<std::string>());
    auto schema = text::ojson::parse(tool["function"]["parameters"].dump());
    EXPECT_TRUE(text::validate_json_schema(args, schema).empty()) << args.dump();
  }
}

TEST(Http, ResponseFormatJsonSchemaValidates) {
  NEED_SERVER();
  json schema = json::parse(R"({"type": "object", "properties": {"name": {"type": "string", "maxLength": 20},
      "age": {"type": "integer"}, "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3}},
      "required": ["name", "age", "tags"]})");
  for (int seed = 0; seed < 3; ++seed) {
    json r = post("/v1/chat/completions", chat({{"response_format", {{"type", "json_schema"}, {"json_schema", {{"name", "p"}, {"schema", schema}}}}},
                                               {"seed", seed}, {"max_tokens", 80}, {"thinking", {{"type", "disabled"}}}}));
    std::string content = r["choices"][0]["message"]["content"];
    auto v = text::ojson::parse(content);
    EXPECT_TRUE(text::validate_json_schema(v, text::ojson::parse(schema.dump())).empty()) << content;
  }
}

// Request bodies are parsed with big integers kept exact; where the answer echoes request values
// (a Responses object's tools) they come back digit for digit, and a schema bound beyond 64 bits
// is a number (it was refused, and echoed as nlohmann's {"bytes": ...} form).
TEST(Http, BigIntegersInRequestValuesAreEchoedExactly) {
  NEED_SERVER();
  const std::string big = "123456789012345678901234567890";
  const std::string tool = R"({"type": "function", "name": "f", "parameters": {"type": "object",
      "properties": {"n": {"type": "integer", "minimum": 0, "maximum": )" + big + "}}}}";
  auto c = server().client();
  auto r = c.Post("/v1/responses", R"({"model": "test-model", "input": "hi", "max_output_tokens": 4, "tools": [)" + tool + "]}",
                  "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_NE(r->body.find("\"maximum\":" + big), std::string::npos) << r->body;
  EXPECT_EQ(r->body.find("subtype"), std::string::npos) << r->body;
  r = c.Post("/v1/chat/completions",
             R"({"model": "test-model", "messages": [{"role": "user", "content": "x"}], "max_tokens": 24,
                 "thinking": {"type": "disabled"}, "response_format": {"type": "json_schema", "json_schema": {"name": "n",
                 "schema": {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0, "maximum": )" +
                 big + R"(}}, "required": ["n"]}}}})",
             "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
}

// V4 reads text only: an image in Chat Completions is a 400 naming the message; Messages and
// Responses clients get the text answered with a warning that the images were dropped.
TEST(Http, ImagesRefusedInChatAndDroppedWithAWarningElsewhere) {
  NEED_SERVER();
  int status = 0;
  json r = post("/v1/chat/completions",
                chat({{"messages", json::parse(R"([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yes?"},
                       {"role": "user", "content": [{"type": "text", "text": "see"}, {"type": "image_url", "image_url": {"url": "https://e/x.png"}}]}])")}}),
                &status);
  EXPECT_EQ(status, 400) << r.dump();
  EXPECT_EQ(r["error"]["param"], "messages[2].content") << r.dump();
  EXPECT_NE(r["error"]["message"].get<std::string>().find("text only"), std::string::npos) << r.dump();
  auto c = server().client();
  auto res = c.Post("/v1/messages",
                    R"({"model": "test-model", "max_tokens": 4, "messages": [{"role": "user", "content": [
                        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                        {"type": "text", "text": "describe"}]}]})",
                    "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200) << res->body;
  EXPECT_NE(res->header("x-v4host-warning").find("1 image part(s) dropped"), std::string::npos)
      << res->header("x-v4host-warning");
}

TEST(Http, ToolChoiceNoneKeepsToolsInThePromptButNeverCalls) {
  NEED_SERVER();
  json tool = {{"type", "function"}, {"function", {{"name", "lookup"}, {"parameters", {{"type", "object"}, {"properties", {{"q", {{"type", "string"}}}}}}}}}};
  json plain = post("/v1/chat/completions", chat({{"max_tokens", 4}}));
  json none = post("/v1/chat/completions", chat({{"max_tokens", 24}, {"tools", {tool}}, {"tool_choice", "none"}}));
  EXPECT_GT(none["usage"]["prompt_tokens"].get<int>(), plain["usage"]["prompt_tokens"].get<int>() + 50);
  EXPECT_FALSE(none["choices"][0]["message"].contains("tool_calls"));
  EXPECT_NE(none["choices"][0]["finish_reason"], "tool_calls");
}

TEST(Http, CompletionsTextAndTokenIds) {
  NEED_SERVER();
  json r = post("/v1/completions", {{"model", "test-model"}, {"prompt", "Once upon a time"}, {"max_tokens", 5}, {"logprobs", 2}});
  EXPECT_EQ(r["object"], "text_completion");
  EXPECT_EQ(r["usage"]["completion_tokens"], 5);
  EXPECT_EQ(r["choices"][0]["logprobs"]["token_logprobs"].size(), 5u);
  json r2 = post("/v1/completions", {{"model", "test-model"}, {"prompt", {0, 100, 200}}, {"max_tokens", 3}, {"temperature", 0}});
  EXPECT_EQ(r2["usage"]["prompt_tokens"], 3);
}

TEST(Http, AnthropicMessages) {
  NEED_SERVER();
  json r = post("/v1/messages", {{"model", "test-model"}, {"max_tokens", 8}, {"messages", {{{"role", "user"}, {"content", "Hi"}}}}});
  EXPECT_EQ(r["type"], "message");
  EXPECT_EQ(r["stop_reason"], "max_tokens");
  EXPECT_EQ(r["usage"]["output_tokens"], 8);
  int st = 0;
  json e = post("/v1/messages", {{"model", "test-model"}, {"messages", {{{"role", "user"}, {"content", "Hi"}}}}}, &st);
  EXPECT_EQ(st, 400);
  EXPECT_EQ(e["type"], "error");
  EXPECT_EQ(e["error"]["type"], "invalid_request_error");
}

TEST(Http, PrefixCacheHitsOnAGrowingConversation) {
  NEED_SERVER();
  // Agent-style: a fixed system prompt and a growing history. In thinking mode the first turn's
  // prompt ends with <｜Assistant｜><think>; the cache holds its state just before <think>, which
  // is exactly the prefix the next turn (…<｜Assistant｜></think>answer<EOS><｜User｜>…) shares.
  json sys = {{"role", "system"}, {"content", "You are a careful assistant. Answer briefly and cite sources. " + std::string(300, '-')}};
  json u1 = {{"role", "user"}, {"content", "first question"}};
  json b1 = {{"model", "test-model"}, {"messages", {sys, u1}}, {"max_tokens", 2}, {"temperature", 0}};
  json r1 = post("/v1/chat/completions", b1);
  const int p1 = r1["usage"]["prompt_tokens"];
  json b2 = {{"model", "test-model"},
             {"messages", {sys, u1, {{"role", "assistant"}, {"content", "an answer"}}, {{"role", "user"}, {"content", "second"}}}},
             {"max_tokens", 2},
             {"temperature", 0}};
  json r2 = post("/v1/chat/completions", b2);
  EXPECT_EQ(r2["usage"]["prompt_tokens_details"]["cached_tokens"].get<int>(), p1 - 1) << r2.dump();
  EXPECT_GT(r2["usage"]["prompt_tokens"].get<int>(), p1);
}

struct ErrCase {
  const char* name;
  std::string body;
  int status;
  const char* needle;
};

TEST(Http, ErrorsAre4xxInTheOpenAIShape) {
  NEED_SERVER();
  const std::string huge(100 * 1024, 'a');
  std::vector<ErrCase> cases = {
      {"malformed json", "{\"model\": ", 400, "not valid JSON"},
      {"empty body", "", 400, "empty"},
      {"not an object", "[1,2]", 400, "JSON object"},
      {"unknown model", chat({{"model", "gpt-9"}}).dump(), 404, "does not exist"},
      {"no messages", json{{"model", "test-model"}}.dump(), 400, "messages"},
      {"bad role", chat({{"messages", {{{"role", "wizard"}, {"content", "x"}}}}}).dump(), 400, "role"},
      {"temperature", chat({{"temperature", 7}}).dump(), 400, "temperature"},
      {"top_p type", chat({{"top_p", "high"}}).dump(), 400, "top_p"},
      {"max_tokens", chat({{"max_tokens", 0}}).dump(), 400, "max_tokens"},
      {"top_logprobs without logprobs", chat({{"top_logprobs", 3}}).dump(), 400, "logprobs"},
      {"stop type", chat({{"stop", 5}}).dump(), 400, "stop"},
      {"invalid tools", chat({{"tools", {{{"type", "function"}, {"function", {{"name", "bad name!"}}}}}}}).dump(), 400, "tool name"},
      {"tools schema", chat({{"tools", {{{"type", "function"}, {"function", {{"name", "f"}, {"parameters", {{"type", "string"}}}}}}}}}).dump(), 400, "object"},
      {"tool_choice unknown", chat({{"tools", {{{"type", "function"}, {"function", {{"name", "f"}}}}}}, {"tool_choice", {{"type", "function"}, {"function", {{"name", "g"}}}}}}).dump(), 400, "not in 'tools'"},
      {"unsupported schema", chat({{"response_format", {{"type", "json_schema"}, {"json_schema", {{"name", "x"}, {"schema", {{"type", "string"}, {"pattern", "a+"}}}}}}}}).dump(), 400, "pattern"},
      {"context overflow", chat({{"messages", {{{"role", "user"}, {"content", std::string(30000, 'z') + " end"}}}}}).dump(), 400, "context"},
      {"oversize body", chat({{"messages", {{{"role", "user"}, {"content", huge}}}}}).dump(), 413, "exceeds"},
  };
  auto c = server().client();
  for (auto& k : cases) {
    auto r = c.Post("/v1/chat/completions", k.body, "application/json");
    ASSERT_TRUE(r) << k.name;
    EXPECT_EQ(r->status, k.status) << k.name << ": " << r->body;
    json j = json::parse(r->body, nullptr, false);
    ASSERT_TRUE(j.is_object() && j.contains("error")) << k.name << ": " << r->body;
    EXPECT_TRUE(j["error"].contains("message") && j["error"].contains("type")) << k.name;
    EXPECT_NE(j["error"]["message"].get<std::string>().find(k.needle), std::string::npos) << k.name << ": " << r->body;
  }
  // The server is still healthy afterwards.
  auto h = c.Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
}

TEST(Http, ApiKeyRequiredWhenConfigured) {
  test::ServerFixture f;
  ServeOptions o;
  o.api_key = "sekret";
  std::string why = f.start(o, 3);
  if (!why.empty()) GTEST_SKIP() << why;
  auto c = f.client();
  auto r = c.Get("/v1/models");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  EXPECT_EQ(json::parse(r->body)["error"]["type"], "authentication_error");
  auto ok = c.Get("/v1/models", {{"Authorization", "Bearer sekret"}});
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
  // Anthropic clients get their own error shape.
  auto a = c.Post("/v1/messages", {{"x-api-key", "wrong"}}, "{}", "application/json");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->status, 401);
  auto aj = json::parse(a->body);
  EXPECT_EQ(aj["type"], "error");
  EXPECT_EQ(aj["error"]["type"], "authentication_error");
}

}  // namespace

namespace {

// A long prefill (tiny prefill chunks) keeps the SSE connection alive with comment lines before
// the first token, and the stream still ends normally.
TEST(HttpKeepAlive, SseCommentsDuringLongPrefill) {
  test::ServerFixture f;
  ServeOptions o;
  o.keepalive_s = 0.02;
  o.sched.prefill_chunk = 4;
  o.sched.ctx = 4096;
  std::string why = f.start(o, 3);
  if (!why.empty()) GTEST_SKIP() << why;
  std::string words;
  for (int i = 0; i < 400; ++i) words += "word" + std::to_string(i) + " ";
  json b = {{"model", "test-model"}, {"messages", {{{"role", "user"}, {"content", words}}}}, {"max_tokens", 2}, {"stream", true}};
  auto c = f.client();
  auto r = c.Post("/v1/chat/completions", b.dump(), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  const size_t ka = r->body.find(": keep-alive");
  const size_t first_data = r->body.find("data: ");
  ASSERT_NE(ka, std::string::npos) << "no keep-alive comment during a long prefill";
  EXPECT_LT(ka, first_data);
  EXPECT_NE(r->body.find("data: [DONE]"), std::string::npos);
}

}  // namespace
