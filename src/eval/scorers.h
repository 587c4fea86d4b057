// Scorers for the user's own JSONL items:
//   exact        the answer text, surrounding whitespace stripped, equals `expected` (a string)
//   contains     the answer contains `expected` (a string, or a list: all must be present)
//   regex        `expected` is a PCRE2 pattern that must match somewhere in the answer
//   json_schema  the answer (a ```json fence is unwrapped) parses as JSON valid against `expected`
//   tool_call    the first tool call has `expected.name` and arguments equal to `expected.arguments`
//   command      `command` (run by /bin/sh -c in the item file's directory) gets
//                {"item": ..., "answer": {...}} on stdin; exit 0 = pass; a JSON object with a
//                "score" number on stdout sets the score
#pragma once
#include <string>
#include <vector>

#include "eval/item.h"

namespace v4::eval {

struct Score {
  bool passed = false;
  double score = 0;
  Json detail = Json::object();
  std::string error;  // the scorer itself failed (bad command, ...)
};

const std::vector<std::string>& user_scorers();
bool is_user_scorer(const std::string& name);

// Checks the item's scorer and expected value up front; returns "" or what is wrong.
std::string check_scorer_config(const Item& item);

Score score_answer(const Item& item, const Answer& answer);

// Helpers shared with the suites.
std::string strip(const std::string& s);
// The items of a comma-separated list (a flag's value), each stripped; empty items dropped.
std::vector<std::string> split_list(const std::string& s);
// The JSON inside an answer: the text itself, or the first ```json / ``` fenced block.
bool parse_json_answer(const std::string& text, Json* out, std::string* why);
// Compares JSON values ignoring object key order (1 and 1.0 equal).
bool json_equal(const Json& a, const Json& b);
// PCRE2 search; *error set (and false returned) for a bad pattern.
bool regex_search(const std::string& pattern, const std::string& text, std::string* error);

}  // namespace v4::eval
