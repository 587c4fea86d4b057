// DSML parser and JSON-schema validation: grammar features, every chunking, variants, malformed and
// truncated markup, schema violations, round trips with the encoder.
#include <gtest/gtest.h>

#include <filesystem>

#include "text/chat_encoding.h"
#include "text/dsml_parser.h"
#include "text/json_schema.h"
#include "text/utf8.h"
#include "text_test_util.h"

using namespace v4::text;
using namespace v4::text::testing;
using J = nlohmann::ordered_json;

namespace {

const std::string D = "｜DSML｜", EOS = "<｜end▁of▁sentence｜>";

std::string param(const std::string& k, const std::string& v, const char* str = "true") {
  return "<" + D + "parameter name=\"" + k + "\" string=\"" + str + "\">" + v + "</" + D + "parameter>";
}
std::string invoke(const std::string& name, const std::vector<std::string>& params) {
  std::string s = "<" + D + "invoke name=\"" + name + "\">\n";
  for (const auto& p : params) s += p + "\n";
  if (params.empty()) s += "\n";
  return s + "</" + D + "invoke>";
}
std::string block(const std::vector<std::string>& invokes) {
  std::string s = "\n\n<" + D + "tool_calls>\n";
  for (size_t i = 0; i < invokes.size(); ++i) s += (i ? "\n" : "") + invokes[i];
  return s + "\n</" + D + "tool_calls>";
}

J weather_tools() {
  return J::parse(R"([{"type":"function","function":{"name":"get_weather","parameters":{"type":"object",
    "properties":{"location":{"type":"string"},"unit":{"type":"string","enum":["celsius","fahrenheit"]},
    "days":{"type":"integer","minimum":1,"maximum":10},"opts":{"type":"object","additionalProperties":false,
    "properties":{"hourly":{"type":"boolean"}}}},"required":["location"]}}},
    {"type":"function","function":{"name":"search","parameters":{"type":"object","properties":{"query":{"type":"string"},
    "ids":{"type":"array","items":{"anyOf":[{"type":"integer"},{"type":"string"}]}}},"required":["query"]}}}])");
}

// Feeds `pieces` and rebuilds the message from the deltas alone, checking delta invariants.
ParsedMessage via_deltas(const std::vector<std::string>& pieces, const ParserOptions& opt) {
  DsmlParser p(opt);
  ParsedMessage m;
  std::vector<bool> ended;
  auto take = [&](const std::vector<Delta>& ds) {
    for (const auto& d : ds) {
      EXPECT_TRUE(utf8_valid(d.text)) << "delta with broken UTF-8";
      switch (d.kind) {
        case Delta::Kind::Reasoning: m.reasoning += d.text; break;
        case Delta::Kind::Content: m.content += d.text; break;
        case Delta::Kind::ToolCallBegin:
          EXPECT_EQ(d.index, static_cast<int>(m.tool_calls.size()));
          m.tool_calls.push_back(ToolCall{d.id, d.name, "", std::nullopt});
          ended.push_back(false);
          break;
        case Delta::Kind::ToolCallArguments:
          EXPECT_TRUE(d.index >= 0 && d.index < static_cast<int>(m.tool_calls.size()) && !ended[d.index]);
          m.tool_calls[d.index].arguments += d.text;
          break;
        case Delta::Kind::ToolCallEnd:
          EXPECT_FALSE(ended[d.index]);
          ended[d.index] = true;
          m.tool_calls[d.index].error = d.error;
          break;
      }
    }
  };
  for (const auto& piece : pieces) take(p.feed(piece));
  take(p.finish());
  for (bool e : ended) EXPECT_TRUE(e) << "tool call without ToolCallEnd";
  // The deltas tell the same story as the accumulated message.
  EXPECT_EQ(m.reasoning, p.message().reasoning);
  EXPECT_EQ(m.content, p.message().content);
  EXPECT_EQ(m.tool_calls.size(), p.message().tool_calls.size());
  return m;
}

void expect_same(const ParsedMessage& a, const ParsedMessage& b, const std::string& ctx) {
  EXPECT_EQ(a.reasoning, b.reasoning) << ctx;
  EXPECT_EQ(a.content, b.content) << ctx;
  ASSERT_EQ(a.tool_calls.size(), b.tool_calls.size()) << ctx;
  for (size_t i = 0; i < a.tool_calls.size(); ++i) {
    EXPECT_EQ(a.tool_calls[i].name, b.tool_calls[i].name) << ctx;
    EXPECT_EQ(a.tool_calls[i].arguments, b.tool_calls[i].arguments) << ctx;
    EXPECT_EQ(a.tool_calls[i].error.has_value(), b.tool_calls[i].error.has_value()) << ctx;
    if (a.tool_calls[i].error && b.tool_calls[i].error) {
      EXPECT_EQ(a.tool_calls[i].error->code, b.tool_calls[i].error->code) << ctx;
    }
  }
}

void expect_no_markup(const ParsedMessage& m) {
  for (const std::string* s : {&m.content, &m.reasoning})
    for (const char* bad : {"DSML", "<think>", "</think>", "<｜end▁of▁sentence｜>", "<｜begin▁of▁sentence｜>"})
      EXPECT_EQ(s->find(bad), std::string::npos) << "markup leaked: " << *s;
}

// Whole text, every split into two pieces, and one byte at a time all give the same result.
ParsedMessage check_all_chunkings(const std::string& text, const ParserOptions& opt) {
  ParsedMessage whole = via_deltas({text}, opt);
  expect_no_markup(whole);
  for (size_t i = 1; i < text.size(); ++i) expect_same(via_deltas({text.substr(0, i), text.substr(i)}, opt), whole, "split at " + std::to_string(i));
  std::vector<std::string> bytes;
  for (char c : text) bytes.emplace_back(1, c);
  expect_same(via_deltas(bytes, opt), whole, "byte by byte");
  return whole;
}

ParserOptions thinking_with_tools() {
  ParserOptions o;
  o.thinking = true;
  o.tools = weather_tools();
  return o;
}

}  // namespace

TEST(DsmlParser, OfficialFixtureTurns) {
  std::string shared = v4::shared_dir(V4_SHARED_DEFAULT);
  if (shared.empty() || !std::filesystem::exists(shared + "/encoding/test_output_1.txt"))
    GTEST_SKIP() << "official fixtures not found in ../shared/encoding";
  std::string prompt = read_file(shared + "/encoding/test_output_1.txt");
  std::string marker = "<｜Assistant｜><think>";
  size_t s = prompt.find(marker) + marker.size();
  size_t e = prompt.find("<｜User｜>", s);
  ParserOptions o = thinking_with_tools();
  ParsedMessage m = check_all_chunkings(prompt.substr(s, e - s), o);
  EXPECT_EQ(m.reasoning, "The user wants to know the weather in Beijing. I should use the get_weather tool.");
  EXPECT_EQ(m.content, "");
  ASSERT_EQ(m.tool_calls.size(), 1u);
  EXPECT_EQ(m.tool_calls[0].name, "get_weather");
  EXPECT_EQ(m.tool_calls[0].arguments, R"({"location": "Beijing", "unit": "celsius"})");
  EXPECT_FALSE(m.tool_calls[0].error);
  ParsedMessage last = DsmlParser::parse(prompt.substr(prompt.rfind(marker) + marker.size()), o);
  EXPECT_EQ(last.reasoning, "Got the weather data. Let me format a nice response.");
  EXPECT_NE(last.content.find("22°C"), std::string::npos);
  EXPECT_TRUE(last.tool_calls.empty());
  EXPECT_TRUE(last.ended_with_eos);
}

TEST(DsmlParser, EveryGrammarFeatureUnderEveryChunking) {
  std::string text = "Let me think… 日本語 ✓</think>Checking two things.\n" +
                     block({invoke("get_weather", {param("location", "Zürich \"old\" town\nline2 \\ <b>"), param("days", "3", "false"),
                                                   param("opts", "{\"hourly\": true}", "false")}),
                            invoke("search", {param("query", "a</b> & 🙂"), param("ids", "[1, \"x\", 2]", "false")}),
                            invoke("search", {param("query", "")})}) +
                     EOS;
  ParsedMessage m = check_all_chunkings(text, thinking_with_tools());
  EXPECT_EQ(m.reasoning, "Let me think… 日本語 ✓");
  EXPECT_EQ(m.content, "Checking two things.\n");
  ASSERT_EQ(m.tool_calls.size(), 3u);
  EXPECT_EQ(m.tool_calls[0].arguments,
            R"({"location": "Zürich \"old\" town\nline2 \\ <b>", "days": 3, "opts": {"hourly": true}})");
  EXPECT_EQ(m.tool_calls[1].arguments, R"({"query": "a</b> & 🙂", "ids": [1, "x", 2]})");
  EXPECT_EQ(m.tool_calls[2].arguments, R"({"query": ""})");
  for (const auto& tc : m.tool_calls) EXPECT_FALSE(tc.error) << tc.error->message;
  // Ids are distinct and OpenAI-shaped.
  EXPECT_NE(m.tool_calls[0].id, m.tool_calls[1].id);
  EXPECT_EQ(m.tool_calls[0].id.rfind("call_", 0), 0u);
  // Empty invoke, chat mode, no reasoning.
  ParserOptions chat;
  ParsedMessage e = check_all_chunkings(block({invoke("g", {})}) + EOS, chat);
  EXPECT_EQ(e.content, "");
  ASSERT_EQ(e.tool_calls.size(), 1u);
  EXPECT_EQ(e.tool_calls[0].arguments, "{}");
  // Plain content only; trailing whitespace before EOS is kept, as in the official parser.
  ParsedMessage c = check_all_chunkings("Hello <b>world</b>  \n" + EOS, chat);
  EXPECT_EQ(c.content, "Hello <b>world</b>  \n");
  EXPECT_TRUE(c.tool_calls.empty());
}

TEST(DsmlParser, MatchesTheEncoderRoundTrip) {
  // Render an assistant turn with the official encoding, then parse it back.
  J msgs = J::parse(R"([{"role":"user","content":"q"},{"role":"assistant","content":"Sure.","reasoning_content":"R",
     "tool_calls":[{"id":"a","type":"function","function":{"name":"search","arguments":"{\"query\": \"x\\ny\", \"ids\": [1, 2.5, {\"k\": null}], \"flag\": false}"}}]}])");
  EncodeOptions eo;
  eo.drop_thinking = false;
  std::string prompt = encode_messages(msgs, eo);
  std::string start = "<｜Assistant｜><think>";
  std::string turn = prompt.substr(prompt.find(start) + start.size());
  ParsedMessage m = check_all_chunkings(turn, ParserOptions{true, nullptr, "call_"});
  EXPECT_EQ(m.reasoning, "R");
  EXPECT_EQ(m.content, "Sure.");
  ASSERT_EQ(m.tool_calls.size(), 1u);
  EXPECT_EQ(m.tool_calls[0].arguments, R"({"query": "x\ny", "ids": [1, 2.5, {"k": null}], "flag": false})");
}

TEST(DsmlParser, Variants) {
  ParserOptions o = thinking_with_tools();
  // DSML start inside the reasoning ends it.
  ParsedMessage a = check_all_chunkings("thinking..." + block({invoke("search", {param("query", "q")})}) + EOS, o);
  EXPECT_EQ(a.reasoning, "thinking...\n\n");
  ASSERT_EQ(a.tool_calls.size(), 1u);
  EXPECT_FALSE(a.tool_calls[0].error);
  // function_calls block name and ASCII |DSML| marker.
  std::string fc = "</think>\n\n<|DSML|function_calls>\n<|DSML|invoke name=\"search\">\n<|DSML|parameter name=\"query\" string=\"true\">x</|DSML|parameter>\n</|DSML|invoke>\n</|DSML|function_calls>" + EOS;
  ParsedMessage b = check_all_chunkings(fc, o);
  ASSERT_EQ(b.tool_calls.size(), 1u);
  EXPECT_EQ(b.tool_calls[0].arguments, R"({"query": "x"})");
  // A bare invoke without the block, no EOS, missing string attribute inferred from the schema.
  std::string bare = "</think>ok\n<" + D + "invoke name=\"get_weather\">\n<" + D + "parameter name=\"location\">Paris</" + D +
                     "parameter>\n<" + D + "parameter name=\"days\">2</" + D + "parameter>\n</" + D + "invoke>";
  ParsedMessage c = check_all_chunkings(bare, o);
  EXPECT_EQ(c.content, "ok");
  ASSERT_EQ(c.tool_calls.size(), 1u);
  EXPECT_EQ(c.tool_calls[0].arguments, R"({"location": "Paris", "days": 2})");
  EXPECT_FALSE(c.tool_calls[0].error);
  // JSON body instead of parameters.
  std::string body = "</think>" + block({"<" + D + "invoke name=\"search\">\n{\"query\": \"j\"}\n</" + D + "invoke>"}) + EOS;
  ParsedMessage d = check_all_chunkings(body, o);
  ASSERT_EQ(d.tool_calls.size(), 1u);
  EXPECT_EQ(d.tool_calls[0].arguments, R"({"query": "j"})");
  EXPECT_FALSE(d.tool_calls[0].error);
  // Model emits <think> itself in a non-thinking prompt; stray </think> and DSML markers never leak.
  ParserOptions chat;
  ParsedMessage e = check_all_chunkings("<think>r</think>a </think>b ｜DSML｜ c</" + D + "invoke> d" + EOS, chat);
  EXPECT_EQ(e.reasoning, "r");
  EXPECT_EQ(e.content, "a b  c d");
  // Text after the block is content; a second block is parsed too.
  ParsedMessage f = check_all_chunkings("x" + block({invoke("g", {})}) + "\nmore" + block({invoke("h", {})}), chat);
  EXPECT_EQ(f.content, "xmore");
  EXPECT_EQ(f.tool_calls.size(), 2u);
}

TEST(DsmlParser, MalformedAndTruncated) {
  ParserOptions o = thinking_with_tools();
  // Truncated inside a parameter value: what arrived is kept, the call is flagged.
  std::string full = "r</think>" + block({invoke("get_weather", {param("location", "Berlin")})}) + EOS;
  for (size_t cut = full.find("<" + D + "invoke"); cut < full.find("</" + D + "tool_calls>"); cut += 3) {
    ParsedMessage m = via_deltas({full.substr(0, cut)}, o);
    expect_no_markup(m);
    EXPECT_EQ(m.content, "");
    for (const auto& tc : m.tool_calls) {
      ASSERT_TRUE(tc.error) << "cut " << cut;
      EXPECT_EQ(tc.error->code, "truncated");
      EXPECT_TRUE(J::accept(tc.arguments)) << tc.arguments;
    }
  }
  // Truncated right after a complete invoke: the call is fine.
  ParsedMessage ok = via_deltas({full.substr(0, full.find("</" + D + "tool_calls>"))}, o);
  ASSERT_EQ(ok.tool_calls.size(), 1u);
  EXPECT_FALSE(ok.tool_calls[0].error);
  // EOS inside an invoke.
  ParsedMessage eos = check_all_chunkings("</think>" + std::string("\n\n<") + D + "tool_calls>\n<" + D + "invoke name=\"search\">\n" +
                                              param("query", "x") + EOS, o);
  ASSERT_EQ(eos.tool_calls.size(), 1u);
  EXPECT_EQ(eos.tool_calls[0].error->code, "truncated");
  // Duplicate parameter.
  ParsedMessage dup = check_all_chunkings("</think>" + block({invoke("search", {param("query", "a"), param("query", "b")})}) + EOS, o);
  EXPECT_EQ(dup.tool_calls[0].error->code, "duplicate_parameter");
  // string="false" value that is not JSON: kept as a string, then checked against the schema.
  ParsedMessage bad = check_all_chunkings("</think>" + block({invoke("get_weather", {param("location", "x"), param("days", "three", "false")})}) + EOS, o);
  EXPECT_EQ(bad.tool_calls[0].arguments, R"({"location": "x", "days": "three"})");
  ASSERT_TRUE(bad.tool_calls[0].error);
  EXPECT_EQ(bad.tool_calls[0].error->code, "schema_violation");
  EXPECT_FALSE(DsmlParser::parse("</think>" + block({invoke("get_weather", {param("days", "three", "false")})}), o).warnings.empty());
  // Unknown tool, missing name, stray text inside invoke.
  EXPECT_EQ(DsmlParser::parse("</think>" + block({invoke("nope", {})}) + EOS, o).tool_calls[0].error->code, "unknown_tool");
  EXPECT_EQ(DsmlParser::parse("</think>" + block({"<" + D + "invoke>\n</" + D + "invoke>"}) + EOS, o).tool_calls[0].error->code,
            "malformed_markup");
  EXPECT_EQ(DsmlParser::parse("</think>" + block({"<" + D + "invoke name=\"search\">junk</" + D + "invoke>"}) + EOS, o)
                .tool_calls[0].error->code,
            "malformed_markup");
  // Missing </parameter> and </invoke> are tolerated.
  std::string sloppy = "</think>\n\n<" + D + "tool_calls>\n<" + D + "invoke name=\"search\">\n<" + D +
                       "parameter name=\"query\" string=\"true\">q\n<" + D + "invoke name=\"search\">\n" + param("query", "r") +
                       "\n</" + D + "tool_calls>" + EOS;
  ParsedMessage sl = check_all_chunkings(sloppy, o);
  ASSERT_EQ(sl.tool_calls.size(), 2u);
  EXPECT_EQ(sl.tool_calls[0].arguments, "{\"query\": \"q\\n\"}");
  EXPECT_EQ(sl.tool_calls[1].arguments, R"({"query": "r"})");
  // Garbage never crashes and never leaks markup.
  for (const char* g : {"<｜DSML｜", "<｜DSML｜invoke name=\"", "</｜DSML｜", "<<<<｜DSML｜>>>>", "<｜DSML｜parameter name=\"a\">1",
                        "\n\n<｜DSML｜tool_calls>\n<｜DSML｜tool_calls>\n</｜DSML｜invoke>"}) {
    ParsedMessage m = via_deltas({g}, ParserOptions{});
    expect_no_markup(m);
  }
}

TEST(DsmlParser, SchemaViolationsAreReported) {
  ParserOptions o = thinking_with_tools();
  auto err = [&](const std::vector<std::string>& params, const char* tool = "get_weather") {
    ParsedMessage m = DsmlParser::parse("</think>" + block({invoke(tool, params)}) + EOS, o);
    EXPECT_EQ(m.tool_calls.size(), 1u);
    return m.tool_calls[0].error;
  };
  EXPECT_FALSE(err({param("location", "x"), param("unit", "celsius"), param("days", "10", "false")}));
  auto e1 = err({param("unit", "celsius")});
  ASSERT_TRUE(e1);
  EXPECT_EQ(e1->code, "schema_violation");
  EXPECT_NE(e1->message.find("missing required property \"location\""), std::string::npos);
  auto e2 = err({param("location", "x"), param("unit", "kelvin")});
  ASSERT_TRUE(e2);
  EXPECT_EQ(e2->details[0].path, "/unit");
  auto e3 = err({param("location", "x"), param("days", "11", "false")});
  ASSERT_TRUE(e3);
  EXPECT_NE(e3->details[0].message.find("maximum"), std::string::npos);
  auto e4 = err({param("location", "x"), param("opts", "{\"daily\": true}", "false")});
  ASSERT_TRUE(e4);
  EXPECT_EQ(e4->details[0].path, "/opts/daily");
  auto e5 = err({param("query", "q"), param("ids", "[1, true]", "false")}, "search");
  ASSERT_TRUE(e5);
  EXPECT_EQ(e5->details[0].path, "/ids/1");
  J j = e5->to_json();
  EXPECT_EQ(j["type"], "invalid_tool_call");
  EXPECT_EQ(j["code"], "schema_violation");
  EXPECT_EQ(j["errors"][0]["path"], "/ids/1");
}

TEST(JsonSchema, CommonSubset) {
  auto v = [](const char* inst, const char* schema) { return validate_json_schema(J::parse(inst), J::parse(schema)).size(); };
  EXPECT_EQ(v("1", R"({"type":"integer"})"), 0u);
  EXPECT_EQ(v("1.0", R"({"type":"integer"})"), 0u);
  EXPECT_EQ(v("1.5", R"({"type":"integer"})"), 1u);
  EXPECT_EQ(v("null", R"({"type":["string","null"]})"), 0u);
  EXPECT_EQ(v("\"abc\"", R"({"type":"string","minLength":4})"), 1u);
  EXPECT_EQ(v("\"日本\"", R"({"type":"string","maxLength":2})"), 0u);
  EXPECT_EQ(v("\"ab1\"", R"({"type":"string","pattern":"^[a-z]+$"})"), 1u);
  EXPECT_EQ(v("[1,2,2]", R"({"type":"array","uniqueItems":true,"maxItems":2})"), 2u);
  EXPECT_EQ(v("5", R"({"exclusiveMinimum":5})"), 1u);
  EXPECT_EQ(v("5", R"({"minimum":5,"exclusiveMinimum":true})"), 1u);
  EXPECT_EQ(v("6", R"({"multipleOf":3})"), 0u);
  EXPECT_EQ(v("\"x\"", R"({"oneOf":[{"type":"string"},{"const":"x"}]})"), 1u);
  EXPECT_EQ(v("\"x\"", R"({"not":{"type":"string"}})"), 1u);
  EXPECT_EQ(v("{\"a\":1}", R"({"$defs":{"A":{"type":"string"}},"properties":{"a":{"$ref":"#/$defs/A"}}})"), 1u);
  EXPECT_EQ(v("{\"x1\":1,\"y\":2}", R"({"patternProperties":{"^x":{"type":"integer"}},"additionalProperties":false})"), 1u);
  EXPECT_EQ(v("[1,\"a\"]", R"({"prefixItems":[{"type":"integer"},{"type":"string"}]})"), 0u);
  EXPECT_EQ(v("{}", R"({"minProperties":1})"), 1u);
  EXPECT_EQ(v("\"x\"", "false"), 1u);
  EXPECT_EQ(v("\"x\"", R"({"type":"string","description":"ignored","default":"y"})"), 0u);
}
