// Dialect-independent pieces: names, SSE framing, the stream → response accumulator.
#include <string_view>

#include "protocol/types.h"

namespace v4::protocol {

const char* dialect_name(Dialect d) {
  switch (d) {
    case Dialect::ChatCompletions: return "chat_completions";
    case Dialect::Completions: return "completions";
    case Dialect::Responses: return "responses";
    case Dialect::AnthropicMessages: return "anthropic_messages";
  }
  return "?";
}

const char* role_name(Role r) {
  switch (r) {
    case Role::System: return "system";
    case Role::Developer: return "developer";
    case Role::User: return "user";
    case Role::Assistant: return "assistant";
    case Role::Tool: return "tool";
  }
  return "?";
}

const char* finish_reason_name(FinishReason f) {
  switch (f) {
    case FinishReason::Stop:
    case FinishReason::StopSequence: return "stop";
    case FinishReason::Length: return "length";
    case FinishReason::ToolCalls: return "tool_calls";
    case FinishReason::ContentFilter: return "content_filter";
    case FinishReason::Error: return "error";
  }
  return "stop";
}

std::string SseFrame::wire() const {
  std::string s;
  if (!event.empty()) s += "event: " + event + "\n";
  size_t p = 0;
  for (;;) {
    size_t nl = data.find('\n', p);
    s += "data: ";
    s.append(data, p, nl == std::string::npos ? std::string::npos : nl - p);
    s += "\n";
    if (nl == std::string::npos) break;
    p = nl + 1;
  }
  s += "\n";
  return s;
}

void SseDecoder::line(std::string_view l, std::vector<SseFrame>& out) {
  if (l.empty()) {  // dispatch
    if (has_data_) out.push_back({event_, data_});
    event_.clear();
    data_.clear();
    has_data_ = false;
    return;
  }
  if (l[0] == ':') return;  // comment / keep-alive
  size_t c = l.find(':');
  std::string_view field = c == std::string_view::npos ? l : l.substr(0, c);
  std::string_view value = c == std::string_view::npos ? std::string_view() : l.substr(c + 1);
  if (!value.empty() && value[0] == ' ') value.remove_prefix(1);
  if (field == "event") {
    event_ = value;
  } else if (field == "data") {
    if (has_data_) data_ += "\n";
    data_ += value;
    has_data_ = true;
  }
}

std::vector<SseFrame> SseDecoder::feed(std::string_view bytes) {
  std::vector<SseFrame> out;
  buf_.append(bytes);
  size_t p = 0;
  for (;;) {
    size_t nl = buf_.find('\n', p);
    if (nl == std::string::npos) break;
    size_t end = nl;
    if (end > p && buf_[end - 1] == '\r') --end;
    line(std::string_view(buf_).substr(p, end - p), out);
    p = nl + 1;
  }
  buf_.erase(0, p);
  return out;
}

std::vector<SseFrame> SseDecoder::finish() {
  std::vector<SseFrame> out;
  if (!buf_.empty()) {
    line(buf_, out);
    buf_.clear();
  }
  line("", out);
  return out;
}

void ResponseAccumulator::add(const StreamEvent& e) {
  using K = StreamEvent::Kind;
  switch (e.kind) {
    case K::Start:
      r_.usage = e.usage;
      break;
    case K::ReasoningDelta:
      if (!r_.reasoning) r_.reasoning = "";
      *r_.reasoning += e.text;
      break;
    case K::TextDelta:
      r_.content += e.text;
      break;
    case K::ToolCallStart: {
      ToolCall c;
      c.id = e.id;
      c.name = e.name;
      c.custom = e.custom;
      r_.tool_calls.push_back(std::move(c));
      index_.push_back(e.index);
      break;
    }
    case K::ToolCallDelta:
      for (size_t i = 0; i < index_.size(); ++i)
        if (index_[i] == e.index) r_.tool_calls[i].arguments += e.text;
      break;
    case K::ToolCallEnd:
      if (e.error.is_null()) break;
      for (size_t i = 0; i < index_.size(); ++i)
        if (index_[i] == e.index) {
          ToolCallFailure f;
          f.index = e.index;
          f.id = r_.tool_calls[i].id;
          f.name = r_.tool_calls[i].name;
          f.error = e.error;
          r_.failures.push_back(std::move(f));
          r_.tool_calls.erase(r_.tool_calls.begin() + static_cast<long>(i));
          index_.erase(index_.begin() + static_cast<long>(i));
          break;
        }
      break;
    case K::Logprobs:
      if (r_.logprobs.is_null()) r_.logprobs = ojson::array();
      for (auto& x : e.logprobs) r_.logprobs.push_back(x);
      break;
    case K::Finish:
      r_.finish = e.finish;
      r_.stop_sequence = e.stop_sequence;
      r_.usage = e.usage;
      if (!e.encrypted.empty()) r_.reasoning_encrypted = e.encrypted;
      done_ = true;
      break;
    case K::Error:
      r_.finish = FinishReason::Error;
      r_.error_message = e.text;
      r_.error_code = e.code;
      done_ = true;
      break;
  }
}

}  // namespace v4::protocol
