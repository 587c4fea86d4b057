// Grammar IR -> per-rule byte DFAs (Thompson NFA + subset construction over byte classes), and
// the incremental matcher over a set of stacks.
#include "grammar/grammar.h"

#include <algorithm>
#include <cstring>
#include <deque>
#include <map>

#include "core/error.h"
#include "grammar/ir.h"

namespace v4 {

namespace {
constexpr uint32_t kMaxDfaStates = 400000;
constexpr uint32_t kMaxNfaStates = 4000000;
constexpr uint32_t kInf = 0xFFFFFFFFu;
}  // namespace

struct GrammarCompiler {
  struct NEdge {
    enum Kind : uint8_t { Eps, Byte, Call } kind;
    uint8_t lo, hi;
    uint32_t to;
    uint32_t rule;
  };
  std::vector<std::vector<NEdge>> nfa;

  uint32_t new_state() {
    if (nfa.size() >= kMaxNfaStates)
      throw InputError("grammar too large (schema expands to more than " +
                       std::to_string(kMaxNfaStates) + " automaton states)");
    nfa.emplace_back();
    return static_cast<uint32_t>(nfa.size() - 1);
  }
  void eps(uint32_t a, uint32_t b) { nfa[a].push_back({NEdge::Eps, 0, 0, b, 0}); }
  void byte_edge(uint32_t a, uint8_t lo, uint8_t hi, uint32_t b) {
    nfa[a].push_back({NEdge::Byte, lo, hi, b, 0});
  }

  // Build `n` starting at `from` (never adds edges into `from`); returns the end state.
  uint32_t build(const gir::Node& n, uint32_t from) {
    using K = gir::Node::Kind;
    switch (n.kind) {
      case K::Empty:
        return from;
      case K::Lit: {
        uint32_t cur = from;
        for (unsigned char c : n.lit) {
          uint32_t nx = new_state();
          byte_edge(cur, c, c, nx);
          cur = nx;
        }
        return cur;
      }
      case K::Bytes: {
        uint32_t e = new_state();
        for (auto [lo, hi] : n.ranges) byte_edge(from, lo, hi, e);
        return e;
      }
      case K::Seq: {
        uint32_t cur = from;
        for (const auto& k : n.kids) cur = build(*k, cur);
        return cur;
      }
      case K::Alt: {
        uint32_t e = new_state();
        for (const auto& k : n.kids) {
          uint32_t s = new_state();
          eps(from, s);
          eps(build(*k, s), e);
        }
        return e;
      }
      case K::Rep: {
        uint32_t cur = from;
        for (int i = 0; i < n.min; ++i) cur = build(*n.kids[0], cur);
        if (n.max < 0) {
          uint32_t hub = new_state();
          eps(cur, hub);
          uint32_t s = new_state();
          eps(hub, s);
          eps(build(*n.kids[0], s), hub);
          return hub;
        }
        std::vector<uint32_t> ends;
        for (int i = n.min; i < n.max; ++i) {
          ends.push_back(cur);
          cur = build(*n.kids[0], cur);
        }
        if (ends.empty()) return cur;
        uint32_t e = new_state();
        for (uint32_t x : ends) eps(x, e);
        eps(cur, e);
        return e;
      }
      case K::Ref: {
        uint32_t e = new_state();
        nfa[from].push_back({NEdge::Call, 0, 0, e, n.rule});
        return e;
      }
      case K::Graph: {
        std::vector<uint32_t> gs(n.nstates);
        for (auto& s : gs) s = new_state();
        eps(from, gs[n.start]);
        for (const auto& ed : n.edges) {
          if (!ed.label) {
            eps(gs[ed.from], gs[ed.to]);
          } else {
            uint32_t s = new_state();
            eps(gs[ed.from], s);
            eps(build(*ed.label, s), gs[ed.to]);
          }
        }
        uint32_t e = new_state();
        for (int f : n.finals) eps(gs[f], e);
        return e;
      }
    }
    return from;
  }

  void closure(std::vector<uint32_t>& set, std::vector<uint32_t>& mark, uint32_t stamp) {
    for (uint32_t s : set) mark[s] = stamp;
    for (size_t i = 0; i < set.size(); ++i) {
      for (const auto& e : nfa[set[i]]) {
        if (e.kind == NEdge::Eps && mark[e.to] != stamp) {
          mark[e.to] = stamp;
          set.push_back(e.to);
        }
      }
    }
    std::sort(set.begin(), set.end());
  }

  uint32_t max_dfa = kMaxDfaStates;

  GrammarPtr run(const gir::RuleSet& rs, uint32_t root) {
    const auto& bodies = rs.bodies();
    const size_t nrules = bodies.size();
    std::vector<uint32_t> nstart(nrules), naccept(nrules);
    for (size_t r = 0; r < nrules; ++r) {
      if (!bodies[r]) throw InputError("grammar rule '" + rs.names()[r] + "' has no body");
      nstart[r] = new_state();
      naccept[r] = build(*bodies[r], nstart[r]);
    }
    // Byte classes from every range boundary.
    std::array<bool, 257> boundary{};
    boundary[0] = boundary[256] = true;
    for (const auto& st : nfa)
      for (const auto& e : st)
        if (e.kind == NEdge::Byte) boundary[e.lo] = boundary[e.hi + 1] = true;
    auto g = std::make_shared<Grammar>();
    uint32_t ncls = 0;
    for (int b = 0; b < 256; ++b) {
      if (b > 0 && boundary[b]) ++ncls;
      g->cls_[b] = static_cast<uint8_t>(ncls);
    }
    g->nclass_ = ncls + 1;
    const uint32_t nclass = g->nclass_;
    // Representative byte per class: prefer letters, digits, then printable ASCII.
    {
      std::vector<int> best(nclass, -1), score(nclass, -1);
      for (int b = 0; b < 256; ++b) {
        int sc = (b >= 'a' && b <= 'z') ? 4 : (b >= '0' && b <= '9') ? 3 : (b > 32 && b < 127) ? 2 : (b == ' ') ? 1 : 0;
        uint8_t c = g->cls_[b];
        if (sc > score[c]) score[c] = sc, best[c] = b;
      }
      for (uint32_t c = 0; c < nclass; ++c) g->class_rep_[c] = static_cast<uint8_t>(best[c]);
      for (uint32_t c = 0; c < nclass; ++c) g->class_order_.push_back(c);
      std::stable_sort(g->class_order_.begin(), g->class_order_.end(),
                       [&](uint32_t a, uint32_t b) { return score[a] > score[b]; });
    }

    // Subset construction per rule.
    std::vector<uint32_t> mark(nfa.size(), 0);
    uint32_t stamp = 0;
    std::vector<int32_t>& trans = g->trans_;
    std::vector<uint8_t>& fin = g->final_;
    std::vector<std::vector<std::pair<uint32_t, uint32_t>>> calls_tmp;  // (rule, ret)
    std::vector<uint32_t> rule_start(nrules);
    for (size_t r = 0; r < nrules; ++r) {
      std::map<std::vector<uint32_t>, uint32_t> ids;
      std::deque<std::pair<std::vector<uint32_t>, uint32_t>> work;
      auto intern = [&](std::vector<uint32_t>&& set) -> uint32_t {
        auto it = ids.find(set);
        if (it != ids.end()) return it->second;
        uint32_t id = static_cast<uint32_t>(fin.size());
        if (id >= max_dfa)
          throw InputError("grammar too large (more than " + std::to_string(max_dfa) +
                           " states); simplify the schema (smaller maxLength / maxItems, fewer alternatives)");
        bool is_final = std::binary_search(set.begin(), set.end(), naccept[r]);
        fin.push_back(is_final ? 1 : 0);
        trans.resize(trans.size() + nclass, -1);
        calls_tmp.emplace_back();
        ids.emplace(set, id);
        work.emplace_back(std::move(set), id);
        return id;
      };
      std::vector<uint32_t> s0{nstart[r]};
      closure(s0, mark, ++stamp);
      rule_start[r] = intern(std::move(s0));
      std::vector<std::vector<uint32_t>> by_class(nclass);
      std::map<uint32_t, std::vector<uint32_t>> by_rule;
      while (!work.empty()) {
        auto [set, id] = std::move(work.front());
        work.pop_front();
        for (auto& v : by_class) v.clear();
        by_rule.clear();
        for (uint32_t s : set) {
          for (const auto& e : nfa[s]) {
            if (e.kind == NEdge::Byte) {
              for (uint32_t c = g->cls_[e.lo]; c <= g->cls_[e.hi]; ++c) by_class[c].push_back(e.to);
            } else if (e.kind == NEdge::Call) {
              by_rule[e.rule].push_back(e.to);
            }
          }
        }
        for (uint32_t c = 0; c < nclass; ++c) {
          if (by_class[c].empty()) continue;
          std::vector<uint32_t> t = by_class[c];
          std::sort(t.begin(), t.end());
          t.erase(std::unique(t.begin(), t.end()), t.end());
          closure(t, mark, ++stamp);
          uint32_t tid = intern(std::move(t));
          trans[static_cast<size_t>(id) * nclass + c] = static_cast<int32_t>(tid);
        }
        for (auto& [rule, tos] : by_rule) {
          std::vector<uint32_t> t = tos;
          std::sort(t.begin(), t.end());
          t.erase(std::unique(t.begin(), t.end()), t.end());
          closure(t, mark, ++stamp);
          uint32_t tid = intern(std::move(t));
          calls_tmp[id].emplace_back(rule, tid);
        }
      }
    }
    nfa.clear();
    nfa.shrink_to_fit();
    const uint32_t nst = static_cast<uint32_t>(fin.size());

    // Called rules must not be nullable; no left recursion.
    std::vector<char> called(nrules, 0);
    for (const auto& cl : calls_tmp)
      for (auto [rule, ret] : cl) called[rule] = 1;
    for (size_t r = 0; r < nrules; ++r)
      if (called[r] && fin[rule_start[r]])
        throw InputError("grammar rule '" + rs.names()[r] + "' can match the empty string");
    {
      std::vector<int> color(nrules, 0);
      std::vector<std::pair<uint32_t, size_t>> stk;
      for (size_t r0 = 0; r0 < nrules; ++r0) {
        if (color[r0]) continue;
        stk.push_back({static_cast<uint32_t>(r0), 0});
        color[r0] = 1;
        while (!stk.empty()) {
          auto& [r, i] = stk.back();
          const auto& cl = calls_tmp[rule_start[r]];
          if (i < cl.size()) {
            uint32_t nx = cl[i++].first;
            if (color[nx] == 1)
              throw InputError("schema is left-recursive ('" + rs.names()[nx] +
                               "' refers to itself before consuming any text)");
            if (color[nx] == 0) {
              color[nx] = 1;
              stk.push_back({nx, 0});
            }
          } else {
            color[r] = 2;
            stk.pop_back();
          }
        }
      }
    }

    // Liveness: a state is live if it can reach a final state; a rule is productive if its
    // start is live. Remove edges into dead states so every reachable prefix can complete.
    std::vector<uint8_t> live(nst, 0);
    for (uint32_t s = 0; s < nst; ++s) live[s] = fin[s];
    for (bool changed = true; changed;) {
      changed = false;
      for (uint32_t s = nst; s-- > 0;) {
        if (live[s]) continue;
        bool l = false;
        for (uint32_t c = 0; c < nclass && !l; ++c) {
          int32_t t = trans[static_cast<size_t>(s) * nclass + c];
          if (t >= 0 && live[t]) l = true;
        }
        for (auto [rule, ret] : calls_tmp[s])
          if (!l && live[rule_start[rule]] && live[ret]) l = true;
        if (l) live[s] = 1, changed = true;
      }
    }
    if (!live[rule_start[root]])
      throw InputError("schema admits no value (some type, enum or length constraint is unsatisfiable)");
    for (uint32_t s = 0; s < nst; ++s) {
      for (uint32_t c = 0; c < nclass; ++c) {
        int32_t& t = trans[static_cast<size_t>(s) * nclass + c];
        if (t >= 0 && !live[t]) t = -1;
      }
      auto& cl = calls_tmp[s];
      cl.erase(std::remove_if(cl.begin(), cl.end(),
                              [&](auto p) { return !live[rule_start[p.first]] || !live[p.second]; }),
               cl.end());
    }

    g->call_off_.assign(nst + 1, 0);
    for (uint32_t s = 0; s < nst; ++s) {
      g->call_off_[s + 1] = g->call_off_[s] + static_cast<uint32_t>(calls_tmp[s].size());
      for (auto [rule, ret] : calls_tmp[s]) g->calls_.push_back({rule_start[rule], ret});
    }
    g->rule_start_ = rule_start;
    g->root_ = root;

    // First sets.
    g->first_.assign(nst, {0, 0, 0, 0});
    std::vector<std::array<uint64_t, 4>> cls_bits(nclass, {0, 0, 0, 0});
    for (int b = 0; b < 256; ++b) cls_bits[g->cls_[b]][b >> 6] |= uint64_t{1} << (b & 63);
    for (uint32_t s = 0; s < nst; ++s)
      for (uint32_t c = 0; c < nclass; ++c)
        if (trans[static_cast<size_t>(s) * nclass + c] >= 0)
          for (int w = 0; w < 4; ++w) g->first_[s][w] |= cls_bits[c][w];
    for (bool changed = true; changed;) {
      changed = false;
      for (uint32_t s = 0; s < nst; ++s) {
        for (uint32_t k = g->call_off_[s]; k < g->call_off_[s + 1]; ++k) {
          const auto& f = g->first_[g->calls_[k].callee_start];
          for (int w = 0; w < 4; ++w) {
            uint64_t nv = g->first_[s][w] | f[w];
            if (nv != g->first_[s][w]) g->first_[s][w] = nv, changed = true;
          }
        }
      }
    }

    // Shortest finish distance per state (worklist relaxation).
    {
      auto& dist = g->min_finish_;
      dist.assign(nst, kInf);
      std::vector<std::vector<uint32_t>> rev_byte(nst);   // t -> predecessors by a byte
      std::vector<std::vector<uint32_t>> rev_ret(nst);    // ret -> call indices
      std::vector<std::vector<uint32_t>> rev_start(nst);  // callee start -> call indices
      std::vector<uint32_t> call_from(g->calls_.size());
      for (uint32_t s = 0; s < nst; ++s) {
        for (uint32_t c = 0; c < nclass; ++c) {
          int32_t t = trans[static_cast<size_t>(s) * nclass + c];
          if (t >= 0) rev_byte[t].push_back(s);
        }
        for (uint32_t k = g->call_off_[s]; k < g->call_off_[s + 1]; ++k) {
          call_from[k] = s;
          rev_ret[g->calls_[k].ret].push_back(k);
          rev_start[g->calls_[k].callee_start].push_back(k);
        }
      }
      std::deque<uint32_t> q;
      std::vector<uint8_t> inq(nst, 0);
      for (uint32_t s = 0; s < nst; ++s)
        if (fin[s]) dist[s] = 0, q.push_back(s), inq[s] = 1;
      auto relax = [&](uint32_t p, uint64_t d) {
        if (d < dist[p]) {
          dist[p] = static_cast<uint32_t>(d);
          if (!inq[p]) inq[p] = 1, q.push_back(p);
        }
      };
      while (!q.empty()) {
        uint32_t t = q.front();
        q.pop_front();
        inq[t] = 0;
        for (uint32_t p : rev_byte[t]) relax(p, uint64_t{dist[t]} + 1);
        for (uint32_t k : rev_ret[t]) {
          uint32_t cs = g->calls_[k].callee_start;
          if (dist[cs] != kInf) relax(call_from[k], uint64_t{dist[cs]} + dist[t]);
        }
        for (uint32_t k : rev_start[t]) {
          uint32_t r = g->calls_[k].ret;
          if (dist[r] != kInf) relax(call_from[k], uint64_t{dist[t]} + dist[r]);
        }
      }
    }
    return g;
  }
};

namespace gir {
GrammarPtr compile(const RuleSet& rules, uint32_t root, uint32_t max_dfa_states) {
  GrammarCompiler c;
  c.max_dfa = std::min(max_dfa_states, kMaxDfaStates);
  return c.run(rules, root);
}
}  // namespace gir

// ---------------------------------------------------------------------------------------------
// Matcher

void GrammarMatcher::Stacks::add(const uint32_t* prefix, size_t n, uint32_t top) {
  const size_t len = n + 1;
  for (size_t i = 0; i + 1 < off.size(); ++i) {
    if (off[i + 1] - off[i] != len) continue;
    const uint32_t* s = data.data() + off[i];
    if (s[n] == top && std::memcmp(s, prefix, n * sizeof(uint32_t)) == 0) return;
  }
  if (size() >= kMaxConfigs) return;
  data.insert(data.end(), prefix, prefix + n);
  data.push_back(top);
  off.push_back(static_cast<uint32_t>(data.size()));
}

namespace {
void expand_calls(const Grammar& g, std::vector<uint32_t>& prefix, uint32_t s, uint8_t b,
                  GrammarMatcher::Stacks& out) {
  for (const auto* c = g.calls_begin(s); c != g.calls_end(s); ++c) {
    if (!g.first_has(c->callee_start, b)) continue;
    if (prefix.size() + 2 > GrammarMatcher::kMaxDepth) continue;
    prefix.push_back(c->ret);
    int32_t t = g.next(c->callee_start, b);
    if (t >= 0) out.add(prefix.data(), prefix.size(), static_cast<uint32_t>(t));
    if (g.has_calls(c->callee_start)) expand_calls(g, prefix, c->callee_start, b, out);
    prefix.pop_back();
  }
}
}  // namespace

void GrammarMatcher::step(const Grammar& g, const Stacks& in, uint8_t b, Stacks& out,
                          std::vector<uint32_t>* escapes) {
  out.clear();
  thread_local std::vector<uint32_t> prefix;
  for (size_t i = 0; i < in.size(); ++i) {
    const uint32_t* st = in.data.data() + in.off[i];
    const size_t n = in.off[i + 1] - in.off[i];
    for (size_t d = n; d-- > 0;) {
      const uint32_t s = st[d];
      if (g.first_has(s, b)) {
        int32_t t = g.next(s, b);
        if (t >= 0) out.add(st, d, static_cast<uint32_t>(t));
        if (g.has_calls(s)) {
          prefix.assign(st, st + d);
          expand_calls(g, prefix, s, b, out);
        }
      }
      if (!g.is_final(s)) break;
      if (d == 0 && escapes && std::find(escapes->begin(), escapes->end(), s) == escapes->end())
        escapes->push_back(s);
    }
  }
}

std::shared_ptr<void> Grammar::attached_cache(uint64_t key, const std::function<std::shared_ptr<void>()>& make) const {
  std::lock_guard<std::mutex> lock(cache_mu_);
  for (auto& [k, c] : caches_)
    if (k == key) return c;
  caches_.emplace_back(key, make());
  return caches_.back().second;
}

bool GrammarMatcher::complete(const Grammar& g, const Stacks& s) {
  for (size_t i = 0; i < s.size(); ++i) {
    bool all = true;
    for (uint32_t k = s.off[i]; k < s.off[i + 1] && all; ++k) all = g.is_final(s.data[k]);
    if (all) return true;
  }
  return false;
}

GrammarMatcher::GrammarMatcher(GrammarPtr grammar) : g_(std::move(grammar)) {
  cur_.add(nullptr, 0, g_->root_start());
}

bool GrammarMatcher::accept(std::string_view bytes) {
  if (bytes.empty()) return true;
  Stacks a, b;
  const Stacks* src = &cur_;
  for (unsigned char c : bytes) {
    step(*g_, *src, c, b);
    if (b.empty()) return false;
    std::swap(a, b);
    src = &a;
  }
  cur_ = std::move(a);
  return true;
}

bool GrammarMatcher::can_accept(std::string_view bytes) const {
  if (bytes.empty()) return true;
  Stacks a, b;
  const Stacks* src = &cur_;
  for (unsigned char c : bytes) {
    step(*g_, *src, c, b);
    if (b.empty()) return false;
    std::swap(a, b);
    src = &a;
  }
  return true;
}

bool GrammarMatcher::is_complete() const { return complete(*g_, cur_); }

bool GrammarMatcher::is_terminated() const {
  for (size_t i = 0; i < cur_.size(); ++i) {
    for (uint32_t k = cur_.off[i + 1]; k-- > cur_.off[i];) {
      const auto& f = g_->first_[cur_.data[k]];
      if (f[0] | f[1] | f[2] | f[3]) return false;
      if (!g_->is_final(cur_.data[k])) break;
    }
  }
  return true;
}

namespace {
// Append the shortest text that takes `s` to a final state of its rule.
void finish_rule(const Grammar& g, uint32_t s, std::string& out) {
  while (!g.is_final(s)) {
    const uint32_t d = g.min_finish(s);
    bool moved = false;
    for (uint32_t i = 0; i < g.num_classes() && !moved; ++i) {
      const uint8_t b = g.class_rep(g.class_by_preference(i));
      int32_t t = g.next(s, b);
      if (t >= 0 && g.min_finish(static_cast<uint32_t>(t)) != 0xFFFFFFFFu &&
          g.min_finish(static_cast<uint32_t>(t)) + 1 == d) {
        out.push_back(static_cast<char>(b));
        s = static_cast<uint32_t>(t);
        moved = true;
      }
    }
    for (const auto* c = g.calls_begin(s); c != g.calls_end(s) && !moved; ++c) {
      uint64_t dc = g.min_finish(c->callee_start), dr = g.min_finish(c->ret);
      if (dc + dr == d) {
        finish_rule(g, c->callee_start, out);
        s = c->ret;
        moved = true;
      }
    }
    if (!moved) break;  // cannot happen for a live state
  }
}
}  // namespace

std::string GrammarMatcher::shortest_completion() const {
  size_t best = 0;
  uint64_t best_len = ~uint64_t{0};
  for (size_t i = 0; i < cur_.size(); ++i) {
    uint64_t len = 0;
    for (uint32_t k = cur_.off[i]; k < cur_.off[i + 1]; ++k) len += g_->min_finish(cur_.data[k]);
    if (len < best_len) best_len = len, best = i;
  }
  std::string out;
  for (uint32_t k = cur_.off[best + 1]; k-- > cur_.off[best];) finish_rule(*g_, cur_.data[k], out);
  return out;
}

GrammarPtr GrammarCache::get_or_compile(const std::string& key, const std::function<GrammarPtr()>& compile) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = 0; i < entries_.size(); ++i) {
      if (entries_[i].first == key) {
        auto e = std::move(entries_[i]);
        entries_.erase(entries_.begin() + static_cast<std::ptrdiff_t>(i));
        entries_.push_back(std::move(e));
        return entries_.back().second;
      }
    }
  }
  GrammarPtr g = compile();  // may throw InputError; nothing is cached then
  std::lock_guard<std::mutex> lock(mu_);
  entries_.emplace_back(key, g);
  while (entries_.size() > capacity_) entries_.erase(entries_.begin());
  return g;
}

size_t GrammarCache::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return entries_.size();
}

}  // namespace v4
