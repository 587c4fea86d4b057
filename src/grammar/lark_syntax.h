#pragma once
// Internal to the Lark reader: the syntax tree of a Lark grammar as written (rules, terminals,
// %ignore and %import directives), produced by the lexer and parser in lark_syntax.cpp and lowered
// into the grammar IR by lark.cpp. Split so that reading the format and compiling it can be read
// (and changed) apart.
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "grammar/ir.h"

namespace v4::lark_syntax {

using gir::RegexFlags;

// One node of a rule's or terminal's body: a sequence, alternation or repetition of children,
// or a leaf (a string, a regex, a character range, a reference by name).
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

inline bool is_terminal_name(const std::string& n) {
  for (char c : n) {
    if (c == '_') continue;
    return c >= 'A' && c <= 'Z';
  }
  return true;
}

// One grammar file: its rules and terminals by name, in the order rules were defined.
struct Module {
  std::map<std::string, Ex> rules, terms;
  std::vector<std::string> rule_order;
  std::vector<Ex> ignores;
  std::map<std::string, std::string> imports;  // local name -> common terminal name
};

// Parses one grammar file; errors are InputErrors naming `name` and the line.
Module parse_module(std::string_view text, const std::string& name);
// Lark's common.lark (DIGIT, INT, WS, CNAME, ESCAPED_STRING, …), parsed once, for %import common.X.
const Module& common_module();

}  // namespace v4::lark_syntax
