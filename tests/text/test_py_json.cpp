// Numbers re-serialised exactly as Python's json.dumps(json.loads(text)) writes them: integers
// of any size digit for digit, floats by Python's repr, overflowing literals as Python reads them.
// Every expected string below was produced by CPython's json module.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "text/chat_encoding.h"
#include "text/json_schema.h"
#include "text/py_json.h"

using namespace v4::text;

namespace {

std::string redump(const std::string& text) { return py_json_dumps(parse_json_exact(text, "test")); }

TEST(PyJson, IntegersOfAnySizeStayExact) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"0", "0"},
      {"-0", "0"},  // int("-0") == 0
      {"9007199254740993", "9007199254740993"},  // beyond a double's 53 bits
      {"9223372036854775807", "9223372036854775807"},
      {"-9223372036854775808", "-9223372036854775808"},
      {"-9223372036854775809", "-9223372036854775809"},   // below int64
      {"18446744073709551615", "18446744073709551615"},   // uint64 max
      {"18446744073709551616", "18446744073709551616"},   // 2^64
      {"123456789012345678901234567890", "123456789012345678901234567890"},
      {"-123456789012345678901234567890", "-123456789012345678901234567890"},
      {"[1, [2, 99999999999999999999], {\"k\": -99999999999999999999}]",
       "[1, [2, 99999999999999999999], {\"k\": -99999999999999999999}]"},
      // A repeated key keeps its first position and takes the last value (a Python dict).
      {"{\"a\": 1, \"b\": 2, \"a\": 300000000000000000000}", "{\"a\": 300000000000000000000, \"b\": 2}"},
  };
  for (auto& [in, want] : cases) EXPECT_EQ(redump(in), want) << in;
  // Longer than a double can hold (nlohmann alone refuses these as "number overflow").
  const std::string big400(400, '7');
  EXPECT_EQ(redump(big400), big400);
  EXPECT_EQ(redump("{\"n\": -" + big400 + ", \"m\": [" + big400 + ", 1]}"), "{\"n\": -" + big400 + ", \"m\": [" + big400 + ", 1]}");
}

TEST(PyJson, FloatsFollowPythonRepr) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"1.5E3", "1500.0"},
      {"1e5", "100000.0"},
      {"1E+2", "100.0"},
      {"1e16", "1e+16"},
      {"1e21", "1e+21"},
      {"1e22", "1e+22"},
      {"1e-7", "1e-07"},
      {"2.5e-5", "2.5e-05"},
      {"123e-20", "1.23e-18"},
      {"0.30000000000000004", "0.30000000000000004"},
      {"123456789.123456789", "123456789.12345679"},
      {"9007199254740993.0", "9007199254740992.0"},
      {"5e-324", "5e-324"},
      {"1.7976931348623157e308", "1.7976931348623157e+308"},
      {"1e-400", "0.0"},
      {"-0.0", "-0.0"},
      {"1e400", "Infinity"},   // float('1e400') == inf; json.dumps allows it
      {"-1e400", "-Infinity"},
      {"[1e400, 2, -1e999, 3.0]", "[Infinity, 2, -Infinity, 3.0]"},
  };
  for (auto& [in, want] : cases) EXPECT_EQ(redump(in), want) << in;
}

TEST(PyJson, BigIntegerValues) {
  ojson v = parse_json_exact("[18446744073709551616, 5, \"18446744073709551616\"]", "t");
  EXPECT_TRUE(is_big_integer(v[0]));
  EXPECT_FALSE(is_big_integer(v[1]));
  EXPECT_FALSE(is_big_integer(v[2]));  // a string stays a string
  EXPECT_EQ(big_integer_text(v[0]), "18446744073709551616");
  EXPECT_EQ(py_str(v), "[18446744073709551616, 5, '18446744073709551616']");
  EXPECT_TRUE(py_truthy(v[0]));
  EXPECT_EQ(json_dump_exact(v), "[18446744073709551616,5,\"18446744073709551616\"]");
  EXPECT_EQ(json_dump_exact(parse_json_exact("{\"a\": {\"b\": [-1e400, -98765432109876543210, \"\\u00e9\"]}}", "t")),
            "{\"a\":{\"b\":[null,-98765432109876543210,\"é\"]}}");  // JSON has no Infinity: null, as nlohmann
  EXPECT_EQ(py_json_dumps(make_big_integer("-340282366920938463463374607431768211456")),
            "-340282366920938463463374607431768211456");
  for (const char* bad : {"", "-", "01", "1.0", "1e5", "--1", "12a"}) EXPECT_THROW(make_big_integer(bad), v4::InputError) << bad;
  // parse_ordered_json (the render request) keeps them too.
  EXPECT_EQ(py_json_dumps(parse_ordered_json("{\"x\": 36893488147419103232}", "t")), "{\"x\": 36893488147419103232}");
}

// Request values are echoed (tool schemas in a Responses object, metadata) and forwarded by the
// router, through json_dump_exact: the digits must survive, and a value without big integers
// must be exactly nlohmann's dump.
TEST(PyJson, BigIntegersSurviveReEmissionAndReadAsNumbers) {
  const char* text = R"({"tools":[{"parameters":{"properties":{"n":{"maximum":123456789012345678901234567890,"minimum":-5}}}}],"x":[1,2.5,"s"]})";
  ojson v = parse_json_exact(text, "t");
  EXPECT_TRUE(contains_big_integer(v));
  EXPECT_FALSE(contains_big_integer(v["x"]));
  EXPECT_EQ(json_dump_exact(v), text);
  ojson plain = parse_json_exact(R"({"a":[1,{"b":"\u00e9\n"}],"c":null})", "t");
  EXPECT_FALSE(contains_big_integer(plain));
  EXPECT_EQ(json_dump_exact(plain), plain.dump());

  const ojson& big = v["tools"][0]["parameters"]["properties"]["n"]["maximum"];
  ASSERT_TRUE(number_value(big).has_value());
  EXPECT_NEAR(*number_value(big) / 1.2345678901234568e29, 1.0, 1e-12);
  EXPECT_EQ(*number_value(v["x"][1]), 2.5);
  EXPECT_FALSE(number_value(v["x"][2]).has_value());
  EXPECT_TRUE(std::isinf(*number_value(make_big_integer("1" + std::string(400, '0')))));
}

// Python's jsonschema treats a big integer as an integer and compares it with bounds exactly
// enough; ours reads it as a double.
TEST(PyJson, SchemaValidationTakesBigIntegers) {
  auto errors = [](const char* inst, const char* schema) {
    return validate_json_schema(parse_json_exact(inst, "i"), parse_json_exact(schema, "s"));
  };
  EXPECT_TRUE(errors("123456789012345678901234567890", R"({"type": "integer"})").empty());
  EXPECT_TRUE(errors("123456789012345678901234567890", R"({"type": "number", "minimum": 0})").empty());
  EXPECT_TRUE(errors("5", R"({"type": "integer", "maximum": 123456789012345678901234567890})").empty());
  auto e = errors("123456789012345678901234567890", R"({"type": "integer", "maximum": 100})");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_NE(e[0].message.find("above the maximum 100"), std::string::npos) << e[0].message;
  e = errors("-5", R"({"minimum": -12345678901234567890123})");
  EXPECT_TRUE(e.empty());
  e = errors("\"s\"", R"({"type": "integer", "minimum": 123456789012345678901234567890})");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_NE(e[0].message.find("expected integer"), std::string::npos) << e[0].message;
}

TEST(PyJson, InvalidJsonStillRejected) {
  for (const char* bad : {"", "{", "[1,]", "01", "1e", "{\"a\" 1}", "nan", "Infinity", "[1e400,", "\"\\u0000v4num:0\" 1e400"})
    EXPECT_THROW(parse_json_exact(bad, "t"), v4::InputError) << bad;
  // A string that looks like the internal stand-in is an ordinary string.
  EXPECT_EQ(redump("[\"\\u0000v4num:0\", 1]"), "[\"\\u0000v4num:0\", 1]");
  // ... and with it present an overflowing literal is refused rather than guessed.
  EXPECT_THROW(parse_json_exact("[\"\\u0000v4num:0\", 1e400]", "t"), v4::InputError);
  // Stand-in look-alikes whose tail is no index (found by fuzz_render: std::stoul threw and
  // terminated the process, which for the server's request bodies meant one request killing it).
  for (const char* s : {"[\"\\u0000v4num:nt\"]", "[\"\\u0000v4num:\"]", "[\"\\u0000v4num:99999999999999999999999\"]",
                        "{\"a\": \"\\u0000v4num:-1\", \"b\": 2}"})
    EXPECT_NO_THROW(parse_json_exact(s, "t")) << s;
  EXPECT_EQ(redump("[\"\\u0000v4num:nt\"]"), "[\"\\u0000v4num:nt\"]");
  // The fuzzer's own input: rejected as invalid JSON, not a crash.
  EXPECT_THROW(parse_json_exact("{\"messages\":[{\"ro|e\":\"\\u0000v4num:nt\":\"x\"}", "t"), v4::InputError);
}

// Tool-call arguments are re-serialised into the DSML prompt as json.dumps does.
TEST(PyJson, ToolCallArgumentsRenderExactly) {
  ojson msgs = parse_json_exact(R"([
    {"role":"user","content":"go"},
    {"role":"assistant","content":"","tool_calls":[{"id":"c1","type":"function","function":{"name":"f",
      "arguments":"{\"id\": 123456789012345678901234567890, \"neg\": -18446744073709551617, \"f\": 1.10, \"e\": 1E3, \"l\": [1e400, 7]}"}}]},
    {"role":"tool","tool_call_id":"c1","content":"ok"}])",
                                "t");
  EncodeOptions o;
  o.thinking_mode = "chat";
  const std::string got = encode_messages(msgs, o);
  const std::string d = "｜DSML｜";
  auto param = [&](const std::string& name, const std::string& value) {
    return "<" + d + "parameter name=\"" + name + "\" string=\"false\">" + value + "</" + d + "parameter>";
  };
  for (const std::string& want : {param("id", "123456789012345678901234567890"), param("neg", "-18446744073709551617"),
                                  param("f", "1.1"), param("e", "1000.0"), param("l", "[Infinity, 7]")})
    EXPECT_NE(got.find(want), std::string::npos) << want << "\n" << got;
}

// Tool results are matched to calls by id as a Python dict would: 2**64 (a big integer) and
// 1.8446744073709552e19 (a float of the same value) are the same key.
TEST(PyJson, BigIntegerToolCallIdsMatchLikePythonKeys) {
  ojson msgs = parse_json_exact(R"([
    {"role":"user","content":"go"},
    {"role":"assistant","content":"","tool_calls":[
      {"id":18446744073709551616,"type":"function","function":{"name":"f","arguments":"{}"}},
      {"id":"b","type":"function","function":{"name":"g","arguments":"{}"}}]},
    {"role":"tool","tool_call_id":"b","content":"R2"},
    {"role":"tool","tool_call_id":1.8446744073709552e19,"content":"R1"}])",
                                "t");
  EncodeOptions o;
  o.thinking_mode = "chat";
  const std::string got = encode_messages(msgs, o);
  EXPECT_NE(got.find("<tool_result>R1</tool_result>\n\n<tool_result>R2</tool_result>"), std::string::npos) << got;
}

}  // namespace
