// Items (chat shape) carried to each API through the protocol layer, and answers read back.
#include <gtest/gtest.h>

#include "eval/endpoint.h"

using namespace v4;
using eval::Json;

namespace {

eval::ChatRequest tool_turn() {
  eval::ChatRequest r;
  r.messages = Json::parse(R"([
    {"role":"system","content":"be brief"},
    {"role":"user","content":"weather in Oslo?"},
    {"role":"assistant","content":"","reasoning_content":"look it up","tool_calls":[{"id":"c1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Oslo\"}"}}]},
    {"role":"tool","tool_call_id":"c1","content":"{\"t\":3}"}])");
  r.tools = Json::parse(R"([{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}])");
  r.tool_choice = "required";
  r.reasoning = "high";
  r.max_tokens = 2048;
  return r;
}

}  // namespace

TEST(EvalEndpoint, ChatBodyAsWritten) {
  eval::EndpointConfig c;
  c.model = "m";
  auto b = eval::build_request_body(c, tool_turn());
  EXPECT_EQ(b["reasoning_effort"], "high");
  EXPECT_EQ(b["tool_choice"], "required");
  EXPECT_EQ(b["messages"][2]["reasoning_content"], "look it up");
}

TEST(EvalEndpoint, AnthropicBodyThroughTheProtocolLayer) {
  eval::EndpointConfig c;
  c.model = "m";
  c.api = "anthropic";
  auto b = eval::build_request_body(c, tool_turn());
  EXPECT_FALSE(b.contains("temperature"));  // not allowed with thinking
  EXPECT_EQ(b["thinking"]["type"], "enabled");
  EXPECT_EQ(b["tool_choice"]["type"], "any");
  const auto& msgs = b["messages"];
  ASSERT_EQ(msgs.size(), 3u) << b.dump();
  bool thinking = false, tool_use = false, tool_result = false;
  for (const auto& blk : msgs[1]["content"]) {
    thinking |= blk["type"] == "thinking" && blk["thinking"] == "look it up";
    tool_use |= blk["type"] == "tool_use" && blk["input"]["city"] == "Oslo";
  }
  for (const auto& blk : msgs[2]["content"]) tool_result |= blk["type"] == "tool_result" && blk["tool_use_id"] == "c1";
  EXPECT_TRUE(thinking && tool_use && tool_result) << b.dump();

  auto a = eval::parse_response_body(c, R"({"id":"msg_1","type":"message","role":"assistant","model":"m",
    "content":[{"type":"thinking","thinking":"hmm","signature":"s"},{"type":"tool_use","id":"t1","name":"get_weather","input":{"city":"Oslo"}}],
    "stop_reason":"tool_use","usage":{"input_tokens":12,"output_tokens":5}})");
  EXPECT_TRUE(a.error.empty()) << a.error;
  EXPECT_EQ(a.reasoning, "hmm");
  ASSERT_EQ(a.tool_calls.size(), 1u);
  EXPECT_EQ(a.tool_calls[0]["arguments"]["city"], "Oslo");
  EXPECT_EQ(a.completion_tokens, 5);
}

TEST(EvalEndpoint, ChatAnswerParsedAndBadBodiesNamed) {
  eval::EndpointConfig c;
  auto a = eval::parse_response_body(c, R"({"choices":[{"index":0,"message":{"role":"assistant","content":"hi","reasoning_content":"r"},"finish_reason":"stop"}],
    "usage":{"prompt_tokens":3,"completion_tokens":1,"completion_tokens_details":{"reasoning_tokens":1}}})");
  EXPECT_EQ(a.text, "hi");
  EXPECT_EQ(a.reasoning, "r");
  EXPECT_EQ(a.prompt_tokens, 3);
  auto bad = eval::parse_response_body(c, "<html>oops</html>");
  EXPECT_FALSE(bad.error.empty());
  EXPECT_TRUE(bad.transport);
}
