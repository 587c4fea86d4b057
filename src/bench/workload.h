// Workloads for `v4host bench`: what requests are sent, built deterministically from a seed.
//
// Kinds
// - synthetic: random English text with EXACT input lengths in tokens of the V4 tokenizer
//   (lengths from a fixed / uniform / normal distribution) and forced output lengths
//   (max_tokens, plus min_tokens + ignore_eos with --force-output);
// - shared-prefix: N system prompts (prefix_tokens long) x M user suffixes, interleaved so requests
//   that share a prefix are spread over the run (exercises prefix caches);
// - agent: multi-turn sessions — a growing conversation with a declared tool, assistant tool calls
//   and tool results; turn t+1 includes the model's actual answer to turn t, so turns of one
//   session run one after another;
// - jsonl: the user's own requests, one JSON object per line: {"messages": [...]} or {"prompt": "..."},
//   optional "max_tokens", "timestamp" (seconds; replayed with that timing under --replay),
//   "session" + "turn" are not interpreted (each line is one request).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "bench/api.h"

namespace v4::text {
class Tokenizer;
}

namespace v4::bench {

// "128" | "fixed:128" | "uniform:64,256" | "normal:512,64" (mean, sd; clipped to >= 1).
struct LengthDist {
  enum Kind { fixed, uniform, normal } kind = fixed;
  double a = 128, b = 0;
  static LengthDist parse(const std::string& flag, const std::string& s);  // throws InputError naming flag
  int sample(uint64_t& state) const;
  std::string str() const;
};

struct WorkloadSpec {
  std::string kind = "synthetic";  // synthetic | shared-prefix | agent | jsonl
  LengthDist input{LengthDist::fixed, 128, 0};
  LengthDist output{LengthDist::fixed, 128, 0};
  bool force_output = true;
  Reasoning reasoning = Reasoning::server_default;
  int prefixes = 4;         // shared-prefix: N system prompts
  int prefix_tokens = 512;  // shared-prefix: tokens per system prompt
  int suffixes = 8;         // shared-prefix: M suffixes per prompt (then repeats with new suffixes)
  int turns = 4;            // agent: turns per session
  int tool_result_tokens = 64;  // agent: tokens per tool result
  std::string jsonl;        // jsonl: path
  json extra_body;          // merged into every request
  uint64_t seed = 0;
  json to_json() const;
};

// One unit of load: a single request, or an agent session (its turns run in order).
struct WorkItem {
  int unit = 0;         // session / request group index
  int turn = 0;
  GenRequest req;
  int input_tokens = -1;     // exact content tokens from the local tokenizer (-1 unknown)
  double timestamp = -1;     // jsonl: seconds from the first line's timestamp
};

class Workload {
 public:
  // tok may be null: lengths are then approximate (one common word ~ one token) and marked so.
  Workload(WorkloadSpec spec, const text::Tokenizer* tok);
  ~Workload();
  // Number of units available (jsonl: lines; others: unbounded -> returns -1).
  long size() const;
  // The first request of unit i (deterministic in (seed, i)).
  WorkItem first(int unit);
  // Agent sessions: the next turn after `prev` got `answer` back; false when the session ended.
  bool next_turn(const WorkItem& prev, const std::string& answer, WorkItem& out);
  bool exact_lengths() const { return tok_ != nullptr; }
  const WorkloadSpec& spec() const { return spec_; }
  // Text of exactly n tokens (from the local tokenizer) drawn from the word pool.
  std::string text_of_tokens(int n, uint64_t& rng);
  int count_tokens(const std::string& s) const;  // local tokenizer, -1 without one

 private:
  WorkloadSpec spec_;
  const text::Tokenizer* tok_;
  std::vector<WorkItem> lines_;      // jsonl
  std::vector<std::string> prefixes_;  // shared-prefix system prompts
};

}  // namespace v4::bench
