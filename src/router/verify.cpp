#include "router/verify.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <fmt/format.h>

#include "router/subprocess.h"
#include "text/json_schema.h"

namespace v4::router {

using protocol::ojson;

namespace {

std::string schema_errors(const std::vector<text::SchemaError>& errs) {
  std::string s;
  for (size_t i = 0; i < errs.size() && i < 3; ++i)
    s += fmt::format("{}{}: {}", i ? "; " : "", errs[i].path.empty() ? "/" : errs[i].path, errs[i].message);
  if (errs.size() > 3) s += fmt::format(" (+{} more)", errs.size() - 3);
  return s;
}

bool regex_matches(const std::string& pattern, const std::string& subject, std::string* err) {
  int ec;
  PCRE2_SIZE off;
  pcre2_code* re = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), PCRE2_UTF | PCRE2_MATCH_INVALID_UTF, &ec,
                                 &off, nullptr);
  if (!re) {
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(ec, buf, sizeof buf);
    *err = reinterpret_cast<char*>(buf);
    return false;
  }
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(re, nullptr);
  int rc = pcre2_match(re, reinterpret_cast<PCRE2_SPTR>(subject.data()), subject.size(), 0, 0, md, nullptr);
  pcre2_match_data_free(md);
  pcre2_code_free(re);
  return rc >= 0;
}

}  // namespace

std::string regex_error(const std::string& pattern) {
  std::string err;
  regex_matches(pattern, "", &err);
  return err;
}

ojson answer_json(const protocol::Response& r) {
  ojson calls = ojson::array();
  for (auto& tc : r.tool_calls) calls.push_back({{"id", tc.id}, {"name", tc.name}, {"arguments", tc.arguments}});
  ojson a = {{"content", r.content}, {"tool_calls", calls}, {"finish_reason", protocol::finish_reason_name(r.finish)}};
  if (r.reasoning) a["reasoning"] = *r.reasoning;
  return a;
}

bool has_command_verifier(const std::vector<Verifier>& vs) {
  for (auto& v : vs)
    if (v.kind == Verifier::Command) return true;
  return false;
}

Verdict verify_inline(const std::vector<Verifier>& vs, const protocol::Request& req, const protocol::Response& res) {
  for (auto& v : vs) {
    switch (v.kind) {
      case Verifier::NonEmpty: {
        bool blank = res.content.find_first_not_of(" \t\r\n") == std::string::npos;
        if (blank && res.tool_calls.empty()) return {false, "non_empty", "the answer is empty"};
        break;
      }
      case Verifier::JsonSchema: {
        const auto& rf = req.response_format;
        if (rf.type != "json_schema" && rf.type != "json_object") break;
        if (!res.tool_calls.empty() && res.content.empty()) break;  // a tool turn carries no JSON answer
        auto j = ojson::parse(res.content, nullptr, false);
        if (j.is_discarded()) return {false, "json_schema", "the answer is not JSON"};
        if (rf.type == "json_object") {
          if (!j.is_object()) return {false, "json_schema", "the answer is not a JSON object"};
          break;
        }
        auto errs = text::validate_json_schema(j, rf.schema);
        if (!errs.empty()) return {false, "json_schema", "the answer does not match response_format: " + schema_errors(errs)};
        break;
      }
      case Verifier::ToolArgs: {
        if (!res.failures.empty()) return {false, "tool_args", "the upstream reported an invalid tool call"};
        for (auto& tc : res.tool_calls) {
          const protocol::Tool* tool = nullptr;
          for (auto& t : req.tools)
            if (t.name == tc.name) tool = &t;
          if (!tool) return {false, "tool_args", "call to undeclared tool '" + tc.name + "'"};
          if (tool->kind != protocol::Tool::Kind::Function) continue;
          auto args = ojson::parse(tc.arguments.empty() ? "{}" : tc.arguments, nullptr, false);
          if (args.is_discarded() || !args.is_object())
            return {false, "tool_args", "arguments of '" + tc.name + "' are not a JSON object"};
          if (tool->parameters.is_null()) continue;
          auto errs = text::validate_json_schema(args, tool->parameters);
          if (!errs.empty()) return {false, "tool_args", "arguments of '" + tc.name + "': " + schema_errors(errs)};
        }
        break;
      }
      case Verifier::Regex: {
        std::string err;
        if (!regex_matches(v.pattern, res.content, &err)) return {false, "regex", "the answer does not match /" + v.pattern + "/"};
        break;
      }
      case Verifier::Command: break;  // verify_commands
    }
  }
  return {};
}

Verdict verify_commands(const std::vector<Verifier>& vs, const ojson& request_body, const protocol::Response& res, const std::string& route,
                        const std::string& upstream) {
  std::string input;
  for (auto& v : vs) {
    if (v.kind != Verifier::Command) continue;
    if (input.empty())
      input = ojson{{"request", request_body}, {"answer", answer_json(res)}, {"route", route}, {"upstream", upstream}}.dump(
          -1, ' ', false, ojson::error_handler_t::replace);
    ProcessResult p = run_process(v.command, input, v.timeout_s);
    if (p.spawn_failed) return {false, "command", p.err};
    if (p.timed_out) return {false, "command", fmt::format("{} ran past its {}s limit", v.command[0], v.timeout_s)};
    if (p.exit_code != 0) {
      std::string tail = p.err.size() > 300 ? p.err.substr(p.err.size() - 300) : p.err;
      while (!tail.empty() && (tail.back() == '\n' || tail.back() == ' ')) tail.pop_back();
      return {false, "command", fmt::format("{} exited {}{}{}", v.command[0], p.exit_code, tail.empty() ? "" : ": ", tail)};
    }
  }
  return {};
}

}  // namespace v4::router
