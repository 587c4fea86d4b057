// The edited way in (router/wire_edit.h): for a plain Chat Completions body the upstream gets the
// client's bytes with the router's members set, and that request is the same JSON as the one the
// emit path (parse → protocol types → emit) would have sent; anything else takes the emit path.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "config_fixtures.h"
#include "protocol/protocol.h"
#include "router/config.h"
#include "router/upstream.h"
#include "router/wire_edit.h"

using namespace v4::router;
using v4::protocol::ojson;
namespace protocol = v4::protocol;

namespace {

const std::string kCfg = std::string(router_test::kFourUpstreams) + R"(routes:
  auto: {chain: [flash, vllm, pro, claude]}
)";

struct Both {
  WireRequest edited, emitted;
  bool took_edit = false;
};

// The wire request both ways for the body text `raw` (which must be a valid request).
Both both(const Upstream& u, const std::string& raw) {
  ojson body = ojson::parse(raw);
  protocol::Request req = protocol::parse_request(protocol::Dialect::ChatCompletions, body);
  ReasoningMemo memo;
  Both b;
  ClientBody cb{raw, &body};
  b.edited = build_wire_request(u, req, memo, &cb);
  b.emitted = build_wire_request(u, req, memo);
  std::string out;
  b.took_edit = edit_chat_body(u, req, body, raw, out);
  if (b.took_edit) {
    EXPECT_EQ(out, b.edited.body);
  }
  return b;
}

// Key order aside, the same JSON (numbers compared by value: 1 and 1.0 are the same temperature).
void same_request(const Both& b, const std::string& what) {
  EXPECT_EQ(nlohmann::json::parse(b.edited.body), nlohmann::json::parse(b.emitted.body)) << what << "\n edited: " << b.edited.body
                                                                                          << "\n emitted: " << b.emitted.body;
  EXPECT_EQ(b.edited.url, b.emitted.url) << what;
  EXPECT_EQ(b.edited.headers, b.emitted.headers) << what;
  EXPECT_EQ(b.edited.dialect, b.emitted.dialect) << what;
}

}  // namespace

TEST(RouterWireEdit, PlainBodiesAreEditedIntoTheEmitPathsRequest) {
  setenv("ROUTER_TEST_DS_KEY", "sk-we", 1);
  Config c = load_config_text(kCfg, "t.yaml");
  const std::vector<std::string> plain = {
      R"({"model":"auto","messages":[{"role":"user","content":"hi"}]})",
      R"({"model":"auto","stream":true,"max_tokens":8,"messages":[{"role":"user","content":"hello"}]})",
      R"({"model":"auto","stream":false,"messages":[{"role":"user","content":"hello"}],"stream_options":{"include_usage":false}})",
      R"( { "messages" : [ {"content":"be brief","role":"system"}, {"role":"user","content":"caf\u00e9 \"quoted\" {[,]}","name":"ann"},
          {"role":"assistant","content":"ok"}, {"role":"assistant","content":null}, {"role":"developer","content":""},
          {"role":"user","content":"again"} ] , "model" : "auto" , "temperature" : 1, "top_p":0.5, "min_p":0.1, "top_k":40,
          "seed":-7, "stop":["\n\n","END"], "user":"u-1", "prompt_cache_key":"k1", "n":1, "metadata":{"tag":"x"}, "store":false } )",
      R"({"model":"auto","messages":[{"role":"user","content":"x"}],"reasoning_effort":"high"})",
      R"({"model":"auto","messages":[{"role":"user","content":"x"}],"reasoning_effort":"none"})",
      R"({"model":"auto","messages":[{"role":"user","content":"x"}],"thinking":{"type":"disabled"}})",
      R"({"model":"auto","messages":[{"role":"user","content":"x"}],"thinking":{"type":"enabled","budget_tokens":100},"max_tokens":64})",
      R"({"model":"auto","messages":[{"role":"user","content":"x"}],"enable_thinking":false})",
      R"({"model":"auto","messages":[{"role":"user","content":"x"}],"thinking_mode":"thinking","reasoning_effort":"low"})",
      R"({"model":"auto","messages":[{"role":"user","content":"x"}],"parallel_tool_calls":false,"temperature":0.25})",
  };
  for (const char* up : {"flash", "vllm", "pro"})
    for (auto& raw : plain) {
      Both b = both(*c.upstream(up), raw);
      EXPECT_TRUE(b.took_edit) << up << ": " << raw;
      same_request(b, std::string(up) + ": " + raw);
    }
  // The model is the upstream's when it names one, else the client's; always a stream with usage.
  Both b = both(*c.upstream("vllm"), plain[2]);
  ojson e = ojson::parse(b.edited.body);
  EXPECT_EQ(e["model"], "deepseek-ai/DeepSeek-V4-Flash");
  EXPECT_EQ(e["stream"], true);
  EXPECT_EQ(e["stream_options"]["include_usage"], true);
  EXPECT_EQ(ojson::parse(both(*c.upstream("flash"), plain[0]).edited.body)["model"], "auto");
  EXPECT_EQ(header_of(both(*c.upstream("pro"), plain[0]).edited.headers, "authorization"), "Bearer sk-we");
  // The client's bytes travel as they came (escapes and spacing inside the kept members).
  EXPECT_NE(both(*c.upstream("flash"), plain[3]).edited.body.find(R"("content":"caf\u00e9 \"quoted\" {[,]}","name":"ann"})"), std::string::npos);
  // Members the emit path drops are dropped: metadata (the router's tag), store, n.
  e = ojson::parse(both(*c.upstream("flash"), plain[3]).edited.body);
  EXPECT_FALSE(e.contains("metadata"));
  EXPECT_FALSE(e.contains("store"));
  EXPECT_FALSE(e.contains("n"));
}

TEST(RouterWireEdit, AnythingElseTakesTheEmitPath) {
  Config c = load_config_text(kCfg, "t.yaml");
  const std::vector<std::string> other = {
      // content parts (joined by the emit path), tool definitions and turns, reasoning_content
      R"({"model":"auto","messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}]})",
      R"({"model":"auto","messages":[{"role":"user","content":"w?"}],"tools":[{"type":"function","function":{"name":"get","parameters":{"type":"object"}}}]})",
      R"({"model":"auto","messages":[{"role":"user","content":"w?"},{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"get","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c1","content":"sunny"}]})",
      R"({"model":"auto","messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b","reasoning_content":"r"},{"role":"user","content":"c"}]})",
      R"({"model":"auto","messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b","reasoning":"r"},{"role":"user","content":"c"}]})",
      // a message without content, a tool message with a name
      R"({"model":"auto","messages":[{"role":"user","content":"a"},{"role":"assistant"},{"role":"user","content":"c"}]})",
      // renamed, normalised or unknown members
      R"({"model":"auto","messages":[{"role":"user","content":"a"}],"max_completion_tokens":5})",
      R"({"model":"auto","messages":[{"role":"user","content":"a"}],"stop":"END"})",
      R"({"model":"auto","messages":[{"role":"user","content":"a"}],"stop":[]})",
      R"({"model":"auto","messages":[{"role":"user","content":"a"}],"temperature":null})",
      R"({"model":"auto","messages":[{"role":"user","content":"a"}],"user":""})",
      R"({"model":"auto","messages":[{"role":"user","content":"a"}],"logprobs":true,"top_logprobs":2})",
      R"({"model":"auto","messages":[{"role":"user","content":"a"}],"response_format":{"type":"json_object"}})",
      R"({"model":"auto","messages":[{"role":"user","content":"a"}],"chat_template_kwargs":{"thinking":true}})",
      R"({"model":"auto","messages":[{"role":"user","content":"a"}],"frequency_penalty":0.5})",
      // a duplicate top-level key, an escaped key
      R"({"model":"auto","messages":[{"role":"user","content":"a"}],"max_tokens":5,"max_tokens":7})",
      R"({"model":"auto","messages":[{"role":"user","content":"a"}],"max_tok\u0065ns":5})",
  };
  for (const char* up : {"flash", "vllm", "pro", "claude"})
    for (auto& raw : other) {
      Both b = both(*c.upstream(up), raw);
      EXPECT_FALSE(b.took_edit) << up << ": " << raw;
      EXPECT_EQ(b.edited.body, b.emitted.body) << up << ": " << raw;  // exactly the emit path's request
    }
  // Another upstream API: never edited, even for a plain body.
  Both b = both(*c.upstream("claude"), R"({"model":"auto","messages":[{"role":"user","content":"hi"}]})");
  EXPECT_FALSE(b.took_edit);
  EXPECT_EQ(b.edited.body, b.emitted.body);
  EXPECT_EQ(b.edited.dialect, protocol::Dialect::AnthropicMessages);
}

TEST(RouterWireEdit, MalformedTextIsNeverEdited) {
  // edit_chat_body only sees bodies that parsed, but it must not read past a truncated one.
  Config c = load_config_text(kCfg, "t.yaml");
  ojson body = ojson::parse(R"({"model":"auto","messages":[{"role":"user","content":"a"}]})");
  protocol::Request req = protocol::parse_request(protocol::Dialect::ChatCompletions, body);
  std::string out;
  for (std::string raw : {R"({"model":"auto","messages":[{"role":"user","content":"a"}])", R"({"model":"auto","messages":[{"role":"user","content":"a)",
                          R"({"model" "auto"})", R"([1,2])", "", R"({"model":"auto","messages":[{"role":"user","content":"a"}]} trailing)"})
    EXPECT_FALSE(edit_chat_body(*c.upstream("flash"), req, body, raw, out)) << raw;
}
