// The `code` suite: programming tasks with hidden tests run in the sandbox. A task (JSONL line)
// is {"id", "prompt", "tests", "language"? (python | bash; default python), "time_limit"?
// (seconds, default 10), "category"?}. The model's answer is reduced to its code (the first
// fenced block in the task's language, else the first fenced block, else the whole answer);
// the program run is that code followed by the tests; exit status 0 = pass. With --samples K
// the summary has pass@k (unbiased estimator) for k = 1, 2, 4, ..., K.
#pragma once
#include <memory>
#include <string>

#include "eval/sandbox.h"
#include "eval/suite.h"

namespace v4::eval {

// The code of an answer for `language`.
std::string extract_code(const std::string& answer, const std::string& language);

// Runs the item's tests against `answer` in the sandbox; fills passed/score/detail/error.
void score_code(const Item& task, const std::string& answer, const Sandbox& sb, Outcome& o);

// Built-in tasks (written for this project) when `tasks_path` is empty, else the user's file
// (+ the built-ins when with_builtin). Malformed lines -> InputError naming PATH:LINE.
std::unique_ptr<Suite> make_code_suite(const std::string& tasks_path, bool with_builtin, const Sandbox& sb);

}  // namespace v4::eval
