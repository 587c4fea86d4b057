// Exact prefix cache: snapshots of complete sequence states keyed by the token prefix they
// consumed. A hit restores every cache family exactly (window ring, compressed rows, indexer
// keys, compressor frontier), so continuing from it gives the same logits as a cold run.
// LRU within a byte budget. Not thread-safe: owned by the scheduler thread.
#pragma once
#include <cstdint>
#include <list>
#include <memory>
#include <vector>

#include "kv/sequence_state.h"

namespace v4 {

class PrefixCache {
 public:
  explicit PrefixCache(size_t budget_bytes) : budget_(budget_bytes) {}

  // Longest cached prefix of `tokens` no longer than max_len; copies its state into *out.
  // Returns the prefix length (0 = miss).
  size_t lookup(const std::vector<int32_t>& tokens, size_t max_len, SequenceState* out);
  // Stores a snapshot of `state` for tokens[0, len). Replaces an equal key; evicts LRU entries.
  void insert(const std::vector<int32_t>& tokens, size_t len, const SequenceState& state);

  size_t bytes() const { return bytes_; }
  size_t entries() const { return lru_.size(); }
  size_t budget() const { return budget_; }
  void clear();

 private:
  struct Entry {
    std::vector<int32_t> tokens;
    std::shared_ptr<const SequenceState> state;
    size_t bytes = 0;
  };
  void evict_to(size_t budget);
  size_t budget_;
  size_t bytes_ = 0;
  std::list<Entry> lru_;  // front = most recent
};

}  // namespace v4
