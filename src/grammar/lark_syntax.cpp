// The Lark grammar format read into its syntax tree (lark_syntax.h): a lexer over the grammar
// text, a recursive-descent parser of rules and terminals (their EBNF bodies, priorities) and the
// %ignore / %import directives, and Lark's common.lark terminals.
#include "grammar/lark_syntax.h"

#include "core/error.h"
#include "text/utf8.h"

namespace v4::lark_syntax {

namespace {

using gir::first_codepoint;

constexpr size_t kMaxDefinitions = 2000;

struct Tok {
  enum K { Name, Str, Re, Colon, Pipe, LPar, RPar, LSqb, RSqb, Op, Tilde, DotDot, Dot, Number, Arrow, Directive, Comma, LBrace, NL, End } k;
  std::string text;  // Name / Str (decoded) / Re / Op / Directive / Number
  bool icase = false;
  RegexFlags flags;
  int line = 0;
};

class Lexer {
 public:
  explicit Lexer(std::string_view src, const std::string& module) : s_(src), module_(module) {}

  std::vector<Tok> run() {
    std::vector<Tok> out;
    while (i_ < s_.size()) {
      const char c = s_[i_];
      if (c == '\n') {
        out.push_back(tok(Tok::NL));
        ++line_;
        ++i_;
        continue;
      }
      if (c == ' ' || c == '\t' || c == '\r' || c == '\f') {
        ++i_;
        continue;
      }
      if (c == '/' && at(1) == '/') {
        while (i_ < s_.size() && s_[i_] != '\n') ++i_;
        continue;
      }
      if (c == '#') {  // tolerated as a comment, as some hand-written grammars use it
        while (i_ < s_.size() && s_[i_] != '\n') ++i_;
        continue;
      }
      if (c == '"' || c == '\'') {
        out.push_back(string_tok(c));
        continue;
      }
      if (c == '/') {
        out.push_back(regex_tok());
        continue;
      }
      if (is_name_char(c) && !(c >= '0' && c <= '9')) {
        size_t b = i_;
        while (i_ < s_.size() && is_name_char(s_[i_])) ++i_;
        Tok t = tok(Tok::Name);
        t.text = std::string(s_.substr(b, i_ - b));
        out.push_back(t);
        continue;
      }
      if (c >= '0' && c <= '9') {
        size_t b = i_;
        while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') ++i_;
        Tok t = tok(Tok::Number);
        t.text = std::string(s_.substr(b, i_ - b));
        out.push_back(t);
        continue;
      }
      if (c == '%') {
        size_t b = ++i_;
        while (i_ < s_.size() && is_name_char(s_[i_])) ++i_;
        Tok t = tok(Tok::Directive);
        t.text = std::string(s_.substr(b, i_ - b));
        out.push_back(t);
        continue;
      }
      if (c == '-' && at(1) == '>') {
        out.push_back(tok(Tok::Arrow));
        i_ += 2;
        continue;
      }
      if (c == '.' && at(1) == '.') {
        out.push_back(tok(Tok::DotDot));
        i_ += 2;
        continue;
      }
      Tok t = tok(Tok::End);
      switch (c) {
        case ':': t.k = Tok::Colon; break;
        case '|': t.k = Tok::Pipe; break;
        case '(': t.k = Tok::LPar; break;
        case ')': t.k = Tok::RPar; break;
        case '[': t.k = Tok::LSqb; break;
        case ']': t.k = Tok::RSqb; break;
        case '{':
        case '}': fail("templates ('name{…}') are not supported");
        case '~': t.k = Tok::Tilde; break;
        case '.': t.k = Tok::Dot; break;
        case ',': t.k = Tok::Comma; break;
        case '-': t.k = Tok::Op, t.text = "-"; break;  // negative priority
        case '*':
        case '+':
        case '?':
        case '!': t.k = Tok::Op, t.text = std::string(1, c); break;
        default: fail("unexpected character '" + std::string(1, c) + "'");
      }
      out.push_back(t);
      ++i_;
    }
    out.push_back(tok(Tok::NL));
    out.push_back(tok(Tok::End));
    return out;
  }

 private:
  static bool is_name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  }
  char at(size_t k) const { return i_ + k < s_.size() ? s_[i_ + k] : '\0'; }
  Tok tok(Tok::K k) const {
    Tok t{k, "", false, {}, line_};
    return t;
  }
  [[noreturn]] void fail(const std::string& what) const {
    throw InputError(module_ + " line " + std::to_string(line_) + ": " + what);
  }

  void put_cp(std::string& o, uint32_t c) const {
    if (c >= 0xD800 && c <= 0xDFFF) fail("a surrogate escape in a string literal");
    text::utf8_append(o, c);
  }

  // A Python string literal's escapes, as Lark evaluates them.
  Tok string_tok(char q) {
    Tok t = tok(Tok::Str);
    ++i_;
    std::string v;
    for (;;) {
      if (i_ >= s_.size() || s_[i_] == '\n') fail("unterminated string literal");
      char c = s_[i_];
      if (c == q) {
        ++i_;
        break;
      }
      if (c != '\\') {
        v += c;
        ++i_;
        continue;
      }
      ++i_;
      if (i_ >= s_.size()) fail("unterminated string literal");
      char e = s_[i_++];
      auto hex = [&](int n) {
        uint32_t x = 0;
        for (int k = 0; k < n; ++k) {
          char h = i_ < s_.size() ? s_[i_] : '\0';
          int d = (h >= '0' && h <= '9') ? h - '0' : (h >= 'a' && h <= 'f') ? h - 'a' + 10 : (h >= 'A' && h <= 'F') ? h - 'A' + 10 : -1;
          if (d < 0) fail("bad hex escape in a string literal");
          x = x * 16 + d;
          ++i_;
        }
        return x;
      };
      switch (e) {
        case 'n': v += '\n'; break;
        case 't': v += '\t'; break;
        case 'r': v += '\r'; break;
        case 'f': v += '\f'; break;
        case 'v': v += '\v'; break;
        case 'a': v += '\a'; break;
        case 'b': v += '\b'; break;
        case '\\': v += '\\'; break;
        case '"': v += '"'; break;
        case '\'': v += '\''; break;
        case '\n': ++line_; break;
        case 'x': put_cp(v, hex(2)); break;
        case 'u': put_cp(v, hex(4)); break;
        case 'U': {
          uint32_t x = hex(8);
          if (x > 0x10FFFF) fail("code point above U+10FFFF in a string literal");
          put_cp(v, x);
          break;
        }
        default:
          if (e >= '0' && e <= '7') {
            uint32_t x = e - '0';
            for (int k = 0; k < 2 && i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '7'; ++k) x = x * 8 + (s_[i_++] - '0');
            put_cp(v, x);
          } else {
            v += '\\';  // Python keeps unknown escapes as written
            v += e;
          }
      }
    }
    if (i_ < s_.size() && s_[i_] == 'i' && !is_name_char(at(1))) t.icase = true, ++i_;
    t.text = v;
    return t;
  }

  Tok regex_tok() {
    Tok t = tok(Tok::Re);
    ++i_;
    std::string v;
    for (;;) {
      if (i_ >= s_.size() || s_[i_] == '\n') fail("unterminated regular expression");
      char c = s_[i_];
      if (c == '/') {
        ++i_;
        break;
      }
      if (c == '\\' && i_ + 1 < s_.size() && s_[i_ + 1] == '/') {
        v += '/';
        i_ += 2;
        continue;
      }
      if (c == '\\' && i_ + 1 < s_.size()) {
        v += c;
        v += s_[i_ + 1];
        i_ += 2;
        continue;
      }
      v += c;
      ++i_;
    }
    while (i_ < s_.size() && (s_[i_] >= 'a' && s_[i_] <= 'z')) {
      char f = s_[i_++];
      if (f == 'i') t.flags.icase = true;
      else if (f == 's') t.flags.dotall = true;
      else if (f == 'm' || f == 'u' || f == 'l') {
      } else if (f == 'x') fail("regex flag 'x' (verbose) is not supported");
      else fail("unknown regex flag '" + std::string(1, f) + "'");
    }
    t.text = v;
    return t;
  }

  std::string_view s_;
  std::string module_;
  size_t i_ = 0;
  int line_ = 1;
};

class Parser {
 public:
  Parser(std::vector<Tok> toks, const std::string& module) : t_(std::move(toks)), module_(module) {}

  Module run() {
    Module m;
    for (;;) {
      skip_nl();
      if (cur().k == Tok::End) break;
      if (m.rules.size() + m.terms.size() > kMaxDefinitions) fail("more than " + std::to_string(kMaxDefinitions) + " definitions");
      if (cur().k == Tok::Directive) {
        directive(m);
        continue;
      }
      // ['?' | '!'] NAME ['.' ['-'] NUMBER] ':' expansions
      while (cur().k == Tok::Op && (cur().text == "?" || cur().text == "!")) ++p_;
      if (cur().k != Tok::Name) fail("expected a rule or terminal definition");
      const std::string name = cur().text;
      const int line = cur().line;
      ++p_;
      if (cur().k == Tok::LBrace) fail("template rules ('" + name + "{…}') are not supported");
      if (cur().k == Tok::Dot) {
        ++p_;
        if (cur().k == Tok::Op && cur().text == "-") ++p_;
        if (cur().k != Tok::Number) fail("expected a priority number after '" + name + ".'");
        ++p_;
      }
      if (cur().k != Tok::Colon) fail("expected ':' after '" + name + "'");
      ++p_;
      Ex body = expansions();
      body.line = line;
      end_of_definition();
      auto& table = is_terminal_name(name) ? m.terms : m.rules;
      if (table.count(name)) fail("'" + name + "' is defined twice");
      if (!is_terminal_name(name)) m.rule_order.push_back(name);
      table.emplace(name, std::move(body));
    }
    return m;
  }

 private:
  const Tok& cur() const { return t_[p_]; }
  [[noreturn]] void fail(const std::string& what) const {
    throw InputError(module_ + " line " + std::to_string(cur().line) + ": " + what);
  }
  void skip_nl() {
    while (cur().k == Tok::NL) ++p_;
  }
  // A newline ends a definition unless the next line continues it with '|'.
  void skip_continuation() {
    size_t q = p_;
    while (t_[q].k == Tok::NL) ++q;
    if (q != p_ && t_[q].k == Tok::Pipe) p_ = q;
  }
  void end_of_definition() {
    if (cur().k != Tok::NL && cur().k != Tok::End) fail("unexpected token at the end of a definition");
  }

  void directive(Module& m) {
    const std::string d = cur().text;
    ++p_;
    if (d == "ignore") {
      m.ignores.push_back(expansions());
      end_of_definition();
    } else if (d == "import") {
      std::vector<std::string> path;
      for (;;) {
        if (cur().k != Tok::Name) fail("expected a module path after %import");
        path.push_back(cur().text);
        ++p_;
        if (cur().k != Tok::Dot) break;
        ++p_;
      }
      std::vector<std::pair<std::string, std::string>> names;  // (common name, local name)
      if (cur().k == Tok::LPar) {
        ++p_;
        for (;;) {
          skip_nl();
          if (cur().k != Tok::Name) fail("expected a name in %import (…)");
          names.push_back({cur().text, cur().text});
          ++p_;
          skip_nl();
          if (cur().k == Tok::Comma) {
            ++p_;
            continue;
          }
          if (cur().k != Tok::RPar) fail("expected ',' or ')' in %import (…)");
          ++p_;
          break;
        }
      } else {
        if (path.size() < 2) fail("%import needs module.NAME");
        names.push_back({path.back(), path.back()});
        path.pop_back();
        if (cur().k == Tok::Arrow) {
          ++p_;
          if (cur().k != Tok::Name) fail("expected a name after '->'");
          names.back().second = cur().text;
          ++p_;
        }
      }
      if (path.size() != 1 || path[0] != "common")
        fail("%import from '" + path[0] + "' is not supported (only Lark's 'common' terminals)");
      for (auto& [c, local] : names) {
        if (!is_terminal_name(c)) fail("'common." + c + "' is not a terminal");
        m.imports[local] = c;
      }
      end_of_definition();
    } else {
      fail("directive %" + d + " is not supported (only %import and %ignore)");
    }
  }

  Ex expansions() {
    Ex a;
    a.k = Ex::Alt;
    a.kids.push_back(alias());
    for (;;) {
      skip_continuation();
      if (cur().k != Tok::Pipe) break;
      ++p_;
      skip_nl_inside();
      a.kids.push_back(alias());
    }
    if (a.kids.size() == 1) return std::move(a.kids[0]);
    return a;
  }
  void skip_nl_inside() {
    if (depth_ > 0) skip_nl();
  }
  Ex alias() {
    Ex e = expansion();
    if (cur().k == Tok::Arrow) {  // -> alias: names the tree node, no effect on the language
      ++p_;
      if (cur().k != Tok::Name) fail("expected a name after '->'");
      ++p_;
    }
    return e;
  }
  Ex expansion() {
    Ex s;
    s.k = Ex::Seq;
    for (;;) {
      if (depth_ > 0) skip_nl();
      const auto k = cur().k;
      if (k == Tok::Name || k == Tok::Str || k == Tok::Re || k == Tok::LPar || k == Tok::LSqb) s.kids.push_back(expr());
      else break;
    }
    if (s.kids.size() == 1) return std::move(s.kids[0]);
    return s;
  }
  Ex expr() {
    Ex a = atom();
    for (int reps = 0;; ++reps) {
      if (reps > 4 && (cur().k == Tok::Tilde || cur().k == Tok::Op)) fail("more than four repetition operators on one item");
      if (cur().k == Tok::Op && (cur().text == "*" || cur().text == "+" || cur().text == "?")) {
        Ex r;
        r.k = Ex::Rep;
        r.min = cur().text == "+" ? 1 : 0;
        r.max = cur().text == "?" ? 1 : -1;
        r.kids.push_back(std::move(a));
        a = std::move(r);
        ++p_;
      } else if (cur().k == Tok::Tilde) {
        ++p_;
        if (cur().k != Tok::Number) fail("expected a number after '~'");
        const long lo = std::stol(cur().text.substr(0, 9));
        long hi = lo;
        ++p_;
        if (cur().k == Tok::DotDot) {
          ++p_;
          if (cur().k != Tok::Number) fail("expected a number after '..'");
          hi = std::stol(cur().text.substr(0, 9));
          ++p_;
        }
        if (hi < lo) fail("repetition ~ n..m with n > m");
        if (hi > 1000) fail("repetition count above 1000");
        Ex r;
        r.k = Ex::Rep;
        r.min = static_cast<int>(lo);
        r.max = static_cast<int>(hi);
        r.kids.push_back(std::move(a));
        a = std::move(r);
      } else {
        break;
      }
    }
    return a;
  }
  Ex atom() {
    Ex e;
    e.line = cur().line;
    const Tok& t = cur();
    switch (t.k) {
      case Tok::LPar:
      case Tok::LSqb: {
        const bool opt = t.k == Tok::LSqb;
        ++p_;
        if (++depth_ > 100) fail("groups nested more than 100 deep");
        skip_nl();
        Ex inner = expansions();
        skip_nl();
        --depth_;
        if (cur().k != (opt ? Tok::RSqb : Tok::RPar)) fail(opt ? "expected ']'" : "expected ')'");
        ++p_;
        if (!opt) return inner;
        e.k = Ex::Rep;
        e.min = 0;
        e.max = 1;
        e.kids.push_back(std::move(inner));
        return e;
      }
      case Tok::Str: {
        e.k = Ex::Str;
        e.s = t.text;
        e.icase = t.icase;
        ++p_;
        if (cur().k == Tok::DotDot) {
          ++p_;
          if (cur().k != Tok::Str) fail("expected a string after '..'");
          size_t la = 0, lb = 0;
          const uint32_t a = first_codepoint(e.s, la), b = first_codepoint(cur().text, lb);
          if (la != e.s.size() || lb != cur().text.size()) fail("a range \"a\"..\"z\" needs single characters");
          if (b < a) fail("a range with its bounds out of order");
          e.k = Ex::Range;
          e.lo = a;
          e.hi = b;
          ++p_;
        }
        return e;
      }
      case Tok::Re:
        e.k = Ex::Re;
        e.s = t.text;
        e.flags = t.flags;
        ++p_;
        return e;
      case Tok::Name:
        e.k = Ex::Name;
        e.s = t.text;
        ++p_;
        if (cur().k == Tok::LBrace) fail("template use '" + e.s + "{…}' is not supported");
        return e;
      default: fail("expected a symbol");
    }
  }

  std::vector<Tok> t_;
  std::string module_;
  size_t p_ = 0;
  int depth_ = 0;
};

}  // namespace

Module parse_module(std::string_view text, const std::string& name) {
  Lexer lx(text, name);
  Parser ps(lx.run(), name);
  return ps.run();
}

// Lark's common.lark terminals (ESCAPED_STRING written without its lookbehind: a quoted string
// whose backslashes escape the next character).
const char* kCommon = R"LARK(
DIGIT: "0".."9"
HEXDIGIT: "a".."f"|"A".."F"|DIGIT
INT: DIGIT+
SIGNED_INT: ["+"|"-"] INT
DECIMAL: INT "." INT? | "." INT
_EXP: ("e"|"E") SIGNED_INT
FLOAT: INT _EXP | DECIMAL _EXP?
SIGNED_FLOAT: ["+"|"-"] FLOAT
NUMBER: FLOAT | INT
SIGNED_NUMBER: ["+"|"-"] NUMBER
ESCAPED_STRING: /"(?:[^"\\\n]|\\.)*"/
LCASE_LETTER: "a".."z"
UCASE_LETTER: "A".."Z"
LETTER: UCASE_LETTER | LCASE_LETTER
WORD: LETTER+
CNAME: ("_"|LETTER) ("_"|LETTER|DIGIT)*
WS_INLINE: (" "|/\t/)+
WS: /[ \t\f\r\n]/+
CR : /\r/
LF : /\n/
NEWLINE: (CR? LF)+
SH_COMMENT: /#[^\n]*/
CPP_COMMENT: /\/\/[^\n]*/
C_COMMENT: "/*" /(.|\n)*?/ "*/"
SQL_COMMENT: /--[^\n]*/
)LARK";

const Module& common_module() {
  static const Module m = parse_module(kCommon, "common.lark");
  return m;
}

}  // namespace v4::lark_syntax
