#include "eval/scorers.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <cmath>

#include "eval/subprocess.h"
#include "text/json_schema.h"

namespace v4::eval {

const std::vector<std::string>& user_scorers() {
  static const std::vector<std::string> s = {"exact", "contains", "regex", "json_schema", "tool_call", "command"};
  return s;
}

bool is_user_scorer(const std::string& name) {
  const auto& s = user_scorers();
  return std::find(s.begin(), s.end(), name) != s.end();
}

std::string strip(const std::string& s) {
  const char* ws = " \t\r\n\f\v";
  size_t a = s.find_first_not_of(ws);
  if (a == std::string::npos) return "";
  size_t b = s.find_last_not_of(ws);
  return s.substr(a, b - a + 1);
}

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t comma = s.find(',', start);
    if (comma == std::string::npos) comma = s.size();
    std::string item = strip(s.substr(start, comma - start));
    if (!item.empty()) out.push_back(std::move(item));
    start = comma + 1;
  }
  return out;
}

bool regex_search(const std::string& pattern, const std::string& text, std::string* error) {
  int ec = 0;
  PCRE2_SIZE eoff = 0;
  pcre2_code* re = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), PCRE2_UTF | PCRE2_MATCH_INVALID_UTF,
                                 &ec, &eoff, nullptr);
  if (!re) {
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(ec, buf, sizeof buf);
    if (error) *error = "bad regex at offset " + std::to_string(eoff) + ": " + reinterpret_cast<char*>(buf);
    return false;
  }
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(re, nullptr);
  int rc = pcre2_match(re, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), 0, 0, md, nullptr);
  pcre2_match_data_free(md);
  pcre2_code_free(re);
  if (error) error->clear();
  return rc >= 0;
}

bool parse_json_answer(const std::string& text, Json* out, std::string* why) {
  std::string t = strip(text);
  auto fence = t.find("```");
  if (fence != std::string::npos) {
    size_t start = t.find('\n', fence);
    size_t end = start == std::string::npos ? std::string::npos : t.find("```", start);
    if (end != std::string::npos) t = strip(t.substr(start + 1, end - start - 1));
  }
  try {
    *out = Json::parse(t);
    return true;
  } catch (const std::exception& e) {
    if (why) *why = std::string("answer is not JSON: ") + e.what();
    return false;
  }
}

bool json_equal(const Json& a, const Json& b) {
  if (a.is_number() && b.is_number()) return std::fabs(a.get<double>() - b.get<double>()) <= 1e-9 * std::max(1.0, std::fabs(a.get<double>()));
  if (a.type() != b.type()) return false;
  if (a.is_object()) {
    if (a.size() != b.size()) return false;
    for (auto it = a.begin(); it != a.end(); ++it) {
      auto jt = b.find(it.key());
      if (jt == b.end() || !json_equal(*it, *jt)) return false;
    }
    return true;
  }
  if (a.is_array()) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
      if (!json_equal(a[i], b[i])) return false;
    return true;
  }
  return a == b;
}

std::string check_scorer_config(const Item& it) {
  const std::string& s = it.scorer;
  if (s.empty()) return "missing field 'scorer' (one of exact, contains, regex, json_schema, tool_call, command)";
  if (!is_user_scorer(s)) return "unknown scorer '" + s + "' (use exact, contains, regex, json_schema, tool_call or command)";
  if (s == "exact" && !it.expected.is_string()) return "scorer exact needs 'expected' to be a string";
  if (s == "contains" && !it.expected.is_string() && !it.expected.is_array()) return "scorer contains needs 'expected' to be a string or a list of strings";
  if (s == "contains" && it.expected.is_array())
    for (const auto& e : it.expected)
      if (!e.is_string()) return "scorer contains needs 'expected' to be a string or a list of strings";
  if (s == "regex") {
    if (!it.expected.is_string()) return "scorer regex needs 'expected' to be a pattern string";
    std::string err;
    regex_search(it.expected.get<std::string>(), "", &err);
    if (!err.empty()) return "scorer regex: " + err;
  }
  if (s == "json_schema" && !it.expected.is_object() && !it.expected.is_boolean()) return "scorer json_schema needs 'expected' to be a JSON schema object";
  if (s == "tool_call" && (!it.expected.is_object() || !it.expected.contains("name") || !it.expected["name"].is_string()))
    return "scorer tool_call needs 'expected' to be {\"name\": ..., \"arguments\": {...}}";
  if (s == "command" && it.command.empty()) return "scorer command needs a 'command' field (a shell command)";
  return "";
}

Score score_answer(const Item& it, const Answer& a) {
  Score r;
  const std::string text = strip(a.text);
  if (it.scorer == "exact") {
    r.passed = text == it.expected.get<std::string>();
  } else if (it.scorer == "contains") {
    if (it.expected.is_string()) {
      r.passed = a.text.find(it.expected.get<std::string>()) != std::string::npos;
    } else {
      r.passed = true;
      Json missing = Json::array();
      for (const auto& e : it.expected)
        if (a.text.find(e.get<std::string>()) == std::string::npos) {
          r.passed = false;
          missing.push_back(e);
        }
      if (!missing.empty()) r.detail["missing"] = missing;
    }
  } else if (it.scorer == "regex") {
    std::string err;
    r.passed = regex_search(it.expected.get<std::string>(), a.text, &err);
    if (!err.empty()) r.error = err;
  } else if (it.scorer == "json_schema") {
    Json v;
    std::string why;
    if (!parse_json_answer(a.text, &v, &why)) {
      r.detail["why"] = why;
    } else {
      auto errs = text::validate_json_schema(v, it.expected);
      r.passed = errs.empty();
      if (!errs.empty()) {
        Json e = Json::array();
        for (const auto& x : errs) e.push_back(x.path + ": " + x.message);
        r.detail["schema_errors"] = e;
      }
    }
  } else if (it.scorer == "tool_call") {
    if (a.tool_calls.empty()) {
      r.detail["why"] = "no tool call";
    } else {
      const auto& c = a.tool_calls[0];
      const bool name_ok = c.value("name", std::string()) == it.expected["name"].get<std::string>();
      const bool args_ok = !it.expected.contains("arguments") || json_equal(c.value("arguments", Json()), it.expected["arguments"]);
      r.passed = name_ok && args_ok;
      if (!name_ok) r.detail["why"] = "called " + c.value("name", std::string()) + ", expected " + it.expected["name"].get<std::string>();
      else if (!args_ok) r.detail["why"] = "arguments differ";
    }
  } else if (it.scorer == "command") {
    Json in = {{"item", it.raw},
               {"answer", {{"text", a.text}, {"reasoning", a.reasoning}, {"tool_calls", a.tool_calls}}}};
    ProcLimits lim;
    lim.wall_s = 60;
    ProcResult p = run_process({"/bin/sh", "-c", it.command}, in.dump() + "\n", it.base_dir, {}, lim);
    if (!p.started) {
      r.error = "command scorer: " + p.spawn_error;
    } else if (p.timed_out) {
      r.error = "command scorer timed out after 60 s";
    } else {
      r.passed = p.exit_code == 0;
      if (p.exit_code == 127) r.error = "command scorer: '" + it.command + "' not found (exit 127): " + strip(p.err);
      if (!strip(p.err).empty()) r.detail["stderr"] = strip(p.err).substr(0, 2000);
      try {
        Json o = Json::parse(p.out);
        if (o.is_object() && o.contains("score") && o["score"].is_number()) r.score = o["score"].get<double>();
        else r.score = r.passed ? 1 : 0;
        return r;
      } catch (...) {
      }
    }
  }
  r.score = r.passed ? 1 : 0;
  return r;
}

}  // namespace v4::eval
