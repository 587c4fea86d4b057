#include "text/unicode_compat.h"

#include <cstdio>

namespace v4::text {

namespace {
// Generated once (tests/node/gen_unicode_table.js) by comparing PCRE2 10.42's classification of
// every code point with the Hugging Face `tokenizers` pre-tokenizer (npm tokenizers 0.23.2);
// fine categories from Node's ICU. Each range is Cn in Unicode 14.
// L: 9272 code points in 35 ranges
const CodeRange kL[] = {
    {0x1C89, 0x1C8A}, {0xA7CB, 0xA7CD}, {0xA7DA, 0xA7DC}, {0x105C0, 0x105F3}, {0x10D4A, 0x10D65},
    {0x10D6F, 0x10D85}, {0x10EC2, 0x10EC4}, {0x1123F, 0x11240}, {0x11380, 0x11389},
    {0x1138B, 0x1138B}, {0x1138E, 0x1138E}, {0x11390, 0x113B5}, {0x113B7, 0x113B7},
    {0x113D1, 0x113D1}, {0x113D3, 0x113D3}, {0x11BC0, 0x11BE0}, {0x11F02, 0x11F02},
    {0x11F04, 0x11F10}, {0x11F12, 0x11F33}, {0x1342F, 0x1342F}, {0x13441, 0x13446},
    {0x13460, 0x143FA}, {0x16100, 0x1611D}, {0x16D40, 0x16D6C}, {0x18CFF, 0x18CFF},
    {0x1B132, 0x1B132}, {0x1B155, 0x1B155}, {0x1DF25, 0x1DF2A}, {0x1E030, 0x1E06D},
    {0x1E4D0, 0x1E4EB}, {0x1E5D0, 0x1E5ED}, {0x1E5F0, 0x1E5F0}, {0x2B739, 0x2B739},
    {0x2EBF0, 0x2EE5D}, {0x31350, 0x323AF},
};
// M: 93 code points in 24 ranges
const CodeRange kM[] = {
    {0x897, 0x897}, {0xCF3, 0xCF3}, {0xECE, 0xECE}, {0x10D69, 0x10D6D}, {0x10EFC, 0x10EFF},
    {0x11241, 0x11241}, {0x113B8, 0x113C0}, {0x113C2, 0x113C2}, {0x113C5, 0x113C5},
    {0x113C7, 0x113CA}, {0x113CC, 0x113D0}, {0x113D2, 0x113D2}, {0x113E1, 0x113E2},
    {0x11F00, 0x11F01}, {0x11F03, 0x11F03}, {0x11F34, 0x11F3A}, {0x11F3E, 0x11F42},
    {0x11F5A, 0x11F5A}, {0x13440, 0x13440}, {0x13447, 0x13455}, {0x1611E, 0x1612F},
    {0x1E08F, 0x1E08F}, {0x1E4EC, 0x1E4EF}, {0x1E5EE, 0x1E5EF},
};
// N: 120 code points in 10 ranges
const CodeRange kN[] = {
    {0x10D40, 0x10D49}, {0x116D0, 0x116E3}, {0x11BF0, 0x11BF9}, {0x11F50, 0x11F59},
    {0x16130, 0x16139}, {0x16D70, 0x16D79}, {0x1CCF0, 0x1CCF9}, {0x1D2C0, 0x1D2D3},
    {0x1E4F0, 0x1E4F9}, {0x1E5F1, 0x1E5FA},
};
// P: 36 code points in 10 ranges
const CodeRange kP[] = {
    {0x1B4E, 0x1B4F}, {0x1B7F, 0x1B7F}, {0x10D6E, 0x10D6E}, {0x113D4, 0x113D5}, {0x113D7, 0x113D8},
    {0x11B00, 0x11B09}, {0x11BE1, 0x11BE1}, {0x11F43, 0x11F4F}, {0x16D6D, 0x16D6F},
    {0x1E5FF, 0x1E5FF},
};
// S: 773 code points in 25 ranges
const CodeRange kS[] = {
    {0x2427, 0x2429}, {0x2FFC, 0x2FFF}, {0x31E4, 0x31E5}, {0x31EF, 0x31EF}, {0x10D8E, 0x10D8F},
    {0x1CC00, 0x1CCEF}, {0x1CD00, 0x1CEB3}, {0x1F6DC, 0x1F6DC}, {0x1F774, 0x1F776},
    {0x1F77B, 0x1F77F}, {0x1F7D9, 0x1F7D9}, {0x1F8B2, 0x1F8BB}, {0x1F8C0, 0x1F8C1},
    {0x1FA75, 0x1FA77}, {0x1FA87, 0x1FA89}, {0x1FA8F, 0x1FA8F}, {0x1FAAD, 0x1FAAF},
    {0x1FABB, 0x1FABF}, {0x1FAC6, 0x1FAC6}, {0x1FACE, 0x1FACF}, {0x1FADA, 0x1FADC},
    {0x1FADF, 0x1FADF}, {0x1FAE8, 0x1FAE9}, {0x1FAF7, 0x1FAF8}, {0x1FBCB, 0x1FBEF},
};
}  // namespace

std::span<const CodeRange> unicode_added_ranges(char cat) {
  switch (cat) {
    case 'L': return kL;
    case 'M': return kM;
    case 'N': return kN;
    case 'P': return kP;
    case 'S': return kS;
    default: return {};
  }
}

namespace {
void append_ranges(std::string& out, char cat) {
  char buf[48];
  for (const auto& r : unicode_added_ranges(cat)) {
    if (r.lo == r.hi) std::snprintf(buf, sizeof buf, "\\x{%X}", r.lo);
    else std::snprintf(buf, sizeof buf, "\\x{%X}-\\x{%X}", r.lo, r.hi);
    out += buf;
  }
}
bool widenable(char c) { return c == 'L' || c == 'M' || c == 'N' || c == 'P' || c == 'S'; }
}  // namespace

std::string widen_unicode_classes(std::string_view p) {
  std::string out;
  out.reserve(p.size() + 256);
  bool in_class = false;
  size_t class_start = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      char e = p[i + 1];
      // \p{X} or \pX with X a major category we widen.
      if (e == 'p') {
        char cat = 0;
        size_t len = 0;
        if (i + 4 < p.size() && p[i + 2] == '{' && p[i + 4] == '}' && widenable(p[i + 3])) {
          cat = p[i + 3];
          len = 5;
        } else if (i + 2 < p.size() && widenable(p[i + 2])) {
          cat = p[i + 2];
          len = 3;
        }
        if (cat) {
          if (in_class) {
            out.append(p.substr(i, len));
            append_ranges(out, cat);
          } else {
            out += '[';
            out.append(p.substr(i, len));
            append_ranges(out, cat);
            out += ']';
          }
          i += len - 1;
          continue;
        }
      }
      if (!in_class && e == 's') {
        out += "[^\\S\\x{180E}]";
        ++i;
        continue;
      }
      if (!in_class && e == 'S') {
        out += "[\\S\\x{180E}]";
        ++i;
        continue;
      }
      out += c;
      out += e;
      ++i;
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      class_start = i;
      out += c;
      // A ']' right after '[' or '[^' is literal.
      if (i + 1 < p.size() && p[i + 1] == '^') { out += '^'; ++i; }
      if (i + 1 < p.size() && p[i + 1] == ']') { out += ']'; ++i; }
      continue;
    }
    if (in_class && c == '[' && i + 1 < p.size() && p[i + 1] == ':') {
      size_t end = p.find(":]", i + 2);
      if (end != std::string_view::npos) {
        out.append(p.substr(i, end + 2 - i));
        i = end + 1;
        continue;
      }
    }
    if (in_class && c == ']' && i > class_start) {
      in_class = false;
      out += c;
      continue;
    }
    out += c;
  }
  return out;
}

}  // namespace v4::text
