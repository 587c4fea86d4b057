// Accept/reject tables for every supported schema feature, the DSML tool block, and errors.
#include "core/error.h"
#include "test_grammar_util.h"
#include "text/py_json.h"

using namespace grammar_test;
using v4::GrammarMatcher;

namespace {

v4::GrammarPtr schema(const char* text) { return v4::compile_json_schema(ojson::parse(text)); }

// Whole string accepted and complete.
bool full(const v4::GrammarPtr& g, const std::string& s) {
  GrammarMatcher m(g);
  return m.accept(s) && m.is_complete();
}
// Accepted as a prefix (not necessarily complete).
bool prefix(const v4::GrammarPtr& g, const std::string& s) {
  GrammarMatcher m(g);
  return m.accept(s);
}

struct Case {
  const char* text;
  bool ok;
};
void check_table(const v4::GrammarPtr& g, std::initializer_list<Case> cases) {
  for (const auto& c : cases) EXPECT_EQ(full(g, c.text), c.ok) << "input: " << c.text;
}

}  // namespace

TEST(Grammar, String) {
  auto g = schema(R"({"type": "string"})");
  check_table(g, {{R"("abc")", true},
                  {R"("")", true},
                  {R"("a\"b\\c\/d\b\f\n\r\t")", true},
                  {R"("\u00e9\u4E2D")", true},
                  {R"("\ud83d\ude00")", true},  // surrogate pair
                  {R"("\ud83d")", false},        // lone high surrogate
                  {R"("\ude00")", false},        // lone low surrogate
                  {R"("\x")", false},
                  {"\"\xC3\xA9\xE4\xB8\xAD\xF0\x9F\x98\x80\"", true},  // é 中 😀 raw
                  {"\"a\nb\"", false},                                  // raw control char
                  {"\"\xFF\"", false},                                  // invalid byte
                  {"\"\xC0\xAF\"", false},                              // overlong
                  {"\"\xED\xA0\x80\"", false},                          // UTF-8 surrogate
                  {"abc", false},
                  {R"("abc" )", false}});
  EXPECT_TRUE(prefix(g, "\"ab"));
  EXPECT_TRUE(prefix(g, "\"\xE4\xB8"));  // a partial multi-byte character is a valid prefix
}

TEST(Grammar, StringLength) {
  auto g = schema(R"({"type": "string", "minLength": 2, "maxLength": 3})");
  check_table(g, {{R"("ab")", true}, {R"("abc")", true}, {R"("a")", false}, {R"("abcd")", false},
                  {R"("\n\u00e9x")", true}, {"\"\xE4\xB8\xAD\xE6\x96\x87\"", true}, {R"("\ud83d\ude00")", false}});
}

TEST(Grammar, Numbers) {
  auto i = schema(R"({"type": "integer"})");
  check_table(i, {{"0", true}, {"-5", true}, {"123", true}, {"01", false}, {"1.5", false}, {"-", false},
                  {"1e5", false}, {"-0", true}, {"+1", false}});
  auto n = schema(R"({"type": "number"})");
  check_table(n, {{"1.5", true}, {"-0.25e+10", true}, {"0", true}, {"1E2", true}, {".5", false}, {"1.", false},
                  {"1e", false}, {"00", false}, {"3.14159", true}});
  auto r = schema(R"({"type": "integer", "minimum": 5, "maximum": 120})");
  check_table(r, {{"5", true}, {"120", true}, {"99", true}, {"4", false}, {"121", false}, {"-1", false},
                  {"0", false}, {"10", true}, {"100", true}, {"119", true}});
  auto neg = schema(R"({"type": "integer", "minimum": -20, "maximum": -3})");
  check_table(neg, {{"-3", true}, {"-20", true}, {"-21", false}, {"-2", false}, {"0", false}, {"3", false}});
  auto ex = schema(R"({"type": "integer", "exclusiveMinimum": 0})");
  check_table(ex, {{"0", false}, {"1", true}, {"987654", true}, {"-1", false}});
  auto nb = schema(R"({"type": "number", "minimum": -1.5, "maximum": 2.5})");
  check_table(nb, {{"-1", true}, {"2", true}, {"3", false}, {"-2", false}});
}

// Request bodies are parsed with big integers kept exact (text::parse_json_exact); a bound or an
// enum value beyond 64 bits is still a number (it was refused as "must be a number").
TEST(Grammar, BigIntegerBoundsAndEnumValues) {
  auto exact = [](const char* text) { return v4::compile_json_schema(v4::text::parse_json_exact(text, "schema")); };
  auto g = exact(R"({"type": "integer", "minimum": 0, "maximum": 123456789012345678901234567890})");
  check_table(g, {{"0", true}, {"987654321", true}, {"-1", false}, {"1.5", false}});
  auto e = exact(R"({"enum": [123456789012345678901234567890, "x"]})");
  check_table(e, {{"123456789012345678901234567890", true}, {"\"x\"", true}, {"1.2345678901234568e+29", false}});
}

TEST(Grammar, LiteralsEnumConst) {
  check_table(schema(R"({"type": "boolean"})"), {{"true", true}, {"false", true}, {"null", false}});
  check_table(schema(R"({"type": "null"})"), {{"null", true}, {"nul", false}});
  check_table(schema(R"({"enum": ["a", 1, null, {"k": [true]}]})"),
              {{R"("a")", true}, {"1", true}, {"null", true}, {R"({"k": [true]})", true}, {"2", false}, {R"("b")", false}});
  check_table(schema(R"({"const": {"x": [1, 2], "y": "é"}})"), {{R"({"x": [1, 2], "y": "é"})", true}, {R"({"x":[1,2]})", false}});
  check_table(schema(R"({"type": "string", "enum": ["a", 1]})"), {{R"("a")", true}, {"1", false}});
}

TEST(Grammar, Objects) {
  auto g = schema(R"({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"},
                     "c": {"type": "boolean"}}, "required": ["a", "c"]})");
  check_table(g, {{R"({"a": "x", "c": true})", true},
                  {R"({"a": "x", "b": 3, "c": false})", true},
                  {R"({"b": 3, "c": true})", false},
                  {R"({"a": "x"})", false},
                  {R"({})", false},
                  {R"({"c": true, "a": "x"})", false},  // schema property order
                  {R"({"a":"x","c":true})", false},     // canonical layout only
                  {R"({"a": "x", "c": true, "d": 1})", false}});
  auto opt = schema(R"({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}})");
  check_table(opt, {{"{}", true}, {R"({"a": 1})", true}, {R"({"b": 2})", true}, {R"({"a": 1, "b": 2})", true},
                    {R"({, "b": 2})", false}});
  check_table(schema(R"({"type": "object", "additionalProperties": false})"), {{"{}", true}, {R"({"a": 1})", false}});
  check_table(schema(R"({"type": "object"})"), {{"{}", true}, {R"({"a": [1, {"b": null}], "c": "d"})", true}});
  check_table(schema(R"({"type": "object", "additionalProperties": {"type": "integer"}})"),
              {{"{}", true}, {R"({"x": 1, "y": 2})", true}, {R"({"x": "s"})", false}});
  auto nested = schema(R"({"type": "object", "properties": {"p": {"type": "object", "properties":
                          {"q": {"type": "array", "items": {"type": "number"}}}, "required": ["q"]}}, "required": ["p"]})");
  check_table(nested, {{R"({"p": {"q": []}})", true}, {R"({"p": {"q": [1, 2.5]}})", true}, {R"({"p": {}})", false}});
}

TEST(Grammar, Arrays) {
  auto g = schema(R"({"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 3})");
  check_table(g, {{"[1]", true}, {"[1, 2, 3]", true}, {"[]", false}, {"[1, 2, 3, 4]", false}, {"[1,2]", false}});
  auto any = schema(R"({"type": "array"})");
  check_table(any, {{"[]", true}, {R"([1, "a", null, [], {}])", true}});
  auto tuple = schema(R"({"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}], "items": false})");
  check_table(tuple, {{R"(["a", 1])", true}, {R"(["a"])", true}, {"[]", true}, {R"(["a", 1, 2])", false},
                      {R"([1, "a"])", false}});
  auto tuple_min = schema(R"({"prefixItems": [{"type": "string"}], "items": {"type": "boolean"}, "minItems": 2})");
  check_table(tuple_min, {{R"(["a", true])", true}, {R"(["a", true, false])", true}, {R"(["a"])", false}});
}

TEST(Grammar, AnyOfTypesRefs) {
  check_table(schema(R"({"anyOf": [{"type": "integer"}, {"type": "string", "maxLength": 2}]})"),
              {{"12", true}, {R"("ab")", true}, {R"("abc")", false}, {"null", false}});
  check_table(schema(R"({"oneOf": [{"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
                                   {"type": "object", "properties": {"b": {"type": "string"}}, "required": ["b"]}]})"),
              {{R"({"a": 1})", true}, {R"({"b": "x"})", true}, {R"({"a": "x"})", false}});
  check_table(schema(R"({"type": ["integer", "null"]})"), {{"3", true}, {"null", true}, {"true", false}});
  check_table(schema(R"({"type": ["integer", "number"]})"), {{"3", true}, {"3.5", true}});
  auto tree = schema(R"({"$ref": "#/$defs/node", "$defs": {"node": {"type": "object", "properties": {
      "v": {"type": "integer"}, "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}}, "required": ["v"]}}})");
  check_table(tree, {{R"({"v": 1})", true}, {R"({"v": 1, "kids": [{"v": 2, "kids": [{"v": 3}]}, {"v": 4}]})", true},
                     {R"({"v": 1, "kids": [{}]})", false}});
  auto defs = schema(R"({"type": "object", "properties": {"c": {"$ref": "#/definitions/color"}}, "required": ["c"],
                         "definitions": {"color": {"enum": ["red", "green"]}}})");
  check_table(defs, {{R"({"c": "red"})", true}, {R"({"c": "blue"})", false}});
  auto all = schema(R"({"allOf": [{"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
                                  {"properties": {"b": {"type": "string"}}, "required": ["b"]}]})");
  check_table(all, {{R"({"a": 1, "b": "x"})", true}, {R"({"a": 1})", false}});
  check_table(schema("true"), {{"1", true}, {R"({"a": []})", true}});
  check_table(schema("{}"), {{"null", true}, {R"("s")", true}});
}

TEST(Grammar, JsonObject) {
  auto g = v4::compile_json_object();
  check_table(g, {{"{}", true}, {R"({"a": [1, {"b": null}], "c": "d\n", "e": -1.5e3})", true}, {"[]", false},
                  {R"({"a":1})", false}, {"1", false}, {R"({"a": 1} )", false}});
  GrammarMatcher m(g);
  ASSERT_TRUE(m.accept("{}"));
  EXPECT_TRUE(m.is_terminated());
}

TEST(Grammar, Errors) {
  auto bad = [](const char* text, const char* needle) {
    try {
      schema(text);
      ADD_FAILURE() << "no error for " << text;
    } catch (const v4::InputError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  bad(R"({"type": "string", "pattern": "^a"})", "pattern");
  bad(R"({"not": {"type": "string"}})", "not");
  bad("false", "false");
  bad(R"({"enum": []})", "enum");
  bad(R"({"type": "string", "minLength": 5, "maxLength": 2})", "minLength");
  bad(R"({"type": "integer", "minimum": 5, "maximum": 2})", "empty");
  bad(R"({"type": "array", "uniqueItems": true})", "uniqueItems");
  bad(R"({"type": "whatever"})", "whatever");
  bad(R"({"$ref": "#/$defs/missing"})", "missing");
  bad(R"({"$ref": "http://example.com/s.json"})", "$ref");
  bad(R"({"$ref": "#/$defs/a", "$defs": {"a": {"anyOf": [{"$ref": "#/$defs/a"}, {"type": "null"}]}}})", "recursive");
  bad(R"({"type": "number", "minimum": 0.2, "maximum": 0.8})", "integer");
  bad(R"({"type": []})", "empty");
  EXPECT_THROW(v4::compile_dsml_tool_calls(ojson::array(), "", false), v4::InputError);
}

TEST(Grammar, CopyIsSnapshot) {
  auto g = schema(R"({"type": "array", "items": {"type": "integer"}})");
  GrammarMatcher m(g);
  ASSERT_TRUE(m.accept("[1, "));
  GrammarMatcher snap = m;
  ASSERT_TRUE(m.accept("23]"));
  EXPECT_TRUE(m.is_complete());
  EXPECT_FALSE(snap.is_complete());
  EXPECT_FALSE(m.accept("x"));
  EXPECT_TRUE(m.is_complete());  // a rejected accept leaves the state unchanged
  EXPECT_TRUE(snap.can_accept("4]"));
  EXPECT_FALSE(snap.can_accept("]"));
  EXPECT_EQ(snap.shortest_completion(), "0]");
  ASSERT_TRUE(snap.accept(snap.shortest_completion()));
  EXPECT_TRUE(snap.is_complete());
}

// ---- DSML ----
namespace {
const char* kTools = R"([
  {"type": "function", "function": {"name": "get_weather", "description": "Get weather",
    "parameters": {"type": "object", "properties": {
      "location": {"type": "string", "description": "city"},
      "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
      "days": {"type": "integer", "minimum": 1, "maximum": 14}},
     "required": ["location"]}}},
  {"type": "function", "function": {"name": "g", "parameters": {"type": "object", "properties": {}}}},
  {"type": "function", "function": {"name": "search", "parameters": {"type": "object", "properties": {
      "queries": {"type": "array", "items": {"type": "string"}, "minItems": 1},
      "opts": {"type": "object", "properties": {"n": {"type": "integer"}}}},
     "required": ["queries"]}}}
])";
std::string invoke(const std::string& name, const std::vector<std::string>& params) {
  std::string s = "<" + kDsml + "invoke name=\"" + name + "\">\n";
  if (params.empty()) s += "\n";
  for (const auto& p : params) s += p + "\n";
  return s + "</" + kDsml + "invoke>";
}
std::string param(const std::string& key, bool str, const std::string& value) {
  return "<" + kDsml + "parameter name=\"" + key + "\" string=\"" + (str ? "true" : "false") + "\">" + value + "</" +
         kDsml + "parameter>";
}
std::string block(const std::vector<std::string>& invokes) {
  std::string s = "\n\n<" + kDsml + "tool_calls>\n";
  for (size_t i = 0; i < invokes.size(); ++i) s += (i ? "\n" : "") + invokes[i];
  return s + "\n</" + kDsml + "tool_calls>";
}
}  // namespace

TEST(GrammarDsml, SpecFixtureAndForms) {
  auto tools = ojson::parse(kTools);
  auto g = v4::compile_dsml_tool_calls(tools, "", false);
  // Fixture 1 of the spec (§6.4).
  const std::string fixture = block({invoke("get_weather", {param("location", true, "Beijing"), param("unit", true, "celsius")})});
  EXPECT_TRUE(full(g, fixture));
  EXPECT_TRUE(full(g, block({invoke("g", {})})));  // no parameters: ">\n\n</invoke>"
  EXPECT_FALSE(full(g, "\n\n<" + kDsml + "tool_calls>\n<" + kDsml + "invoke name=\"g\">\n</" + kDsml +
                           "invoke>\n</" + kDsml + "tool_calls>"));
  EXPECT_TRUE(full(g, block({invoke("get_weather", {param("location", true, "a\nmulti-line </x> <b> \"value\" \xEF\xBD\x9C")})})));
  EXPECT_TRUE(full(g, block({invoke("get_weather", {param("location", true, "")})})));
  EXPECT_TRUE(full(g, block({invoke("get_weather", {param("location", true, "x"), param("days", false, "14")})})));
  EXPECT_FALSE(full(g, block({invoke("get_weather", {param("location", true, "x"), param("days", false, "15")})})));
  EXPECT_FALSE(full(g, block({invoke("get_weather", {param("location", true, "x"), param("days", true, "3")})})));
  EXPECT_FALSE(full(g, block({invoke("get_weather", {param("location", false, "\"x\"")})})));
  EXPECT_FALSE(full(g, block({invoke("get_weather", {param("unit", true, "celsius")})})));  // required missing
  EXPECT_FALSE(full(g, block({invoke("get_weather", {param("unit", true, "kelvin"), param("location", true, "x")})})));
  EXPECT_FALSE(full(g, block({invoke("get_weather", {param("location", true, "x" + kDsml + "y")})})));
  EXPECT_FALSE(full(g, block({invoke("nope", {})})));
  EXPECT_TRUE(full(g, block({invoke("search", {param("queries", false, R"(["a", "b"])"),
                                               param("opts", false, R"({"n": 3})")})})));
  EXPECT_FALSE(full(g, block({invoke("search", {param("queries", false, "[]")})})));
  // One invoke unless parallel.
  const std::string two = block({invoke("g", {}), invoke("get_weather", {param("location", true, "x")})});
  EXPECT_FALSE(full(g, two));
  EXPECT_TRUE(full(v4::compile_dsml_tool_calls(tools, "", true), two));
  // Forced name.
  auto forced = v4::compile_dsml_tool_calls(tools, "g", true);
  EXPECT_TRUE(full(forced, block({invoke("g", {})})));
  EXPECT_FALSE(full(forced, fixture));
  EXPECT_THROW(v4::compile_dsml_tool_calls(tools, "missing", false), v4::InputError);
  // Nothing may follow the block.
  GrammarMatcher m(g);
  ASSERT_TRUE(m.accept(fixture));
  EXPECT_TRUE(m.is_terminated());
  EXPECT_FALSE(m.can_accept("\n"));
}

TEST(GrammarDsml, JsonValuesNeverFormTheMarker) {
  auto tools = ojson::parse(R"([{"type": "function", "function": {"name": "f", "parameters": {"type": "object",
      "properties": {"xs": {"type": "array", "items": {"type": "string"}}}, "required": ["xs"]}}}])");
  auto g = v4::compile_dsml_tool_calls(tools, "", false);
  EXPECT_TRUE(full(g, block({invoke("f", {param("xs", false, R"(["a\uff5cb"])")})})));
  EXPECT_FALSE(full(g, block({invoke("f", {param("xs", false, "[\"" + kDsml + "\"]")})})));
  // Also accepts the plain nlohmann::json overload (keys sorted there).
  auto g2 = v4::compile_dsml_tool_calls(nlohmann::json::parse(tools.dump()), "f", false);
  EXPECT_TRUE(full(g2, block({invoke("f", {param("xs", false, "[]")})})));
}

TEST(GrammarDsml, BadTools) {
  EXPECT_THROW(v4::compile_dsml_tool_calls(ojson::parse(R"([{"type": "function", "function": {}}])"), "", false),
               v4::InputError);
  EXPECT_THROW(v4::compile_dsml_tool_calls(ojson::parse(R"([{"type": "function", "function": {"name": "a\"b"}}])"), "",
                                           false),
               v4::InputError);
}

// Tool schemas as agents write them (Claude Code's propertyNames, pattern, ...): keywords the
// grammar cannot express are left out of it, never refused; the parser validates the finished
// call against the whole schema.
TEST(GrammarDsml, AcceptsEveryKeyword) {
  auto g = v4::compile_dsml_tool_calls(ojson::parse(R"([{"type": "function", "function": {"name": "f", "parameters": {
      "type": "object", "$schema": "http://json-schema.org/draft-07/schema#",
      "properties": {"p": {"type": "string", "pattern": "^x+$"},
                     "m": {"type": "object", "propertyNames": {"pattern": "^[a-z]+$"}, "additionalProperties": {"type": "string"}},
                     "l": {"type": "array", "items": {"type": "integer"}, "uniqueItems": true, "contains": {"const": 1}},
                     "n": {"not": {"type": "null"}, "if": {"type": "string"}, "then": {"minLength": 1}},
                     "r": {"$ref": "https://example.com/other.json"}},
      "required": ["p", "m"], "additionalProperties": false}}}])"),
                                       "", true);
  v4::GrammarMatcher m(g);
  const std::string d = "\xEF\xBD\x9C" "DSML" "\xEF\xBD\x9C";
  EXPECT_TRUE(m.accept("\n\n<" + d + "tool_calls>\n<" + d + "invoke name=\"f\">\n<" + d + "parameter name=\"p\" string=\"true\">xx</" + d +
                       "parameter>\n<" + d + "parameter name=\"m\" string=\"false\">{\"a\": \"b\"}</" + d + "parameter>\n</" + d +
                       "invoke>\n</" + d + "tool_calls>"));
  EXPECT_TRUE(m.is_complete());
}

TEST(Grammar, CacheReusesCompiledGrammars) {
  v4::GrammarCache cache(2);
  int compiles = 0;
  auto make = [&] {
    ++compiles;
    return v4::compile_json_object();
  };
  auto a = cache.get_or_compile("a", make);
  EXPECT_EQ(cache.get_or_compile("a", make), a);
  cache.get_or_compile("b", make);
  cache.get_or_compile("c", make);  // evicts "a" (least recently used)
  EXPECT_EQ(compiles, 3);
  EXPECT_NE(cache.get_or_compile("a", make), a);
  EXPECT_EQ(compiles, 4);
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_THROW(cache.get_or_compile("bad", [] { return v4::compile_json_schema(ojson::parse(R"({"not": {}})")); }),
               v4::InputError);
  EXPECT_EQ(cache.size(), 2u);
}
