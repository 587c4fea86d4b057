#include "server/prefix_cache.h"

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

void PrefixCache::insert(const std::vector<int32_t>& tokens, size_t len, const SequenceState& state) {
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
  if (e.bytes > budget_) return;
  evict_to(budget_ - e.bytes);
  bytes_ += e.bytes;
  lru_.push_front(std::move(e));
}

void PrefixCache::evict_to(size_t budget) {
  while (bytes_ > budget && !lru_.empty()) {
    bytes_ -= lru_.back().bytes;
    lru_.pop_back();
  }
}

void PrefixCache::clear() {
  lru_.clear();
  bytes_ = 0;
}

}  // namespace v4
