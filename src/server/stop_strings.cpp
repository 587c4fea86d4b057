#include "server/stop_strings.h"

#include <algorithm>

namespace v4 {

std::string StopMatcher::feed(const std::string& s) {
  if (stopped_) return {};
  held_ += s;
  if (stops_.empty()) {
    std::string out;
    out.swap(held_);
    return out;
  }
  size_t cut = std::string::npos;
  for (auto& st : stops_) cut = std::min(cut, held_.find(st));
  if (cut != std::string::npos) {
    stopped_ = true;
    std::string out = held_.substr(0, cut);
    held_.clear();
    return out;
  }
  // Hold back the longest suffix that is a proper prefix of some stop string.
  size_t keep = 0;
  for (auto& st : stops_)
    for (size_t k = std::min(st.size() - 1, held_.size()); k > keep; --k)
      if (held_.compare(held_.size() - k, k, st, 0, k) == 0) {
        keep = k;
        break;
      }
  std::string out = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return out;
}

std::string StopMatcher::flush() {
  if (stopped_) return {};
  std::string out;
  out.swap(held_);
  return out;
}

}  // namespace v4
