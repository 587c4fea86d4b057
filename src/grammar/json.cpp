// JSON schema -> grammar IR (canonical Python json.dumps(ensure_ascii=False) layout).
#include <cmath>
#include <limits>
#include <set>

#include "core/error.h"
#include "grammar/ir.h"
#include "text/py_json.h"

namespace v4 {
namespace gir {

namespace {

using ojson = nlohmann::ordered_json;
using Ranges = std::vector<std::pair<uint8_t, uint8_t>>;

constexpr int kMaxUnroll = 1024;          // maxItems / maxLength unrolled at most this far
constexpr uint64_t kMaxInt = 999999999999999999ULL;  // 18 digits: integers stay int64

// UTF-8 encoded code points [a, b] (both in one encoding length, no surrogates), as IR.
// Digits: the lead digit and then 6-bit continuation digits.
NodeP utf8_digits(uint32_t x, uint32_t y, int k, uint8_t lead_prefix) {
  const int m = 6 * (k - 1);
  auto enc = [&](uint32_t d) -> uint8_t { return static_cast<uint8_t>(lead_prefix | d); };
  if (k == 1) return byte_range(enc(x), enc(y));
  const uint32_t mask = (1u << m) - 1;
  uint32_t hx = x >> m, hy = y >> m;
  if (hx == hy) return seq({byte_range(enc(hx), enc(hx)), utf8_digits(x & mask, y & mask, k - 1, 0x80)});
  std::vector<NodeP> alts;
  if ((x & mask) != 0) {
    alts.push_back(seq({byte_range(enc(hx), enc(hx)), utf8_digits(x & mask, mask, k - 1, 0x80)}));
    ++hx;
  }
  NodeP tail_hi;
  if ((y & mask) != mask) {
    tail_hi = seq({byte_range(enc(hy), enc(hy)), utf8_digits(0, y & mask, k - 1, 0x80)});
    --hy;
  }
  if (hx <= hy && hy != 0xFFFFFFFFu)
    alts.push_back(seq({byte_range(enc(hx), enc(hy)), utf8_digits(0, mask, k - 1, 0x80)}));
  if (tail_hi) alts.push_back(tail_hi);
  return alt(std::move(alts));
}

void utf8_range(uint32_t a, uint32_t b, std::vector<NodeP>& out) {
  struct Band {
    uint32_t lo, hi;
    int k;
    uint8_t prefix;
  };
  static const Band bands[] = {{0, 0x7F, 1, 0x00},          {0x80, 0x7FF, 2, 0xC0},
                               {0x800, 0xD7FF, 3, 0xE0},    {0xE000, 0xFFFF, 3, 0xE0},
                               {0x10000, 0x10FFFF, 4, 0xF0}};
  for (const auto& bd : bands) {
    uint32_t lo = std::max(a, bd.lo), hi = std::min(b, bd.hi);
    if (lo > hi) continue;
    out.push_back(utf8_digits(lo, hi, bd.k, bd.prefix));
  }
}

// Any UTF-8 character whose code point is not in `excluded` (sorted, unique).
NodeP utf8_char_excluding(const std::vector<uint32_t>& excluded) {
  std::vector<NodeP> alts;
  uint32_t next = 0;
  for (uint32_t e : excluded) {
    if (e > next) utf8_range(next, e - 1, alts);
    next = e + 1;
  }
  if (next <= 0x10FFFF) utf8_range(next, 0x10FFFF, alts);
  return alt(std::move(alts));
}

std::vector<uint32_t> decode_utf8(const std::string& s) {
  std::vector<uint32_t> cps;
  for (size_t i = 0; i < s.size();) {
    unsigned char c = s[i];
    int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : 4;
    uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
    for (int k = 1; k < n && i + k < s.size(); ++k) cp = (cp << 6) | (s[i + k] & 0x3F);
    cps.push_back(cp);
    i += n;
  }
  return cps;
}

std::string encode_utf8(uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    s.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    s.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    s.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    s.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    s.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    s.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
  return s;
}

NodeP hex() { return bytes({{'0', '9'}, {'a', 'f'}, {'A', 'F'}}); }

// Escape sequence after the backslash; \u escapes are valid code points or surrogate pairs.
NodeP escape_body() {
  NodeP h = hex();
  NodeP nonsurrogate = alt({seq({bytes({{'0', '9'}, {'a', 'c'}, {'A', 'C'}, {'e', 'f'}, {'E', 'F'}}), h, h, h}),
                            seq({bytes({{'d', 'd'}, {'D', 'D'}}), byte_range('0', '7'), h, h})});
  NodeP pair = seq({bytes({{'d', 'd'}, {'D', 'D'}}), bytes({{'8', '9'}, {'a', 'b'}, {'A', 'B'}}), h, h,
                    lit("\\u"), bytes({{'d', 'd'}, {'D', 'D'}}), bytes({{'c', 'f'}, {'C', 'F'}}), h, h});
  return alt({bytes({{'"', '"'}, {'\\', '\\'}, {'/', '/'}, {'b', 'b'}, {'f', 'f'}, {'n', 'n'},
                     {'r', 'r'}, {'t', 't'}}),
              seq({lit("u"), alt({nonsurrogate, pair})})});
}

// Decimal strings of equal length between x and y (x <= y).
NodeP digits_between(const std::string& x, const std::string& y) {
  if (x.empty()) return empty();
  if (x == y) return lit(x);
  auto rest_x = x.substr(1), rest_y = y.substr(1);
  const std::string nines(rest_x.size(), '9'), zeros(rest_x.size(), '0');
  if (x[0] == y[0]) return seq({lit(std::string(1, x[0])), digits_between(rest_x, rest_y)});
  if (rest_x == zeros && rest_y == nines)
    return seq({byte_range(x[0], y[0]), rep(byte_range('0', '9'), static_cast<int>(rest_x.size()),
                                            static_cast<int>(rest_x.size()))});
  std::vector<NodeP> alts;
  alts.push_back(seq({lit(std::string(1, x[0])), digits_between(rest_x, nines)}));
  if (x[0] + 1 <= y[0] - 1)
    alts.push_back(seq({byte_range(x[0] + 1, y[0] - 1),
                        rep(byte_range('0', '9'), static_cast<int>(rest_x.size()), static_cast<int>(rest_x.size()))}));
  alts.push_back(seq({lit(std::string(1, y[0])), digits_between(zeros, rest_y)}));
  return alt(std::move(alts));
}

// Non-negative integers in [a, b] without leading zeros.
NodeP nonneg_range(uint64_t a, uint64_t b) {
  std::vector<NodeP> alts;
  uint64_t p = 1;  // 10^(len-1)
  for (int len = 1; len <= 19 && a <= b; ++len, p *= 10) {
    uint64_t lo_len = len == 1 ? 0 : p, hi_len = p * 10 - 1;
    uint64_t lo = std::max(a, lo_len), hi = std::min(b, hi_len);
    if (lo > hi) continue;
    alts.push_back(digits_between(std::to_string(lo), std::to_string(hi)));
    if (hi == b) break;
  }
  return alt(std::move(alts));
}

const std::set<std::string>& unsupported_keywords() {
  static const std::set<std::string> k = {
      "pattern",          "patternProperties", "not",           "if",
      "then",             "else",              "contains",      "minContains",
      "maxContains",      "multipleOf",        "propertyNames", "dependentRequired",
      "dependentSchemas", "dependencies",      "unevaluatedProperties", "unevaluatedItems",
      "$dynamicRef",      "$recursiveRef"};
  return k;
}

bool is_constraint_free_ref(const ojson& s) {
  static const std::set<std::string> annotations = {"$ref", "description", "title", "default", "examples",
                                                    "$comment", "$defs", "definitions", "deprecated",
                                                    "readOnly", "writeOnly", "$id", "$schema", "format"};
  for (auto it = s.begin(); it != s.end(); ++it)
    if (!annotations.count(it.key())) return false;
  return true;
}

bool value_has_type(const ojson& v, const std::string& t) {
  if (t == "string") return v.is_string();
  if (t == "integer")
    return v.is_number_integer() || text::is_big_integer(v) ||
           (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>());
  if (t == "number") return v.is_number() || text::is_big_integer(v);
  if (t == "boolean") return v.is_boolean();
  if (t == "null") return v.is_null();
  if (t == "object") return v.is_object();
  if (t == "array") return v.is_array();
  return false;
}

std::vector<std::string> type_list(const ojson& s) {
  std::vector<std::string> types;
  if (!s.contains("type")) return types;
  const auto& t = s["type"];
  if (t.is_string()) {
    types.push_back(t.get<std::string>());
  } else if (t.is_array()) {
    for (const auto& x : t) {
      if (!x.is_string()) throw InputError("schema 'type' array must hold strings");
      types.push_back(x.get<std::string>());
    }
    if (types.empty()) throw InputError("schema 'type' is an empty array (admits no value)");
  } else {
    throw InputError("schema 'type' must be a string or an array of strings");
  }
  return types;
}

int64_t get_int_limit(const ojson& s, const char* key, int64_t dflt) {
  if (!s.contains(key)) return dflt;
  const auto& v = s[key];
  const std::optional<double> value = text::number_value(v);
  if (!value || *value < 0) throw InputError(std::string("schema '") + key + "' must be a non-negative number");
  const double d = *value;
  return d > 1e15 ? static_cast<int64_t>(1e15) : static_cast<int64_t>(d);
}

}  // namespace

NodeP utf8_codepoints(const std::vector<std::pair<uint32_t, uint32_t>>& ranges) {
  std::vector<NodeP> alts;
  for (auto [a, b] : ranges) utf8_range(a, b, alts);
  return alt(std::move(alts));
}

NodeP utf8_char_except_ascii(const std::vector<std::pair<uint8_t, uint8_t>>& ascii_allowed) {
  std::vector<NodeP> alts;
  if (!ascii_allowed.empty()) alts.push_back(bytes(ascii_allowed));
  utf8_range(0x80, 0x10FFFF, alts);
  return alt(std::move(alts));
}

NodeP utf8_text_avoiding(const std::string& forbidden) {
  // KMP over code points: state j = how many code points of the pattern are matched.
  const std::vector<uint32_t> p = decode_utf8(forbidden);
  const int k = static_cast<int>(p.size());
  std::vector<uint32_t> distinct(p.begin(), p.end());
  std::sort(distinct.begin(), distinct.end());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  std::vector<uint32_t> excluded = distinct;
  excluded.insert(excluded.begin(), 0);  // no NUL in raw text
  std::sort(excluded.begin(), excluded.end());
  excluded.erase(std::unique(excluded.begin(), excluded.end()), excluded.end());
  NodeP other = utf8_char_excluding(excluded);
  auto n = std::make_shared<Node>();
  n->kind = Node::Graph;
  n->nstates = k;
  n->start = 0;
  for (int j = 0; j < k; ++j) n->finals.push_back(j);
  for (int j = 0; j < k; ++j) {
    n->edges.push_back({j, 0, other});
    for (uint32_t c : distinct) {
      // Longest suffix of p[0..j) + c that is a prefix of p.
      std::vector<uint32_t> w(p.begin(), p.begin() + j);
      w.push_back(c);
      int nx = 0;
      for (int len = std::min<int>(static_cast<int>(w.size()), k); len > 0; --len) {
        if (std::equal(w.end() - len, w.end(), p.begin())) {
          nx = len;
          break;
        }
      }
      if (nx == k) continue;  // would complete the forbidden sequence
      n->edges.push_back({j, nx, lit(encode_utf8(c))});
    }
  }
  return n;
}

std::string JsonBuilder::dump(const ojson& v) {
  try {
    if (v.is_object()) {
      std::string s = "{";
      bool first = true;
      for (auto it = v.begin(); it != v.end(); ++it) {
        if (!first) s += ", ";
        first = false;
        s += ojson(it.key()).dump() + ": " + dump(it.value());
      }
      return s + "}";
    }
    if (v.is_array()) {
      std::string s = "[";
      for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + dump(v[i]);
      return s + "]";
    }
    if (text::is_big_integer(v)) return text::big_integer_text(v);  // as Python writes it
    return v.dump();
  } catch (const nlohmann::json::exception& e) {
    throw InputError(std::string("schema value cannot be serialised: ") + e.what());
  }
}

NodeP JsonBuilder::string(int min_chars, int max_chars) {
  // DSML-safe: the raw character U+FF5C never appears (it could form the ｜DSML｜ marker);
  // it can still be written as \uff5c.
  std::vector<uint32_t> excluded;
  for (uint32_t c = 0; c < 0x20; ++c) excluded.push_back(c);
  excluded.push_back('"');
  excluded.push_back('\\');
  if (dsml_safe) excluded.push_back(0xFF5C);
  NodeP ch = alt({utf8_char_excluding(excluded), seq({lit("\\"), escape_body()})});
  if (min_chars == 0 && max_chars < 0) {
    if (string_rule_ < 0) {
      string_rule_ = static_cast<int>(rs_.add_rule("string"));
      rs_.set_body(string_rule_, seq({lit("\""), star(ch), lit("\"")}));
    }
    return ref(static_cast<uint32_t>(string_rule_));
  }
  return seq({lit("\""), rep(ch, min_chars, max_chars), lit("\"")});
}

NodeP JsonBuilder::integer() {
  return seq({opt(lit("-")), alt({lit("0"), seq({byte_range('1', '9'), rep(byte_range('0', '9'), 0, 17)})})});
}

NodeP JsonBuilder::number() {
  NodeP digits = rep(byte_range('0', '9'), 1, -1);
  return seq({opt(lit("-")), alt({lit("0"), seq({byte_range('1', '9'), rep(byte_range('0', '9'), 0, 17)})}),
              opt(seq({lit("."), digits})),
              opt(seq({bytes({{'e', 'e'}, {'E', 'E'}}), opt(bytes({{'+', '+'}, {'-', '-'}})),
                       rep(byte_range('0', '9'), 1, 2)}))});
}

NodeP JsonBuilder::integer_range(bool has_lo, int64_t lo, bool has_hi, int64_t hi) {
  const int64_t big = static_cast<int64_t>(kMaxInt);
  if (!has_lo || lo < -big) lo = -big;
  if (!has_hi || hi > big) hi = big;
  if (lo > hi) throw InputError("integer range is empty (minimum > maximum)");
  std::vector<NodeP> alts;
  if (lo < 0) {
    // Negative part: -[max(1,-hi) .. -lo]
    uint64_t a = hi < 0 ? static_cast<uint64_t>(-hi) : 1, b = static_cast<uint64_t>(-lo);
    alts.push_back(seq({lit("-"), nonneg_range(a, b)}));
  }
  if (hi >= 0) alts.push_back(nonneg_range(lo < 0 ? 0 : static_cast<uint64_t>(lo), static_cast<uint64_t>(hi)));
  return alt(std::move(alts));
}

NodeP JsonBuilder::any_value() {
  if (value_rule_ < 0) {
    value_rule_ = static_cast<int>(rs_.add_rule("value"));
    NodeP v = ref(static_cast<uint32_t>(value_rule_));
    NodeP arr = seq({lit("["), opt(seq({v, star(seq({lit(", "), v}))})), lit("]")});
    rs_.set_body(value_rule_, alt({any_object(), arr, string(), number(), lit("true"), lit("false"), lit("null")}));
  }
  return ref(static_cast<uint32_t>(value_rule_));
}

NodeP JsonBuilder::any_object() {
  if (object_rule_ < 0) {
    object_rule_ = static_cast<int>(rs_.add_rule("object"));
    NodeP member = seq({string(), lit(": "), any_value()});
    rs_.set_body(object_rule_, seq({lit("{"), opt(seq({member, star(seq({lit(", "), member}))})), lit("}")}));
  }
  return ref(static_cast<uint32_t>(object_rule_));
}

NodeP JsonBuilder::schema(const ojson& s, const ojson& root) { return schema_inner(s, root, 0); }

// A child schema at a value position: complex ones become rules (called), simple ones inline.
NodeP JsonBuilder::sub(const ojson& s, const ojson& root, int depth) {
  bool complex = s.is_object() && (s.contains("properties") || s.contains("items") || s.contains("prefixItems") ||
                                   s.contains("anyOf") || s.contains("oneOf") || s.contains("allOf") ||
                                   s.contains("additionalProperties"));
  if (!complex) return schema_inner(s, root, depth + 1);
  uint32_t r = rs_.add_rule("schema#" + std::to_string(++sub_rules_));
  rs_.set_body(r, schema_inner(s, root, depth + 1));
  return ref(r);
}

namespace {
const ojson& resolve_ref(const ojson& root, const std::string& ref) {
  if (ref.empty() || ref[0] != '#')
    throw InputError("unsupported $ref '" + ref + "' (only local references such as #/$defs/Name)");
  try {
    if (ref == "#") return root;
    return root.at(ojson::json_pointer(ref.substr(1)));
  } catch (const nlohmann::json::exception&) {
    throw InputError("$ref '" + ref + "' does not resolve inside the schema");
  }
}

// Shallow merge of schema objects for allOf / anyOf branches: properties and required are
// unioned, other keywords must agree (or appear in one place only).
void merge_into(ojson& dst, const ojson& src, bool override_conflicts) {
  for (auto it = src.begin(); it != src.end(); ++it) {
    const std::string& k = it.key();
    if (k == "properties" && dst.contains("properties") && dst[k].is_object() && it->is_object()) {
      for (auto p = it->begin(); p != it->end(); ++p) dst[k][p.key()] = p.value();
    } else if (k == "required" && dst.contains("required") && dst[k].is_array() && it->is_array()) {
      for (const auto& r : *it)
        if (std::find(dst[k].begin(), dst[k].end(), r) == dst[k].end()) dst[k].push_back(r);
    } else if (k == "description" || k == "title" || k == "$defs" || k == "definitions") {
      continue;
    } else if (!dst.contains(k) || dst[k] == *it || override_conflicts) {
      dst[k] = *it;
    } else {
      throw InputError("allOf branches disagree on '" + k + "' (unsupported)");
    }
  }
}
}  // namespace

NodeP JsonBuilder::schema_inner(const ojson& s, const ojson& root, int depth) {
  if (depth > 64) throw InputError("schema nested too deeply (more than 64 levels)");
  if (s.is_boolean()) {
    if (s.get<bool>()) return any_value();
    throw InputError("schema 'false' admits no value");
  }
  if (!s.is_object()) throw InputError("a schema must be a JSON object or a boolean");
  if (!lenient) {
    for (auto it = s.begin(); it != s.end(); ++it)
      if (unsupported_keywords().count(it.key()))
        throw InputError("unsupported JSON-schema keyword '" + it.key() + "'");
    if (s.contains("uniqueItems") && s["uniqueItems"].is_boolean() && s["uniqueItems"].get<bool>())
      throw InputError("unsupported JSON-schema keyword 'uniqueItems: true'");
  }
  if (lenient && s.contains("$ref") && s["$ref"].is_string() && s["$ref"].get_ref<const std::string&>().rfind('#', 0) != 0)
    return any_value();  // a reference to another document: unconstrained here, validated later

  if (s.contains("$ref")) {
    if (!s["$ref"].is_string()) throw InputError("$ref must be a string");
    const std::string ref_s = s["$ref"].get<std::string>();
    const ojson& target = resolve_ref(root, ref_s);
    if (is_constraint_free_ref(s)) {
      for (auto& [name, rule] : ref_rules_)
        if (name == ref_s) return ref(rule);
      uint32_t r = rs_.add_rule(ref_s);
      ref_rules_.emplace_back(ref_s, r);
      rs_.set_body(r, schema_inner(target, root, depth + 1));
      return ref(r);
    }
    ojson merged = target;
    ojson rest = s;
    rest.erase("$ref");
    if (!merged.is_object()) throw InputError("$ref '" + ref_s + "' must point to a schema object");
    merge_into(merged, rest, true);
    return schema_inner(merged, root, depth + 1);
  }
  if (s.contains("allOf")) {
    if (!s["allOf"].is_array() || s["allOf"].empty()) throw InputError("allOf must be a non-empty array");
    ojson merged = s;
    merged.erase("allOf");
    for (const auto& part : s["allOf"]) {
      const ojson* p = &part;
      if (p->is_object() && p->contains("$ref") && is_constraint_free_ref(*p))
        p = &resolve_ref(root, (*p)["$ref"].get<std::string>());
      if (p->is_boolean()) {
        if (!p->get<bool>()) throw InputError("allOf contains 'false' (admits no value)");
        continue;
      }
      if (!p->is_object()) throw InputError("allOf entries must be schemas");
      if (p->contains("allOf") || p->contains("anyOf") || p->contains("oneOf") || p->contains("$ref"))
        throw InputError("nested allOf/anyOf/oneOf/$ref inside allOf is unsupported");
      merge_into(merged, *p, lenient);
    }
    return schema_inner(merged, root, depth + 1);
  }
  if (s.contains("anyOf") || s.contains("oneOf")) {
    if (s.contains("anyOf") && s.contains("oneOf") && !lenient) throw InputError("anyOf together with oneOf is unsupported");
    const char* key = s.contains("anyOf") ? "anyOf" : "oneOf";
    const auto& list = s[key];
    if (!list.is_array() || list.empty()) throw InputError(std::string(key) + " must be a non-empty array");
    ojson base = s;
    base.erase(key);
    bool base_has_constraints = false;
    for (auto it = base.begin(); it != base.end(); ++it)
      if (it.key() != "description" && it.key() != "title" && it.key() != "$defs" && it.key() != "definitions" &&
          it.key() != "default" && it.key() != "examples" && it.key() != "$schema" && it.key() != "$id")
        base_has_constraints = true;
    std::vector<NodeP> alts;
    for (const auto& branch : list) {
      if (!base_has_constraints) {
        alts.push_back(sub(branch, root, depth));
        continue;
      }
      if (branch.is_boolean()) {
        if (branch.get<bool>()) alts.push_back(sub(base, root, depth));
        continue;
      }
      ojson m = base;
      merge_into(m, branch, true);
      alts.push_back(sub(m, root, depth));
    }
    if (alts.empty()) throw InputError(std::string(key) + " admits no value");
    return alt(std::move(alts));
  }

  std::vector<std::string> types = type_list(s);
  if (s.contains("const")) {
    if (!types.empty()) {
      bool ok = false;
      for (const auto& t : types) ok = ok || value_has_type(s["const"], t);
      if (!ok) throw InputError("schema 'const' does not match its 'type' (admits no value)");
    }
    return lit(dsml_escape(dump(s["const"])));
  }
  if (s.contains("enum")) {
    if (!s["enum"].is_array()) throw InputError("schema 'enum' must be an array");
    std::vector<NodeP> alts;
    std::set<std::string> seen;
    for (const auto& v : s["enum"]) {
      if (!types.empty()) {
        bool ok = false;
        for (const auto& t : types) ok = ok || value_has_type(v, t);
        if (!ok) continue;
      }
      std::string text = dsml_escape(dump(v));
      if (seen.insert(text).second) alts.push_back(lit(text));
    }
    if (alts.empty()) throw InputError("schema 'enum' admits no value");
    return alt(std::move(alts));
  }
  if (types.empty()) {
    if (s.contains("properties") || s.contains("required") || s.contains("additionalProperties"))
      types.push_back("object");
    else if (s.contains("items") || s.contains("prefixItems") || s.contains("minItems") || s.contains("maxItems"))
      types.push_back("array");
    else if (s.contains("minLength") || s.contains("maxLength"))
      types.push_back("string");
    else
      return any_value();
  }
  std::vector<NodeP> alts;
  for (const auto& t : types) alts.push_back(typed(t, s, root, depth));
  return alt(std::move(alts));
}

std::string JsonBuilder::dsml_escape(const std::string& json_text) const {
  if (!dsml_safe) return json_text;
  // Inside JSON strings, write U+FF5C as \uff5c so no ｜DSML｜ marker can appear.
  static const std::string bar = "\xEF\xBD\x9C";
  std::string out;
  for (size_t i = 0; i < json_text.size();) {
    if (json_text.compare(i, bar.size(), bar) == 0) {
      out += "\\uff5c";
      i += bar.size();
    } else {
      out.push_back(json_text[i++]);
    }
  }
  return out;
}

NodeP JsonBuilder::typed(const std::string& t, const ojson& s, const ojson& root, int depth) {
  if (t == "string") {
    int64_t mn = get_int_limit(s, "minLength", 0), mx = get_int_limit(s, "maxLength", -1);
    if (mx >= 0 && mn > mx) throw InputError("string minLength > maxLength (admits no value)");
    if (mn > kMaxUnroll) throw InputError("string minLength above " + std::to_string(kMaxUnroll) + " is unsupported");
    if (mx > kMaxUnroll) mx = kMaxUnroll;  // shorter strings still conform
    return string(static_cast<int>(mn), static_cast<int>(mx));
  }
  if (t == "integer" || t == "number") {
    bool has_lo = false, has_hi = false;
    double lo = 0, hi = 0;
    auto bound = [&](const char* key, bool is_lo, bool exclusive_key) {
      if (!s.contains(key)) return;
      const auto& v = s[key];
      if (v.is_boolean()) return;  // draft-4 exclusive flags, handled below
      const std::optional<double> value = text::number_value(v);  // big integers too
      if (!value) throw InputError(std::string("schema '") + key + "' must be a number");
      const double d = *value;
      bool excl = exclusive_key;
      if (!exclusive_key) {
        const char* ek = is_lo ? "exclusiveMinimum" : "exclusiveMaximum";
        if (s.contains(ek) && s[ek].is_boolean() && s[ek].get<bool>()) excl = true;
      }
      double b = is_lo ? (excl ? std::floor(d) + 1 : std::ceil(d)) : (excl ? std::ceil(d) - 1 : std::floor(d));
      if (is_lo) {
        if (!has_lo || b > lo) lo = b;
        has_lo = true;
      } else {
        if (!has_hi || b < hi) hi = b;
        has_hi = true;
      }
    };
    bound("minimum", true, false);
    bound("exclusiveMinimum", true, true);
    bound("maximum", false, false);
    bound("exclusiveMaximum", false, true);
    if (!has_lo && !has_hi) return t == "integer" ? integer() : number();
    const double big = static_cast<double>(kMaxInt);
    if (has_lo && lo > big) throw InputError("number minimum is too large (unsupported)");
    if (has_hi && hi < -big) throw InputError("number maximum is too small (unsupported)");
    if (has_lo && has_hi && lo > hi)
      throw InputError(t == "integer" ? "integer range is empty" : "number range contains no integer (unsupported)");
    return integer_range(has_lo, has_lo ? static_cast<int64_t>(std::max(lo, -big)) : 0, has_hi,
                         has_hi ? static_cast<int64_t>(std::min(hi, big)) : 0);
  }
  if (t == "boolean") return alt({lit("true"), lit("false")});
  if (t == "null") return lit("null");
  if (t == "object") return object(s, root, depth);
  if (t == "array") return array(s, root, depth);
  throw InputError("unknown schema type '" + t + "'");
}

NodeP JsonBuilder::object(const ojson& s, const ojson& root, int depth) {
  struct Member {
    std::string key;
    NodeP value;
    bool required;
  };
  std::vector<Member> members;
  std::set<std::string> required;
  if (s.contains("required")) {
    if (!s["required"].is_array()) throw InputError("schema 'required' must be an array");
    for (const auto& r : s["required"]) {
      if (!r.is_string()) throw InputError("schema 'required' must hold strings");
      required.insert(r.get<std::string>());
    }
  }
  const bool has_props = s.contains("properties");
  if (has_props && !s["properties"].is_object()) throw InputError("schema 'properties' must be an object");
  std::set<std::string> named;
  if (has_props) {
    for (auto it = s["properties"].begin(); it != s["properties"].end(); ++it) {
      named.insert(it.key());
      members.push_back({it.key(), sub(it.value(), root, depth), required.count(it.key()) > 0});
    }
  }
  for (const auto& r : s.value("required", ojson::array()))
    if (!named.count(r.get<std::string>())) {
      named.insert(r.get<std::string>());
      members.push_back({r.get<std::string>(), any_value(), true});
    }
  size_t nreq = 0;
  for (const auto& m : members) nreq += m.required;
  const int64_t min_p = get_int_limit(s, "minProperties", 0), max_p = get_int_limit(s, "maxProperties", -1);
  if (members.empty()) {
    ojson addl = s.contains("additionalProperties") ? s["additionalProperties"] : ojson(true);
    if (addl.is_boolean() && !addl.get<bool>()) {
      if (min_p > 0) throw InputError("object with no properties and minProperties > 0 admits no value");
      return lit("{}");
    }
    if (min_p > 0 || max_p >= 0) throw InputError("minProperties/maxProperties on free-form objects are unsupported");
    if (addl.is_boolean()) return any_object();
    NodeP member = seq({string(), lit(": "), sub(addl, root, depth)});
    return seq({lit("{"), opt(seq({member, star(seq({lit(", "), member}))})), lit("}")});
  }
  if (min_p > static_cast<int64_t>(nreq))
    throw InputError("minProperties above the number of required properties is unsupported");
  if (max_p >= 0 && max_p < static_cast<int64_t>(members.size()))
    throw InputError("maxProperties below the number of properties is unsupported");
  // Graph: none_i (nothing written yet) and some_i (something written) for i = 0..n.
  const int n = static_cast<int>(members.size());
  auto g = std::make_shared<Node>();
  g->kind = Node::Graph;
  g->nstates = 2 * (n + 1);
  g->start = 0;
  auto none = [](int i) { return i; };
  auto some = [n](int i) { return n + 1 + i; };
  for (int i = 0; i < n; ++i) {
    NodeP m = seq({lit(dsml_escape(ojson(members[i].key).dump()) + ": "), members[i].value});
    g->edges.push_back({none(i), some(i + 1), m});
    g->edges.push_back({some(i), some(i + 1), seq({lit(", "), m})});
    if (!members[i].required) {
      g->edges.push_back({none(i), none(i + 1), nullptr});
      g->edges.push_back({some(i), some(i + 1), nullptr});
    }
  }
  g->finals = {none(n), some(n)};
  return seq({lit("{"), g, lit("}")});
}

NodeP JsonBuilder::array(const ojson& s, const ojson& root, int depth) {
  std::vector<const ojson*> prefix;
  ojson items = true;
  if (s.contains("prefixItems")) {
    if (!s["prefixItems"].is_array()) throw InputError("schema 'prefixItems' must be an array");
    for (const auto& p : s["prefixItems"]) prefix.push_back(&p);
    if (s.contains("items")) items = s["items"];
  } else if (s.contains("items") && s["items"].is_array()) {  // draft-4 tuple form
    for (const auto& p : s["items"]) prefix.push_back(&p);
    if (s.contains("additionalItems")) items = s["additionalItems"];
  } else if (s.contains("items")) {
    items = s["items"];
  }
  const bool items_allowed = !(items.is_boolean() && !items.get<bool>());
  int64_t mn = get_int_limit(s, "minItems", 0), mx = get_int_limit(s, "maxItems", -1);
  const int64_t P = static_cast<int64_t>(prefix.size());
  if (!items_allowed) mx = mx < 0 ? P : std::min(mx, P);
  if (mx >= 0 && mn > mx) throw InputError("array minItems > maxItems (admits no value)");
  if (mn > kMaxUnroll) throw InputError("array minItems above " + std::to_string(kMaxUnroll) + " is unsupported");
  if (mx > kMaxUnroll) mx = kMaxUnroll;
  const bool unbounded = mx < 0;
  const int64_t N = unbounded ? std::max<int64_t>({P, mn, 1}) : mx;
  NodeP item;
  if (items_allowed && (unbounded || N > P)) item = sub(items, root, depth);
  auto g = std::make_shared<Node>();
  g->kind = Node::Graph;
  g->nstates = static_cast<int>(N + 1);
  g->start = 0;
  for (int64_t i = 0; i < N; ++i) {
    NodeP e = i < P ? sub(*prefix[i], root, depth) : item;
    g->edges.push_back({static_cast<int>(i), static_cast<int>(i + 1), i == 0 ? e : seq({lit(", "), e})});
  }
  if (unbounded) g->edges.push_back({static_cast<int>(N), static_cast<int>(N), seq({lit(", "), item})});
  for (int64_t i = mn; i <= N; ++i) g->finals.push_back(static_cast<int>(i));
  return seq({lit("["), g, lit("]")});
}

}  // namespace gir

GrammarPtr compile_json_schema(const nlohmann::ordered_json& schema) {
  gir::RuleSet rs;
  uint32_t root = rs.add_rule("root");
  gir::JsonBuilder jb(rs);
  rs.set_body(root, jb.schema(schema, schema));
  return gir::compile(rs, root);
}

GrammarPtr compile_json_schema(const nlohmann::json& schema) {
  return compile_json_schema(nlohmann::ordered_json::parse(schema.dump()));
}

GrammarPtr compile_json_object() {
  gir::RuleSet rs;
  uint32_t root = rs.add_rule("root");
  gir::JsonBuilder jb(rs);
  rs.set_body(root, jb.any_object());
  return gir::compile(rs, root);
}

}  // namespace v4
