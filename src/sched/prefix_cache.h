// Exact prefix cache: snapshots of complete sequence states keyed by the token prefix they
// consumed. A hit restores every cache family exactly (window ring, compressed rows, indexer
// keys, compressor frontier), so continuing from it gives the same logits as a cold run.
// LRU within a byte budget. Not thread-safe: owned by the scheduler thread.
//
// Entries may carry a cache key (the client's `prompt_cache_key`: requests that share long
// prefixes, e.g. one agent session). A key never changes what a lookup finds — any cached
// prefix is exact, whoever stored it — it changes what is evicted: the byte budget is shared
// fairly between keys (entries without a key form one group), so when room is needed the
// least recently used entry of the group holding the most bytes goes. A burst of one session
// (or of anonymous traffic) then cannot flush another session's conversation. With no keys at
// all this is plain LRU.
#pragma once
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kv/sequence_state.h"

namespace v4 {

class PrefixCache {
 public:
  explicit PrefixCache(size_t budget_bytes) : budget_(budget_bytes) {}

  // Longest cached prefix of `tokens` no longer than max_len; copies its state into *out.
  // Returns the prefix length (0 = miss).
  size_t lookup(const std::vector<int32_t>& tokens, size_t max_len, SequenceState* out);
  // Stores a snapshot of `state` for tokens[0, len) under cache key `key` ("" = none). An equal
  // token prefix already held is only refreshed. Evicts as described above.
  void insert(const std::vector<int32_t>& tokens, size_t len, const SequenceState& state,
              const std::string& key = {});

  size_t bytes() const { return bytes_; }
  size_t entries() const { return lru_.size(); }
  size_t budget() const { return budget_; }
  void clear();

 private:
  struct Entry {
    std::vector<int32_t> tokens;
    std::shared_ptr<const SequenceState> state;
    size_t bytes = 0;
    std::string key;
  };
  void evict_to(size_t budget);
  void drop(std::list<Entry>::iterator it);
  size_t budget_;
  size_t bytes_ = 0;
  std::map<std::string, size_t> key_bytes_;  // bytes held per cache key ("" = no key)
  std::list<Entry> lru_;  // front = most recent
};

}  // namespace v4
