// What one bench request measured, and the per-request derived metrics. Times are milliseconds
// from the request's start (the instant it was handed to the HTTP client); chunk times are the
// instants the bytes carrying each streamed piece were read from the socket.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace v4::bench {

struct RequestRecord {
  int index = 0, unit = 0, turn = 0;
  bool warmup = false;
  double start_s = 0;           // start, seconds since the run's start
  int64_t start_steady_ns = 0;  // the same instant on the steady clock (to correlate with other clocks in-process)
  double scheduled_s = -1;      // arrival time it was scheduled for (rate / replay modes)
  int in_flight = 0;            // requests in flight when it started (itself included)
  int max_tokens = 0;
  int input_tokens_local = -1;  // local tokenizer count of the content
  // Raw timings (ms from start); NaN = never happened.
  double first_byte_ms = NAN, first_token_ms = NAN, first_answer_ms = NAN, last_reasoning_ms = NAN, end_ms = NAN;
  std::vector<double> piece_ms;  // every generated-text piece (reasoning and answer), in order
  int reasoning_pieces = 0, answer_pieces = 0;
  // Usage from the server (-1 = not reported).
  int prompt_tokens = -1, completion_tokens = -1, reasoning_tokens = -1, cached_tokens = -1;
  // Local tokenizer counts of what streamed (-1 without a tokenizer).
  int output_tokens_local = -1, reasoning_tokens_local = -1;
  std::string finish_reason;
  int status = 0;
  std::string error_kind;  // empty = success; else connect, timeout_*, http_4xx, http_5xx, stream, cancelled, ...
  std::string error;
  std::string answer_text;  // kept only for agent sessions' next turn (not written)

  bool ok() const { return error_kind.empty(); }
  // Output tokens: usage, else local count, else pieces.
  int output_tokens() const;
  int reasoning_token_count() const;
  double ttft() const { return first_token_ms; }
  double ttfa() const { return first_answer_ms; }
  double reasoning_ms() const;  // first token -> first answer token (0 without reasoning)
  double e2e() const { return end_ms; }
  double tpot() const;          // (E2E - TTFT) / (N - 1)
  std::vector<double> itl() const;  // gaps between consecutive pieces
  double output_tps() const;    // N / E2E (per-request output tokens/s)
  // Rate mode with --max-concurrency: time an arrival waited for a free slot (0 otherwise).
  double queue_ms() const { return scheduled_s >= 0 ? std::max(0.0, (start_s - scheduled_s) * 1000) : 0; }
};

}  // namespace v4::bench
