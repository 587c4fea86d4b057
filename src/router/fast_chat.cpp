#include "router/fast_chat.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "protocol/openai_chat.h"

namespace v4::router::fastchat {

namespace {

using json = nlohmann::json;

// SAX reader of one chat chunk of the plain shape: at most one choice whose delta carries role /
// content / reasoning text, an optional finish_reason, an optional usage object. Returning false
// from any callback stops the parse: the frame (or the stream) then goes to the full reader.
struct Chunk {
  Delta delta;
  int choices = 0;
  bool saw_delta = false, has_finish = false, has_usage = false;
  std::string finish;
  protocol::Usage usage;
};

class ChunkSax final : public nlohmann::json_sax<json> {
 public:
  explicit ChunkSax(Chunk& c) : c_(c) {}
  bool null() override { return n_ > 0 && top() != Ctx::Usage && top() != Ctx::Details; }  // delta.content: null, finish_reason: null …
  bool boolean(bool) override { return n_ > 0 && (top() == Ctx::Root || top() == Ctx::Choice || top() == Ctx::Skip); }
  bool number_integer(number_integer_t v) override { return number(static_cast<int64_t>(v)); }
  bool number_unsigned(number_unsigned_t v) override { return v <= static_cast<number_unsigned_t>(INT64_MAX) && number(static_cast<int64_t>(v)); }
  bool number_float(number_float_t, const string_t&) override {
    return n_ > 0 && (top() == Ctx::Root || top() == Ctx::Choice || top() == Ctx::Skip);
  }
  bool string(string_t& v) override {
    if (n_ == 0) return false;
    switch (top()) {
      case Ctx::Delta:
        if (key_ == "content") {
          c_.delta.content += v;
        } else if (key_ == "reasoning_content" || key_ == "reasoning") {
          if (!v.empty() && reasoning_seen_) return false;  // both spellings: leave it to the full reader
          if (!v.empty()) reasoning_seen_ = true;
          c_.delta.reasoning += v;
        } else if (key_ != "role" && key_ != "refusal") {
          return false;
        }
        return true;
      case Ctx::Choice:
        if (key_ == "finish_reason") {
          c_.has_finish = true;
          c_.finish = v;
        }
        return true;
      case Ctx::Root: return key_ != "error";
      case Ctx::Skip: return true;
      default: return false;  // a string where usage has numbers
    }
  }
  bool binary(binary_t&) override { return false; }
  bool start_object(std::size_t) override {
    if (n_ == 0) return push(Ctx::Root);
    switch (top()) {
      case Ctx::Choices:
        if (c_.choices++ > 0) return false;  // several choices (n > 1)
        return push(Ctx::Choice);
      case Ctx::Choice:
        if (key_ == "delta") {
          c_.saw_delta = true;
          return push(Ctx::Delta);
        }
        return key_ != "logprobs" && push(Ctx::Skip);
      case Ctx::Root:
        if (key_ == "usage") {
          c_.has_usage = true;
          return push(Ctx::Usage);
        }
        return key_ != "error" && push(Ctx::Skip);
      case Ctx::Usage:
        if (key_ == "prompt_tokens_details" || key_ == "completion_tokens_details") {
          detail_ = key_;
          return push(Ctx::Details);
        }
        return push(Ctx::Skip);
      case Ctx::Details: return push(Ctx::Skip);
      case Ctx::Skip: return push(Ctx::Skip);
      default: return false;  // objects inside a delta (tool calls, function_call …)
    }
  }
  bool key(string_t& k) override {
    key_ = k;
    return true;
  }
  bool end_object() override { return pop(); }
  bool start_array(std::size_t) override {
    if (n_ == 0) return false;
    if (top() == Ctx::Root && key_ == "choices") return push(Ctx::Choices);
    if (top() == Ctx::Skip || (top() == Ctx::Root && key_ != "error") || (top() == Ctx::Usage)) return push(Ctx::Skip);
    return false;  // tool_calls, logprobs content …
  }
  bool end_array() override { return pop(); }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override { return false; }

 private:
  enum class Ctx { Root, Choices, Choice, Delta, Usage, Details, Skip };
  Ctx top() const { return stack_[n_ - 1]; }
  bool push(Ctx c) {
    if (n_ == kDepth) return false;
    stack_[n_++] = c;
    key_.clear();
    return true;
  }
  bool pop() {
    if (n_ > 0) --n_;
    key_.clear();
    return true;
  }
  bool number(int64_t v) {
    if (n_ == 0) return false;
    switch (top()) {
      case Ctx::Usage:
        if (key_ == "prompt_tokens") c_.usage.input_tokens = v;
        else if (key_ == "completion_tokens") c_.usage.output_tokens = v;
        return true;
      case Ctx::Details:
        if (detail_ == "prompt_tokens_details" && key_ == "cached_tokens") c_.usage.cached_tokens = v;
        if (detail_ == "completion_tokens_details" && key_ == "reasoning_tokens") c_.usage.reasoning_tokens = v;
        return true;
      case Ctx::Delta: return false;  // a tool call's index would be one
      default: return true;
    }
  }
  static constexpr int kDepth = 16;
  Chunk& c_;
  Ctx stack_[kDepth] = {};
  int n_ = 0;
  bool reasoning_seen_ = false;
  std::string key_, detail_;
};

bool scan_chunk(std::string_view data, Chunk& c) {
  if (data.empty() || data.front() != '{') return false;
  ChunkSax sax(c);
  return json::sax_parse(data.begin(), data.end(), &sax, nlohmann::detail::input_format_t::json, true);
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
  return has(d, "\"finish_reason\":\"") || has(d, "\"finish_reason\": \"") || has(d, "\"usage\":{") || has(d, "\"usage\": {") ||
         has(d, "\"error\"");
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
