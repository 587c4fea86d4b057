// RESULTS.jsonl: one outcome per line, appended as each item finishes, so a run that is stopped
// (Ctrl-C, kill, crash, power loss) loses at most the line being written. Reopening the same file
// continues the run: finished (id, sample) pairs are not redone, a torn last line is cut off, and
// outcomes that failed because of the endpoint (error_kind "transport") are redone; the later line
// for a key supersedes the earlier one when the file is read.
#pragma once
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "eval/item.h"

namespace v4::eval {

// Every outcome of a results file, the last line for each (id, sample) winning, in first-seen
// order. Throws InputError naming the line for a malformed line (a torn final line without its
// newline is ignored when `tolerate_torn_tail`).
std::vector<Outcome> load_results(const std::string& path, bool tolerate_torn_tail = true);

class ResultsWriter {
 public:
  // Opens `path` for appending (creating it), reading what it already holds.
  explicit ResultsWriter(const std::string& path);
  ~ResultsWriter();
  ResultsWriter(const ResultsWriter&) = delete;
  ResultsWriter& operator=(const ResultsWriter&) = delete;

  // True when the key already has an outcome that need not be redone.
  bool done(const std::string& key) const;
  size_t done_count() const { return done_.size(); }
  // Appends one line with a single write(2) (thread-safe); throws on an I/O error.
  void append(const Outcome& o);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
  mutable std::mutex mu_;
  std::map<std::string, bool> done_;
};

}  // namespace v4::eval
