#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "net/sse_parser.h"

using v4::net::SseEvent;
using v4::net::SseParser;

namespace {

std::vector<SseEvent> parse_pieces(const std::vector<std::string>& pieces, SseParser** out = nullptr) {
  static std::vector<SseEvent> evs;
  evs.clear();
  static std::unique_ptr<SseParser> p;
  p = std::make_unique<SseParser>([](const SseEvent& e) { evs.push_back(e); });
  for (const auto& s : pieces) p->feed(s);
  p->finish();
  if (out) *out = p.get();
  return evs;
}

// A stream exercising every feature; the expected events are checked for every split.
const std::string kStream =
    "\xEF\xBB\xBF"
    ": keep-alive\r\n"
    "event: content_block_delta\r\n"
    "data: {\"a\":1}\r\n"
    "\r\n"
    "data:first\n"
    "data: second\n"
    "id: 7\n"
    "retry: 1500\n"
    "\n"
    ": another comment\r"
    "data\r"
    "\r"
    "event: ignored-no-data\n"
    "\n"
    "unknown: field\n"
    "data:  two spaces\r\n\r\n"
    "data: [DONE]\n\n";

void check(const std::vector<SseEvent>& e) {
  ASSERT_EQ(e.size(), 5u);
  EXPECT_EQ(e[0].event, "content_block_delta");
  EXPECT_EQ(e[0].data, "{\"a\":1}");
  EXPECT_EQ(e[0].id, "");
  EXPECT_EQ(e[1].event, "message");
  EXPECT_EQ(e[1].data, "first\nsecond");
  EXPECT_EQ(e[1].id, "7");
  ASSERT_TRUE(e[1].retry.has_value());
  EXPECT_EQ(*e[1].retry, 1500);
  EXPECT_EQ(e[2].data, "");  // "data" with no colon: an empty data line
  EXPECT_EQ(e[2].id, "7");   // the id persists
  EXPECT_FALSE(e[2].retry.has_value());
  EXPECT_EQ(e[3].data, " two spaces");  // only one space is stripped
  EXPECT_EQ(e[4].data, "[DONE]");
}

}  // namespace

TEST(SseParser, WholeStream) {
  SseParser* p = nullptr;
  check(parse_pieces({kStream}, &p));
  EXPECT_EQ(p->comments(), 2u);
  EXPECT_FALSE(p->pending());
}

TEST(SseParser, EverySingleSplit) {
  for (size_t i = 0; i <= kStream.size(); ++i) {
    SCOPED_TRACE("split at " + std::to_string(i));
    check(parse_pieces({kStream.substr(0, i), kStream.substr(i)}));
  }
}

TEST(SseParser, EveryPairOfSplits) {
  for (size_t i = 0; i <= kStream.size(); i += 1)
    for (size_t j = i; j <= kStream.size(); j += 3) {
      SCOPED_TRACE("splits at " + std::to_string(i) + "," + std::to_string(j));
      check(parse_pieces({kStream.substr(0, i), kStream.substr(i, j - i), kStream.substr(j)}));
    }
}

TEST(SseParser, ByteByByte) {
  std::vector<std::string> bytes;
  for (char c : kStream) bytes.emplace_back(1, c);
  check(parse_pieces(bytes));
}

TEST(SseParser, UnterminatedEventIsPendingAndDropped) {
  SseParser* p = nullptr;
  std::vector<SseEvent> evs;
  SseParser parser([&](const SseEvent& e) { evs.push_back(e); });
  parser.feed("data: a\n\ndata: partial");
  EXPECT_EQ(evs.size(), 1u);
  EXPECT_TRUE(parser.pending());
  parser.finish();
  EXPECT_EQ(evs.size(), 1u);
  (void)p;
}

TEST(SseParser, CrLfAcrossPiecesIsOneLineEnd) {
  std::vector<SseEvent> evs;
  SseParser parser([&](const SseEvent& e) { evs.push_back(e); });
  parser.feed("data: x\r");
  parser.feed("\ndata: y\r");
  parser.feed("\n\r");
  parser.feed("\n");
  ASSERT_EQ(evs.size(), 1u);
  EXPECT_EQ(evs[0].data, "x\ny");
}

TEST(SseParser, IdWithNulIgnoredAndBadRetryIgnored) {
  std::vector<SseEvent> evs;
  SseParser parser([&](const SseEvent& e) { evs.push_back(e); });
  const char raw[] = "id: 1\nretry: 12a\ndata: a\n\nid: x\0y\ndata: b\n\n";
  parser.feed(std::string(raw, sizeof raw - 1));
  ASSERT_EQ(evs.size(), 2u);
  EXPECT_FALSE(evs[0].retry.has_value());
  EXPECT_EQ(evs[1].id, "1");
}
