// Runs a command with bytes on stdin and a time limit; the command gets its own process group,
// which is killed on timeout (a verifier that runs tests may have children).
#pragma once
#include <string>
#include <vector>

namespace v4::router {

struct ProcessResult {
  int exit_code = -1;  // -1 when it did not exit normally
  bool timed_out = false;
  bool spawn_failed = false;
  std::string out, err;  // stdout / stderr (each capped at 64 KB)
};

ProcessResult run_process(const std::vector<std::string>& argv, const std::string& input, double timeout_s);

}  // namespace v4::router
