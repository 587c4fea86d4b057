// Helpers shared by the grammar tests: a synthetic vocabulary, a small JSON-schema checker and a
// DSML block parser (independent of the grammar code under test).
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "grammar/grammar.h"
#include "grammar/token_mask.h"

namespace grammar_test {

using ojson = nlohmann::ordered_json;
inline const std::string kBar = "\xEF\xBD\x9C";
inline const std::string kDsml = kBar + "DSML" + kBar;
inline const std::string kEos = "<" + kBar + "end\xE2\x96\x81of\xE2\x96\x81sentence" + kBar + ">";

struct Vocab {
  std::vector<std::string> tokens;
  int32_t eos = 1;
  std::vector<int32_t> special;
};

// Varied byte strings: every single byte, JSON/DSML fragments, words, multi-byte UTF-8, long
// tokens, and special tokens (EOS = id 1, the DSML marker, a few others that must never appear).
inline Vocab synthetic_vocab(uint32_t seed = 7, size_t n_random = 2500) {
  Vocab v;
  v.tokens.push_back("<" + kBar + "begin\xE2\x96\x81of\xE2\x96\x81sentence" + kBar + ">");
  v.tokens.push_back(kEos);
  v.tokens.push_back("<" + kBar + "User" + kBar + ">");
  v.tokens.push_back("<think>");
  v.tokens.push_back(kDsml);
  v.special = {0, 2, 3, 4};
  for (int b = 0; b < 256; ++b) v.tokens.push_back(std::string(1, static_cast<char>(b)));
  const char* frags[] = {"{\"", "\": ", "\", \"", "\"}", "}, ", "]}", "[{", "\"]", "\\\"", "\\\\", "\\n", "\\u",
                         "\\ud83d", "\\ude00", "00", "123", "0.", ".5", "e+", "E-", "-1", "true", "false", "null",
                         "tr", "ue", ", ", ": ", "\"\"", "[]", "{}", "[[", "]]", "name", "\"name\"", "\"a\"", "x",
                         "<", "</", "invoke", " name=\"", "parameter", "tool_calls", ">\n", "\n\n", "\n", "\">",
                         "\" string=\"", "true\">", "false\">", "string", "get_weather", "location", "unit",
                         "celsius", "Beijing", "\u00e9", "\u4e2d\u6587", "\U0001F600", "\xEF\xBD", "\x9C",
                         "\xE4", "\xB8\xAD", "\xF0\x9F", "\x98\x80", "DSML", "\xEF\xBD\x9C" "DSML", "  ", "\t"};
  for (const char* f : frags) v.tokens.push_back(f);
  std::mt19937 rng(seed);
  const std::string alpha = "abcdefghijklmnopqrstuvwxyz ABCXYZ0123456789_-.,:;\"'{}[]\\/<>=!?\n";
  const std::vector<std::string> mb = {"\u00e9", "\u00fc", "\u4e2d", "\u6587", "\U0001F600", "\u2581",
                                       kBar,     "\u00a0", "\u2028", "\u0416"};
  for (size_t i = 0; i < n_random; ++i) {
    size_t len = (i % 10 == 0) ? 10 + rng() % 25 : 1 + rng() % 6;
    std::string t;
    while (t.size() < len) {
      if (rng() % 6 == 0) t += mb[rng() % mb.size()];
      else t.push_back(alpha[rng() % alpha.size()]);
    }
    v.tokens.push_back(t);
  }
  v.tokens.push_back("");  // an unused id: never allowed
  return v;
}

// ---- a small JSON-schema checker for the supported subset ----
// Samples random allowed tokens until EOS (taken a third of the time it is allowed) or `limit`
// tokens, then appends the shortest completion. Checks on the way: a mask is never empty, EOS is
// allowed exactly when the text is complete, no special token but the DSML marker and no empty
// token is ever allowed, and every allowed token is accepted.
inline std::string generate_checked(const Vocab& vocab, const v4::TokenMasker& masker, const v4::GrammarPtr& g,
                                    uint32_t seed, int limit) {
  std::mt19937 rng(seed);
  v4::GrammarMatcher m(g);
  std::string out;
  std::vector<uint8_t> mask;
  for (int step = 0; step < limit; ++step) {
    masker.fill(m, mask);
    std::vector<int32_t> ids;
    for (size_t i = 0; i < mask.size(); ++i)
      if (mask[i]) ids.push_back(static_cast<int32_t>(i));
    EXPECT_FALSE(ids.empty()) << "dead end after: " << out;
    if (ids.empty()) return out;
    EXPECT_EQ(mask[vocab.eos] != 0, m.is_complete());
    for (int32_t sp : vocab.special) EXPECT_TRUE(!mask[sp] || vocab.tokens[sp] == kDsml);
    for (size_t i = 0; i < vocab.tokens.size(); ++i)
      if (vocab.tokens[i].empty()) {
        EXPECT_EQ(mask[i], 0) << "empty token " << i << " allowed";
      }
    int32_t pick = ids[rng() % ids.size()];
    if (mask[vocab.eos] && rng() % 3 == 0) pick = vocab.eos;
    if (pick == vocab.eos) return out;
    EXPECT_TRUE(m.accept(vocab.tokens[pick])) << "masked token rejected: " << vocab.tokens[pick];
    out += vocab.tokens[pick];
  }
  const std::string tail = m.shortest_completion();
  EXPECT_TRUE(m.accept(tail)) << "completion rejected";
  EXPECT_TRUE(m.is_complete());
  return out + tail;
}

inline const ojson& resolve(const ojson& root, const std::string& ref) {
  if (ref == "#") return root;
  return root.at(ojson::json_pointer(ref.substr(1)));
}

inline size_t utf8_len(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

inline bool type_ok(const ojson& v, const std::string& t) {
  if (t == "string") return v.is_string();
  if (t == "integer") return v.is_number_integer();
  if (t == "number") return v.is_number();
  if (t == "boolean") return v.is_boolean();
  if (t == "null") return v.is_null();
  if (t == "object") return v.is_object();
  if (t == "array") return v.is_array();
  return false;
}

inline bool validate(const ojson& v, const ojson& s, const ojson& root, std::string& why) {
  auto fail = [&](const std::string& m) {
    why = m + " at " + v.dump();
    return false;
  };
  if (s.is_boolean()) return s.get<bool>() || fail("false schema");
  if (s.contains("$ref")) return validate(v, resolve(root, s["$ref"]), root, why);
  if (s.contains("allOf"))
    for (const auto& p : s["allOf"])
      if (!validate(v, p, root, why)) return false;
  for (const char* k : {"anyOf", "oneOf"}) {
    if (!s.contains(k)) continue;
    bool any = false;
    std::string w;
    for (const auto& p : s[k]) any = any || validate(v, p, root, w);
    if (!any) return fail(std::string("no ") + k + " branch matches");
  }
  if (s.contains("const") && !(v == s["const"])) return fail("const mismatch");
  if (s.contains("enum")) {
    bool any = false;
    for (const auto& e : s["enum"]) any = any || e == v;
    if (!any) return fail("not in enum");
  }
  if (s.contains("type")) {
    bool ok = false;
    if (s["type"].is_string()) ok = type_ok(v, s["type"]);
    else
      for (const auto& t : s["type"]) ok = ok || type_ok(v, t);
    if (!ok) return fail("type mismatch");
  }
  if (v.is_string()) {
    size_t n = utf8_len(v.get<std::string>());
    if (s.contains("minLength") && n < s["minLength"].get<size_t>()) return fail("minLength");
    if (s.contains("maxLength") && n > s["maxLength"].get<size_t>()) return fail("maxLength");
  }
  if (v.is_number()) {
    double d = v.get<double>();
    if (s.contains("minimum") && d < s["minimum"].get<double>()) return fail("minimum");
    if (s.contains("maximum") && d > s["maximum"].get<double>()) return fail("maximum");
    if (s.contains("exclusiveMinimum") && s["exclusiveMinimum"].is_number() && d <= s["exclusiveMinimum"].get<double>())
      return fail("exclusiveMinimum");
    if (s.contains("exclusiveMaximum") && s["exclusiveMaximum"].is_number() && d >= s["exclusiveMaximum"].get<double>())
      return fail("exclusiveMaximum");
  }
  if (v.is_object()) {
    for (const auto& r : s.value("required", ojson::array()))
      if (!v.contains(r.get<std::string>())) return fail("missing required " + r.dump());
    const bool has_props = s.contains("properties");
    for (auto it = v.begin(); it != v.end(); ++it) {
      if (has_props && s["properties"].contains(it.key())) {
        if (!validate(it.value(), s["properties"][it.key()], root, why)) return false;
      } else if (s.contains("additionalProperties")) {
        if (!validate(it.value(), s["additionalProperties"], root, why)) return false;
      }
    }
  }
  if (v.is_array()) {
    size_t n = v.size();
    if (s.contains("minItems") && n < s["minItems"].get<size_t>()) return fail("minItems");
    if (s.contains("maxItems") && n > s["maxItems"].get<size_t>()) return fail("maxItems");
    size_t p = 0;
    if (s.contains("prefixItems")) {
      p = s["prefixItems"].size();
      for (size_t i = 0; i < std::min(p, n); ++i)
        if (!validate(v[i], s["prefixItems"][i], root, why)) return false;
    }
    if (s.contains("items"))
      for (size_t i = p; i < n; ++i)
        if (!validate(v[i], s["items"], root, why)) return false;
  }
  return true;
}

// ---- DSML block parser (spec §6.4), written against the spec text, not the grammar ----
struct Call {
  std::string name;
  ojson args;
};
inline std::optional<std::vector<Call>> parse_dsml(const std::string& text, std::string& why) {
  const std::string open = "\n\n<" + kDsml + "tool_calls>\n", close = "\n</" + kDsml + "tool_calls>";
  if (text.rfind(open, 0) != 0) return why = "no opening tag", std::nullopt;
  if (text.size() < open.size() + close.size() || text.compare(text.size() - close.size(), close.size(), close) != 0)
    return why = "no closing tag", std::nullopt;
  std::string body = text.substr(open.size(), text.size() - open.size() - close.size());
  std::vector<Call> calls;
  size_t pos = 0;
  const std::string inv_open = "<" + kDsml + "invoke name=\"", inv_close = "</" + kDsml + "invoke>";
  const std::string par_open = "<" + kDsml + "parameter name=\"", par_close = "</" + kDsml + "parameter>";
  while (true) {
    if (body.compare(pos, inv_open.size(), inv_open) != 0) return why = "expected invoke", std::nullopt;
    pos += inv_open.size();
    size_t q = body.find("\">\n", pos);
    if (q == std::string::npos) return why = "bad invoke header", std::nullopt;
    Call c{body.substr(pos, q - pos), ojson::object()};
    pos = q + 3;
    if (body.compare(pos, 1, "\n") == 0 && body.compare(pos + 1, inv_close.size(), inv_close) == 0) {
      pos += 1;  // no parameters: ">\n\n</invoke>"
    }
    while (body.compare(pos, par_open.size(), par_open) == 0) {
      pos += par_open.size();
      size_t e = body.find(par_close, pos);
      if (e == std::string::npos) return why = "unterminated parameter", std::nullopt;
      std::string inner = body.substr(pos, e - pos);
      size_t k = inner.find("\" string=\"");
      if (k == std::string::npos) return why = "bad parameter header", std::nullopt;
      std::string key = inner.substr(0, k), rest = inner.substr(k + 10);
      std::string value;
      bool is_str;
      if (rest.rfind("true\">", 0) == 0) is_str = true, value = rest.substr(6);
      else if (rest.rfind("false\">", 0) == 0) is_str = false, value = rest.substr(7);
      else return why = "bad string= attribute", std::nullopt;
      if (value.find(kDsml) != std::string::npos) return why = "marker inside value", std::nullopt;
      if (c.args.contains(key)) return why = "duplicate parameter " + key, std::nullopt;
      if (is_str) {
        c.args[key] = value;
      } else {
        try {
          c.args[key] = ojson::parse(value);
        } catch (const std::exception&) {
          return why = "bad JSON value: " + value, std::nullopt;
        }
      }
      pos = e + par_close.size();
      if (body.compare(pos, 1, "\n") != 0) return why = "no newline after parameter", std::nullopt;
      ++pos;
    }
    if (body.compare(pos, inv_close.size(), inv_close) != 0) return why = "expected </invoke>", std::nullopt;
    pos += inv_close.size();
    calls.push_back(std::move(c));
    if (pos == body.size()) break;
    if (body[pos] != '\n') return why = "junk between invokes", std::nullopt;
    ++pos;
  }
  return calls;
}

}  // namespace grammar_test
