#include "server/response_store.h"

namespace v4 {

size_t ResponseStore::cost(const Entry& e) {
  size_t n = e.object.size() + 256;
  for (auto& m : e.conversation) {
    n += m.text.size() + m.reasoning.value_or("").size() + m.reasoning_encrypted.size() + 128;
    for (auto& c : m.tool_calls) n += c.arguments.size() + c.name.size() + c.id.size() + 64;
  }
  return n;
}

void ResponseStore::put(const std::string& id, Entry e) {
  const size_t c = cost(e);
  std::lock_guard<std::mutex> lk(mu_);
  if (auto it = index_.find(id); it != index_.end()) {
    bytes_ -= cost(it->second->second);
    lru_.erase(it->second);
    index_.erase(it);
  }
  if (c > max_bytes_) return;  // larger than the whole store: not kept
  lru_.emplace_front(id, std::move(e));
  index_[id] = lru_.begin();
  bytes_ += c;
  while (bytes_ > max_bytes_ && !lru_.empty()) {
    bytes_ -= cost(lru_.back().second);
    index_.erase(lru_.back().first);
    lru_.pop_back();
  }
}

std::optional<ResponseStore::Entry> ResponseStore::get(const std::string& id) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = index_.find(id);
  if (it == index_.end()) return std::nullopt;
  lru_.splice(lru_.begin(), lru_, it->second);
  return it->second->second;
}

bool ResponseStore::erase(const std::string& id) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = index_.find(id);
  if (it == index_.end()) return false;
  bytes_ -= cost(it->second->second);
  lru_.erase(it->second);
  index_.erase(it);
  return true;
}

size_t ResponseStore::bytes() const {
  std::lock_guard<std::mutex> lk(mu_);
  return bytes_;
}

size_t ResponseStore::size() const {
  std::lock_guard<std::mutex> lk(mu_);
  return lru_.size();
}

}  // namespace v4
