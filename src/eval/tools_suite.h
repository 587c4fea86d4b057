// The `tools` suite: tool-call conformance with BFCL-style AST checks. An item is
//   {"id", "category"?, "messages", "tools", "tool_choice"?, "expected", "turns"?}
// where `expected` is {"calls": [{"name": F, "arguments": {PARAM: [acceptable values]}}],
// "order": "any" | "strict" (default any), "text_contains": [..]?}. A turn passes when:
//   - every call names a declared function (no hallucinated functions),
//   - its arguments are a JSON object valid against that function's parameters schema
//     (required arguments present, types, enums, no undeclared arguments),
//   - the calls match the expected ones one to one (same count: no missing and no extra calls;
//     for each listed parameter the value is one of the acceptable ones; "" in the list means
//     the parameter may be left out), in order when order is "strict",
//   - with "calls": [] there is no call at all (irrelevance, tool_choice "none"), and the text
//     contains every "text_contains" string.
// "turns": [{"tool_results": [{"name": F, "content": "..."}], "expected": {...}}, ...] continues
// the conversation: the model's turn (with its reasoning_content, so interleaved thinking is
// kept across tool turns) and a tool message per call (result taken by function name, in order)
// are appended and the next answer is checked. passed = every turn passed; score = share of
// turns passed.
#pragma once
#include <memory>
#include <string>

#include "eval/suite.h"

namespace v4::eval {

// The AST check of one answer against `expected` with the declared `tools`; returns "" when it
// passes, else the first reason it does not.
std::string check_tool_turn(const Json& tools, const Json& expected, const Answer& a);

std::unique_ptr<Suite> make_tools_suite(const std::string& path, bool with_builtin);

}  // namespace v4::eval
