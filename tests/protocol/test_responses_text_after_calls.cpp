// Responses: text an upstream writes after its tool calls is its own message item after them,
// in the stream and in the response object alike (it used to be noted and dropped), and the
// stream reads back as the same conversation.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "protocol/openai_responses.h"
#include "protocol/protocol.h"

namespace v4::protocol {
namespace {

ojson J(const char* s) { return ojson::parse(s); }

std::vector<StreamEvent> events() {
  std::vector<StreamEvent> ev;
  ev.push_back(StreamEvent::start({50, 0, 0, 0, 0}));
  ev.push_back(StreamEvent::content("Let me look."));
  ev.push_back(StreamEvent::tool_start(0, "call_a", "get_weather"));
  ev.push_back(StreamEvent::tool_delta(0, "{\"city\": \"Paris\"}"));
  ev.push_back(StreamEvent::tool_end(0));
  ev.push_back(StreamEvent::content("Asked "));
  ev.push_back(StreamEvent::content("once."));
  ev.push_back(StreamEvent::tool_start(1, "call_b", "get_weather"));
  ev.push_back(StreamEvent::tool_delta(1, "{\"city\": \"Rome\"}"));
  ev.push_back(StreamEvent::tool_end(1));
  ev.push_back(StreamEvent::tool_start(2, "call_c", "get_weather"));
  ev.push_back(StreamEvent::tool_delta(2, "{\"city\""));
  ev.push_back(StreamEvent::tool_end(2, J(R"({"type": "invalid_tool_call", "code": "truncated", "message": "cut"})")));
  ev.push_back(StreamEvent::content("Done."));
  ev.push_back(StreamEvent::finished(FinishReason::ToolCalls, {50, 0, 9, 0, 0}));
  return ev;
}

// (type, text or call id) of each output item.
std::vector<std::string> shape(const ojson& output) {
  std::vector<std::string> s;
  for (auto& it : output) {
    if (it["type"] == "message") s.push_back("message:" + it["content"][0]["text"].get<std::string>());
    else s.push_back(it["type"].get<std::string>() + ":" + it.value("call_id", ""));
  }
  return s;
}

const std::vector<std::string> kWant = {"message:Let me look.", "function_call:call_a", "message:Asked once.",
                                        "function_call:call_b", "message:Done."};

TEST(ResponsesTextAfterCalls, StreamEmitsEachStretchAsItsOwnItem) {
  StreamMeta m;
  m.id = "resp_1";
  m.model = "m";
  m.request.model = "m";
  responses::StreamWriter w(m);
  std::vector<ojson> frames;
  for (auto& e : events())
    for (auto& f : w.write(e)) frames.push_back(ojson::parse(f.data));
  ASSERT_TRUE(w.complete());
  // Items as the stream announced them (output_item.done, in order) = the terminal object's output.
  ojson done = ojson::array();
  std::map<std::string, std::string> deltas;  // message item id -> text from its deltas
  std::set<std::string> ids;
  for (auto& f : frames) {
    if (f["type"] == "response.output_item.done") {
      done.push_back(f["item"]);
      EXPECT_TRUE(ids.insert(f["item"]["id"].get<std::string>()).second) << "item ids are unique";
    }
    if (f["type"] == "response.output_text.delta") deltas[f["item_id"]] += f["delta"].get<std::string>();
  }
  EXPECT_EQ(shape(done), kWant);
  const ojson& fin = frames.back();
  ASSERT_EQ(fin["type"], "response.completed");
  EXPECT_EQ(shape(fin["response"]["output"]), kWant);
  EXPECT_EQ(fin["response"]["output"], done);
  for (auto& it : done)
    if (it["type"] == "message") {
      EXPECT_EQ(deltas[it["id"]], it["content"][0]["text"]);
    }
  // output_index counts every item in order.
  int expect = 0;
  for (auto& f : frames)
    if (f["type"] == "response.output_item.added") {
      EXPECT_EQ(f["output_index"], expect++);
    }
  // Only the failed call is noted; no text was left out.
  for (auto& n : fin["response"].value("warnings", ojson::array())) EXPECT_EQ(n.get<std::string>().find("text after"), std::string::npos);
}

TEST(ResponsesTextAfterCalls, ResponseObjectHasTheSameItems) {
  // A non-stream answer: content whole, with the breaks where calls came in between.
  Response r;
  r.id = "resp_1";
  r.content = "Let me look.Asked once.Done.";
  r.text_breaks = {{12, 1}, {23, 2}};
  for (const char* id : {"call_a", "call_b"}) {
    ToolCall c;
    c.id = id;
    c.name = "get_weather";
    c.arguments = "{}";
    r.tool_calls.push_back(c);
  }
  r.finish = FinishReason::ToolCalls;
  Request req;
  req.model = "m";
  ojson o = responses::emit_response(r, req);
  EXPECT_EQ(shape(o["output"]), kWant);
  EXPECT_EQ(o["output_text"], "Let me look.Asked once.Done.");
  EXPECT_EQ(o["output"][2]["id"], o["output"][0]["id"].get<std::string>() + "_1");
  // Read back (the router parses upstream Responses): the same text and calls.
  Response back = responses::parse_response(o);
  EXPECT_EQ(back.content, r.content);
  EXPECT_EQ(back.tool_calls.size(), 2u);
  // No breaks: one message before the calls, as before.
  r.text_breaks.clear();
  o = responses::emit_response(r, req);
  ASSERT_EQ(o["output"].size(), 3u);
  EXPECT_EQ(o["output"][0]["content"][0]["text"], r.content);
  // Calls first, then text.
  r.content = "after";
  r.text_breaks = {{0, 2}};
  o = responses::emit_response(r, req);
  EXPECT_EQ(shape(o["output"]), (std::vector<std::string>{"function_call:call_a", "function_call:call_b", "message:after"}));
}

}  // namespace
}  // namespace v4::protocol
