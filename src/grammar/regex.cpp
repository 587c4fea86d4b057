// Regular expressions in the syntax Lark terminals and OpenAI's `syntax: "regex"` grammars use
// (Python `re` / Rust `regex`), compiled to grammar IR nodes. Only the language matters here
// (the set of whole strings the pattern matches), so lazy quantifiers equal greedy ones and
// capture groups are plain groups. What changes the language in ways a byte automaton cannot
// follow (lookaround, backreferences, word boundaries, anchors in the middle) is an InputError
// naming the construct.
#include <algorithm>
#include <cstdio>
#include <map>

#include "core/error.h"
#include "grammar/ir.h"
#include "text/utf8.h"

namespace v4::gir {

namespace {

constexpr uint32_t kMaxCp = 0x10FFFF;
constexpr int kMaxRepeat = 1000;

CpSet normalized(CpSet s) {
  std::sort(s.begin(), s.end());
  CpSet out;
  for (auto [a, b] : s) {
    if (a > b) continue;
    if (!out.empty() && a <= out.back().second + 1) out.back().second = std::max(out.back().second, b);
    else out.push_back({a, b});
  }
  return out;
}

CpSet negated(const CpSet& in) {
  CpSet s = normalized(in), out;
  uint32_t next = 0;
  for (auto [a, b] : s) {
    if (a > next) out.push_back({next, a - 1});
    next = b + 1;
  }
  if (next <= kMaxCp) out.push_back({next, kMaxCp});
  return out;
}

// ASCII case folding (non-ASCII letters keep their case: documented).
CpSet case_folded(const CpSet& in) {
  CpSet s = in;
  for (auto [a, b] : in) {
    for (uint32_t c = std::max<uint32_t>(a, 'A'); c <= std::min<uint32_t>(b, 'Z'); ++c) s.push_back({c + 32, c + 32});
    for (uint32_t c = std::max<uint32_t>(a, 'a'); c <= std::min<uint32_t>(b, 'z'); ++c) s.push_back({c - 32, c - 32});
  }
  return normalized(std::move(s));
}

const CpSet& digit_set() {
  static const CpSet s = {{'0', '9'}};
  return s;
}
const CpSet& word_set() {
  static const CpSet s = {{'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}};
  return s;
}
// \s: the ASCII whitespace both Python and Rust agree on; \S: everything neither calls space
// (so generated text matches the pattern under either engine).
const CpSet& space_set() {
  static const CpSet s = {{'\t', '\r'}, {' ', ' '}};
  return s;
}
const CpSet& any_space_set() {
  static const CpSet s = {{'\t', '\r'},     {0x1C, 0x20},     {0x85, 0x85},     {0xA0, 0xA0},
                          {0x1680, 0x1680}, {0x2000, 0x200A}, {0x2028, 0x2029}, {0x202F, 0x202F},
                          {0x205F, 0x205F}, {0x3000, 0x3000}};
  return s;
}

bool in_set(const CpSet& s, uint32_t c) {
  for (auto [a, b] : s)
    if (c >= a && c <= b) return true;
  return false;
}

// Decodes one UTF-8 character at s[i] (advancing i); invalid bytes are an InputError.
uint32_t next_cp(std::string_view s, size_t& i, const char* what) {
  const size_t n = text::utf8_seq_len(s, i);
  if (n == 0) throw InputError(std::string(what) + " is not valid UTF-8");
  const uint32_t cp = text::utf8_decode_at(s, i, n);
  i += n;
  return cp;
}

std::string encode_cp(uint32_t c) {
  if (c >= 0xD800 && c <= 0xDFFF) throw InputError("a surrogate code point U+" + std::to_string(c) + " cannot be produced");
  std::string o;
  text::utf8_append(o, c);
  return o;
}

class RegexParser {
 public:
  RegexParser(std::string_view p, RegexFlags f, const CpSet* excluded) : p_(p), f_(f), excl_(excluded) {}

  NodeP parse() {
    bool ended = false;
    NodeP n = parse_alt(false, ended);
    if (pos_ < p_.size()) fail("unbalanced ')'");
    return n;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    std::string shown(p_.substr(0, 80));
    if (p_.size() > 80) shown += "…";
    throw InputError("regex /" + shown + "/: " + what + " (at offset " + std::to_string(pos_) + ")");
  }
  bool eof() const { return pos_ >= p_.size(); }
  char peek(size_t k = 0) const { return pos_ + k < p_.size() ? p_[pos_ + k] : '\0'; }

  NodeP parse_alt(bool prefix, bool& ended) {
    std::vector<NodeP> branches;
    for (;;) {
      bool e = false;
      branches.push_back(parse_seq(prefix, e));
      ended = ended || e;
      if (peek() != '|' || eof()) break;
      ++pos_;
    }
    return alt(std::move(branches));
  }

  NodeP parse_seq(bool prefix, bool& ended) {
    std::vector<NodeP> items;
    while (!eof() && peek() != '|' && peek() != ')') {
      bool anchor = false, sub_ended = false;
      const size_t at = pos_;
      NodeP a = parse_atom(prefix || !items.empty(), anchor, sub_ended);
      if (anchor) {
        if (quantifier_next()) fail("a quantifier after an anchor");
        if (sub_ended) ended = true;  // '$'
        continue;
      }
      if (ended) {
        pos_ = at;
        fail("'$' before the end of the pattern (anchors are supported only at the ends)");
      }
      a = parse_quantifiers(a);
      if (sub_ended) ended = true;
      items.push_back(std::move(a));
    }
    return items.empty() ? empty() : seq(std::move(items));
  }

  bool quantifier_next() const {
    char c = peek();
    if (eof()) return false;
    if (c == '*' || c == '+' || c == '?') return true;
    if (c == '{') {
      size_t save = pos_;
      int m, n;
      bool ok = const_cast<RegexParser*>(this)->counted(m, n);
      const_cast<RegexParser*>(this)->pos_ = save;
      return ok;
    }
    return false;
  }

  // {m} {m,} {m,n} {,n}; false (position unchanged) when the brace is not a quantifier.
  bool counted(int& m, int& n) {
    size_t i = pos_ + 1;
    auto num = [&](int& v) {
      size_t s = i;
      long long x = 0;
      while (i < p_.size() && p_[i] >= '0' && p_[i] <= '9') {
        x = x * 10 + (p_[i] - '0');
        if (x > 1000000) x = 1000000;
        ++i;
      }
      v = static_cast<int>(x);
      return i > s;
    };
    int a = 0, b = -1;
    bool has_a = num(a);
    if (i < p_.size() && p_[i] == '}') {
      if (!has_a) return false;
      b = a;
    } else if (i < p_.size() && p_[i] == ',') {
      ++i;
      if (!num(b)) b = -1;
      if (!has_a) a = 0;
      if (i >= p_.size() || p_[i] != '}') return false;
      if (!has_a && b < 0) return false;
    } else {
      return false;
    }
    pos_ = i + 1;
    m = a;
    n = b;
    return true;
  }

  NodeP parse_quantifiers(NodeP a) {
    int reps = 0;
    while (!eof()) {
      const char c = peek();
      int m = 0, n = -1;
      if (c == '*') ++pos_, m = 0, n = -1;
      else if (c == '+') ++pos_, m = 1, n = -1;
      else if (c == '?') ++pos_, m = 0, n = 1;
      else if (c == '{') {
        if (!counted(m, n)) break;
        if (m > kMaxRepeat || n > kMaxRepeat)
          fail("repetition count above " + std::to_string(kMaxRepeat));
        if (n >= 0 && m > n) fail("repetition {m,n} with m > n");
      } else {
        break;
      }
      if (peek() == '?') ++pos_;  // lazy: same language
      else if (peek() == '+') fail("possessive quantifier");
      if (++reps > 4) fail("more than four quantifiers on one item");
      a = rep(a, m, n);
    }
    return a;
  }

  NodeP chars(CpSet s) {
    if (f_.icase) s = case_folded(s);
    s = normalized(std::move(s));
    if (excl_) s = subtract(s, *excl_);
    return utf8_codepoints(s);
  }
  static CpSet subtract(const CpSet& a, const CpSet& b) {
    // a ∩ ¬b
    CpSet nb = negated(b), out;
    for (auto [x, y] : a)
      for (auto [u, v] : nb) {
        uint32_t lo = std::max(x, u), hi = std::min(y, v);
        if (lo <= hi) out.push_back({lo, hi});
      }
    return normalized(std::move(out));
  }

  NodeP literal(uint32_t c) {
    if (excl_ && in_set(*excl_, c)) fail("the character U+" + hex(c) + ", which this grammar may not produce here");
    if (f_.icase && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))) return chars({{c, c}});
    return lit(encode_cp(c));
  }
  static std::string hex(uint32_t c) {
    char b[16];
    std::snprintf(b, sizeof b, "%04X", c);
    return b;
  }

  NodeP dot() { return f_.dotall ? chars({{0, kMaxCp}}) : chars(negated({{'\n', '\n'}})); }

  NodeP parse_atom(bool prefix, bool& anchor, bool& ended) {
    const char c = peek();
    switch (c) {
      case '(': return group(prefix, ended);
      case '[': return chars(parse_class());
      case '.': ++pos_; return dot();
      case '^':
        if (prefix) fail("'^' after the start of the pattern (anchors are supported only at the ends)");
        ++pos_;
        anchor = true;
        return empty();
      case '$':
        ++pos_;
        anchor = true;
        ended = true;
        return empty();
      case '*':
      case '+':
      case '?': fail("nothing to repeat before '" + std::string(1, c) + "'");
      case '{': {
        int m, n;
        if (counted(m, n)) fail("nothing to repeat before '{'");
        ++pos_;
        return literal('{');
      }
      case '\\': {
        ++pos_;
        if (eof()) fail("a trailing backslash");
        const char e = peek();
        if (e == 'A') {
          if (prefix) fail("'\\A' after the start of the pattern");
          ++pos_;
          anchor = true;
          return empty();
        }
        if (e == 'z' || e == 'Z') {
          ++pos_;
          anchor = true;
          ended = true;
          return empty();
        }
        if (e == 'b' || e == 'B') fail("word boundary '\\" + std::string(1, e) + "'");
        CpSet s;
        if (escape(s, false)) return chars(s);
        return literal(s[0].first);
      }
      default: {
        uint32_t cp = next_cp(p_, pos_, "the regex");
        return literal(cp);
      }
    }
  }

  NodeP group(bool prefix, bool& ended) {
    if (++depth_ > kMaxDepth) fail("groups nested more than " + std::to_string(kMaxDepth) + " deep");
    struct Leave {
      int& d;
      ~Leave() { --d; }
    } leave{depth_};
    ++pos_;  // '('
    RegexFlags saved = f_;
    bool scoped = false;
    if (peek() == '?') {
      ++pos_;
      const char k = peek();
      if (k == ':') {
        ++pos_;
      } else if (k == 'P' && peek(1) == '<') {
        skip_name('>');
      } else if (k == '<' && peek(1) != '=' && peek(1) != '!') {
        skip_name('>');
      } else if (k == '=' || k == '!' || (k == '<' && (peek(1) == '=' || peek(1) == '!'))) {
        fail("lookaround '(?" + std::string(1, k) + "…)'");
      } else if (k == 'P' && peek(1) == '=') {
        fail("backreference '(?P=…)'");
      } else if (k == '#') {
        while (!eof() && peek() != ')') ++pos_;
        if (eof()) fail("unterminated comment group");
        ++pos_;
        return empty();
      } else if (k == '>') {
        fail("atomic group '(?>…)'");
      } else if (k == '(') {
        fail("conditional group '(?(…)…)'");
      } else {
        bool on = true;
        while (!eof() && peek() != ')' && peek() != ':') {
          const char fl = peek();
          if (fl == '-') on = false;
          else if (fl == 'i') f_.icase = on;
          else if (fl == 's') f_.dotall = on;
          else if (fl == 'm' || fl == 'u' || fl == 'U' || fl == 'a' || fl == 'L') {
            // multiline only moves ^/$ (supported at the ends only); unicode is the default
          } else if (fl == 'x') fail("verbose flag 'x'");
          else fail("unknown inline flag '" + std::string(1, fl) + "'");
          ++pos_;
        }
        if (eof()) fail("unterminated flag group");
        if (peek() == ')') {  // (?i) applies to the rest of the pattern
          ++pos_;
          return empty();
        }
        ++pos_;  // ':'
        scoped = true;
      }
    }
    bool e = false;
    NodeP n = parse_alt(prefix, e);
    if (peek() != ')' || eof()) fail("missing ')'");
    ++pos_;
    if (scoped) f_ = saved;
    ended = ended || e;
    return n;
  }

  void skip_name(char close) {
    while (!eof() && peek() != close) ++pos_;
    if (eof()) fail("unterminated group name");
    ++pos_;
  }

  // One escape after the backslash (pos_ at the escape letter): a class (returns true, s set)
  // or one character (returns false, s = {{c, c}}).
  bool escape(CpSet& s, bool in_class) {
    const char e = peek();
    ++pos_;
    auto one = [&](uint32_t c) {
      s = {{c, c}};
      return false;
    };
    auto hexdigits = [&](int n) {
      uint32_t v = 0;
      for (int k = 0; k < n; ++k) {
        char h = peek();
        int d = (h >= '0' && h <= '9') ? h - '0' : (h >= 'a' && h <= 'f') ? h - 'a' + 10 : (h >= 'A' && h <= 'F') ? h - 'A' + 10 : -1;
        if (d < 0) fail("bad hex escape");
        v = v * 16 + d;
        ++pos_;
      }
      return v;
    };
    switch (e) {
      case 'd': s = digit_set(); return true;
      case 'D': s = negated(digit_set()); return true;
      case 'w': s = word_set(); return true;
      case 'W': s = negated(word_set()); return true;
      case 's': s = space_set(); return true;
      case 'S': s = negated(any_space_set()); return true;
      case 'n': return one('\n');
      case 't': return one('\t');
      case 'r': return one('\r');
      case 'f': return one('\f');
      case 'v': return one('\v');
      case 'a': return one(0x07);
      case 'e': return one(0x1B);
      case 'b':
        if (in_class) return one(0x08);
        fail("word boundary '\\b'");
      case '0': {
        uint32_t v = 0;
        for (int k = 0; k < 2 && peek() >= '0' && peek() <= '7'; ++k) v = v * 8 + (peek() - '0'), ++pos_;
        return one(v);
      }
      case 'x': {
        if (peek() == '{') {
          ++pos_;
          uint32_t v = 0;
          int n = 0;
          while (!eof() && peek() != '}') v = v * 16 + hexdigits(1), ++n;
          if (eof() || n == 0 || n > 6) fail("bad \\x{…} escape");
          ++pos_;
          if (v > kMaxCp) fail("code point above U+10FFFF");
          return one(v);
        }
        return one(hexdigits(2));
      }
      case 'u': {
        if (peek() == '{') {
          ++pos_;
          uint32_t v = 0;
          int n = 0;
          while (!eof() && peek() != '}') v = v * 16 + hexdigits(1), ++n;
          if (eof() || n == 0 || n > 6) fail("bad \\u{…} escape");
          ++pos_;
          if (v > kMaxCp) fail("code point above U+10FFFF");
          return one(v);
        }
        return one(hexdigits(4));
      }
      case 'U': {
        uint32_t v = hexdigits(8);
        if (v > kMaxCp) fail("code point above U+10FFFF");
        return one(v);
      }
      case 'p':
      case 'P': fail("Unicode property class '\\" + std::string(1, e) + "{…}'");
      case 'N': fail("named character '\\N{…}'");
      case 'k': fail("backreference '\\k<…>'");
      case 'G': fail("'\\G'");
      default: break;
    }
    if (e >= '1' && e <= '9') fail("backreference '\\" + std::string(1, e) + "'");
    if ((e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z')) fail("unknown escape '\\" + std::string(1, e) + "'");
    --pos_;
    return one(next_cp(p_, pos_, "the regex"));  // an escaped punctuation or other character
  }

  CpSet parse_class() {
    ++pos_;  // '['
    bool neg = false;
    if (peek() == '^') neg = true, ++pos_;
    CpSet s;
    bool first = true;
    for (;;) {
      if (eof()) fail("missing ']'");
      if (peek() == ']' && !first) {
        ++pos_;
        break;
      }
      first = false;
      if (peek() == '[' && peek(1) == ':') fail("POSIX class '[:…:]'");
      CpSet item;
      bool is_set = false;
      if (peek() == '\\') {
        ++pos_;
        if (eof()) fail("a trailing backslash");
        is_set = escape(item, true);
      } else {
        uint32_t c = next_cp(p_, pos_, "the regex");
        item = {{c, c}};
      }
      if (!is_set && peek() == '-' && peek(1) != ']' && pos_ + 1 < p_.size()) {
        ++pos_;  // '-'
        CpSet hi;
        if (peek() == '\\') {
          ++pos_;
          if (escape(hi, true)) fail("a class escape as a range bound");
        } else {
          uint32_t c = next_cp(p_, pos_, "the regex");
          hi = {{c, c}};
        }
        if (hi[0].first < item[0].first) fail("a range with its bounds out of order");
        item = {{item[0].first, hi[0].first}};
      }
      s.insert(s.end(), item.begin(), item.end());
    }
    if (f_.icase) s = case_folded(s);
    s = normalized(std::move(s));
    return neg ? negated(s) : s;
  }

  static constexpr int kMaxDepth = 100;
  std::string_view p_;
  size_t pos_ = 0;
  int depth_ = 0;
  RegexFlags f_;
  const CpSet* excl_;
};

}  // namespace

NodeP regex(std::string_view pattern, RegexFlags flags, const CpSet* excluded) {
  RegexParser p(pattern, flags, excluded);
  return p.parse();
}

NodeP text_literal(std::string_view utf8, bool icase, const CpSet* excluded, const std::string& where) {
  std::vector<NodeP> parts;
  std::string run;
  size_t i = 0;
  while (i < utf8.size()) {
    uint32_t c = next_cp(utf8, i, where.c_str());
    if (excluded && in_set(*excluded, c))
      throw InputError(where + " contains the character U+" + [c] {
        char b[16];
        std::snprintf(b, sizeof b, "%04X", c);
        return std::string(b);
      }() + ", which this grammar may not produce here");
    const bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    if (icase && letter) {
      if (!run.empty()) parts.push_back(lit(run)), run.clear();
      const uint8_t lo = static_cast<uint8_t>(c | 0x20), up = static_cast<uint8_t>(c & ~0x20);
      parts.push_back(bytes({{up, up}, {lo, lo}}));
    } else {
      run += encode_cp(c);
    }
  }
  if (!run.empty()) parts.push_back(lit(run));
  return parts.empty() ? lit("") : seq(std::move(parts));
}

NodeP codepoint_range(uint32_t lo, uint32_t hi, const CpSet* excluded) {
  CpSet s = {{lo, hi}};
  if (excluded) {
    CpSet nb = negated(*excluded), out;
    for (auto [u, v] : nb) {
      uint32_t a = std::max(lo, u), b = std::min(hi, v);
      if (a <= b) out.push_back({a, b});
    }
    s = out;
  }
  return utf8_codepoints(s);
}

uint32_t first_codepoint(std::string_view utf8, size_t& len) {
  size_t i = 0;
  uint32_t c = next_cp(utf8, i, "a range bound");
  len = i;
  return c;
}

namespace {
size_t node_size_memo(const Node& n, size_t cap, std::map<const Node*, size_t>& memo);
}

size_t node_size(const Node& n, size_t cap) {
  std::map<const Node*, size_t> memo;
  return node_size_memo(n, cap, memo);
}

namespace {
size_t node_size_memo(const Node& n, size_t cap, std::map<const Node*, size_t>& memo) {
  auto it = memo.find(&n);
  if (it != memo.end()) return it->second;
  auto node_size = [&memo](const Node& k, size_t c) { return node_size_memo(k, c, memo); };
  size_t s = 0;
  auto add = [&](size_t x) { s = std::min(cap, s + x); };
  switch (n.kind) {
    case Node::Empty: break;
    case Node::Lit: add(n.lit.size()); break;
    case Node::Bytes: add(1); break;
    case Node::Ref: add(1); break;
    case Node::Seq:
      for (auto& k : n.kids) add(node_size(*k, cap));
      break;
    case Node::Alt:
      for (auto& k : n.kids) add(node_size(*k, cap) + 1);
      add(1);
      break;
    case Node::Rep: {
      const size_t k = node_size(*n.kids[0], cap) + 1;
      const size_t copies = n.max < 0 ? static_cast<size_t>(n.min) + 1 : static_cast<size_t>(std::max(n.max, 1));
      add(k > cap / std::max<size_t>(copies, 1) ? cap : k * copies + 2);
      break;
    }
    case Node::Graph:
      add(static_cast<size_t>(n.nstates) + 1);
      for (auto& e : n.edges)
        if (e.label) add(node_size(*e.label, cap) + 1);
      break;
  }
  memo[&n] = s;
  return s;
}
}  // namespace

}  // namespace v4::gir
