// The unit of an evaluation: an item (one prompt, what is expected, how it is scored), the
// endpoint's answer to it, and the outcome written as one JSON line of the results file.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

namespace v4::eval {

using Json = nlohmann::ordered_json;

struct Item {
  std::string id;
  std::string category;  // "" = none
  Json messages = Json::array();  // OpenAI chat shape (system/user/assistant/tool)
  Json tools;                     // OpenAI tools array, or null
  Json tool_choice;               // "auto" | "required" | "none" | {"type":"function",...}, or null
  Json expected;                  // what the scorer compares with
  std::string scorer;             // exact | contains | regex | json_schema | tool_call | command | suite-specific
  std::string command;            // for the command scorer: run with /bin/sh -c
  std::string base_dir;           // directory the item's file lives in (command scorer cwd)
  Json meta = Json::object();     // suite-specific facts copied into the outcome (length, depth, ...)
  Json raw;                       // the item as read (handed to a command scorer)
  int max_tokens = 0;             // 0 = the run's default
};

// One chat turn's answer, whatever API it came through.
struct Answer {
  std::string text;
  std::string reasoning;
  Json tool_calls = Json::array();  // [{id, name, arguments}] with arguments parsed (string if not JSON)
  std::string finish_reason;
  long prompt_tokens = 0, completion_tokens = 0, reasoning_tokens = 0;
  double latency_s = 0;
  int http_status = 0;
  std::string error;       // empty = ok
  bool transport = false;  // the error is the endpoint's (unreachable, 5xx, timeout): redone on resume
};

// One line of RESULTS.jsonl: one item and sample.
struct Outcome {
  std::string id;
  int sample = 0;
  std::string category;
  bool passed = false;
  double score = 0;
  std::string answer, reasoning;
  Json tool_calls = Json::array();
  long prompt_tokens = 0, completion_tokens = 0, reasoning_tokens = 0;
  double latency_s = 0;
  std::string error;
  std::string error_kind;  // "transport" (redone on resume), "scorer", "sandbox", "request"
  Json meta = Json::object();
  Json detail = Json::object();  // why it passed or failed (scorer output, test stderr, ...)

  Json to_json() const;
  static Outcome from_json(const Json& j);  // throws std::exception on a missing id/passed
  std::string key() const { return id + "#" + std::to_string(sample); }
};

// Fills the answer fields of an outcome from an endpoint answer.
void take_answer(Outcome& o, const Answer& a);

}  // namespace v4::eval
