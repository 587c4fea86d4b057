// Stop-string matching over streamed text: text is released only once it cannot be the start
// of a stop string, and everything from the first stop string on is cut.
#pragma once
#include <string>
#include <vector>

namespace v4 {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {}
  // Feeds text; returns what is safe to emit now. After a hit, stopped() is true and the rest is dropped.
  std::string feed(const std::string& s);
  // End of stream: releases any held-back text (if not stopped).
  std::string flush();
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool stopped_ = false;
};

}  // namespace v4
