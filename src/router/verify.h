// Verifiers gate a hop's answer: if one fails the route falls back to its next upstream (the
// failure is recorded in the ledger and /metrics). Checks:
//   json_schema  the content against the request's response_format (json_schema: the schema;
//                json_object: any JSON object); passes when the request asked for text
//   tool_args    every tool call names a declared tool and its arguments satisfy that tool's
//                parameter schema (src/text/json_schema); calls the upstream flagged invalid fail
//   non_empty    some content or a tool call
//   regex        the content matches a PCRE2 pattern
//   command      argv run with {"request", "answer", "route", "upstream"} as JSON on stdin and a
//                time limit; exit 0 accepts, anything else (or the limit) rejects; its stderr
//                tail becomes the reason
#pragma once
#include <string>
#include <vector>

#include "protocol/types.h"
#include "router/config.h"

namespace v4::router {

struct Verdict {
  bool ok = true;
  std::string verifier;  // which one failed
  std::string reason;
};

// The answer as the command verifier sees it.
protocol::ojson answer_json(const protocol::Response& r);

// Fast checks only (everything except command); ok when all pass.
Verdict verify_inline(const std::vector<Verifier>& vs, const protocol::Request& req, const protocol::Response& res);
bool has_command_verifier(const std::vector<Verifier>& vs);
// Command verifiers (blocking: run off the I/O thread).
Verdict verify_commands(const std::vector<Verifier>& vs, const protocol::ojson& request_body, const protocol::Response& res,
                        const std::string& route, const std::string& upstream);

// "" when `pattern` compiles, else PCRE2's message.
std::string regex_error(const std::string& pattern);

}  // namespace v4::router
