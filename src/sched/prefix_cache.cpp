#include "sched/prefix_cache.h"

#include <algorithm>

namespace v4 {

size_t PrefixCache::lookup(const std::vector<int32_t>& tokens, size_t max_len, SequenceState* out) {
  auto best = lru_.end();
  size_t best_len = 0;
  for (auto it = lru_.begin(); it != lru_.end(); ++it) {
    const size_t n = it->tokens.size();
    if (n <= best_len || n > max_len || n > tokens.size()) continue;
    if (std::equal(it->tokens.begin(), it->tokens.end(), tokens.begin())) {
      best = it;
      best_len = n;
    }
  }
  if (best == lru_.end()) return 0;
  lru_.splice(lru_.begin(), lru_, best);
  *out = *lru_.front().state;
  return best_len;
}

void PrefixCache::insert(const std::vector<int32_t>& tokens, size_t len, const SequenceState& state,
                         const std::string& key) {
  if (len == 0 || budget_ == 0) return;
  for (auto it = lru_.begin(); it != lru_.end(); ++it)
    if (it->tokens.size() == len && std::equal(it->tokens.begin(), it->tokens.end(), tokens.begin())) {
      lru_.splice(lru_.begin(), lru_, it);
      return;
    }
  Entry e;
  e.tokens.assign(tokens.begin(), tokens.begin() + static_cast<long>(len));
  e.state = std::make_shared<SequenceState>(state);
  e.bytes = state.bytes().total() + len * sizeof(int32_t);
  e.key = key;
  if (e.bytes > budget_) return;
  // The new entry counts for its group before choosing victims, so a key that is about to
  // grow gives up its own oldest entry rather than another key's.
  key_bytes_[key] += e.bytes;
  bytes_ += e.bytes;
  lru_.push_front(std::move(e));
  evict_to(budget_);
}

void PrefixCache::drop(std::list<Entry>::iterator it) {
  auto g = key_bytes_.find(it->key);
  g->second -= it->bytes;
  if (g->second == 0) key_bytes_.erase(g);
  bytes_ -= it->bytes;
  lru_.erase(it);
}

void PrefixCache::evict_to(size_t budget) {
  while (bytes_ > budget && lru_.size() > 1) {
    // The group holding the most bytes (ties: the one whose name sorts first, for determinism).
    const std::string* victim_key = nullptr;
    size_t most = 0;
    for (const auto& [k, b] : key_bytes_)
      if (b > most) most = b, victim_key = &k;
    // Its least recently used entry; never the entry just inserted (the front).
    auto it = std::prev(lru_.end());
    while (it != lru_.begin() && it->key != *victim_key) --it;
    if (it == lru_.begin()) {
      // Only the newest entry is in that group: fall back to the overall LRU entry.
      it = std::prev(lru_.end());
    }
    drop(it);
  }
}

void PrefixCache::clear() {
  lru_.clear();
  key_bytes_.clear();
  bytes_ = 0;
}

}  // namespace v4
