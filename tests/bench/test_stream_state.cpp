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
