// Freeform grammars of custom tools: the regex and Lark compilers on accept/reject tables (the
// regex ones checked against std::regex where the two syntaxes agree), Codex's real apply_patch
// grammar, unsupported constructs, and the DSML block with a grammar-constrained `input`
// generated at random over a synthetic vocabulary (every input matches, checked by an
// independent apply_patch checker).
#include <fstream>
#include <regex>
#include <sstream>
#include <stdexcept>

#include "core/error.h"
#include "test_grammar_util.h"

using namespace grammar_test;
using v4::GrammarMatcher;

namespace {

// The grammar @openai/codex 0.171.0 sends as the `format` of its `apply_patch` custom tool
// (captured from the /v1/responses request `codex exec` makes with model "gpt-5.5"; upstream:
// openai/codex, tool_apply_patch.lark), kept once for these tests and the node ones.
const std::string kApplyPatch = [] {
  std::ifstream f(V4_SOURCE_DIR "/tests/common/apply_patch.lark");
  std::stringstream ss;
  ss << f.rdbuf();
  if (ss.str().empty()) throw std::runtime_error("tests/common/apply_patch.lark is missing");
  return ss.str();
}();

bool full(const v4::GrammarPtr& g, const std::string& s) {
  GrammarMatcher m(g);
  return m.accept(s) && m.is_complete();
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const v4::InputError& e) {
    return e.what();
  }
  return "";
}

// An apply_patch checker written from the format's description, line by line (not from the
// grammar code under test).
bool valid_patch(const std::string& text, std::string& why) {
  std::vector<std::string> lines;
  size_t p = 0;
  while (p < text.size()) {
    size_t e = text.find('\n', p);
    if (e == std::string::npos) {
      lines.push_back(text.substr(p));
      p = text.size();
      lines.push_back("\x01no-newline");
      break;
    }
    lines.push_back(text.substr(p, e - p));
    p = e + 1;
  }
  auto starts = [](const std::string& s, const std::string& pre) { return s.rfind(pre, 0) == 0; };
  size_t i = 0;
  if (lines.empty() || lines[i++] != "*** Begin Patch") return why = "no begin line", false;
  int hunks = 0;
  for (;;) {
    if (i >= lines.size()) return why = "no end line", false;
    const std::string& l = lines[i];
    if (l == "*** End Patch") {
      ++i;
      // "*** End Patch" with or without its newline, and nothing after.
      if (i == lines.size() || (i + 1 == lines.size() && lines[i] == "\x01no-newline")) break;
      return why = "text after the end line", false;
    }
    auto name_after = [&](const std::string& pre) { return l.size() > pre.size() && starts(l, pre); };
    if (name_after("*** Add File: ")) {
      ++i;
      int n = 0;
      while (i < lines.size() && starts(lines[i], "+")) ++i, ++n;
      if (n == 0) return why = "add file without lines", false;
    } else if (name_after("*** Delete File: ")) {
      ++i;
    } else if (name_after("*** Update File: ")) {
      ++i;
      if (i < lines.size() && lines[i].size() > 14 && starts(lines[i], "*** Move to: ")) ++i;
      int n = 0;
      while (i < lines.size() && (lines[i] == "@@" || (starts(lines[i], "@@ ") && lines[i].size() > 3) ||
                                  starts(lines[i], "+") || starts(lines[i], "-") || starts(lines[i], " ")))
        ++i, ++n;
      if (n > 0 && i < lines.size() && lines[i] == "*** End of File") ++i;
    } else {
      return why = "unexpected line: " + l, false;
    }
    ++hunks;
  }
  if (hunks == 0) return why = "no hunk", false;
  return true;
}

const Vocab& vocab() {
  static const Vocab v = [] {
    Vocab x = synthetic_vocab(11, 2000);
    for (const char* t : {"*** ", "Begin", " Patch", "***", " End", "Add", " File", ": ", "Update", "Delete", "Move",
                          " to", "@@", "@@ ", "\n+", "\n-", "\n ", "+", "-", " of", "src/", ".py", "\n***"})
      x.tokens.push_back(t);
    return x;
  }();
  return v;
}
const v4::TokenMasker& masker() {
  static const v4::TokenMasker m(vocab().tokens, vocab().eos, v4::TokenMasker::Options{vocab().special, {kDsml}});
  return m;
}

std::string generate(const v4::GrammarPtr& g, uint32_t seed, int limit) {
  return generate_checked(vocab(), masker(), g, seed, limit);
}

}  // namespace

// Patterns where Python/Rust syntax and ECMAScript agree: our language must be exactly what
// std::regex_match accepts, on every string over a small alphabet up to length 4.
TEST(GrammarRegex, AgreesWithStdRegex) {
  const char* patterns[] = {
      "a",          "ab|c",         "a*",          "a+b?",          "(ab)*c",       "[a-c]+",      "[^a]b",
      "a{2}",       "a{1,3}b",      "a{2,}",       "(?:a|bc){0,2}", "\\d+",         "\\w\\s?\\W",  "x.y",
      "[\\d\\-]+",  "(a|)b",        "a*?b+?",      "^ab$",          "[a\\]]+",     "\\.\\*",
      "(a(b|c)*)+", "[^\\s]+",      "\\D\\S",      "a|b|",          "(?:)",         "[ac-]x",      "\\x61\\u0062",
  };
  const std::string alpha = "abc1 -.*]x\n";
  std::vector<std::string> strs{""};
  for (size_t len = 1, from = 0; len <= 4; ++len) {
    const size_t to = strs.size();
    for (size_t k = from; k < to; ++k)
      for (char c : alpha) strs.push_back(strs[k] + c);
    from = to;
  }
  for (const char* p : patterns) {
    auto g = v4::compile_regex(p);
    std::regex re(p, std::regex::ECMAScript);
    for (const auto& s : strs) {
      const bool want = std::regex_match(s, re);
      ASSERT_EQ(full(g, s), want) << "pattern /" << p << "/ on \"" << s << "\"";
    }
  }
}

TEST(GrammarRegex, Utf8FlagsAndEscapes) {
  auto dot = v4::compile_regex("a.c");
  EXPECT_TRUE(full(dot, "a\xC3\xA9" "c"));          // é
  EXPECT_TRUE(full(dot, "a\xF0\x9F\x98\x80" "c"));  // an emoji
  EXPECT_FALSE(full(dot, "a\nc"));
  EXPECT_FALSE(full(dot, "a\xC3" "c"));  // not UTF-8
  auto dotall = v4::compile_regex("(?s)a.c");
  EXPECT_TRUE(full(dotall, "a\nc"));
  auto neg = v4::compile_regex("[^a-z]+");
  EXPECT_TRUE(full(neg, "\n\xE4\xB8\xAD" "A1"));
  EXPECT_FALSE(full(neg, "Ab"));
  auto greek = v4::compile_regex("[\xCE\xB1-\xCF\x89]{2}");  // α-ω
  EXPECT_TRUE(full(greek, "\xCE\xB2\xCE\xB3"));
  EXPECT_FALSE(full(greek, "ab"));
  auto icase = v4::compile_regex("(?i)hello [a-c]");
  EXPECT_TRUE(full(icase, "HeLLo B"));
  EXPECT_FALSE(full(icase, "hello d"));
  auto scoped = v4::compile_regex("a(?i:b)c");
  EXPECT_TRUE(full(scoped, "aBc"));
  EXPECT_FALSE(full(scoped, "aBC"));
  auto named = v4::compile_regex("(?P<year>\\d{4})-(?<m>\\d\\d)");
  EXPECT_TRUE(full(named, "2026-12"));
  EXPECT_FALSE(full(named, "26-12"));
  auto esc = v4::compile_regex("\\t\\x{263A}\\U0001F600\\/\\{");
  EXPECT_TRUE(full(esc, "\t\xE2\x98\xBA\xF0\x9F\x98\x80/{"));
  auto brace = v4::compile_regex("a{b");  // not a quantifier: a literal brace
  EXPECT_TRUE(full(brace, "a{b"));
  auto range = v4::compile_regex("a{,2}");
  EXPECT_TRUE(full(range, "aa"));
  EXPECT_FALSE(full(range, "aaa"));
  auto bracket = v4::compile_regex("[]a]");  // Python: a leading ']' is a member
  EXPECT_TRUE(full(bracket, "]"));
  EXPECT_TRUE(full(bracket, "a"));
  auto anchors = v4::compile_regex("\\A(x|y)\\z");
  EXPECT_TRUE(full(anchors, "y"));
}

TEST(GrammarRegex, UnsupportedConstructsAreNamed) {
  struct Case {
    const char* pattern;
    const char* mentions;
  };
  for (const Case& c : std::initializer_list<Case>{{"a(?=b)", "lookaround"},
                                                   {"(?<!a)b", "lookaround"},
                                                   {"(a)\\1", "backreference"},
                                                   {"(?P<x>a)(?P=x)", "backreference"},
                                                   {"\\bword\\b", "word boundary"},
                                                   {"a++", "possessive"},
                                                   {"(?>a)", "atomic"},
                                                   {"a^b", "'^'"},
                                                   {"a$b", "'$'"},
                                                   {"\\p{L}", "Unicode property"},
                                                   {"a{5000}", "above 1000"},
                                                   {"(ab", "missing ')'"},
                                                   {"ab)", "unbalanced"},
                                                   {"[ab", "missing ']'"},
                                                   {"*a", "nothing to repeat"},
                                                   {"(?x) a", "verbose"},
                                                   {"[z-a]", "out of order"},
                                                   {"\\q", "unknown escape"}}) {
    const std::string e = error_of([&] { v4::compile_regex(c.pattern); });
    EXPECT_NE(e.find(c.mentions), std::string::npos) << c.pattern << " -> " << e;
  }
  // Huge expansions are refused by size, not built.
  const std::string e = error_of([] { v4::compile_regex("((a{1000}){1000}){1000}"); });
  EXPECT_NE(e.find("too large"), std::string::npos) << e;
}

TEST(GrammarLark, ApplyPatchAcceptsAndRejects) {
  auto g = v4::compile_lark(kApplyPatch);
  const char* good[] = {
      "*** Begin Patch\n*** Add File: hello.txt\n+Hello world\n*** End Patch\n",
      "*** Begin Patch\n*** Add File: a\n+\n+x\n*** End Patch",
      "*** Begin Patch\n*** Delete File: obsolete.txt\n*** End Patch\n",
      "*** Begin Patch\n*** Update File: src/app.py\n*** Move to: src/main.py\n@@ def greet():\n-print(\"Hi\")\n"
      "+print(\"Hello, world!\")\n*** Delete File: obsolete.txt\n*** End Patch\n",
      "*** Begin Patch\n*** Update File: x.c\n@@\n context\n-old\n+new\n*** End of File\n*** End Patch\n",
      "*** Begin Patch\n*** Update File: only-a-name\n*** End Patch\n",
      "*** Begin Patch\n*** Update File: \xE6\x96\x87\xE4\xBB\xB6.md\n+\xC3\xA9\n*** End Patch\n",
  };
  for (const char* s : good) {
    EXPECT_TRUE(full(g, s)) << s;
    std::string why;
    EXPECT_TRUE(valid_patch(s, why)) << "checker disagrees: " << why << "\n" << s;
  }
  const char* bad[] = {
      "",
      "*** Begin Patch\n*** End Patch\n",                                    // no hunk
      "*** Begin Patch\n*** Add File: a\n*** End Patch\n",                   // add without lines
      "*** Begin Patch\n*** Add File: \n+x\n*** End Patch\n",                // empty file name
      "*** Begin Patch\n*** Delete File: a\n*** End Patch\n\n",              // text after the end
      "*** Begin Patch\n*** Update File: a\nplain line\n*** End Patch\n",    // no line prefix
      "*** Begin Patch\n*** Update File: a\n@@ \n*** End Patch\n",           // "@@ " needs a header
      "*** Begin Patch\n*** Update File: a\n*** End of File\n*** End Patch\n",  // eof without a change
      "*** Begin Patch\n*** Delete File: a\n",                               // no end
      "*** begin patch\n*** Delete File: a\n*** End Patch\n",                // case matters
      "*** Begin Patch\r\n*** Delete File: a\r\n*** End Patch\r\n",          // LF only
  };
  for (const char* s : bad) {
    EXPECT_FALSE(full(g, s)) << s;
    std::string why;
    EXPECT_FALSE(valid_patch(s, why)) << "checker disagrees:\n" << s;
  }
}

TEST(GrammarLark, SyntaxFeatures) {
  // Terminals, ranges, ~ repetition, the i flag, regex flags, aliases, priorities, inline and
  // ?-rules, comments, multi-line alternatives.
  auto g = v4::compile_lark(R"LARK(
// a comment
?start: greeting name ("," name)* punct?   -> hello
greeting.2: "hello"i " " | "hi" " "
name: UPPER LOWER~1..5 | _code
_code: DIGIT~3
punct: "!"
     | "?"
UPPER: "A".."Z"
LOWER: /[a-z]/
%import common.DIGIT
)LARK");
  for (const char* s : {"hello Bob", "HeLLo Ann!", "hi 123,Zoe?", "hi Abcdef"}) EXPECT_TRUE(full(g, s)) << s;
  for (const char* s : {"hello bob", "hi Abcdefg", "hi 12", "hey Bob", "hello Bob!!", "HI Bob"}) EXPECT_FALSE(full(g, s)) << s;
}

TEST(GrammarLark, IgnoreIsAllowedBetweenTerminalsOnly) {
  auto g = v4::compile_lark(R"LARK(
start: "[" [value ("," value)*] "]"
value: NUMBER | ESCAPED_STRING | start
%import common (NUMBER, ESCAPED_STRING, WS)
%ignore WS
)LARK");
  EXPECT_TRUE(full(g, "[]"));
  EXPECT_TRUE(full(g, "[ 1 , 2.5e3 ]"));
  EXPECT_TRUE(full(g, "[\"a\\\"b\", [ ], [[1]]]  "));
  EXPECT_TRUE(full(g, "  [1,\n\t2]"));
  EXPECT_FALSE(full(g, "[1 2]"));
  EXPECT_FALSE(full(g, "[1, 2.  5]"));  // not inside a terminal (NUMBER)
  EXPECT_FALSE(full(g, "[-1]"));      // NUMBER is unsigned
  EXPECT_FALSE(full(g, "[\"a\nb\"]"));  // no newline inside ESCAPED_STRING
}

TEST(GrammarLark, NullableAndRecursiveRules) {
  // Nullable rules, nested optional calls, recursion, direct left recursion (rewritten).
  auto g = v4::compile_lark(R"LARK(
start: sum
sum: sum "+" term | sum "-" term | term
term: "(" sum ")" | NUM sign
sign: "'"?
empty:
opt: empty "x"?
NUM: /[0-9]+/
)LARK");
  for (const char* s : {"1", "1+2", "(1-2)+3'", "((7))", "1'-(2+3')"}) EXPECT_TRUE(full(g, s)) << s;
  for (const char* s : {"", "+1", "1+", "(1", "1''"}) EXPECT_FALSE(full(g, s)) << s;
  auto e = v4::compile_lark("start: a?\na: \"x\" b\nb: [\"y\"] | a\n");
  EXPECT_TRUE(full(e, ""));
  EXPECT_TRUE(full(e, "xxy"));
  EXPECT_FALSE(full(e, "y"));
}

TEST(GrammarLark, ErrorsAreNamed) {
  struct Case {
    const char* grammar;
    const char* mentions;
  };
  for (const Case& c : std::initializer_list<Case>{
           {"a: \"x\"\n", "no 'start' rule"},
           {"start: b\n", "rule 'b' is not defined"},
           {"start: B\n", "terminal 'B' is not defined"},
           {"start: A\nA: A \"x\"\n", "refers to itself"},
           {"start: a\na: b \"x\"\nb: a \"y\"\n", "left-recursive"},
           {"start: _sep{x}\n", "template"},
           {"%declare X\nstart: \"a\"\n", "%declare"},
           {"%import python.NAME\nstart: NAME\n", "only Lark's 'common'"},
           {"start: \"a\" /(?=b)/\n", "lookaround"},
           {"start: \"abc\n", "unterminated string"},
           {"start: \"a\"\nstart: \"b\"\n", "defined twice"},
           {"start: \"a\"..\"bc\"\n", "single characters"},
           {"start: x\nx: \"a\" ~ 5000\n", "above 1000"},
       }) {
    const std::string e = error_of([&] { v4::compile_lark(c.grammar); });
    EXPECT_NE(e.find(c.mentions), std::string::npos) << c.grammar << " -> " << e;
  }
}

TEST(GrammarFreeform, CacheAndDispatch) {
  auto a = v4::compile_freeform("lark", kApplyPatch);
  auto b = v4::compile_freeform("lark", kApplyPatch);
  EXPECT_EQ(a.get(), b.get());
  EXPECT_TRUE(full(v4::compile_freeform("regex", "[0-9]{3}"), "123"));
  EXPECT_NE(error_of([] { v4::compile_freeform("ebnf", "x"); }).find("not supported"), std::string::npos);
  // A failure is remembered and reported again the same way.
  const std::string e1 = error_of([] { v4::compile_freeform("regex", "(?=x)"); });
  const std::string e2 = error_of([] { v4::compile_freeform("regex", "(?=x)"); });
  EXPECT_FALSE(e1.empty());
  EXPECT_EQ(e1, e2);
}

namespace {
const ojson kCustomTools = ojson::parse(R"([
  {"type": "function", "function": {"name": "apply_patch", "parameters": {"type": "object", "properties": {"input": {"type": "string"}}, "required": ["input"]}}},
  {"type": "function", "function": {"name": "ticket", "parameters": {"type": "object", "properties": {"input": {"type": "string"}}, "required": ["input"]}}},
  {"type": "function", "function": {"name": "note", "parameters": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}}}
])");
const char* kTicket = "[A-Z]{2,4}-[1-9][0-9]{0,3}( \\((low|high)\\))?";
}  // namespace

// The DSML block with grammar-constrained custom inputs: every generated input is in the
// grammar's language (apply_patch: also by the independent checker), over seeds and lengths.
TEST(GrammarFreeform, DsmlInputsFollowTheirGrammar) {
  const std::vector<v4::FreeformGrammar> ff = {{"apply_patch", "lark", kApplyPatch}, {"ticket", "regex", kTicket}};
  const std::regex ticket_re(kTicket, std::regex::ECMAScript);
  auto patch_g = v4::compile_lark(kApplyPatch);
  int patches = 0, tickets = 0;
  for (int variant = 0; variant < 3; ++variant) {
    const std::string forced = variant == 0 ? "apply_patch" : variant == 1 ? "ticket" : "";
    auto g = v4::compile_dsml_tool_calls(kCustomTools, forced, variant == 2, ff);
    for (uint32_t seed = 0; seed < 25; ++seed) {
      const int limit = 20 + static_cast<int>(seed % 5) * 30;
      const std::string out = generate(g, seed * 7 + variant, limit);
      std::string why;
      auto calls = parse_dsml(out, why);
      ASSERT_TRUE(calls.has_value()) << why << "\n" << out;
      for (const auto& c : *calls) {
        if (c.name == "note") continue;
        ASSERT_TRUE(c.args.contains("input")) << out;
        const std::string in = c.args["input"].get<std::string>();
        EXPECT_EQ(in.find(kBar), std::string::npos);
        if (c.name == "apply_patch") {
          ++patches;
          EXPECT_TRUE(full(patch_g, in)) << in;
          EXPECT_TRUE(valid_patch(in, why)) << why << "\n" << in;
        } else {
          ++tickets;
          EXPECT_TRUE(std::regex_match(in, ticket_re)) << in;
        }
      }
    }
  }
  EXPECT_GE(patches, 25);
  EXPECT_GE(tickets, 25);
}

TEST(GrammarFreeform, DsmlRawTextNeverFormsTheMarker) {
  // `.*` would allow the marker; in the block it never contains U+FF5C (or NUL).
  const std::vector<v4::FreeformGrammar> ff = {{"apply_patch", "regex", "(.|\\n)*"}};
  auto g = v4::compile_dsml_tool_calls(kCustomTools, "apply_patch", false, ff);
  GrammarMatcher m(g);
  ASSERT_TRUE(m.accept("\n\n<" + kDsml + "tool_calls>\n<" + kDsml + "invoke name=\"apply_patch\">\n<" + kDsml +
                       "parameter name=\"input\" string=\"true\">abc"));
  EXPECT_FALSE(m.can_accept(kBar));
  EXPECT_FALSE(m.can_accept(std::string(1, '\0')));
  EXPECT_TRUE(m.can_accept("\xE4\xB8\xAD\n"));
  // A grammar whose literal needs the character cannot be enforced in the block.
  const std::vector<v4::FreeformGrammar> bar = {{"apply_patch", "lark", "start: \"a" + kBar + "\"\n"}};
  EXPECT_NE(error_of([&] { v4::compile_dsml_tool_calls(kCustomTools, "", false, bar); }).find("U+FF5C"), std::string::npos);
}

// Client grammars: malformed or hostile text is an InputError (never a crash, hang or deep
// recursion), within a bounded time.
TEST(GrammarFreeform, RandomAndHostileTextIsRefusedCleanly) {
  std::mt19937 rng(5);
  const std::string re_alpha = "ab()[]{}|*+?^$.\\-,0129:<>=!PdswDx";
  const std::string lark_alpha = "ab_AB: |()[]*+?~..\"/\n%importcommon.LF->#1";
  int compiled = 0;
  for (int i = 0; i < 3000; ++i) {
    const bool lark = i % 2 == 1;
    const std::string& al = lark ? lark_alpha : re_alpha;
    std::string t = lark ? "start: " : "";
    const size_t len = 1 + rng() % 24;
    for (size_t k = 0; k < len; ++k) t += al[rng() % al.size()];
    try {
      lark ? v4::compile_lark(t) : v4::compile_regex(t);
      ++compiled;
    } catch (const v4::InputError&) {
    }
  }
  EXPECT_GT(compiled, 50);
  std::string nested(50000, '(');
  nested.append("a").append(50000, ')');
  std::string stars("a");
  stars.append(5000, '*');
  for (const std::string* t : {&nested, &stars}) {
    EXPECT_FALSE(error_of([&] { v4::compile_regex(*t); }).empty());
    std::string g("start: ");
    g.append(*t);
    EXPECT_FALSE(error_of([&] { v4::compile_lark(g); }).empty());
  }
  std::string brackets(60000, '[');  // a class of '[' characters (Python reading): fine
  brackets.append("]");
  EXPECT_TRUE(full(v4::compile_regex(brackets), "["));
  std::string chain = "start: r0\n";
  for (int k = 0; k < 1500; ++k) {
    const std::string a = std::to_string(k), b = std::to_string(k + 1);
    chain.append("r").append(a).append(": r").append(b).append(" r").append(b).append("\n");
  }
  chain += "r1500: \"x\"\n";
  EXPECT_NE(error_of([&] { v4::compile_lark(chain); }).find("too large"), std::string::npos);  // 2^1500 if expanded
}
