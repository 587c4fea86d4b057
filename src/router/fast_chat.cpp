#include "router/fast_chat.h"

#include <fmt/format.h>

#include <cstring>

#include <nlohmann/json.hpp>
#include <simdjson.h>

#include "protocol/openai_chat.h"

namespace v4::router::fastchat {

namespace {

using json = nlohmann::json;

// One chat chunk of the plain shape: at most one choice whose delta carries role / content /
// reasoning text, an optional finish_reason, an optional usage object. Read with simdjson (a
// reused parser per thread: no allocation per frame); anything else makes scan_chunk false and the
// frame (or the stream) goes to the full reader.
struct Chunk {
  Delta delta;
  int choices = 0;
  bool saw_delta = false, has_finish = false, has_usage = false;
  std::string finish;
  protocol::Usage usage;
};

namespace sj = simdjson;

bool int_of(sj::dom::element v, int64_t& out) { return v.get_int64().get(out) == sj::SUCCESS; }

bool read_delta(sj::dom::object d, Chunk& c) {
  bool reasoning_seen = false;
  for (auto [k, v] : d) {
    const bool null = v.is_null();
    std::string_view text;
    if (!null && v.get_string().get(text) != sj::SUCCESS) return false;  // objects, arrays, numbers: not plain
    if (k == "content") {
      c.delta.content.append(text);
    } else if (k == "reasoning_content" || k == "reasoning") {
      if (!text.empty() && reasoning_seen) return false;  // both spellings: leave it to the full reader
      if (!text.empty()) reasoning_seen = true;
      c.delta.reasoning.append(text);
    } else if (k != "role" && k != "refusal") {
      return false;
    }
  }
  return true;
}

bool read_usage(sj::dom::object u, Chunk& c) {
  c.has_usage = true;
  for (auto [k, v] : u) {
    if (k == "prompt_tokens") {
      if (!int_of(v, c.usage.input_tokens)) return false;
    } else if (k == "completion_tokens") {
      if (!int_of(v, c.usage.output_tokens)) return false;
    } else if (k == "prompt_tokens_details" || k == "completion_tokens_details") {
      sj::dom::object det;
      if (v.get_object().get(det) != sj::SUCCESS) return false;
      const char* want = k == "prompt_tokens_details" ? "cached_tokens" : "reasoning_tokens";
      int64_t& dst = k == "prompt_tokens_details" ? c.usage.cached_tokens : c.usage.reasoning_tokens;
      for (auto [dk, dv] : det)
        if (dk == want && !int_of(dv, dst)) return false;
    }
  }
  return true;
}

bool scan_chunk(std::string_view data, Chunk& c) {
  if (data.empty() || data.front() != '{') return false;
  thread_local sj::dom::parser parser;
  thread_local std::string padded;
  padded.assign(data);
  padded.resize(data.size() + sj::SIMDJSON_PADDING, '\0');
  sj::dom::object root;
  if (parser.parse(padded.data(), data.size(), false).get(root) != sj::SUCCESS) return false;
  for (auto [k, v] : root) {
    if (k == "choices") {
      sj::dom::array arr;
      if (v.get_array().get(arr) != sj::SUCCESS) return false;
      for (sj::dom::element ch : arr) {
        sj::dom::object o;
        if (c.choices++ > 0 || ch.get_object().get(o) != sj::SUCCESS) return false;  // several choices (n > 1)
        for (auto [ck, cv] : o) {
          if (ck == "delta") {
            sj::dom::object d;
            if (cv.get_object().get(d) != sj::SUCCESS || !read_delta(d, c)) return false;
            c.saw_delta = true;
          } else if (ck == "finish_reason") {
            std::string_view f;
            if (cv.is_null()) continue;
            if (cv.get_string().get(f) != sj::SUCCESS) return false;
            c.has_finish = true;
            c.finish.assign(f);
          } else if (ck == "logprobs") {
            if (!cv.is_null()) return false;
          }
        }
      }
    } else if (k == "usage") {
      if (v.is_null()) continue;
      sj::dom::object u;
      if (v.get_object().get(u) != sj::SUCCESS || !read_usage(u, c)) return false;
    } else if (k == "error") {
      if (!v.is_null()) return false;
    }
  }
  return true;
}

bool has(std::string_view s, std::string_view what) { return s.find(what) != std::string_view::npos; }

// The JSON text of a string exactly as protocol::wire writes it (ill-formed UTF-8 -> U+FFFD).
void append_json_string(std::string& out, const std::string& s) {
  bool simple = true;
  for (unsigned char c : s)
    if (c < 0x20 || c == '"' || c == '\\' || c >= 0x80) {
      simple = false;
      break;
    }
  if (simple) {
    out += '"';
    out += s;
    out += '"';
    return;
  }
  out += json(s).dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace

bool scan_plain_delta(std::string_view data, Delta& out) {
  out.clear();
  if (may_end(data)) return false;
  Chunk c;
  if (!scan_chunk(data, c) || c.has_finish || c.has_usage || c.choices != 1 || !c.saw_delta) return false;
  out = std::move(c.delta);
  return true;
}

bool LeanReader::read(std::string_view data, std::vector<protocol::StreamEvent>& out) {
  using protocol::StreamEvent;
  if (done_) return true;
  if (data == "[DONE]") {
    end(out);
    return true;
  }
  Chunk c;
  if (!scan_chunk(data, c)) return false;
  if (!started_) {
    started_ = true;
    out.push_back(StreamEvent::start());
  }
  // As protocol's chat reader: usage first (onto a finish already seen, else kept for the next),
  // then the choice's text, then its finish.
  if (c.has_usage) {
    if (finish_) finish_->usage = c.usage;
    else pending_usage_ = c.usage;
  }
  if (!c.delta.reasoning.empty()) out.push_back(StreamEvent::reasoning(std::move(c.delta.reasoning)));
  if (!c.delta.content.empty()) out.push_back(StreamEvent::content(std::move(c.delta.content)));
  if (c.has_finish) finish_ = StreamEvent::finished(protocol::chat::parse_finish(protocol::ojson(c.finish)), pending_usage_);
  return true;
}

void LeanReader::end(std::vector<protocol::StreamEvent>& out) {
  using protocol::StreamEvent;
  if (done_) return;
  if (!started_) out.push_back(StreamEvent::start());
  started_ = true;
  if (finish_) out.push_back(*finish_);
  else out.push_back(StreamEvent::failed("upstream stream ended without a finish_reason", "bad_upstream_response"));
  finish_.reset();
  done_ = true;
}

bool may_end(std::string_view d) {
  // One pass over the quotes (this runs on every frame of a passed-through stream).
  const char* p = d.data();
  const char* e = p + d.size();
  while ((p = static_cast<const char*>(std::memchr(p, '"', static_cast<size_t>(e - p)))) != nullptr) {
    ++p;
    // The key, then the first byte of its value: a finish_reason string, a usage object, a
    // non-null error. (A token that spells one of these is a string: no colon follows it.)
    auto value_after = [&](std::string_view k) -> int {
      if (static_cast<size_t>(e - p) < k.size() || std::memcmp(p, k.data(), k.size()) != 0) return -1;
      const char* q = p + k.size();
      while (q < e && (*q == ' ' || *q == '\t' || *q == '\n')) ++q;
      if (q == e || *q != ':') return -1;
      ++q;
      while (q < e && (*q == ' ' || *q == '\t' || *q == '\n')) ++q;
      return q < e ? static_cast<unsigned char>(*q) : -1;
    };
    // Only a quote followed by f, u or e can open one of the three keys: most quotes are
    // rejected on that byte (no comparison per key).
    const char c = p < e ? *p : '\0';
    if (c == 'f') {
      if (value_after("finish_reason\"") == '"') return true;
    } else if (c == 'u') {
      if (value_after("usage\"") == '{') return true;
    } else if (c == 'e') {
      int v = value_after("error\"");
      if (v != -1 && v != 'n') return true;
    }
  }
  return false;
}

bool strip_usage(std::string_view d, std::string& out) {
  // Walks the top-level object's members (strings and nesting tracked), finds "usage" and cuts
  // the member with its separating comma; every other byte stays as it came.
  size_t n = d.size(), i = 0;
  auto ws = [&](size_t j) {
    while (j < n && (d[j] == ' ' || d[j] == '\t' || d[j] == '\n' || d[j] == '\r')) ++j;
    return j;
  };
  auto end_of_string = [&](size_t j) -> size_t {  // j at the opening quote; returns past the closing one
    for (++j; j < n; ++j) {
      if (d[j] == '\\') ++j;
      else if (d[j] == '"') return j + 1;
    }
    return std::string_view::npos;
  };
  auto end_of_value = [&](size_t j) -> size_t {
    int depth = 0;
    for (; j < n; ++j) {
      char c = d[j];
      if (c == '"') {
        j = end_of_string(j);
        if (j == std::string_view::npos) return j;
        --j;
      } else if (c == '{' || c == '[') {
        ++depth;
      } else if (c == '}' || c == ']') {
        if (--depth < 0) return j;  // the end of the enclosing object
        if (depth == 0) return j + 1;
      } else if (c == ',' && depth == 0) {
        return j;
      }
    }
    return std::string_view::npos;
  };
  i = ws(0);
  if (i >= n || d[i] != '{') return false;
  size_t sep = i;  // the '{' or ',' before the member
  for (i = ws(i + 1); i < n && d[i] == '"';) {
    size_t ke = end_of_string(i);
    if (ke == std::string_view::npos) return false;
    std::string_view key = d.substr(i + 1, ke - i - 2);
    size_t c = ws(ke);
    if (c >= n || d[c] != ':') return false;
    size_t vs = ws(c + 1), ve = end_of_value(vs);
    if (ve == std::string_view::npos) return false;
    if (key == "usage") {
      size_t from = sep, to = ve;
      if (d[sep] == '{') {  // the first member: keep the brace, drop the comma after it
        from = sep + 1;
        size_t k = ws(ve);
        if (k < n && d[k] == ',') to = k + 1;
      }
      out.assign(d.substr(0, from));
      out.append(d.substr(to));
      return true;
    }
    size_t k = ws(ve);
    if (k >= n || d[k] != ',') return false;
    sep = k;
    i = ws(k + 1);
  }
  return false;
}

bool scan_end(std::string_view data, End& out) {
  Chunk c;
  if (!scan_chunk(data, c)) return false;
  out.finish = c.has_finish;
  out.usage = c.has_usage;
  out.counts = c.usage;
  return true;
}

bool carries_token(std::string_view d) {
  for (std::string_view k : {std::string_view("\"content\":\""), std::string_view("\"reasoning_content\":\""), std::string_view("\"reasoning\":\"")}) {
    size_t p = d.find(k);
    if (p != std::string_view::npos && p + k.size() < d.size() && d[p + k.size()] != '"') return true;
  }
  return has(d, "\"tool_calls\"");
}

bool emit_simple_response(const protocol::Response& r, std::string& out) {
  if (!r.tool_calls.empty() || !r.failures.empty() || !r.logprobs.is_null()) return false;
  out.clear();
  out.reserve(r.content.size() + (r.reasoning ? r.reasoning->size() : 0) + 480);
  out += "{\"id\":";
  append_json_string(out, r.id);
  out += ",\"object\":\"chat.completion\",\"created\":";
  out += std::to_string(r.created);
  out += ",\"model\":";
  append_json_string(out, r.model);
  out += ",\"system_fingerprint\":\"v4host-0.1.0\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":";
  append_json_string(out, r.content);
  if (r.reasoning) {
    out += ",\"reasoning_content\":";
    append_json_string(out, *r.reasoning);
  }
  out += "},\"finish_reason\":\"";
  out += protocol::finish_reason_name(r.finish);
  const auto& u = r.usage;
  out += fmt::format(
      "\",\"logprobs\":null}}],\"usage\":{{\"prompt_tokens\":{},\"completion_tokens\":{},\"total_tokens\":{},"
      "\"prompt_tokens_details\":{{\"cached_tokens\":{}}},\"completion_tokens_details\":{{\"reasoning_tokens\":{}}}}}}}",
      u.input_tokens, u.output_tokens, u.total(), u.cached_tokens, u.reasoning_tokens);
  return true;
}

size_t next_event(std::string_view buf, std::string_view& data, bool& plain) {
  size_t end = buf.find("\n\n");
  if (end == std::string_view::npos) return 0;
  std::string_view ev = buf.substr(0, end);  // without the blank line
  plain = ev.size() >= 5 && ev.compare(0, 5, "data:") == 0 && ev.find('\n') == std::string_view::npos &&
          ev.find('\r') == std::string_view::npos;
  if (plain) {
    data = ev.substr(5);
    if (!data.empty() && data.front() == ' ') data.remove_prefix(1);
  }
  return end + 2;
}

}  // namespace v4::router::fastchat
