// A stderr progress bar for loading and long prefill; silent when quiet or not a terminal.
#pragma once
#include <chrono>
#include <cstddef>
#include <string>

namespace v4 {

class Progress {
 public:
  Progress(std::string label, size_t total, bool quiet);
  ~Progress();
  void update(size_t done);
  void finish();
  static void set_global_quiet(bool q);
  static bool global_quiet();

 private:
  std::string label_;
  size_t total_;
  bool enabled_;
  bool finished_ = false;
  int last_pct_ = -1;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace v4
