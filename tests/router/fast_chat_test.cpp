// The router's cheap Chat Completions path (src/router/fast_chat): it must give exactly what the
// protocol layer gives — the same events from a stream, the same bytes for an answer — and hand
// every frame it does not fully understand back to the protocol layer.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "protocol/protocol.h"
#include "router/fast_chat.h"

namespace protocol = v4::protocol;
namespace fastchat = v4::router::fastchat;
using protocol::ojson;

namespace {

// The answer protocol's chat reader assembles from these frames (as the router's full path does).
protocol::Response full_path(const std::vector<std::string>& frames, bool* complete) {
  auto reader = protocol::make_stream_reader(protocol::Dialect::ChatCompletions);
  protocol::ResponseAccumulator acc;
  for (auto& f : frames)
    for (auto& e : reader->read(protocol::SseFrame{"", f})) acc.add(e);
  for (auto& e : reader->end()) acc.add(e);
  *complete = reader->complete() && acc.finished();
  return acc.response();
}

// The same through the lean reader; false if it gave up on some frame.
bool lean_path(const std::vector<std::string>& frames, protocol::Response* out, bool* complete) {
  fastchat::LeanReader lean;
  protocol::ResponseAccumulator acc;
  std::vector<protocol::StreamEvent> ev;
  for (auto& f : frames) {
    if (!lean.read(f, ev)) return false;
    for (auto& e : ev) acc.add(e);
    ev.clear();
  }
  lean.end(ev);
  for (auto& e : ev) acc.add(e);
  *complete = lean.complete() && acc.finished();
  *out = acc.response();
  return true;
}

std::string chunk(const std::string& delta, const std::string& finish = "null", const std::string& extra = "") {
  return R"({"id":"c1","object":"chat.completion.chunk","created":7,"model":"m","choices":[{"index":0,"delta":)" + delta +
         R"(,"finish_reason":)" + finish + R"(,"logprobs":null}])" + extra + "}";
}

const std::string kUsage = R"("usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17,"prompt_tokens_details":{"cached_tokens":4},"completion_tokens_details":{"reasoning_tokens":2}})";

}  // namespace

TEST(RouterFastChat, LeanReaderMatchesProtocolReader) {
  std::vector<std::vector<std::string>> streams = {
      // role, text with escapes and non-ASCII, finish, usage-only chunk, [DONE]
      {chunk(R"({"role":"assistant","content":""})"), chunk(R"({"content":"He said \"hi\"\n\u00e9 \ud83d\ude00"})"), chunk(R"({"content":" ok"})"),
       chunk("{}", "\"stop\""), R"({"id":"c1","object":"chat.completion.chunk","created":7,"model":"m","choices":[],)" + kUsage + "}", "[DONE]"},
      // reasoning (both spellings in different frames), usage on the finish chunk, no [DONE]
      {chunk(R"({"role":"assistant"})"), chunk(R"({"reasoning_content":"think"})"), chunk(R"({"reasoning":" more"})"),
       chunk(R"({"content":"answer"})"), chunk("{}", "\"length\"", "," + kUsage)},
      // finish arrives with the last text; extra unknown fields anywhere
      {chunk(R"({"role":"assistant","content":null,"refusal":null})", "null", R"(,"system_fingerprint":"fp","x":{"y":[1,2,{"z":null}]})"),
       chunk(R"({"content":"last"})", "\"content_filter\""), "[DONE]"},
      // never finished
      {chunk(R"({"content":"partial"})")},
      // spaces and another key order (the bytes a different engine writes)
      {R"({ "choices" : [ { "delta" : { "content" : "a b" } , "index" : 0 } ] , "id" : "x" })", R"({"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]})",
       "[DONE]"},
  };
  for (size_t i = 0; i < streams.size(); ++i) {
    bool c_full = false, c_lean = false;
    protocol::Response full = full_path(streams[i], &c_full), lean;
    ASSERT_TRUE(lean_path(streams[i], &lean, &c_lean)) << "stream " << i;
    EXPECT_EQ(c_full, c_lean) << "stream " << i;
    EXPECT_EQ(full.content, lean.content) << "stream " << i;
    EXPECT_EQ(full.reasoning, lean.reasoning) << "stream " << i;
    EXPECT_EQ(full.finish, lean.finish) << "stream " << i;
    EXPECT_EQ(full.error_message, lean.error_message) << "stream " << i;
    EXPECT_EQ(full.usage.input_tokens, lean.usage.input_tokens) << "stream " << i;
    EXPECT_EQ(full.usage.output_tokens, lean.usage.output_tokens) << "stream " << i;
    EXPECT_EQ(full.usage.cached_tokens, lean.usage.cached_tokens) << "stream " << i;
    EXPECT_EQ(full.usage.reasoning_tokens, lean.usage.reasoning_tokens) << "stream " << i;
  }
  // The first stream's values, spelled out (not only "both paths agree").
  bool c = false;
  protocol::Response r;
  ASSERT_TRUE(lean_path(streams[0], &r, &c));
  EXPECT_TRUE(c);
  EXPECT_EQ(r.content, "He said \"hi\"\n\xc3\xa9 \xf0\x9f\x98\x80 ok");
  EXPECT_EQ(r.usage.input_tokens, 12);
  EXPECT_EQ(r.usage.cached_tokens, 4);
}

TEST(RouterFastChat, LeanReaderGivesUpOnWhatItDoesNotHandle) {
  const std::vector<std::string> unhandled = {
      chunk(R"({"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":""}}]})"),
      R"({"error":{"message":"overloaded","type":"server_error"}})",
      R"({"choices":[{"index":0,"delta":{"content":"a"}},{"index":1,"delta":{"content":"b"}}]})",
      chunk(R"({"content":"a"})", "null").replace(chunk(R"({"content":"a"})", "null").find("\"logprobs\":null"), 15,
                                                 R"("logprobs":{"content":[]})"),
      R"({"choices":[{"index":0,"delta":{"content":"a"}}]} trailing)",
      R"([1,2])",
      R"({"choices":[{"index":0,"delta":{"content":"x","reasoning_content":"r1","reasoning":"r2"}}]})",
      R"({"choices":[],"usage":{"prompt_tokens":null}})",
  };
  for (auto& f : unhandled) {
    fastchat::LeanReader lean;
    std::vector<protocol::StreamEvent> ev;
    EXPECT_FALSE(lean.read(f, ev)) << f;
    EXPECT_TRUE(ev.empty()) << f;
  }
  // A plain delta frame is taken by the delta scan; ends, usage and errors are not.
  fastchat::Delta d;
  EXPECT_TRUE(fastchat::scan_plain_delta(chunk(R"({"content":"tok "})"), d));
  EXPECT_EQ(d.content, "tok ");
  EXPECT_FALSE(fastchat::scan_plain_delta(chunk("{}", "\"stop\""), d));
  EXPECT_FALSE(fastchat::scan_plain_delta(R"({"choices":[],)" + kUsage + "}", d));
  EXPECT_FALSE(fastchat::scan_plain_delta(unhandled[0], d));
  EXPECT_TRUE(d.content.empty());
}

TEST(RouterFastChat, SimpleResponseBytesEqualProtocolEmit) {
  protocol::Request req = protocol::parse_request(protocol::Dialect::ChatCompletions,
                                                  ojson::parse(R"({"model":"m","messages":[{"role":"user","content":"hi"}]})"));
  std::vector<protocol::Response> cases(5);
  cases[0].content = "plain text";
  cases[1].content = "quotes \" backslash \\ newline \n tab \t control \x01 del \x7f utf8 \xc3\xa9";
  cases[1].reasoning = "why \"so\"";
  cases[1].finish = protocol::FinishReason::Length;
  cases[2].content = "bad utf8 \xff\xfe end";  // replaced by U+FFFD, as protocol::wire does
  cases[2].finish = protocol::FinishReason::ContentFilter;
  cases[3].content = "";
  cases[3].reasoning = "";
  cases[3].finish = protocol::FinishReason::StopSequence;
  cases[4].content = "x";
  cases[4].finish = protocol::FinishReason::Error;
  for (size_t i = 0; i < cases.size(); ++i) {
    auto& r = cases[i];
    r.id = "chatcmpl-rt-" + std::to_string(i) + (i == 2 ? "\"q" : "");
    r.model = i == 1 ? "auto \xc3\xa9" : "auto";
    r.created = 1764590000 + static_cast<int64_t>(i);
    r.usage.input_tokens = 10 + static_cast<int64_t>(i);
    r.usage.output_tokens = 3;
    r.usage.cached_tokens = static_cast<int64_t>(i);
    r.usage.reasoning_tokens = 1;
    std::string fast;
    ASSERT_TRUE(fastchat::emit_simple_response(r, fast)) << i;
    EXPECT_EQ(fast, protocol::wire(protocol::emit_response(protocol::Dialect::ChatCompletions, r, req))) << i;
  }
  protocol::Response with_call = cases[0];
  with_call.tool_calls.push_back({});
  std::string out;
  EXPECT_FALSE(fastchat::emit_simple_response(with_call, out));
}

TEST(RouterFastChat, RawEventSplitting) {
  std::string_view data;
  bool plain = false;
  std::string buf = "data: {\"a\":1}\n\ndata:[DONE]\n\n: keep-alive\n\nevent: x\ndata: y\n\ndata: partial";
  size_t n = fastchat::next_event(buf, data, plain);
  EXPECT_EQ(n, 15u);
  EXPECT_TRUE(plain);
  EXPECT_EQ(data, "{\"a\":1}");
  std::string_view rest = std::string_view(buf).substr(n);
  n = fastchat::next_event(rest, data, plain);
  EXPECT_TRUE(plain);
  EXPECT_EQ(data, "[DONE]");
  rest = rest.substr(n);
  n = fastchat::next_event(rest, data, plain);
  EXPECT_FALSE(plain);  // a comment: for the decoder
  rest = rest.substr(n);
  n = fastchat::next_event(rest, data, plain);
  EXPECT_FALSE(plain);  // an event: line
  rest = rest.substr(n);
  EXPECT_EQ(fastchat::next_event(rest, data, plain), 0u);  // incomplete
}

TEST(RouterFastChat, EndFramesFoundByTheirBytes) {
  EXPECT_FALSE(fastchat::may_end(chunk(R"({"content":"tok "})")));  // finish_reason: null
  EXPECT_TRUE(fastchat::may_end(chunk("{}", "\"stop\"")));
  EXPECT_TRUE(fastchat::may_end(R"({"choices": [{"finish_reason" : "length"}]})"));
  EXPECT_TRUE(fastchat::may_end(R"({"choices":[],)" + kUsage + "}"));
  EXPECT_FALSE(fastchat::may_end(R"({"usage":null,"error":null,"choices":[]})"));
  EXPECT_TRUE(fastchat::may_end(R"({"error":{"message":"x"}})"));
  // A token that spells the keys is a string: its quotes are escaped.
  EXPECT_FALSE(fastchat::may_end(chunk(R"({"content":"say \"finish_reason\": \"stop\" and \"usage\": {} or \"error\": 1"})")));
  fastchat::End e;
  ASSERT_TRUE(fastchat::scan_end(chunk("{}", "\"stop\"", "," + kUsage), e));
  EXPECT_TRUE(e.finish);
  EXPECT_TRUE(e.usage);
  EXPECT_EQ(e.counts.input_tokens, 12);
  EXPECT_EQ(e.counts.output_tokens, 5);
  EXPECT_FALSE(fastchat::scan_end(R"({"error":{"message":"x"}})", e));
}

TEST(RouterFastChat, UsageCutFromTheBytes) {
  std::string out;
  ASSERT_TRUE(fastchat::strip_usage(R"({"id":"a","choices":[{"index":0,"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"x":[{"y":"}"}]},"z":1})", out));
  EXPECT_EQ(out, R"({"id":"a","choices":[{"index":0,"finish_reason":"stop"}],"z":1})");
  ASSERT_TRUE(fastchat::strip_usage(R"({ "usage" : {"a":"\"}"} , "choices": [] })", out));
  EXPECT_EQ(out, R"({ "choices": [] })");
  ASSERT_TRUE(fastchat::strip_usage(R"({"choices":[],"usage":{}})", out));
  EXPECT_EQ(out, R"({"choices":[]})");
  EXPECT_EQ(ojson::parse(out), ojson::parse(R"({"choices":[]})"));
  EXPECT_FALSE(fastchat::strip_usage(R"({"choices":[{"usage":{}}]})", out));  // not top-level
  EXPECT_FALSE(fastchat::strip_usage(R"({"a":1)", out));
  EXPECT_FALSE(fastchat::strip_usage(R"([1])", out));
}
