// Property tests: random generation with token masks over a synthetic vocabulary (multi-byte
// UTF-8, single bytes, long tokens, DSML special tokens) always yields schema-valid output; masks
// are never empty before completion; masks agree with can_accept token by token.
#include <cstdio>
#include <cstdlib>

#include "test_grammar_util.h"

using namespace grammar_test;
using v4::GrammarMatcher;

namespace {

const Vocab& vocab() {
  static const Vocab v = synthetic_vocab();
  return v;
}
const v4::TokenMasker& masker() {
  static const v4::TokenMasker m(vocab().tokens, vocab().eos, v4::TokenMasker::Options{vocab().special, {kDsml}});
  return m;
}

std::string generate(const v4::GrammarPtr& g, uint32_t seed, int limit = 60) {
  return generate_checked(vocab(), masker(), g, seed, limit);
}

const char* kSchemas[] = {
    R"({"type": "string"})",
    R"({"type": "string", "minLength": 3, "maxLength": 8})",
    R"({"type": "integer"})",
    R"({"type": "number"})",
    R"({"type": "integer", "minimum": -50, "maximum": 1234})",
    R"({"type": "boolean"})",
    R"({"enum": ["red", "green", 7, null]})",
    R"({"type": "object", "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer",
        "minimum": 0, "maximum": 150}, "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 4},
        "ok": {"type": "boolean"}}, "required": ["name", "ok"]})",
    R"({"type": "array", "items": {"type": "object", "properties": {"x": {"type": "number"},
        "y": {"type": ["string", "null"]}}, "required": ["x"]}, "minItems": 1, "maxItems": 5})",
    R"({"anyOf": [{"type": "object", "properties": {"kind": {"const": "a"}, "v": {"type": "integer"}}, "required":
        ["kind", "v"]}, {"type": "object", "properties": {"kind": {"const": "b"}, "s": {"type": "string"}},
        "required": ["kind", "s"]}]})",
    R"({"$ref": "#/$defs/node", "$defs": {"node": {"type": "object", "properties": {"v": {"type": "integer"},
        "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}, "maxItems": 2}}, "required": ["v"]}}})",
    R"({"type": "object", "additionalProperties": {"type": "integer"}})",
    R"({"type": "array", "prefixItems": [{"type": "string"}, {"type": "boolean"}], "items": {"type": "null"}})",
    R"({"type": "object"})",
    R"(true)",
};

}  // namespace

TEST(GrammarRandom, SchemaOutputsValidate) {
  for (const char* text : kSchemas) {
    const ojson s = ojson::parse(text);
    auto g = v4::compile_json_schema(s);
    for (uint32_t seed = 0; seed < 25; ++seed) {
      const std::string out = generate(g, seed * 7919 + 1);
      if (getenv("V4_GRAMMAR_PRINT")) printf("%s\n", out.c_str());
      ojson v;
      try {
        v = ojson::parse(out);
      } catch (const std::exception& e) {
        ADD_FAILURE() << "schema " << text << " seed " << seed << ": invalid JSON: " << out << " (" << e.what() << ")";
        continue;
      }
      std::string why;
      EXPECT_TRUE(validate(v, s, s, why)) << "schema " << text << " seed " << seed << ": " << why << "\n" << out;
    }
  }
}

TEST(GrammarRandom, JsonObjectOutputs) {
  auto g = v4::compile_json_object();
  for (uint32_t seed = 0; seed < 40; ++seed) {
    const std::string out = generate(g, seed);
    ojson v;
    ASSERT_NO_THROW(v = ojson::parse(out)) << out;
    EXPECT_TRUE(v.is_object()) << out;
  }
}

TEST(GrammarRandom, DsmlOutputsParseAndValidate) {
  const ojson tools = ojson::parse(R"([
    {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {
      "location": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
      "days": {"type": "integer", "minimum": 1, "maximum": 14}}, "required": ["location"]}}},
    {"type": "function", "function": {"name": "noop", "parameters": {"type": "object", "properties": {}}}},
    {"type": "function", "function": {"name": "search", "parameters": {"type": "object", "properties": {
      "queries": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3},
      "opts": {"type": "object", "properties": {"n": {"type": "integer"}, "safe": {"type": "boolean"}}},
      "note": {"type": ["string", "null"]}}, "required": ["queries"]}}}
  ])");
  for (int variant = 0; variant < 3; ++variant) {
    const std::string forced = variant == 2 ? "search" : "";
    const bool parallel = variant == 1;
    auto g = v4::compile_dsml_tool_calls(tools, forced, parallel);
    for (uint32_t seed = 0; seed < 30; ++seed) {
      const std::string out = generate(g, seed * 31 + variant, 80);
      if (getenv("V4_GRAMMAR_PRINT")) printf("%s\n----\n", out.c_str());
      std::string why;
      auto calls = parse_dsml(out, why);
      ASSERT_TRUE(calls.has_value()) << why << "\n" << out;
      ASSERT_FALSE(calls->empty());
      if (!parallel) {
        EXPECT_EQ(calls->size(), 1u);
      }
      for (const auto& c : *calls) {
        if (!forced.empty()) {
          EXPECT_EQ(c.name, forced);
        }
        const ojson* schema = nullptr;
        for (const auto& t : tools)
          if (t["function"]["name"] == c.name) schema = &t["function"]["parameters"];
        ASSERT_NE(schema, nullptr) << "unknown tool " << c.name;
        EXPECT_TRUE(validate(c.args, *schema, *schema, why)) << why << "\n" << out;
        for (auto it = c.args.begin(); it != c.args.end(); ++it)
          EXPECT_TRUE((*schema)["properties"].contains(it.key())) << "unknown parameter " << it.key();
      }
    }
  }
}

// The trie walk must give exactly can_accept() for every token, at many states.
TEST(GrammarRandom, MaskMatchesCanAccept) {
  const ojson tools = ojson::parse(R"([{"type": "function", "function": {"name": "f", "parameters": {"type": "object",
      "properties": {"a": {"type": "string"}, "b": {"anyOf": [{"type": "integer"}, {"type": "number"}]}}}}}])");
  std::vector<v4::GrammarPtr> gs = {v4::compile_json_object(), v4::compile_dsml_tool_calls(tools, "", true),
                                    v4::compile_json_schema(ojson::parse(kSchemas[10]))};
  std::vector<uint8_t> mask;
  for (const auto& g : gs) {
    for (uint32_t seed = 0; seed < 4; ++seed) {
      std::mt19937 rng(seed);
      GrammarMatcher m(g);
      for (int step = 0; step < 25; ++step) {
        masker().fill(m, mask);
        std::vector<int32_t> ids;
        for (size_t id = 0; id < mask.size(); ++id) {
          const bool special = std::find(vocab().special.begin(), vocab().special.end(), static_cast<int32_t>(id)) !=
                               vocab().special.end();
          bool expect = id == static_cast<size_t>(vocab().eos)  ? m.is_complete()
                        : vocab().tokens[id].empty()            ? false
                        : special && vocab().tokens[id] != kDsml ? false
                                                                 : m.can_accept(vocab().tokens[id]);
          ASSERT_EQ(mask[id] != 0, expect) << "token " << id << " '" << vocab().tokens[id] << "' at step " << step;
          if (mask[id] && static_cast<int32_t>(id) != vocab().eos) ids.push_back(static_cast<int32_t>(id));
        }
        std::vector<uint8_t> uncached;
        masker().fill_uncached(m, uncached);
        ASSERT_EQ(uncached, mask) << "cached and uncached masks differ at step " << step;
        if (ids.empty()) break;
        ASSERT_TRUE(m.accept(vocab().tokens[ids[rng() % ids.size()]]));
      }
    }
  }
}
