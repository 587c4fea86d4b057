// Internal grammar IR used by the schema / DSML compilers (not part of the public API).
// A rule body is a tree (DAG) of nodes; Ref nodes call other rules (recursion allowed, but a
// called rule must not match the empty string and rules must not be left-recursive).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "grammar/grammar.h"

namespace v4::gir {

struct Node;
using NodeP = std::shared_ptr<const Node>;

struct Node {
  enum Kind { Empty, Lit, Bytes, Seq, Alt, Rep, Ref, Graph } kind = Empty;
  std::string lit;                                  // Lit
  std::vector<std::pair<uint8_t, uint8_t>> ranges;  // Bytes: inclusive byte ranges
  std::vector<NodeP> kids;                          // Seq, Alt, Rep (1 kid)
  int min = 0, max = -1;                            // Rep (max -1 = unbounded)
  uint32_t rule = 0;                                // Ref
  // Graph: a small automaton whose edges are labelled by nodes (nullptr = epsilon).
  struct Edge {
    int from, to;
    NodeP label;
  };
  int nstates = 0, start = 0;
  std::vector<int> finals;
  std::vector<Edge> edges;
};

inline NodeP empty() { return std::make_shared<Node>(); }
inline NodeP lit(std::string s) {
  auto n = std::make_shared<Node>();
  n->kind = Node::Lit;
  n->lit = std::move(s);
  return n;
}
inline NodeP bytes(std::vector<std::pair<uint8_t, uint8_t>> r) {
  auto n = std::make_shared<Node>();
  n->kind = Node::Bytes;
  n->ranges = std::move(r);
  return n;
}
inline NodeP byte_range(uint8_t lo, uint8_t hi) { return bytes({{lo, hi}}); }
inline NodeP seq(std::vector<NodeP> k) {
  if (k.size() == 1) return k[0];
  auto n = std::make_shared<Node>();
  n->kind = Node::Seq;
  n->kids = std::move(k);
  return n;
}
inline NodeP alt(std::vector<NodeP> k) {
  if (k.size() == 1) return k[0];
  auto n = std::make_shared<Node>();
  n->kind = Node::Alt;
  n->kids = std::move(k);
  return n;
}
inline NodeP rep(NodeP k, int min, int max) {
  auto n = std::make_shared<Node>();
  n->kind = Node::Rep;
  n->kids = {std::move(k)};
  n->min = min;
  n->max = max;
  return n;
}
inline NodeP star(NodeP k) { return rep(std::move(k), 0, -1); }
inline NodeP opt(NodeP k) { return rep(std::move(k), 0, 1); }
inline NodeP ref(uint32_t rule) {
  auto n = std::make_shared<Node>();
  n->kind = Node::Ref;
  n->rule = rule;
  return n;
}

// A set of rules being built; compile() turns it into a Grammar.
class RuleSet {
 public:
  uint32_t add_rule(std::string name) {
    names_.push_back(std::move(name));
    bodies_.push_back(nullptr);
    return static_cast<uint32_t>(bodies_.size() - 1);
  }
  void set_body(uint32_t rule, NodeP body) { bodies_[rule] = std::move(body); }
  const std::vector<NodeP>& bodies() const { return bodies_; }
  const std::vector<std::string>& names() const { return names_; }

 private:
  std::vector<NodeP> bodies_;
  std::vector<std::string> names_;
};

// Compile the rule set into DFAs; `root` is the start rule. Throws InputError when the grammar
// is too large, a rule matches nothing, a called rule can be empty, or rules are left-recursive.
// `max_dfa_states` bounds the work for grammars that come from clients.
GrammarPtr compile(const RuleSet& rules, uint32_t root, uint32_t max_dfa_states = 400000);

// A custom tool's grammar (`syntax` "lark" or "regex", lark.cpp) as a node of `rules`
// (Lark rules are added to it). `excluded` code points are never produced.
NodeP freeform_node(RuleSet& rules, const std::string& syntax, const std::string& definition,
                    const std::vector<std::pair<uint32_t, uint32_t>>* excluded);

// ---- reusable JSON pieces (grammar_json.cpp) ----
class JsonBuilder {
 public:
  explicit JsonBuilder(RuleSet& rs) : rs_(rs) {}
  // Any JSON value / object in the canonical layout (rules created on first use).
  NodeP any_value();
  NodeP any_object();
  // A JSON string (quotes included) with min..max characters (max -1 = unbounded).
  NodeP string(int min_chars = 0, int max_chars = -1);
  NodeP number();
  NodeP integer();
  // Integers in [lo, hi] (either bound optional).
  NodeP integer_range(bool has_lo, int64_t lo, bool has_hi, int64_t hi);
  // A node for a schema (root = the document $ref resolves against).
  NodeP schema(const nlohmann::ordered_json& s, const nlohmann::ordered_json& root);
  // Canonical text of a JSON value (Python json.dumps(ensure_ascii=False) layout).
  static std::string dump(const nlohmann::ordered_json& v);
  // In DSML mode the raw character U+FF5C never appears inside JSON text (it is written as
  // \uff5c), so no string value can form the ｜DSML｜ marker.
  bool dsml_safe = false;
  std::string dsml_escape(const std::string& json_text) const;
  // Tool schemas as agents write them: keywords the grammar cannot express (pattern,
  // propertyNames, not, if/then/else, uniqueItems, external $ref, …) are left out of the
  // grammar (it then admits a superset) instead of refusing the schema; the finished call is
  // still validated against the whole schema.
  bool lenient = false;

 private:
  NodeP schema_inner(const nlohmann::ordered_json& s, const nlohmann::ordered_json& root, int depth);
  NodeP typed(const std::string& type, const nlohmann::ordered_json& s,
              const nlohmann::ordered_json& root, int depth);
  NodeP object(const nlohmann::ordered_json& s, const nlohmann::ordered_json& root, int depth);
  NodeP array(const nlohmann::ordered_json& s, const nlohmann::ordered_json& root, int depth);
  NodeP sub(const nlohmann::ordered_json& s, const nlohmann::ordered_json& root, int depth);
  RuleSet& rs_;
  int value_rule_ = -1, object_rule_ = -1, string_rule_ = -1;
  std::vector<std::pair<std::string, uint32_t>> ref_rules_;
  int sub_rules_ = 0;
};

// UTF-8 character classes as byte-sequence alternatives.
NodeP utf8_char_except_ascii(const std::vector<std::pair<uint8_t, uint8_t>>& ascii_allowed);
// Any one of the code points in `ranges` (inclusive, sorted or not; surrogates are skipped).
// An empty list is the empty language (no string).
NodeP utf8_codepoints(const std::vector<std::pair<uint32_t, uint32_t>>& ranges);
// Valid UTF-8 text without the character sequence `forbidden` (given as UTF-8), any length.
NodeP utf8_text_avoiding(const std::string& forbidden);

// ---- regular expressions and literals (grammar_regex.cpp) ----
using CpSet = std::vector<std::pair<uint32_t, uint32_t>>;  // inclusive code point ranges
struct RegexFlags {
  bool icase = false;   // ASCII case folding
  bool dotall = false;  // '.' also matches "\n"
};
// The language of a Python/Rust-syntax regex (whole-string match), as a node. `excluded` code
// points are never produced (raw DSML text: NUL and U+FF5C); a literal that needs one is an
// InputError. Unsupported constructs are an InputError naming them.
NodeP regex(std::string_view pattern, RegexFlags flags, const CpSet* excluded = nullptr);
// A literal string (UTF-8), optionally ASCII case-insensitive; `where` names it in errors.
NodeP text_literal(std::string_view utf8, bool icase, const CpSet* excluded, const std::string& where);
// One code point in [lo, hi] minus `excluded`.
NodeP codepoint_range(uint32_t lo, uint32_t hi, const CpSet* excluded);
// The first code point of a UTF-8 string (its byte length in *len); InputError if invalid.
uint32_t first_codepoint(std::string_view utf8, size_t& len);
// Automaton states `n` expands to (an estimate, saturating at `cap`): bounds client grammars
// before they are built.
size_t node_size(const Node& n, size_t cap);

}  // namespace v4::gir
