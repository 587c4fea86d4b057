#include "router/wire_edit.h"

#include <algorithm>
#include <array>
#include <optional>
#include <vector>

#include "router/upstream.h"

namespace v4::router {

using protocol::ojson;

namespace {

// Top-level members kept as the client sent them: the emit path writes each of them back with
// the same value (when not null; stop only as an array, user and prompt_cache_key only as
// non-empty strings — checked below).
constexpr std::array<std::string_view, 11> kKept = {"messages", "max_tokens", "temperature", "top_p", "min_p", "top_k",
                                                    "seed",     "stop",       "user",        "prompt_cache_key", "parallel_tool_calls"};
// Replaced by the router (model, stream, usage, the reasoning switch) or dropped as the emit path
// drops them (n is validated to be 1; metadata and store are the router's business).
constexpr std::array<std::string_view, 11> kReplaced = {"model", "stream",   "stream_options", "thinking", "thinking_mode", "enable_thinking",
                                                        "reasoning_effort", "n", "metadata", "store", "reasoning"};

struct Member {
  std::string_view key, text;  // text: from the key's opening quote to the end of the value
};

size_t skip_ws(std::string_view s, size_t i) {
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) ++i;
  return i;
}

// End of the string starting at s[i] == '"' (one past its closing quote); npos if unterminated.
size_t skip_string(std::string_view s, size_t i, bool* escaped = nullptr) {
  for (++i; i < s.size(); ++i) {
    if (s[i] == '\\') {
      if (escaped) *escaped = true;
      ++i;
    } else if (s[i] == '"') {
      return i + 1;
    }
  }
  return std::string_view::npos;
}

// End of the JSON value starting at s[i] (the body already parsed as JSON, so this only has to
// find its extent); npos if it runs off the end.
size_t skip_value(std::string_view s, size_t i) {
  if (i >= s.size()) return std::string_view::npos;
  if (s[i] == '"') return skip_string(s, i);
  if (s[i] == '{' || s[i] == '[') {
    int depth = 0;
    for (; i < s.size(); ++i) {
      char c = s[i];
      if (c == '"') {
        i = skip_string(s, i);
        if (i == std::string_view::npos) return i;
        --i;
      } else if (c == '{' || c == '[') {
        ++depth;
      } else if (c == '}' || c == ']') {
        if (--depth == 0) return i + 1;
      }
    }
    return std::string_view::npos;
  }
  while (i < s.size() && s[i] != ',' && s[i] != '}' && s[i] != ']' && s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r') ++i;
  return i;
}

// The top-level members of an object, in order; nullopt if a key is escaped (its bytes are then
// not its name) or the text is not an object.
std::optional<std::vector<Member>> members(std::string_view s) {
  std::vector<Member> out;
  size_t i = skip_ws(s, 0);
  if (i >= s.size() || s[i] != '{') return std::nullopt;
  i = skip_ws(s, i + 1);
  if (i < s.size() && s[i] == '}') return skip_ws(s, i + 1) == s.size() ? std::optional(out) : std::nullopt;
  for (;;) {
    if (i >= s.size() || s[i] != '"') return std::nullopt;
    bool escaped = false;
    size_t kend = skip_string(s, i, &escaped);
    if (kend == std::string_view::npos || escaped) return std::nullopt;
    Member m;
    m.key = s.substr(i + 1, kend - i - 2);
    size_t j = skip_ws(s, kend);
    if (j >= s.size() || s[j] != ':') return std::nullopt;
    j = skip_ws(s, j + 1);
    size_t vend = skip_value(s, j);
    if (vend == std::string_view::npos) return std::nullopt;
    m.text = s.substr(i, vend - i);
    out.push_back(m);
    i = skip_ws(s, vend);
    if (i >= s.size()) return std::nullopt;
    if (s[i] == '}') {
      if (skip_ws(s, i + 1) != s.size()) return std::nullopt;  // text after the object
      return out;
    }
    if (s[i] != ',') return std::nullopt;
    i = skip_ws(s, i + 1);
  }
}

template <size_t N>
bool in(const std::array<std::string_view, N>& a, std::string_view k) {
  return std::find(a.begin(), a.end(), k) != a.end();
}

// A message the emit path writes back with the same members and values.
bool plain_message(const ojson& m) {
  if (!m.is_object() || !m.contains("role") || !m["role"].is_string()) return false;
  const std::string& role = m["role"].get_ref<const std::string&>();
  const bool assistant = role == "assistant", tool = role == "tool";
  if (!assistant && !tool && role != "user" && role != "system" && role != "developer") return false;
  for (auto& [k, v] : m.items()) {
    if (k == "role") continue;
    if (k == "content") {
      if (!(v.is_string() || (assistant && v.is_null()))) return false;  // content parts are joined by the emit path
    } else if (k == "name") {
      if (tool || !v.is_string() || v.get_ref<const std::string&>().empty()) return false;
    } else if (k == "tool_call_id") {
      if (!tool || !v.is_string()) return false;
    } else {
      return false;  // tool_calls, reasoning_content / reasoning, anything else: the emit path
    }
  }
  // The emit path writes "content" for every message (null for an assistant turn without one).
  return m.contains("content");
}

}  // namespace

bool edit_chat_body(const Upstream& u, const protocol::Request& req, const ojson& body, std::string_view raw, std::string& out) {
  if (u.api != WireApi::OpenAIChat || req.dialect != protocol::Dialect::ChatCompletions || !body.is_object()) return false;
  auto ms = members(raw);
  if (!ms || ms->size() != body.size()) return false;  // a duplicate key (the parse kept one of them)
  for (const Member& m : *ms) {
    if (in(kReplaced, m.key)) continue;
    if (!in(kKept, m.key)) return false;
    const ojson& v = body[std::string(m.key)];
    if (v.is_null()) return false;
    if (m.key == "stop" && (!v.is_array() || v.empty())) return false;
    if ((m.key == "user" || m.key == "prompt_cache_key") && (!v.is_string() || v.get_ref<const std::string&>().empty())) return false;
    if (m.key == "parallel_tool_calls" && !v.is_boolean()) return false;
  }
  const ojson& msgs = body["messages"];
  if (!msgs.is_array()) return false;
  for (auto& m : msgs)
    if (!plain_message(m)) return false;

  // What the emit path then sets: the model, the stream with usage, the reasoning switch.
  out.clear();
  out.reserve(raw.size() + 128);
  out += '{';
  for (const Member& m : *ms) {
    if (in(kReplaced, m.key)) continue;
    out += m.text;
    out += ',';
  }
  out += "\"model\":";
  out += protocol::wire(ojson(u.model.empty() ? req.model : u.model));
  out += ",\"stream\":true,\"stream_options\":{\"include_usage\":true}";
  const ojson set = reasoning_members(u, thinking_on(req.reasoning), req.reasoning.effort);
  for (auto& [k, v] : set.items()) {
    out += ',';
    out += protocol::wire(ojson(k));
    out += ':';
    out += protocol::wire(v);
  }
  out += '}';
  return true;
}

}  // namespace v4::router
