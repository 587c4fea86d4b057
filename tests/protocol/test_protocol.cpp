// The protocol layer: every dialect's request, response and stream parsed and emitted both ways,
// translations between dialects, and malformed input rejected naming the field.
#include <gtest/gtest.h>

#include "protocol/protocol.h"
#include "text/py_json.h"

namespace v4::protocol {
namespace {

ojson J(const char* s) { return ojson::parse(s); }
ojson J(const std::string& s) { return ojson::parse(s); }

std::string param_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const ProtocolError& e) {
    return e.param + " | " + e.what();
  }
  return "(no error)";
}

const Dialect kAll[] = {Dialect::ChatCompletions, Dialect::Responses, Dialect::AnthropicMessages};

// A conversation with every feature the dialects share: system, user, an assistant turn with
// reasoning, text and two tool calls, their results, and a final user turn.
Request sample_request() {
  Request r;
  r.model = "m";
  Message sys;
  sys.role = Role::System;
  sys.text = "be brief";
  Message u;
  u.role = Role::User;
  u.text = "weather in Paris and Rome?";
  Message a;
  a.role = Role::Assistant;
  a.reasoning = "two cities: two calls";
  a.text = "Checking.";
  a.tool_calls.push_back({"call_1", "", "get_weather", false, R"({"city": "Paris"})"});
  a.tool_calls.push_back({"call_2", "", "get_weather", false, R"({"city": "Rome"})"});
  Message t1;
  t1.role = Role::Tool;
  t1.tool_call_id = "call_1";
  t1.text = "sunny";
  Message t2 = t1;
  t2.tool_call_id = "call_2";
  t2.text = "rain";
  Message u2;
  u2.role = Role::User;
  u2.text = "thanks";
  r.messages = {sys, u, a, t1, t2, u2};
  Tool tool;
  tool.name = "get_weather";
  tool.description = "current weather";
  tool.parameters = J(R"({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})");
  r.tools.push_back(tool);
  r.tool_choice.mode = ToolChoice::Mode::Required;
  r.max_tokens = 100;
  r.temperature = 0.5;
  r.stream = true;
  return r;
}

void expect_same_conversation(const Request& a, const Request& b, const char* how) {
  ASSERT_EQ(a.messages.size(), b.messages.size()) << how;
  for (size_t i = 0; i < a.messages.size(); ++i) {
    const Message &x = a.messages[i], &y = b.messages[i];
    EXPECT_EQ(x.role, y.role) << how << " message " << i;
    EXPECT_EQ(x.text, y.text) << how << " message " << i;
    EXPECT_EQ(x.reasoning.value_or(""), y.reasoning.value_or("")) << how << " message " << i;
    EXPECT_EQ(x.tool_call_id, y.tool_call_id) << how << " message " << i;
    ASSERT_EQ(x.tool_calls.size(), y.tool_calls.size()) << how << " message " << i;
    for (size_t k = 0; k < x.tool_calls.size(); ++k) {
      EXPECT_EQ(x.tool_calls[k].id, y.tool_calls[k].id) << how;
      EXPECT_EQ(x.tool_calls[k].name, y.tool_calls[k].name) << how;
      EXPECT_EQ(ojson::parse(x.tool_calls[k].arguments), ojson::parse(y.tool_calls[k].arguments)) << how;
    }
  }
  ASSERT_EQ(a.tools.size(), b.tools.size()) << how;
  for (size_t i = 0; i < a.tools.size(); ++i) {
    EXPECT_EQ(a.tools[i].name, b.tools[i].name) << how;
    EXPECT_EQ(a.tools[i].parameters, b.tools[i].parameters) << how;
  }
  EXPECT_EQ(a.tool_choice.mode, b.tool_choice.mode) << how;
  EXPECT_EQ(a.max_tokens, b.max_tokens) << how;
  EXPECT_EQ(a.stream, b.stream) << how;
}

TEST(Protocol, RequestRoundTripsThroughEveryDialect) {
  const Request r = sample_request();
  for (Dialect d : kAll) {
    ojson body = emit_request(d, r);
    Request back = parse_request(d, body);
    expect_same_conversation(r, back, dialect_name(d));
    EXPECT_EQ(back.temperature, r.temperature) << dialect_name(d);
  }
}

TEST(Protocol, RequestTranslatesBetweenEveryPairOfDialects) {
  const Request r = sample_request();
  for (Dialect from : kAll)
    for (Dialect to : kAll) {
      Request mid = parse_request(from, emit_request(from, r));
      Request out = parse_request(to, emit_request(to, mid));
      expect_same_conversation(r, out, (std::string(dialect_name(from)) + "->" + dialect_name(to)).c_str());
    }
}

TEST(Protocol, ChatRequestFields) {
  Request r = chat::parse_request(J(R"({"model": "m", "messages": [
      {"role": "developer", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
      {"role": "user", "content": "hi"},
      {"role": "assistant", "content": null, "reasoning": "why", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": {"x": 1}}},
        {"id": "c2", "type": "custom", "custom": {"name": "apply_patch", "input": "*** Begin Patch"}}]},
      {"role": "tool", "tool_call_id": "c1", "content": "ok"}],
    "reasoning_effort": "xhigh", "chat_template_kwargs": {"thinking": false, "drop_thinking": false},
    "stop": ["a", "b"], "max_completion_tokens": 7, "stream": true, "stream_options": {"include_usage": true},
    "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "object"}}}})"));
  ASSERT_EQ(r.messages.size(), 4u);
  EXPECT_EQ(r.messages[0].role, Role::Developer);
  EXPECT_EQ(r.messages[0].text, "a\nb");
  EXPECT_FALSE(r.messages[2].has_text);
  EXPECT_EQ(*r.messages[2].reasoning, "why");
  EXPECT_EQ(r.messages[2].tool_calls[0].arguments, R"({"x":1})");
  EXPECT_TRUE(r.messages[2].tool_calls[1].custom);
  EXPECT_EQ(r.messages[2].tool_calls[1].arguments, "*** Begin Patch");
  EXPECT_EQ(r.reasoning.effort, "xhigh");
  EXPECT_EQ(r.reasoning.enabled, false);
  EXPECT_EQ(r.reasoning.drop_thinking, false);
  EXPECT_EQ(r.stop.size(), 2u);
  EXPECT_EQ(*r.max_tokens, 7);
  EXPECT_TRUE(r.include_usage);
  EXPECT_EQ(r.response_format.type, "json_schema");
  EXPECT_EQ(r.response_format.name, "n");
}

TEST(Protocol, ResponsesInputItemsBecomeMessages) {
  Request r = responses::parse_request(J(R"({"model": "m", "instructions": "sys",
    "input": [
      {"role": "developer", "content": "dev"},
      {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "do it"}]},
      {"type": "reasoning", "id": "rs_1", "summary": [], "content": [{"type": "reasoning_text", "text": "think"}], "encrypted_content": "BLOB"},
      {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "shell", "arguments": "{\"cmd\": \"ls\"}"},
      {"type": "custom_tool_call", "id": "ctc_1", "call_id": "call_2", "name": "apply_patch", "input": "*** Begin Patch\n"},
      {"type": "function_call_output", "call_id": "call_1", "output": "a.txt"},
      {"type": "custom_tool_call_output", "call_id": "call_2", "output": [{"type": "input_text", "text": "Done"}]},
      {"type": "reasoning", "id": "rs_2", "summary": [{"type": "summary_text", "text": "sum"}]},
      {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "finished"}]},
      {"type": "web_search_call", "id": "ws_1"}
    ],
    "tools": [{"type": "function", "name": "shell", "parameters": {"type": "object"}},
              {"type": "custom", "name": "apply_patch", "format": {"type": "grammar", "syntax": "lark", "definition": "start: x"}},
              {"type": "web_search"}, {"type": "namespace", "name": "mcp"}],
    "tool_choice": "auto", "parallel_tool_calls": false, "reasoning": {"effort": "high", "summary": "auto"},
    "store": false, "include": ["reasoning.encrypted_content"], "prompt_cache_key": "k", "max_output_tokens": 99,
    "text": {"format": {"type": "json_schema", "name": "o", "schema": {"type": "object"}, "strict": true}, "verbosity": "low"}})"));
  ASSERT_EQ(r.messages.size(), 7u);
  EXPECT_EQ(r.messages[0].role, Role::System);
  EXPECT_EQ(r.messages[0].text, "sys");
  EXPECT_EQ(r.messages[1].role, Role::Developer);
  EXPECT_EQ(r.messages[2].role, Role::User);
  const Message& a = r.messages[3];
  EXPECT_EQ(a.role, Role::Assistant);
  EXPECT_EQ(*a.reasoning, "think");
  EXPECT_EQ(a.reasoning_encrypted, "BLOB");
  ASSERT_EQ(a.tool_calls.size(), 2u);
  EXPECT_EQ(a.tool_calls[0].id, "call_1");
  EXPECT_EQ(a.tool_calls[0].item_id, "fc_1");
  EXPECT_TRUE(a.tool_calls[1].custom);
  EXPECT_EQ(a.tool_calls[1].arguments, "*** Begin Patch\n");
  EXPECT_EQ(r.messages[4].role, Role::Tool);
  EXPECT_EQ(r.messages[4].text, "a.txt");
  EXPECT_TRUE(r.messages[5].custom_output);
  EXPECT_EQ(r.messages[5].text, "Done");
  EXPECT_EQ(r.messages[6].role, Role::Assistant);
  EXPECT_EQ(*r.messages[6].reasoning, "sum");
  EXPECT_EQ(r.messages[6].text, "finished");
  ASSERT_EQ(r.tools.size(), 4u);
  EXPECT_EQ(r.tools[1].kind, Tool::Kind::Custom);
  EXPECT_EQ(r.tools[1].format["syntax"], "lark");
  EXPECT_EQ(r.tools[2].kind, Tool::Kind::Other);
  EXPECT_EQ(r.tools[3].kind, Tool::Kind::Other);
  EXPECT_EQ(r.notes.size(), 3u);  // two tools and one input item ignored
  EXPECT_EQ(r.parallel_tool_calls, false);
  EXPECT_EQ(r.reasoning.effort, "high");
  EXPECT_EQ(r.reasoning.summary, "auto");
  EXPECT_EQ(r.store, false);
  EXPECT_EQ(r.include[0], "reasoning.encrypted_content");
  EXPECT_EQ(r.prompt_cache_key, "k");
  EXPECT_EQ(*r.max_tokens, 99);
  EXPECT_EQ(r.response_format.type, "json_schema");
  EXPECT_EQ(r.text_verbosity, "low");

  Request s = responses::parse_request(J(R"({"model": "m", "input": "hello"})"));
  ASSERT_EQ(s.messages.size(), 1u);
  EXPECT_EQ(s.messages[0].role, Role::User);
  EXPECT_EQ(s.messages[0].text, "hello");
}

TEST(Protocol, AnthropicRequestFields) {
  Request r = anthropic::parse_request(J(R"({"model": "m", "max_tokens": 32000,
    "system": [{"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1; cch=abc"},
               {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
    "messages": [
      {"role": "user", "content": [{"type": "text", "text": "hi"}]},
      {"role": "system", "content": "mid-conversation note"},
      {"role": "assistant", "content": [{"type": "thinking", "thinking": "hmm", "signature": "sig"},
                                        {"type": "text", "text": "calling"},
                                        {"type": "tool_use", "id": "tu_1", "name": "Bash", "input": {"command": "ls"}}]},
      {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "tu_1", "content": [{"type": "text", "text": "a"}], "is_error": true},
                                   {"type": "text", "text": "go on"}]}],
    "tools": [{"name": "Bash", "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}},
              {"type": "web_search_20250305", "name": "web_search"}],
    "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
    "thinking": {"type": "enabled", "budget_tokens": 1024}, "stop_sequences": ["X"], "stream": true,
    "metadata": {"user_id": "u"}})"));
  ASSERT_EQ(r.messages.size(), 6u);
  EXPECT_EQ(r.messages[0].role, Role::System);
  EXPECT_EQ(r.messages[0].text, "You are Claude Code.");  // billing header dropped
  EXPECT_EQ(r.messages[2].role, Role::System);
  EXPECT_EQ(r.messages[2].text, "mid-conversation note");
  EXPECT_EQ(*r.messages[3].reasoning, "hmm");
  EXPECT_EQ(r.messages[3].reasoning_signature, "sig");
  EXPECT_EQ(r.messages[3].tool_calls[0].arguments, R"({"command":"ls"})");
  EXPECT_EQ(r.messages[4].role, Role::Tool);
  EXPECT_TRUE(r.messages[4].is_error);
  EXPECT_EQ(r.messages[5].text, "go on");
  EXPECT_EQ(r.tools[1].kind, Tool::Kind::Other);
  EXPECT_EQ(r.tool_choice.mode, ToolChoice::Mode::Required);
  EXPECT_EQ(r.parallel_tool_calls, false);
  EXPECT_EQ(r.reasoning.enabled, true);
  EXPECT_EQ(*r.reasoning.budget_tokens, 1024);
  // count_tokens bodies need no max_tokens; messages bodies do; no thinking by default.
  Request c = anthropic::parse_request(J(R"({"model": "m", "messages": [{"role": "user", "content": "x"}]})"), true);
  EXPECT_EQ(c.reasoning.enabled, false);
}

// Integers beyond 64 bits in an Anthropic tool_use.input (an object, not a string as in OpenAI's
// arguments) keep their digits when the body is parsed exactly, as the server parses it.
TEST(Protocol, AnthropicToolUseInputKeepsBigIntegersExact) {
  auto body = text::parse_json_exact(R"({"model": "m", "max_tokens": 64, "messages": [
      {"role": "user", "content": "go"},
      {"role": "assistant", "content": [{"type": "tool_use", "id": "tu_1", "name": "f",
        "input": {"id": 123456789012345678901234567890, "neg": -98765432109876543210, "x": 1.5}}]},
      {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "tu_1", "content": "ok"}]}]})",
                                     "test body");
  Request r = anthropic::parse_request(body);
  EXPECT_EQ(r.messages[1].tool_calls[0].arguments,
            R"({"id":123456789012345678901234567890,"neg":-98765432109876543210,"x":1.5})");
  // A big integer where a number field is expected is refused naming the field.
  auto bad = text::parse_json_exact(R"({"model": "m", "max_tokens": 123456789012345678901234567890,
      "messages": [{"role": "user", "content": "x"}]})", "test body");
  EXPECT_NE(param_of([&] { anthropic::parse_request(bad); }).find("max_tokens"), std::string::npos);
}

// A tool schema's big integer (kept exact by text::parse_json_exact) must reach an upstream in
// every dialect as the same digits, not as nlohmann's binary form.
TEST(Protocol, BigIntegersInToolSchemasAreForwardedExactly) {
  const ojson body = v4::text::parse_json_exact(R"({"model": "m", "input": "x", "tools": [{"type": "function", "name": "f",
      "parameters": {"type": "object", "properties": {"n": {"type": "integer", "maximum": 123456789012345678901234567890}}}}]})",
                                                "body");
  const Request r = parse_request(Dialect::Responses, body);
  for (Dialect d : {Dialect::ChatCompletions, Dialect::Responses, Dialect::AnthropicMessages}) {
    const std::string text = v4::protocol::wire(emit_request(d, r));
    EXPECT_NE(text.find("\"maximum\":123456789012345678901234567890"), std::string::npos) << dialect_name(d) << ": " << text;
    EXPECT_EQ(text.find("subtype"), std::string::npos) << text;
  }
}

// Images are carried between dialects (for upstreams that take them; serve refuses or drops
// them): URLs and base64 data, with OpenAI's detail, before the message's text.
TEST(Protocol, ImagesTranslateBetweenEveryDialect) {
  const std::string png = "data:image/png;base64,iVBORw0KGgo=";
  const Request chat = parse_request(Dialect::ChatCompletions, J(R"({"model": "m", "messages": [{"role": "user", "content": [
      {"type": "text", "text": "what is this?"},
      {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"}},
      {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]})"));
  ASSERT_EQ(chat.messages.size(), 1u);
  ASSERT_EQ(chat.messages[0].images.size(), 2u);
  EXPECT_EQ(chat.messages[0].images[0].url, "https://example.com/cat.jpg");
  EXPECT_EQ(chat.messages[0].images[0].detail, "high");
  EXPECT_EQ(chat.messages[0].text, "what is this?");
  for (Dialect d : {Dialect::ChatCompletions, Dialect::Responses, Dialect::AnthropicMessages}) {
    const ojson wire_body = emit_request(d, chat);
    const Request back = parse_request(d, wire_body);
    ASSERT_EQ(back.messages.size(), 1u) << dialect_name(d) << wire_body.dump();
    ASSERT_EQ(back.messages[0].images.size(), 2u) << dialect_name(d) << wire_body.dump();
    EXPECT_EQ(back.messages[0].images[0].url, "https://example.com/cat.jpg") << dialect_name(d);
    EXPECT_EQ(back.messages[0].images[1].url, png) << dialect_name(d) << wire_body.dump();
    EXPECT_EQ(back.messages[0].text, "what is this?") << dialect_name(d);
    if (d != Dialect::AnthropicMessages) {  // Anthropic has no detail
      EXPECT_EQ(back.messages[0].images[0].detail, "high") << dialect_name(d);
    }
  }
  // Anthropic's base64 source becomes a data URL and goes back as a base64 source.
  const ojson anth = emit_request(Dialect::AnthropicMessages, chat);
  EXPECT_EQ(anth["messages"][0]["content"][1]["source"],
            J(R"({"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="})"));
  EXPECT_EQ(anth["messages"][0]["content"][0]["source"], J(R"({"type": "url", "url": "https://example.com/cat.jpg"})"));
  // A Responses file_id image cannot be carried: dropped and noted (an images rule still sees it).
  const Request fid = parse_request(Dialect::Responses, J(R"({"model": "m", "input": [{"role": "user", "content": [
      {"type": "input_text", "text": "x"}, {"type": "input_image", "file_id": "file-1"}]}]})"));
  EXPECT_TRUE(fid.messages[0].images.empty());
  EXPECT_EQ(fid.messages[0].dropped, std::vector<std::string>{"input_image"});
}

// Chat Completions and Responses share tool_choice's string form; each keeps its own object form
// (Chat nests the name under "function", Responses puts it beside "type").
TEST(Protocol, ToolChoiceWordsAndObjectsInBothOpenAIDialects) {
  const struct {
    const char* word;
    ToolChoice::Mode mode;
  } words[] = {{"auto", ToolChoice::Mode::Auto}, {"none", ToolChoice::Mode::None}, {"required", ToolChoice::Mode::Required}};
  const std::string tool = R"([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}])";
  const std::string rtool = R"([{"type": "function", "name": "f", "parameters": {"type": "object"}}])";
  for (const auto& w : words) {
    const std::string q = std::string("\"") + w.word + "\"";
    const Request c = chat::parse_request(J(R"({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": )" + tool + R"(, "tool_choice": )" + q + "}"));
    const Request r = responses::parse_request(J(R"({"model": "m", "input": "x", "tools": )" + rtool + R"(, "tool_choice": )" + q + "}"));
    EXPECT_EQ(c.tool_choice.mode, w.mode) << w.word;
    EXPECT_EQ(r.tool_choice.mode, w.mode) << w.word;
  }
  const Request cn = chat::parse_request(J(R"({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": )" + tool +
                                           R"(, "tool_choice": {"type": "function", "function": {"name": "f"}}})"));
  EXPECT_EQ(cn.tool_choice.mode, ToolChoice::Mode::Named);
  EXPECT_EQ(cn.tool_choice.name, "f");
  const Request rn = responses::parse_request(J(R"({"model": "m", "input": "x", "tools": )" + rtool + R"(, "tool_choice": {"type": "function", "name": "f"}})"));
  EXPECT_EQ(rn.tool_choice.mode, ToolChoice::Mode::Named);
  EXPECT_EQ(rn.tool_choice.name, "f");
  // "any" is Anthropic's word, not OpenAI's: both readers refuse it, each naming its own object form.
  const std::string chat_err = param_of([&] { chat::parse_request(J(R"({"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": "any"})")); });
  const std::string resp_err = param_of([&] { responses::parse_request(J(R"({"model": "m", "input": "x", "tool_choice": "any"})")); });
  EXPECT_EQ(chat_err.substr(0, chat_err.find(" | ")), "tool_choice");
  EXPECT_EQ(resp_err.substr(0, resp_err.find(" | ")), "tool_choice");
  EXPECT_NE(chat_err.find("\"function\": {\"name\""), std::string::npos) << chat_err;
  EXPECT_NE(resp_err.find("\"function\", \"name\""), std::string::npos) << resp_err;
}

TEST(Protocol, MalformedRequestsNameTheField) {
  struct Case {
    Dialect d;
    const char* body;
    const char* param;
  };
  const Case cases[] = {
      {Dialect::ChatCompletions, R"({"messages": [{"role": "user", "content": "x"}]})", "model"},
      {Dialect::ChatCompletions, R"({"model": "m", "messages": []})", "messages"},
      {Dialect::ChatCompletions, R"({"model": "m", "messages": [{"role": "wizard", "content": "x"}]})", "messages[0].role"},
      {Dialect::ChatCompletions, R"({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]})", "messages[0].content[0].image_url.url"},
      {Dialect::ChatCompletions, R"({"model": "m", "messages": [{"role": "user", "content": [{"type": "input_audio"}]}]})", "messages[0].content[0].type"},
      {Dialect::AnthropicMessages, R"({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "file"}}]}]})", "messages[0].content[0].source"},
      {Dialect::ChatCompletions, R"({"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 7})", "temperature"},
      {Dialect::ChatCompletions, R"({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": {}}]})", "tools[0].function.name"},
      {Dialect::ChatCompletions, R"({"model": "m", "messages": [{"role": "tool", "content": "x"}]})", "messages[0].tool_call_id"},
      {Dialect::Responses, R"({"model": "m"})", "input"},
      {Dialect::Responses, R"({"model": "m", "input": 5})", "input"},
      {Dialect::Responses, R"({"model": "m", "input": [{"type": "function_call", "name": "f"}]})", "input[0].call_id"},
      {Dialect::Responses, R"({"model": "m", "input": [{"role": "robot", "content": "x"}]})", "input[0].role"},
      {Dialect::Responses, R"({"model": "m", "input": "x", "tools": [{"type": "function"}]})", "tools[0].name"},
      {Dialect::Responses, R"({"model": "m", "input": "x", "reasoning": {"effort": "huge"}})", "reasoning.effort"},
      {Dialect::Responses, R"({"model": "m", "input": "x", "max_output_tokens": 0})", "max_output_tokens"},
      {Dialect::Responses, R"({"model": "m", "input": "x", "text": {"format": {"type": "json_schema"}}})", "text.format.schema"},
      {Dialect::Responses, R"({"model": "m", "input": [{"type": "message", "role": "user", "content": [{"type": "input_text"}]}]})", "input[0].content[0].text"},
      {Dialect::AnthropicMessages, R"({"model": "m", "messages": [{"role": "user", "content": "x"}]})", "max_tokens"},
      {Dialect::AnthropicMessages, R"({"model": "m", "max_tokens": 5, "messages": [{"role": "bot", "content": "x"}]})", "messages[0].role"},
      {Dialect::AnthropicMessages, R"({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "tool_result"}]}]})", "messages[0].content[0].tool_use_id"},
      {Dialect::AnthropicMessages, R"({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "tool_choice": {"type": "some"}})", "tool_choice.type"},
      {Dialect::AnthropicMessages, R"({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "thinking": {"type": "on"}})", "thinking.type"},
      // metadata is echoed and forwarded, so only string values are taken (a big integer would
      // come back as nlohmann's binary form).
      {Dialect::Responses, R"({"model": "m", "input": "x", "metadata": {"a": "b", "n": 123456789012345678901234567890}})", "metadata.n"},
      {Dialect::Responses, R"({"model": "m", "input": "x", "metadata": "tag"})", "metadata"},
      {Dialect::ChatCompletions, R"({"model": "m", "messages": [{"role": "user", "content": "x"}], "metadata": {"k": {"nested": 1}}})", "metadata.k"},
      {Dialect::AnthropicMessages, R"({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "metadata": {"user_id": 7}})", "metadata.user_id"},
      {Dialect::Completions, R"({"model": "m"})", "prompt"},
      {Dialect::Completions, R"({"model": "m", "prompt": "x", "logprobs": 50})", "logprobs"},
  };
  for (const Case& c : cases) {
    std::string got = param_of([&] { parse_request(c.d, J(c.body)); });
    EXPECT_EQ(got.substr(0, got.find(" | ")), c.param) << dialect_name(c.d) << " " << c.body << " -> " << got;
  }
}

Response sample_response() {
  Response r;
  r.id = "resp_abc";
  r.model = "m";
  r.created = 1700000000;
  r.reasoning = "let me think";
  r.content = "Here.";
  r.tool_calls.push_back({"call_9", "", "get_weather", false, R"({"city": "Oslo"})"});
  r.finish = FinishReason::ToolCalls;
  r.usage = {120, 100, 30, 12, 0};
  return r;
}

TEST(Protocol, ResponseRoundTripsThroughEveryDialect) {
  const Response r = sample_response();
  const Request req = sample_request();
  for (Dialect d : kAll) {
    Response back = parse_response(d, emit_response(d, r, req));
    EXPECT_EQ(back.content, r.content) << dialect_name(d);
    EXPECT_EQ(back.reasoning.value_or(""), *r.reasoning) << dialect_name(d);
    ASSERT_EQ(back.tool_calls.size(), 1u) << dialect_name(d);
    EXPECT_EQ(back.tool_calls[0].id, "call_9") << dialect_name(d);
    EXPECT_EQ(ojson::parse(back.tool_calls[0].arguments), ojson::parse(r.tool_calls[0].arguments)) << dialect_name(d);
    EXPECT_EQ(back.finish, FinishReason::ToolCalls) << dialect_name(d);
    EXPECT_EQ(back.usage.input_tokens, 120) << dialect_name(d);
    EXPECT_EQ(back.usage.cached_tokens, 100) << dialect_name(d);
    EXPECT_EQ(back.usage.output_tokens, 30) << dialect_name(d);
    if (d != Dialect::AnthropicMessages) {  // Anthropic has no reasoning-token field
      EXPECT_EQ(back.usage.reasoning_tokens, 12) << dialect_name(d);
    }
  }
}

TEST(Protocol, UsageFieldsPerDialect) {
  Usage u{120, 100, 30, 12, 0};
  ojson c = chat::usage_json(u);
  EXPECT_EQ(c["prompt_tokens"], 120);
  EXPECT_EQ(c["prompt_tokens_details"]["cached_tokens"], 100);
  EXPECT_EQ(c["completion_tokens_details"]["reasoning_tokens"], 12);
  EXPECT_EQ(c["total_tokens"], 150);
  ojson a = anthropic::usage_json(u);
  EXPECT_EQ(a["input_tokens"], 20);  // not from the cache
  EXPECT_EQ(a["cache_read_input_tokens"], 100);
  ojson r = responses::usage_json(u);
  EXPECT_EQ(r["input_tokens_details"]["cached_tokens"], 100);
  EXPECT_EQ(r["output_tokens_details"]["reasoning_tokens"], 12);
}

TEST(Protocol, ResponsesObjectStatusAndItems) {
  Response r = sample_response();
  Request req;
  req.model = "m";
  req.reasoning.summary = "auto";
  req.instructions = "be nice";
  ojson o = responses::emit_response(r, req);
  EXPECT_EQ(o["object"], "response");
  EXPECT_EQ(o["status"], "completed");
  EXPECT_EQ(o["instructions"], "be nice");
  ASSERT_EQ(o["output"].size(), 3u);
  EXPECT_EQ(o["output"][0]["type"], "reasoning");
  EXPECT_EQ(o["output"][0]["summary"][0]["text"], "let me think");
  EXPECT_EQ(o["output"][1]["type"], "message");
  EXPECT_EQ(o["output"][2]["type"], "function_call");
  EXPECT_EQ(o["output"][2]["call_id"], "call_9");
  r.finish = FinishReason::Length;
  o = responses::emit_response(r, req);
  EXPECT_EQ(o["status"], "incomplete");
  EXPECT_EQ(o["incomplete_details"]["reason"], "max_output_tokens");
  r.finish = FinishReason::Error;
  r.error_message = "boom";
  o = responses::emit_response(r, req);
  EXPECT_EQ(o["status"], "failed");
  EXPECT_EQ(o["error"]["message"], "boom");
}

// The events a generation produces, for the stream tests.
std::vector<StreamEvent> sample_events(bool with_error_call) {
  std::vector<StreamEvent> ev;
  ev.push_back(StreamEvent::start({50, 40, 0, 0, 0}));
  ev.push_back(StreamEvent::reasoning("thin"));
  ev.push_back(StreamEvent::reasoning("king"));
  ev.push_back(StreamEvent::content("Hel"));
  ev.push_back(StreamEvent::content("lo"));
  ev.push_back(StreamEvent::tool_start(0, "call_a", "get_weather"));
  ev.push_back(StreamEvent::tool_delta(0, "{\"city\": "));
  ev.push_back(StreamEvent::tool_delta(0, "\"Paris\"}"));
  ev.push_back(StreamEvent::tool_end(0));
  if (with_error_call) {
    ev.push_back(StreamEvent::tool_start(1, "call_b", "get_weather"));
    ev.push_back(StreamEvent::tool_delta(1, "{\"city\""));
    ev.push_back(StreamEvent::tool_end(1, J(R"({"type": "invalid_tool_call", "code": "truncated", "message": "cut"})")));
  }
  ev.push_back(StreamEvent::finished(FinishReason::ToolCalls, {50, 40, 9, 2, 0}));
  return ev;
}

StreamMeta meta(Dialect) {
  StreamMeta m;
  m.id = std::string("id_") + "1";
  m.model = std::string(1, 'm');
  m.created = 1;
  m.include_usage = true;
  m.request.model = "m";
  return m;
}

TEST(Protocol, StreamsRoundTripThroughEveryDialect) {
  for (bool with_error : {false, true})
    for (Dialect d : kAll) {
      auto w = make_stream_writer(d, meta(d));
      std::string bytes;
      for (auto& e : sample_events(with_error))
        for (auto& f : w->write(e)) bytes += f.wire();
      EXPECT_TRUE(w->complete());
      // Decode with arbitrary splits, read back, accumulate.
      SseDecoder dec;
      auto r = make_stream_reader(d);
      ResponseAccumulator acc;
      std::vector<StreamEvent> got;
      for (size_t i = 0; i < bytes.size(); i += 7)
        for (auto& f : dec.feed(std::string_view(bytes).substr(i, 7)))
          for (auto& e : r->read(f)) {
            got.push_back(e);
            acc.add(e);
          }
      for (auto& f : dec.finish())
        for (auto& e : r->read(f)) acc.add(e);
      for (auto& e : r->end()) acc.add(e);
      const std::string how = std::string(dialect_name(d)) + (with_error ? " +error" : "");
      EXPECT_TRUE(r->complete()) << how;
      EXPECT_TRUE(acc.finished()) << how;
      const Response& res = acc.response();
      EXPECT_EQ(res.reasoning.value_or(""), "thinking") << how;
      EXPECT_EQ(res.content, "Hello") << how;
      ASSERT_EQ(res.tool_calls.size(), 1u) << how;  // the invalid call never reaches a client as a call
      EXPECT_EQ(res.tool_calls[0].id, "call_a") << how;
      EXPECT_EQ(ojson::parse(res.tool_calls[0].arguments), J(R"({"city": "Paris"})")) << how;
      EXPECT_EQ(res.finish, FinishReason::ToolCalls) << how;
      EXPECT_EQ(res.usage.output_tokens, 9) << how;
      EXPECT_EQ(res.usage.input_tokens, 50) << how;
      EXPECT_EQ(res.usage.cached_tokens, 40) << how;
      ASSERT_FALSE(got.empty()) << how;
      EXPECT_EQ(got.front().kind, StreamEvent::Kind::Start) << how;
      EXPECT_EQ(got.back().kind, StreamEvent::Kind::Finish) << how;
    }
}

TEST(Protocol, CustomToolCallsStreamAsRawInput) {
  for (Dialect d : {Dialect::ChatCompletions, Dialect::Responses}) {
    auto w = make_stream_writer(d, meta(d));
    auto r = make_stream_reader(d);
    ResponseAccumulator acc;
    for (auto& e : {StreamEvent::start(), StreamEvent::tool_start(0, "call_p", "apply_patch", true),
                    StreamEvent::tool_delta(0, "*** Begin Patch\n"), StreamEvent::tool_delta(0, "*** End Patch"), StreamEvent::tool_end(0),
                    StreamEvent::finished(FinishReason::ToolCalls, {})})
      for (auto& f : w->write(e))
        for (auto& x : r->read(f)) acc.add(x);
    for (auto& x : r->end()) acc.add(x);
    ASSERT_EQ(acc.response().tool_calls.size(), 1u) << dialect_name(d);
    EXPECT_TRUE(acc.response().tool_calls[0].custom) << dialect_name(d);
    EXPECT_EQ(acc.response().tool_calls[0].arguments, "*** Begin Patch\n*** End Patch") << dialect_name(d);
  }
}

TEST(Protocol, ResponsesStreamHasTheFullEventSequence) {
  StreamMeta m = meta(Dialect::Responses);
  m.seal = [](const std::string& t) { return "sealed:" + t; };
  responses::StreamWriter w(m);
  std::vector<std::string> types;
  int64_t seq = -1;
  ojson last;
  for (auto& e : sample_events(true))
    for (auto& f : w.write(e)) {
      ojson j = ojson::parse(f.data);
      EXPECT_EQ(j["type"], f.event);
      EXPECT_EQ(j["sequence_number"].get<int64_t>(), seq + 1);
      seq = j["sequence_number"];
      types.push_back(f.event);
      last = j;
    }
  const std::vector<std::string> want = {
      "response.created", "response.in_progress",
      "response.output_item.added", "response.content_part.added", "response.reasoning_text.delta", "response.reasoning_text.delta",
      "response.reasoning_text.done", "response.content_part.done", "response.output_item.done",
      "response.output_item.added", "response.content_part.added", "response.output_text.delta", "response.output_text.delta",
      "response.output_text.done", "response.content_part.done", "response.output_item.done",
      "response.output_item.added", "response.function_call_arguments.delta", "response.function_call_arguments.done",
      "response.output_item.done", "response.completed"};
  EXPECT_EQ(types, want);
  const ojson& resp = last["response"];
  EXPECT_EQ(resp["status"], "completed");
  EXPECT_EQ(resp["output"][0]["encrypted_content"], "sealed:thinking");
  EXPECT_EQ(resp["output"].size(), 3u);
  EXPECT_EQ(resp["usage"]["input_tokens_details"]["cached_tokens"], 40);
  ASSERT_TRUE(resp.contains("warnings"));  // the dropped invalid call is noted

  // Length -> response.incomplete; an error -> response.failed; exactly one terminal event.
  for (auto [fin, want_type] : {std::pair{FinishReason::Length, "response.incomplete"}, std::pair{FinishReason::Error, "response.failed"}}) {
    responses::StreamWriter w2(meta(Dialect::Responses));
    int terminal = 0;
    std::string type;
    for (auto& e : {StreamEvent::start(), StreamEvent::content("x"), StreamEvent::finished(fin, {})})
      for (auto& f : w2.write(e))
        if (f.event == "response.completed" || f.event == "response.incomplete" || f.event == "response.failed") ++terminal, type = f.event;
    EXPECT_TRUE(w2.write(StreamEvent::content("late")).empty());
    EXPECT_EQ(terminal, 1);
    EXPECT_EQ(type, want_type);
  }
}

TEST(Protocol, AnthropicStreamCarriesCacheSplitInMessageStart) {
  anthropic::StreamWriter w(meta(Dialect::AnthropicMessages));
  auto frames = w.write(StreamEvent::start({50, 40, 0, 0, 0}));
  ASSERT_FALSE(frames.empty());
  EXPECT_EQ(frames[0].event, "message_start");
  ojson u = ojson::parse(frames[0].data)["message"]["usage"];
  EXPECT_EQ(u["input_tokens"], 10);
  EXPECT_EQ(u["cache_read_input_tokens"], 40);
  EXPECT_EQ(u["output_tokens"], 0);
}

TEST(Protocol, SseDecoderHandlesSplitsCommentsAndCrlf) {
  SseDecoder d;
  std::vector<SseFrame> got;
  for (const char* piece : {": keep-alive\r\n\r\nevent: a\r\nda", "ta: 1\r\ndata: 2\r\n\r\n", "data: [DONE]\n", "\n"})
    for (auto& f : d.feed(piece)) got.push_back(f);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].event, "a");
  EXPECT_EQ(got[0].data, "1\n2");
  EXPECT_EQ(got[1].data, "[DONE]");
  EXPECT_EQ((SseFrame{"e", "x\ny"}).wire(), "event: e\ndata: x\ndata: y\n\n");
}

TEST(Protocol, ReadersRejectMalformedUpstreamFrames) {
  for (Dialect d : kAll) {
    auto r = make_stream_reader(d);
    try {
      r->read({"", "not json"});
      ADD_FAILURE() << dialect_name(d);
    } catch (const ProtocolError& e) {
      EXPECT_EQ(e.status, 502) << dialect_name(d);
    }
    // A stream cut before its end is an error event, never a silent success.
    auto r2 = make_stream_reader(d);
    auto ev = r2->end();
    ASSERT_FALSE(ev.empty());
    EXPECT_EQ(ev.back().kind, StreamEvent::Kind::Error) << dialect_name(d);
  }
  EXPECT_THROW(chat::parse_response(J(R"({"error": {"message": "nope"}})")), ProtocolError);
  EXPECT_THROW(anthropic::parse_response(J(R"({"type": "error", "error": {"message": "nope"}})")), ProtocolError);
  EXPECT_THROW(responses::parse_response(J(R"({"id": "x"})")), ProtocolError);
}

// Where an upstream puts usage: after the finish chunk (OpenAI's stream_options), in it, or in every
// chunk (vLLM's continuous usage stats). Each order ends with the last usage seen; an error frame's
// code is carried through.
TEST(Protocol, OpenAIStreamReadersKeepUsageInAnyOrderAndErrorCodes) {
  const auto chunk = [](Dialect d, const char* text, const char* finish, int out_tokens) {
    ojson choice = d == Dialect::Completions ? ojson{{"index", 0}, {"text", text}} : ojson{{"index", 0}, {"delta", {{"content", text}}}};
    choice["finish_reason"] = finish ? ojson(finish) : ojson(nullptr);
    ojson j = {{"id", "x"}, {"choices", ojson::array({choice})}};
    if (out_tokens >= 0) j["usage"] = {{"prompt_tokens", 7}, {"completion_tokens", out_tokens}, {"total_tokens", 7 + out_tokens}};
    return SseFrame{"", j.dump()};
  };
  const auto usage_only = [](int out_tokens) {
    return SseFrame{"", ojson{{"id", "x"}, {"choices", ojson::array()}, {"usage", {{"prompt_tokens", 7}, {"completion_tokens", out_tokens}}}}.dump()};
  };
  for (Dialect d : {Dialect::ChatCompletions, Dialect::Completions}) {
    const std::vector<std::vector<SseFrame>> orders = {
        {chunk(d, "ab", nullptr, -1), chunk(d, "c", "stop", -1), usage_only(3)},  // after the finish
        {chunk(d, "ab", nullptr, -1), chunk(d, "c", "stop", 3)},                   // in the finish chunk
        {chunk(d, "ab", nullptr, 2), chunk(d, "c", "stop", 3)},                    // in every chunk
    };
    for (size_t o = 0; o < orders.size(); ++o) {
      auto r = make_stream_reader(d);
      std::vector<StreamEvent> ev;
      for (const SseFrame& f : orders[o])
        for (auto& e : r->read(f)) ev.push_back(e);
      for (auto& e : r->read({"", "[DONE]"})) ev.push_back(e);
      ASSERT_FALSE(ev.empty());
      const StreamEvent& fin = ev.back();
      ASSERT_EQ(fin.kind, StreamEvent::Kind::Finish) << dialect_name(d) << " order " << o;
      EXPECT_EQ(fin.usage.input_tokens, 7) << dialect_name(d) << " order " << o;
      EXPECT_EQ(fin.usage.output_tokens, 3) << dialect_name(d) << " order " << o;
      std::string text;
      for (auto& e : ev)
        if (e.kind == StreamEvent::Kind::TextDelta) text += e.text;
      EXPECT_EQ(text, "abc") << dialect_name(d) << " order " << o;
    }
    auto r = make_stream_reader(d);
    const auto ev = r->read({"", R"({"error": {"message": "context too long", "code": "context_length_exceeded"}})"});
    ASSERT_FALSE(ev.empty());
    EXPECT_EQ(ev.back().kind, StreamEvent::Kind::Error) << dialect_name(d);
    EXPECT_EQ(ev.back().text, "context too long") << dialect_name(d);
    EXPECT_EQ(ev.back().code, "context_length_exceeded") << dialect_name(d);
    EXPECT_TRUE(r->complete()) << dialect_name(d);
  }
}

TEST(Protocol, CompletionsRoundTrip) {
  Request r = completions::parse_request(J(R"({"model": "m", "prompt": [1, 2, 3], "max_tokens": 5, "echo": true, "logprobs": 2})"));
  EXPECT_TRUE(r.prompt_is_ids);
  EXPECT_EQ(r.prompt_ids.size(), 3u);
  Request back = completions::parse_request(completions::emit_request(r));
  EXPECT_EQ(back.prompt_ids, r.prompt_ids);
  EXPECT_EQ(back.completion_logprobs, 2);
  Response res;
  res.id = "c";
  res.content = "abc";
  res.finish = FinishReason::Length;
  Response rb = completions::parse_response(completions::emit_response(res));
  EXPECT_EQ(rb.content, "abc");
  EXPECT_EQ(rb.finish, FinishReason::Length);
  EXPECT_EQ(dialect_for_path("/v1/responses?x=1"), Dialect::Responses);
  EXPECT_EQ(dialect_for_path("/v1/nope"), std::nullopt);
}

}  // namespace
}  // namespace v4::protocol
