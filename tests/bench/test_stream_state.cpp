// StreamState::feed for the chat API: the scan that classifies plain text deltas (the hot path)
// must agree with the full JSON parse on every event shape, including the ones it hands over.
#include <gtest/gtest.h>

#include "bench/api.h"

using namespace v4::bench;

namespace {
int feed(StreamState& st, const std::string& data) {
  v4::net::SseEvent ev;
  ev.data = data;
  return st.feed(Api::chat, ev);
}
}  // namespace

TEST(BenchStreamState, ChatDeltasSameOnTheScanAndTheFullParse) {
  StreamState st;
  EXPECT_EQ(feed(st, R"({"id":"c","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]})"), 0);
  EXPECT_EQ(feed(st, R"({"id":"c","choices":[{"index":0,"delta":{"reasoning_content":"think "},"finish_reason":null}]})"), 1);
  EXPECT_EQ(feed(st, R"({"choices":[{"delta":{"reasoning":"more"}}]})"), 1);
  EXPECT_EQ(feed(st, R"({"choices":[{"index":0,"delta":{"content":"a \"quoted\" \\ \u00e9"},"finish_reason":null}]})"), 1);
  EXPECT_EQ(feed(st, R"({"choices":[{"index":0,"delta":{"content":"tok "},"finish_reason":null}]})"), 1);
  EXPECT_EQ(feed(st, R"({"choices":[{"index":0,"delta":{"content":""},"finish_reason":null}]})"), 0);
  // Two keys in one delta: both counted (full parse).
  EXPECT_EQ(feed(st, R"({"choices":[{"index":0,"delta":{"reasoning_content":"r","content":"c"}}]})"), 2);
  EXPECT_EQ(feed(st, R"({"choices":[{"index":0,"delta":{"content":"end"},"finish_reason":"length"}]})"), 1);
  EXPECT_EQ(feed(st, R"({"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":7,"completion_tokens_details":{"reasoning_tokens":2}}})"), 0);
  EXPECT_EQ(feed(st, "[DONE]"), 0);
  EXPECT_EQ(st.reasoning, "think morer");
  EXPECT_EQ(st.answer, "a \"quoted\" \\ \xc3\xa9tok cend");
  EXPECT_EQ(st.reasoning_pieces, 3);
  EXPECT_EQ(st.answer_pieces, 4);
  EXPECT_EQ(st.finish_reason, "length");
  EXPECT_EQ(st.completion_tokens, 7);
  EXPECT_EQ(st.reasoning_tokens, 2);
  EXPECT_TRUE(st.done);
  EXPECT_FALSE(st.last_piece_reasoning);
}

TEST(BenchStreamState, ChatErrorAndToolCallEventsAreNotTextPieces) {
  StreamState st;
  EXPECT_EQ(feed(st, R"({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"name":"f","arguments":"{}"}}]}}]})"), 1);
  EXPECT_EQ(st.tool_call_deltas, 1);
  EXPECT_EQ(feed(st, R"({"error":{"message":"overloaded"}})"), 0);
  EXPECT_EQ(st.error, "overloaded");
  EXPECT_EQ(st.answer, "");
}

namespace {
int feed_as(StreamState& st, Api api, const std::string& event, const std::string& data) {
  v4::net::SseEvent ev;
  ev.event = event;
  ev.data = data;
  return st.feed(api, ev);
}
}  // namespace

// The other dialects go through the protocol layer's stream readers.
TEST(BenchStreamState, MessagesAndResponsesThroughTheProtocolReaders) {
  StreamState m;
  EXPECT_EQ(feed_as(m, Api::messages, "message_start", R"({"type":"message_start","message":{"id":"m","type":"message","role":"assistant","model":"x","content":[],"usage":{"input_tokens":9,"output_tokens":1}}})"), 0);
  EXPECT_EQ(feed_as(m, Api::messages, "content_block_start", R"({"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}})"), 0);
  EXPECT_EQ(feed_as(m, Api::messages, "content_block_delta", R"({"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"hm"}})"), 1);
  EXPECT_EQ(feed_as(m, Api::messages, "content_block_stop", R"({"type":"content_block_stop","index":0})"), 0);
  EXPECT_EQ(feed_as(m, Api::messages, "content_block_start", R"({"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}})"), 0);
  EXPECT_EQ(feed_as(m, Api::messages, "content_block_delta", R"({"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"hi"}})"), 1);
  EXPECT_EQ(feed_as(m, Api::messages, "content_block_stop", R"({"type":"content_block_stop","index":1})"), 0);
  EXPECT_EQ(feed_as(m, Api::messages, "message_delta", R"({"type":"message_delta","delta":{"stop_reason":"max_tokens"},"usage":{"output_tokens":2,"cache_read_input_tokens":4}})"), 0);
  EXPECT_EQ(feed_as(m, Api::messages, "message_stop", R"({"type":"message_stop"})"), 0);
  EXPECT_TRUE(m.done);
  EXPECT_EQ(m.reasoning, "hm");
  EXPECT_EQ(m.answer, "hi");
  EXPECT_EQ(m.finish_reason, "length");
  EXPECT_EQ(m.completion_tokens, 2);
  EXPECT_TRUE(m.error.empty()) << m.error;

  StreamState r;
  EXPECT_EQ(feed_as(r, Api::responses, "response.created", R"({"type":"response.created","response":{"id":"r","status":"in_progress"}})"), 0);
  EXPECT_EQ(feed_as(r, Api::responses, "response.output_text.delta", R"({"type":"response.output_text.delta","delta":"ok"})"), 1);
  EXPECT_EQ(feed_as(r, Api::responses, "response.completed", R"({"type":"response.completed","response":{"id":"r","status":"completed","usage":{"input_tokens":5,"output_tokens":1,"input_tokens_details":{"cached_tokens":3}}}})"), 0);
  EXPECT_TRUE(r.done);
  EXPECT_EQ(r.answer, "ok");
  EXPECT_EQ(r.prompt_tokens, 5);
  EXPECT_EQ(r.cached_tokens, 3);

  // A frame that is not JSON is a stream error, not silently skipped.
  StreamState bad;
  feed_as(bad, Api::responses, "response.output_text.delta", "not json");
  EXPECT_NE(bad.error.find("malformed stream event"), std::string::npos) << bad.error;
}

TEST(BenchStreamState, ChatUsageWithDeepSeekCacheHitsAndNoUsage) {
  StreamState st;
  feed(st, R"({"choices":[{"index":0,"delta":{"content":"a"},"finish_reason":"stop"}]})");
  feed(st, R"({"choices":[],"usage":{"prompt_tokens":30,"completion_tokens":1,"prompt_cache_hit_tokens":24}})");
  feed(st, "[DONE]");
  EXPECT_EQ(st.cached_tokens, 24);
  EXPECT_EQ(st.prompt_tokens, 30);
  // A server that reports no usage: the counts stay unknown (-1), so local counts are used.
  StreamState nu;
  feed(nu, R"({"choices":[{"index":0,"delta":{"content":"a"},"finish_reason":"stop"}]})");
  feed(nu, "[DONE]");
  EXPECT_TRUE(nu.done);
  EXPECT_EQ(nu.completion_tokens, -1);
  EXPECT_EQ(nu.prompt_tokens, -1);
  EXPECT_EQ(nu.answer_pieces, 1);
}
