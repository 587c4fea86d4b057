// JSON Lines input: every non-blank line one JSON value; a malformed line is an InputError that
// names the file and the line number.
#pragma once
#include <string>
#include <vector>

#include "eval/item.h"

namespace v4::eval {

struct JsonlLine {
  long line_no = 0;  // 1-based
  Json value;
};

// Reads `path`; throws v4::InputError("PATH:LINE: malformed JSON (...)") for a bad line and
// InputError for an unreadable file. Blank lines are skipped.
std::vector<JsonlLine> read_jsonl(const std::string& path);

}  // namespace v4::eval
