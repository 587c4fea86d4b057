// Token masks for constrained decoding: which vocabulary entries a GrammarMatcher allows next.
// Built once per vocabulary: a byte trie of every token (shared prefixes are matched once, dead
// subtrees pruned). See docs/constrained-decoding.md.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "grammar/grammar.h"

namespace v4 {

class TokenMasker {
 public:
  struct Options {
    // Added/special token ids (BOS, <｜User｜>, <think>, ...): never allowed by a mask, except
    // those whose text is in allowed_special_texts (the DSML marker, which the tool-call
    // grammar spells out). EOS is handled separately and need not be listed.
    std::vector<int32_t> special_ids;
    std::vector<std::string> allowed_special_texts{"\xEF\xBD\x9C" "DSML" "\xEF\xBD\x9C"};
  };

  // tokens[id] = the token's bytes (special tokens as their literal text; empty strings are
  // never allowed). eos_id is allowed iff the matcher is complete.
  TokenMasker(const std::vector<std::string>& tokens, int32_t eos_id);
  TokenMasker(const std::vector<std::string>& tokens, int32_t eos_id, const Options& options);

  // mask is resized to vocab_size(); mask[id] = 1 iff token id may be sampled next.
  void fill(const GrammarMatcher& m, std::vector<uint8_t>& mask) const;

  // Convenience: the allowed ids.
  std::vector<int32_t> allowed(const GrammarMatcher& m) const;

  // The mask without the per-state cache: one walk of the whole trie with the real stacks.
  void fill_uncached(const GrammarMatcher& m, std::vector<uint8_t>& mask) const;

  size_t vocab_size() const { return vocab_; }
  size_t trie_nodes() const { return byte_.size(); }
  int32_t eos_id() const { return eos_; }

 private:
  struct StateMask;
  struct Cache;
  std::shared_ptr<const StateMask> state_mask(const Grammar& g, uint32_t state) const;
  // Stacks before a trie node: either one stack = prefix + [top] (the walk's shared prefix, only
  // the top state differs: no copying), or a general set.
  struct Level {
    bool simple = true;
    uint32_t top = 0;
    GrammarMatcher::Stacks full;
  };
  // Walk trie nodes [begin, end) (a subtree or the whole trie); levels[depth(begin) - 1] holds
  // the stacks before node `begin`; simple levels use prefix[0 .. plen).
  void walk(const Grammar& g, uint32_t begin, uint32_t end, const uint32_t* prefix, size_t plen,
            std::vector<Level>& levels, std::vector<uint8_t>& mask) const;
  void walk_stacks(const Grammar& g, const GrammarMatcher::Stacks& stacks, std::vector<uint8_t>& mask) const;

  uint64_t id_ = 0;  // key of this masker's caches inside grammars
  size_t vocab_ = 0;
  int32_t eos_ = -1;
  size_t max_depth_ = 0;
  // Trie in preorder (root excluded): node i's first child is i + 1; end_[i] is one past its
  // subtree.
  std::vector<uint8_t> byte_;
  std::vector<uint16_t> depth_;
  std::vector<uint32_t> end_;
  std::vector<uint32_t> tok_off_;  // node i's tokens: ids_[tok_off_[i] .. tok_off_[i + 1])
  std::vector<int32_t> ids_;
};

}  // namespace v4
