// Running a suite: every (item, reasoning mode, sample) not yet in the results file, on
// `concurrency` worker threads, each outcome appended to the file as soon as it is scored.
#pragma once
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "eval/results.h"
#include "eval/suite.h"

namespace v4::eval {

struct RunOptions {
  std::vector<std::string> reasoning;  // modes; several = every item once per mode ("ID@mode")
  int samples = 1;
  int concurrency = 1;
  long limit = -1;  // first N items only (-1 = all)
  uint64_t seed = 1;
  double temperature = 0;
  int max_tokens = 256;
  bool quiet = false;
  int max_consecutive_transport_errors = 8;  // the endpoint went away: stop (resume later)
  std::atomic<bool>* stop = nullptr;         // set (e.g. by SIGINT): finish in-flight items, then stop
};

struct RunReport {
  size_t total = 0;    // units in the run (items x modes x samples)
  size_t skipped = 0;  // already in the results file
  size_t ran = 0;      // written now
  size_t passed = 0;   // of those
  size_t transport_errors = 0;
  bool interrupted = false;     // stopped by `stop`
  bool endpoint_failed = false; // stopped after too many transport errors in a row
  std::string last_error;
};

// The items actually run: the first `limit`, once per reasoning mode (ids suffixed "@mode" when
// there is more than one mode; meta.reasoning records the mode).
std::vector<Item> expand_items(const std::vector<Item>& items, const std::vector<std::string>& modes, long limit);

RunReport run_eval(const Suite& suite, const Endpoint& ep, ResultsWriter& out, const RunOptions& opt);

}  // namespace v4::eval
