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
#include "grammar/lark_syntax.h"

namespace v4 {

namespace {

using namespace gir;
using namespace lark_syntax;

constexpr size_t kMaxGrammarBytes = 128 * 1024;
constexpr size_t kMaxStates = 300000;      // NFA estimate over all rules
constexpr uint32_t kMaxDfa = 100000;       // DFA states of a freeform grammar

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
