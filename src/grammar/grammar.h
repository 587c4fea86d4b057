// Constrained decoding: grammars compiled from JSON schemas and from the DSML tool-call markup,
// and an incremental byte-level matcher (issue 4, part 6). See docs/constrained-decoding.md.
//
// A Grammar is a set of rules; every rule is a byte-level DFA whose edges either consume a byte
// or call another rule (a recursive transition network, i.e. a pushdown automaton). A matcher
// state is a small set of stacks (nondeterminism from anyOf / shared prefixes is kept as a set,
// never backtracked). Grammars are built so that every accepted prefix can be completed: no
// dead ends, so a mask is never empty before the grammar is complete.
//
// JSON is generated in one canonical layout: Python json.dumps(ensure_ascii=False) separators
// (", " between items, ": " after keys), no other whitespace, object members in the schema's
// property order (see compile_json_schema). That is also exactly the form DSML string="false"
// values take (spec §6.4).
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace v4 {

class Grammar;
using GrammarPtr = std::shared_ptr<const Grammar>;

// ---- compilers (all throw v4::InputError naming the problem for a bad/unsupported schema) ----

// JSON-schema subset: type (string or array of types), properties / required /
// additionalProperties, enum, const, items / prefixItems, minItems / maxItems, string
// minLength / maxLength, integer / number (JSON number syntax; minimum / maximum /
// exclusiveMinimum / exclusiveMaximum on integers; on numbers they restrict output to integers
// in range), boolean, null, anyOf / oneOf (oneOf treated as anyOf), allOf (shallow merge),
// $ref to #, #/$defs/... or #/definitions/... (recursion allowed), nested objects.
// Annotations (description, title, default, examples, format, $schema, $id, ...) are ignored.
// Objects: members are generated in the schema's property order (the order of `properties`
// as given; use the ordered_json overload to keep the client's order), required members always,
// optional ones may be skipped; with `properties` present no other members are generated
// (additionalProperties is not used for generation then); with no `properties`, any members
// (values per additionalProperties when it is a schema; none when it is false).
// Unsupported (InputError): pattern, patternProperties, not, if/then/else, uniqueItems: true,
// contains, multipleOf, propertyNames, dependent*, unevaluated*, $ref to other documents.
GrammarPtr compile_json_schema(const nlohmann::json& schema);
GrammarPtr compile_json_schema(const nlohmann::ordered_json& schema);

// Any JSON object (response_format json_object), same canonical layout.
GrammarPtr compile_json_object();

// ---- freeform grammars of custom tools (`format: {type: "grammar", syntax, definition}`) ----
// The language is the set of whole strings the grammar derives; see docs/constrained-decoding.md.
//
// regex (grammar_regex.cpp; Python `re` / Rust `regex` syntax): literals and escapes
// (\n \t \r \f \v \0 \xHH \x{H…} \uHHHH \UHHHHHHHH, escaped punctuation), \d \w \s (ASCII) and
// \D \W \S, `.` (any UTF-8 character but "\n"; with the s flag any), classes [...] with ranges,
// negation and escapes (UTF-8 aware), groups ( ) (?: ) (?P<n> ) (?<n> ), alternation, * + ?
// {m} {m,} {m,n} {,n} (lazy variants: same language), inline flags (?i) (?s) (?i:…), ^ $ \A \z
// \Z at the ends. InputError naming the construct: lookaround, backreferences, \b \B,
// possessive quantifiers and atomic groups, \p{…}, POSIX classes, the x flag, anchors in the
// middle, counts above 1000.
// lark (lark_syntax.cpp reads it, lark.cpp compiles it): rules `name: …` and terminals `NAME: …` (?rule !rule _rule, priorities
// .N ignored), alternatives |, ( ), [ ], ? * +, ~ n and ~ n..m, string literals with Python
// escapes and the i flag, "a".."z" ranges, /regex/flags (i s; m u l ignored), -> alias (ignored),
// %import common.X / common (X, Y) / common.X -> Y (Lark's common.lark terminals), %ignore,
// // comments; the root rule is `start`. Read scannerlessly: %ignore patterns are allowed before
// every terminal a rule uses and at the end, never inside a terminal. Nullable rules are fine,
// direct left recursion is rewritten; indirect left recursion, templates, %declare / %override /
// %extend and imports from other modules are an InputError.
// Both: bounded size (128 KiB of text, ~300k automaton states, 100k DFA states).
GrammarPtr compile_lark(const std::string& definition);
GrammarPtr compile_regex(const std::string& pattern);
// syntax "lark" | "regex"; compiled grammars (and failures) are cached process-wide by text.
GrammarPtr compile_freeform(const std::string& syntax, const std::string& definition);

// Whether the grammar can be enforced inside a DSML block, whose raw text never holds NUL or
// U+FF5C (false with the reason when a literal needs one). Parses only; no automaton is built.
bool freeform_fits_dsml(const std::string& syntax, const std::string& definition, std::string* why);

// A custom tool whose `input` must match a freeform grammar.
struct FreeformGrammar {
  std::string tool;
  std::string syntax;      // "lark" | "regex"
  std::string definition;
};

// The DSML tool block (spec §6.4), from "\n\n<｜DSML｜tool_calls>\n" through
// "</｜DSML｜tool_calls>". `openai_tools` is the request's `tools` array
// ([{type: "function", function: {name, parameters}}]); forced_name restricts to one tool
// (empty: any of them). Parameters are emitted in the order of `parameters.properties`;
// required ones always, optional ones may be skipped. A parameter whose schema is a plain
// {type: "string"} (no length limits) is emitted as string="true" raw text that cannot contain
// the "｜DSML｜" marker (so it ends at the first "</｜DSML｜parameter>"); a string enum/const as
// string="true" one of its values; everything else as string="false" JSON matching the schema.
// One invoke unless parallel_tool_calls. A tool named in `freeform` has its (string) `input`
// parameter written as raw text in that grammar's language instead, without NUL and U+FF5C
// (so it cannot form the marker); a grammar whose literals need those is an InputError.
GrammarPtr compile_dsml_tool_calls(const nlohmann::json& openai_tools, const std::string& forced_name,
                                   bool parallel_tool_calls);
GrammarPtr compile_dsml_tool_calls(const nlohmann::ordered_json& openai_tools,
                                   const std::string& forced_name, bool parallel_tool_calls,
                                   const std::vector<FreeformGrammar>& freeform = {});

// Compiled grammars by key (e.g. "schema:" + schema text, or the tools JSON + tool_choice):
// compiling costs milliseconds and each grammar keeps its token-mask cache warm, so repeated
// requests with the same schema / tools reuse both. LRU, thread-safe.
class GrammarCache {
 public:
  explicit GrammarCache(size_t capacity = 64) : capacity_(capacity) {}
  GrammarPtr get_or_compile(const std::string& key, const std::function<GrammarPtr()>& compile);
  size_t size() const;

 private:
  size_t capacity_;
  mutable std::mutex mu_;
  std::vector<std::pair<std::string, GrammarPtr>> entries_;  // most recent last
};

// ---- compiled grammar (immutable; shared by every matcher of a request) ----
class Grammar {
 public:
  // Number of DFA states over all rules, and of byte classes.
  uint32_t num_states() const { return static_cast<uint32_t>(final_.size()); }
  uint32_t num_classes() const { return nclass_; }
  uint32_t num_rules() const { return static_cast<uint32_t>(rule_start_.size()); }

  // ---- runtime tables (used by GrammarMatcher / TokenMasker; not a stable API) ----
  struct Call {
    uint32_t callee_start;  // DFA state the callee starts in
    uint32_t ret;           // state of the caller after the callee returns
  };
  int32_t next(uint32_t state, uint8_t byte) const { return trans_[state * nclass_ + cls_[byte]]; }
  bool is_final(uint32_t state) const { return final_[state] != 0; }
  bool first_has(uint32_t state, uint8_t byte) const {
    return (first_[state][byte >> 6] >> (byte & 63)) & 1;
  }
  const Call* calls_begin(uint32_t state) const { return calls_.data() + call_off_[state]; }
  const Call* calls_end(uint32_t state) const { return calls_.data() + call_off_[state + 1]; }
  bool has_calls(uint32_t state) const { return call_off_[state] != call_off_[state + 1]; }
  uint32_t root_start() const { return rule_start_[root_]; }
  // Shortest number of bytes that finishes the rule from `state` (to a final state).
  uint32_t min_finish(uint32_t state) const { return min_finish_[state]; }
  uint8_t class_rep(uint32_t cls) const { return class_rep_[cls]; }
  // Classes ordered by how readable their representative byte is (letters, digits, printable
  // ASCII, space, then the rest): shortest completions prefer readable text.
  uint32_t class_by_preference(uint32_t i) const { return class_order_[i]; }
  uint8_t byte_class(uint8_t b) const { return cls_[b]; }

  // A cache a TokenMasker keeps per (grammar, vocabulary), owned by the grammar so it lives
  // exactly as long as the grammar; created by `make` on first use (thread-safe).
  std::shared_ptr<void> attached_cache(uint64_t key, const std::function<std::shared_ptr<void>()>& make) const;

 private:
  friend struct GrammarCompiler;
  friend class GrammarMatcher;
  uint32_t nclass_ = 0;
  std::array<uint8_t, 256> cls_{};
  std::array<uint8_t, 256> class_rep_{};  // one byte of each class
  std::vector<uint32_t> class_order_;
  std::vector<int32_t> trans_;             // state * nclass + class -> state or -1
  std::vector<uint8_t> final_;
  std::vector<std::array<uint64_t, 4>> first_;  // bytes consumable from the state (direct or by calls)
  std::vector<uint32_t> call_off_;
  std::vector<Call> calls_;
  std::vector<uint32_t> rule_start_;
  std::vector<uint32_t> min_finish_;
  uint32_t root_ = 0;
  mutable std::mutex cache_mu_;
  mutable std::vector<std::pair<uint64_t, std::shared_ptr<void>>> caches_;
};

// ---- per-request matcher: a set of parse stacks; copy it to snapshot / roll back ----
class GrammarMatcher {
 public:
  static constexpr size_t kMaxDepth = 256;    // stack frames (JSON nesting) beyond this are refused
  static constexpr size_t kMaxConfigs = 64;   // ambiguity kept at most (extra parses are dropped)

  explicit GrammarMatcher(GrammarPtr grammar);

  // Consume bytes; false (and state unchanged) if they are not a valid continuation.
  bool accept(std::string_view bytes);
  bool can_accept(std::string_view bytes) const;
  // An accepting state: the output so far is a complete sentence (EOS allowed).
  bool is_complete() const;
  // True when nothing but completion (EOS) can follow.
  bool is_terminated() const;
  // A shortest byte string that completes the output (empty if already complete). Useful to
  // close the output when the token budget runs out.
  std::string shortest_completion() const;
  const GrammarPtr& grammar() const { return g_; }

  // ---- internals shared with TokenMasker ----
  // A set of stacks stored flat: stack i is data[off[i] .. off[i+1]), bottom first; the last
  // element is the current DFA state, the others are return states.
  struct Stacks {
    std::vector<uint32_t> data;
    std::vector<uint32_t> off{0};
    size_t size() const { return off.size() - 1; }
    bool empty() const { return off.size() == 1; }
    void clear() {
      data.clear();
      off.resize(1);
    }
    // Append a stack = prefix[0..n) + [top]; skipped if already present.
    void add(const uint32_t* prefix, size_t n, uint32_t top);
  };
  // out := every stack reachable from `in` by consuming byte b (out is cleared first).
  // With `escapes`, the bottom frame is never popped: when a stack would pop it, its state is
  // appended to *escapes instead (used to precompute context-independent masks).
  static void step(const Grammar& g, const Stacks& in, uint8_t b, Stacks& out,
                   std::vector<uint32_t>* escapes = nullptr);
  static bool complete(const Grammar& g, const Stacks& s);
  const Stacks& stacks() const { return cur_; }

 private:
  GrammarPtr g_;
  Stacks cur_;
};

}  // namespace v4
