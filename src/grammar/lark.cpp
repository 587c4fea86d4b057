// Lark grammars (the `syntax: "lark"` format of custom tools, e.g. Codex's apply_patch) compiled
// into the grammar IR, read scannerlessly: a terminal is the regular language of its definition,
// a rule the concatenation of its symbols, and %ignore patterns may appear before every terminal
// a rule uses and at the end of the input (never inside a terminal). That is the language a
// Lark parser accepts, except where its lexer would split the text differently (a lexer's
// longest-match choice can reject a string this reading accepts); for the grammars agents send
// (line-oriented formats like apply_patch) the two agree.
//
// Rules become IR rules (recursion allowed). The IR needs called rules to be non-empty, so every
// rule is compiled as its non-empty part and a reference to a nullable rule becomes an optional
// call; direct left recursion (A: A x | y) is rewritten to A: y x*. Other left recursion is an
// InputError.
#include <functional>
#include <map>
#include <mutex>
#include <set>

#include "core/error.h"
#include "grammar/ir.h"
#include "text/utf8.h"

namespace v4 {

namespace {

using namespace gir;

constexpr size_t kMaxGrammarBytes = 128 * 1024;
constexpr size_t kMaxDefinitions = 2000;
constexpr size_t kMaxStates = 300000;      // NFA estimate over all rules
constexpr uint32_t kMaxDfa = 100000;       // DFA states of a freeform grammar

// ---- syntax tree ----
struct Ex {
  enum K { Seq, Alt, Rep, Str, Re, Range, Name } k = Seq;
  std::vector<Ex> kids;
  int min = 0, max = -1;
  std::string s;  // Str text (decoded) / Re pattern / Name
  bool icase = false;
  RegexFlags flags;
  uint32_t lo = 0, hi = 0;
  int line = 0;
};

bool is_terminal_name(const std::string& n) {
  for (char c : n) {
    if (c == '_') continue;
    return c >= 'A' && c <= 'Z';
  }
  return true;
}

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

struct Module {
  std::map<std::string, Ex> rules, terms;
  std::vector<std::string> rule_order;
  std::vector<Ex> ignores;
  std::map<std::string, std::string> imports;  // local name -> common terminal name
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

// Sequence, alternation and repetition as IR nodes; symbols by `leaf`.
template <class Leaf>
NodeP lower_tree(const Ex& e, const Leaf& leaf) {
  std::vector<NodeP> k;
  switch (e.k) {
    case Ex::Seq:
      for (auto& x : e.kids) k.push_back(lower_tree(x, leaf));
      return k.empty() ? empty() : seq(std::move(k));
    case Ex::Alt:
      for (auto& x : e.kids) k.push_back(lower_tree(x, leaf));
      return alt(std::move(k));
    case Ex::Rep: return rep(lower_tree(e.kids[0], leaf), e.min, e.max);
    default: return leaf(e);
  }
}

// Lowers terminals (regular, inlined) of one module.
class Terminals {
 public:
  Terminals(const Module& m, const CpSet* excluded, Terminals* common) : m_(m), excl_(excluded), common_(common) {}

  NodeP named(const std::string& name, int line) {
    auto it = done_.find(name);
    if (it != done_.end()) return it->second;
    auto imp = m_.imports.find(name);
    if (imp != m_.imports.end() && !m_.terms.count(name)) {
      if (!common_ || !common_->m_.terms.count(imp->second))
        throw InputError("lark grammar: 'common." + imp->second + "' is not a terminal of Lark's common.lark");
      return done_[name] = common_->named(imp->second, line);
    }
    auto d = m_.terms.find(name);
    if (d == m_.terms.end())
      throw InputError("lark grammar line " + std::to_string(line) + ": terminal '" + name + "' is not defined");
    if (!busy_.insert(name).second)
      throw InputError("lark grammar: terminal '" + name + "' refers to itself (terminals must be regular)");
    NodeP n = lower(d->second);
    busy_.erase(name);
    return done_[name] = n;
  }

  NodeP lower(const Ex& e) {
    return lower_tree(e, [this](const Ex& x) { return leaf(x); });
  }

 private:
  NodeP leaf(const Ex& e) {
    switch (e.k) {
      case Ex::Str: return text_literal(e.s, e.icase, excl_, "lark grammar line " + std::to_string(e.line) + ": string \"" + e.s.substr(0, 40) + "\"");
      case Ex::Range: return codepoint_range(e.lo, e.hi, excl_);
      case Ex::Re: return regex(e.s, e.flags, excl_);
      case Ex::Name:
        if (!is_terminal_name(e.s))
          throw InputError("lark grammar line " + std::to_string(e.line) + ": a terminal cannot use the rule '" + e.s + "'");
        return named(e.s, e.line);
      default: return empty();  // structure: lower_tree
    }
  }

  const Module& m_;
  const CpSet* excl_;
  Terminals* common_;
  std::map<std::string, NodeP> done_;
  std::set<std::string> busy_;
};

// Nullability / non-empty rewriting over IR nodes whose Refs name Lark rules.
class Nullable {
 public:
  explicit Nullable(const std::vector<char>& rule_nullable) : rn_(rule_nullable) {}

  bool nullable(const NodeP& n) {
    auto it = null_.find(n.get());
    if (it != null_.end()) return it->second;
    return null_[n.get()] = nullable_uncached(n);
  }
  bool nullable_uncached(const NodeP& n) {
    switch (n->kind) {
      case Node::Empty: return true;
      case Node::Lit: return n->lit.empty();
      case Node::Bytes: return false;
      case Node::Ref: return rn_[n->rule];
      case Node::Seq:
        for (auto& k : n->kids)
          if (!nullable(k)) return false;
        return true;
      case Node::Alt:
        for (auto& k : n->kids)
          if (nullable(k)) return true;
        return false;
      case Node::Rep: return n->min == 0 || nullable(n->kids[0]);
      case Node::Graph: return false;
    }
    return false;
  }

  // The same language, with references to nullable rules made optional calls of their
  // non-empty part.
  NodeP full(const NodeP& n) {
    auto it = full_.find(n.get());
    if (it != full_.end()) return it->second;
    NodeP r;
    switch (n->kind) {
      case Node::Ref: r = rn_[n->rule] ? opt(n) : n; break;
      case Node::Seq: {
        std::vector<NodeP> k;
        for (auto& x : n->kids) k.push_back(full(x));
        r = seq(std::move(k));
        break;
      }
      case Node::Alt: {
        std::vector<NodeP> k;
        for (auto& x : n->kids) k.push_back(full(x));
        r = alt(std::move(k));
        break;
      }
      case Node::Rep:
        if (nullable(n->kids[0])) {
          NodeP ne = nonempty(n->kids[0]);
          r = ne ? rep(ne, 0, n->max) : empty();
        } else {
          r = rep(full(n->kids[0]), n->min, n->max);
        }
        break;
      default: r = n;
    }
    full_[n.get()] = r;
    return r;
  }

  // The language minus the empty string (nullptr when nothing is left).
  NodeP nonempty(const NodeP& n) {
    if (!nullable(n)) return full(n);
    auto it = ne_.find(n.get());
    if (it != ne_.end()) return it->second;
    NodeP r;
    switch (n->kind) {
      case Node::Empty: r = nullptr; break;
      case Node::Lit: r = nullptr; break;  // the empty literal
      case Node::Ref: r = n; break;        // the rule's body is its non-empty part
      case Node::Seq: {
        // NE(a b...) = NE(a) full(b...) | NE(b...)   (a is nullable here, as the whole is)
        std::vector<NodeP> alts;
        for (size_t i = 0; i < n->kids.size(); ++i) {
          NodeP head = nonempty(n->kids[i]);
          if (head) {
            std::vector<NodeP> parts{head};
            for (size_t j = i + 1; j < n->kids.size(); ++j) parts.push_back(full(n->kids[j]));
            alts.push_back(seq(std::move(parts)));
          }
          // continue: the prefix kids[0..i] all matched empty
        }
        r = alts.empty() ? nullptr : alt(std::move(alts));
        break;
      }
      case Node::Alt: {
        std::vector<NodeP> alts;
        for (auto& k : n->kids)
          if (NodeP x = nonempty(k)) alts.push_back(x);
        r = alts.empty() ? nullptr : alt(std::move(alts));
        break;
      }
      case Node::Rep: {
        if (n->max == 0) {
          r = nullptr;
          break;
        }
        NodeP ne = nonempty(n->kids[0]);
        r = ne ? rep(ne, 1, n->max) : nullptr;
        break;
      }
      default: r = nullptr;
    }
    ne_[n.get()] = r;
    return r;
  }

 private:
  const std::vector<char>& rn_;
  std::map<const Node*, NodeP> full_, ne_;
  std::map<const Node*, bool> null_;
};

// Direct left recursion A: A x | A y | z  ->  A: z (x | y)*  (on the syntax tree).
void remove_direct_left_recursion(const std::string& name, Ex& body) {
  std::vector<Ex> alts = body.k == Ex::Alt ? body.kids : std::vector<Ex>{body};
  std::vector<Ex> rec, base;
  for (auto& a : alts) {
    const Ex* first = a.k == Ex::Seq ? (a.kids.empty() ? nullptr : &a.kids[0]) : &a;
    if (first && first->k == Ex::Name && first->s == name) {
      Ex tail;
      tail.k = Ex::Seq;
      if (a.k == Ex::Seq) tail.kids.assign(a.kids.begin() + 1, a.kids.end());
      rec.push_back(std::move(tail));
    } else {
      base.push_back(a);
    }
  }
  if (rec.empty() || base.empty()) return;
  Ex b, t, star, s;
  b.k = Ex::Alt;
  b.kids = std::move(base);
  t.k = Ex::Alt;
  t.kids = std::move(rec);
  star.k = Ex::Rep;
  star.min = 0;
  star.max = -1;
  star.kids.push_back(std::move(t));
  s.k = Ex::Seq;
  s.kids.push_back(std::move(b));
  s.kids.push_back(std::move(star));
  body = std::move(s);
}

class RuleLowering {
 public:
  RuleLowering(const Module& m, RuleSet& rs, Terminals& terms, NodeP ignore)
      : m_(m), rs_(rs), terms_(terms), ign_(std::move(ignore)) {
    for (auto& name : m_.rule_order) ids_[name] = rs_.add_rule("lark:" + name);
  }

  NodeP term(NodeP t) { return ign_ ? seq({star(ign_), std::move(t)}) : t; }

  NodeP lower(const Ex& e) {
    return lower_tree(e, [this](const Ex& x) { return leaf(x); });
  }

  const std::map<std::string, uint32_t>& ids() const { return ids_; }

 private:
  NodeP leaf(const Ex& e) {
    switch (e.k) {
      case Ex::Str:
      case Ex::Range:
      case Ex::Re: return term(terms_.lower(e));
      case Ex::Name: {
        if (is_terminal_name(e.s)) return term(terms_.named(e.s, e.line));
        auto it = ids_.find(e.s);
        if (it == ids_.end())
          throw InputError("lark grammar line " + std::to_string(e.line) + ": rule '" + e.s + "' is not defined");
        return ref(it->second);
      }
      default: return empty();  // structure: lower_tree
    }
  }

  const Module& m_;
  RuleSet& rs_;
  Terminals& terms_;
  NodeP ign_;
  std::map<std::string, uint32_t> ids_;
};

NodeP lark_node(RuleSet& rs, const std::string& text, const CpSet* excluded) {
  if (text.size() > kMaxGrammarBytes)
    throw InputError("lark grammar is larger than " + std::to_string(kMaxGrammarBytes / 1024) + " KiB");
  Module m = parse_module(text, "lark grammar");
  if (!m.rules.count("start")) throw InputError("lark grammar has no 'start' rule");
  for (auto& [name, body] : m.rules) remove_direct_left_recursion(name, body);

  Terminals common(common_module(), excluded, nullptr);
  Terminals terms(m, excluded, &common);
  NodeP ign;
  if (!m.ignores.empty()) {
    std::vector<NodeP> k;
    for (auto& e : m.ignores) k.push_back(terms.lower(e));
    ign = alt(std::move(k));
  }
  RuleLowering rl(m, rs, terms, ign);
  std::map<uint32_t, NodeP> raw;
  for (auto& name : m.rule_order) raw[rl.ids().at(name)] = rl.lower(m.rules.at(name));

  // Rules on no cycle are inlined (a grammar without recursion, like apply_patch, becomes one
  // automaton: one matcher state per position, so every token mask is cached after its first
  // use); only recursive rules stay IR rules.
  std::map<uint32_t, std::set<uint32_t>> calls;
  {
    std::set<const Node*> seen;
    std::function<void(uint32_t, const NodeP&)> walk = [&](uint32_t r, const NodeP& n) {
      if (!seen.insert(n.get()).second) return;
      if (n->kind == Node::Ref) calls[r].insert(n->rule);
      for (auto& k : n->kids) walk(r, k);
    };
    for (auto& [id, body] : raw) {
      seen.clear();
      walk(id, body);
    }
  }
  std::set<uint32_t> recursive;
  for (auto& [id, body] : raw) {
    std::set<uint32_t> reach;
    std::vector<uint32_t> todo(calls[id].begin(), calls[id].end());
    while (!todo.empty()) {
      uint32_t x = todo.back();
      todo.pop_back();
      if (!reach.insert(x).second) continue;
      for (uint32_t y : calls[x]) todo.push_back(y);
    }
    if (reach.count(id)) recursive.insert(id);
  }
  {
    std::map<const Node*, NodeP> memo;
    std::map<uint32_t, NodeP> inlined;
    std::function<NodeP(const NodeP&)> subst = [&](const NodeP& n) -> NodeP {
      auto it = memo.find(n.get());
      if (it != memo.end()) return it->second;
      NodeP r = n;
      if (n->kind == Node::Ref) {
        if (!recursive.count(n->rule)) {
          auto jt = inlined.find(n->rule);
          if (jt == inlined.end()) jt = inlined.emplace(n->rule, subst(raw.at(n->rule))).first;
          r = jt->second;
        }
      } else if (!n->kids.empty()) {
        std::vector<NodeP> kids;
        bool changed = false;
        for (auto& k : n->kids) {
          kids.push_back(subst(k));
          changed = changed || kids.back() != k;
        }
        if (changed) {
          auto c = std::make_shared<Node>(*n);
          c->kids = std::move(kids);
          r = c;
        }
      }
      memo[n.get()] = r;
      return r;
    };
    for (auto& [id, body] : raw) body = recursive.count(id) ? subst(body) : subst(ref(id));
    for (auto& [id, body] : raw)
      if (!recursive.count(id) && rl.ids().at("start") != id) body = alt({});  // inlined where used
  }

  // Nullable rules (fixpoint), then each rule's body becomes its non-empty part.
  std::vector<char> rn(rs.bodies().size(), 0);
  for (bool changed = true; changed;) {
    changed = false;
    Nullable nl(rn);
    for (auto& [id, body] : raw)
      if (!rn[id] && nl.nullable(body)) rn[id] = 1, changed = true;
  }
  Nullable nl(rn);
  size_t total = 0;
  for (auto& [id, body] : raw) {
    NodeP ne = nl.nonempty(body);
    NodeP b = ne ? ne : alt({});  // a rule that only matches "" is never called
    total += node_size(*b, kMaxStates + 1);
    if (total > kMaxStates)
      throw InputError("lark grammar too large (expands to more than " + std::to_string(kMaxStates) + " automaton states)");
    rs.set_body(id, b);
  }
  const uint32_t start = rl.ids().at("start");
  NodeP root = recursive.count(start) ? nl.full(ref(start)) : nl.full(raw.at(start));
  if (!recursive.count(start)) rs.set_body(start, alt({}));
  if (node_size(*root, kMaxStates + 1) + total > kMaxStates)
    throw InputError("lark grammar too large (expands to more than " + std::to_string(kMaxStates) + " automaton states)");
  if (ign) root = seq({root, star(ign)});
  return root;
}

NodeP regex_node(const std::string& pattern, const CpSet* excluded) {
  if (pattern.size() > kMaxGrammarBytes)
    throw InputError("regex grammar is larger than " + std::to_string(kMaxGrammarBytes / 1024) + " KiB");
  NodeP n = regex(pattern, {}, excluded);
  if (node_size(*n, kMaxStates + 1) > kMaxStates)
    throw InputError("regex grammar too large (expands to more than " + std::to_string(kMaxStates) + " automaton states)");
  return n;
}

GrammarPtr compile_standalone(const std::string& syntax, const std::string& definition) {
  RuleSet rs;
  const uint32_t root = rs.add_rule(syntax);
  NodeP body;
  if (syntax == "lark") body = lark_node(rs, definition, nullptr);
  else if (syntax == "regex") body = regex_node(definition, nullptr);
  else throw InputError("grammar syntax '" + syntax + "' is not supported (only \"lark\" and \"regex\")");
  rs.set_body(root, body);
  try {
    return compile(rs, root, kMaxDfa);
  } catch (const InputError& e) {
    throw InputError(syntax + " grammar: " + e.what());
  }
}

}  // namespace

namespace gir {
NodeP freeform_node(RuleSet& rs, const std::string& syntax, const std::string& definition, const CpSet* excluded) {
  if (syntax == "lark") return lark_node(rs, definition, excluded);
  if (syntax == "regex") return regex_node(definition, excluded);
  throw InputError("grammar syntax '" + syntax + "' is not supported (only \"lark\" and \"regex\")");
}
}  // namespace gir

bool freeform_fits_dsml(const std::string& syntax, const std::string& definition, std::string* why) {
  static const CpSet kRawExcluded = {{0, 0}, {0xFF5C, 0xFF5C}};
  try {
    RuleSet scratch;
    freeform_node(scratch, syntax, definition, &kRawExcluded);
    return true;
  } catch (const InputError& e) {
    if (why) *why = e.what();
    return false;
  }
}

GrammarPtr compile_lark(const std::string& definition) { return compile_standalone("lark", definition); }
GrammarPtr compile_regex(const std::string& pattern) { return compile_standalone("regex", pattern); }

GrammarPtr compile_freeform(const std::string& syntax, const std::string& definition) {
  // Clients resend the same grammar every turn (Codex: apply_patch); failures are remembered
  // too, so a grammar that cannot be compiled costs its compile once.
  static GrammarCache cache(32);
  static std::mutex mu;
  static std::vector<std::pair<std::string, std::string>> failed;  // key -> message, most recent last
  const std::string key = syntax + '\0' + definition;
  {
    std::lock_guard<std::mutex> lk(mu);
    for (auto& [k, msg] : failed)
      if (k == key) throw InputError(msg);
  }
  try {
    return cache.get_or_compile(key, [&] { return compile_standalone(syntax, definition); });
  } catch (const InputError& e) {
    std::lock_guard<std::mutex> lk(mu);
    failed.emplace_back(key, e.what());
    if (failed.size() > 32) failed.erase(failed.begin());
    throw;
  }
}

}  // namespace v4
