// Server-side conversation state for POST /v1/responses with store: true (the default):
// each stored response keeps its object (for GET /v1/responses/{id}) and the conversation up
// to and including its output (for a later request's previous_response_id). Bounded in
// memory: least recently used entries are dropped beyond --response-store bytes (a dropped id
// answers 404); nothing survives a restart. Thread-safe.
#pragma once
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "protocol/types.h"

namespace v4 {

class ResponseStore {
 public:
  explicit ResponseStore(size_t max_bytes) : max_bytes_(max_bytes) {}
  struct Entry {
    std::string object;                           // the response object as JSON text
    std::vector<protocol::Message> conversation;  // input so far + this response's output
  };
  void put(const std::string& id, Entry e);
  std::optional<Entry> get(const std::string& id);
  bool erase(const std::string& id);
  size_t bytes() const;
  size_t size() const;

 private:
  static size_t cost(const Entry& e);
  size_t max_bytes_, bytes_ = 0;
  mutable std::mutex mu_;
  std::list<std::pair<std::string, Entry>> lru_;  // most recent first
  std::unordered_map<std::string, std::list<std::pair<std::string, Entry>>::iterator> index_;
};

}  // namespace v4
