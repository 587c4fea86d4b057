// The Responses API's stream: the writer (a v4host answer as response.* events, in the order
// the official SDKs and Codex CLI read them) and the reader (an upstream's response.* events
// back into protocol stream events). Split from openai_responses.cpp, which holds the request
// and the non-streaming response; the items both build are in openai_responses_items.h.
#include <algorithm>

#include "protocol/fields.h"
#include "protocol/openai_responses.h"
#include "protocol/openai_responses_items.h"
#include "protocol/parse_common.h"

namespace v4::protocol::responses {

using namespace fields;
using namespace items;

// ---- writer ----

StreamWriter::StreamWriter(StreamMeta meta) : m_(std::move(meta)) {
  summary_ = wants_summary(m_.request);
  r_.id = m_.id;
  r_.model = m_.model;
  r_.created = m_.created;
  r_.reasoning_item_id = m_.reasoning_item_id.empty() ? default_id("rs_", m_.id) : m_.reasoning_item_id;
  r_.message_item_id = m_.message_item_id.empty() ? default_id("msg_", m_.id) : m_.message_item_id;
}

SseFrame StreamWriter::ev(const char* type, ojson j) {
  ojson o = ojson::object();
  o["type"] = type;
  o["sequence_number"] = seq_++;
  for (auto it = j.begin(); it != j.end(); ++it) o[it.key()] = it.value();
  return {type, wire(o)};
}

ojson StreamWriter::snapshot(const char* status) const {
  ojson output = ojson::array();
  Response copy = r_;
  return response_object(copy, m_.request, status, std::string(status) == "in_progress" ? ojson::array() : output_items(copy, m_.request));
}

void StreamWriter::open_reasoning(std::vector<SseFrame>& out) {
  open_ = "reasoning";
  r_.reasoning = "";
  ++output_index_;
  ojson item = reasoning_item(r_.reasoning_item_id, "", summary_, "");
  item["summary"] = ojson::array();
  if (!summary_) item["content"] = ojson::array();
  out.push_back(ev("response.output_item.added", {{"output_index", output_index_}, {"item", item}}));
  if (summary_)
    out.push_back(ev("response.reasoning_summary_part.added", {{"item_id", r_.reasoning_item_id}, {"output_index", output_index_},
                                                               {"summary_index", 0}, {"part", {{"type", "summary_text"}, {"text", ""}}}}));
  else
    out.push_back(ev("response.content_part.added", {{"item_id", r_.reasoning_item_id}, {"output_index", output_index_},
                                                     {"content_index", 0}, {"part", {{"type", "reasoning_text"}, {"text", ""}}}}));
}

void StreamWriter::open_message(std::vector<SseFrame>& out, size_t k) {
  open_ = "message";
  message_opened_ = true;
  msg_id_ = message_id(r_, k);
  msg_start_ = r_.content.size();
  ++output_index_;
  ojson item = message_item(msg_id_, "", "in_progress");
  item["content"] = ojson::array();
  out.push_back(ev("response.output_item.added", {{"output_index", output_index_}, {"item", item}}));
  out.push_back(ev("response.content_part.added", {{"item_id", msg_id_}, {"output_index", output_index_}, {"content_index", 0},
                                                   {"part", {{"type", "output_text"}, {"text", ""}, {"annotations", ojson::array()}, {"logprobs", ojson::array()}}}}));
}

void StreamWriter::close_open(std::vector<SseFrame>& out, const std::string& encrypted) {
  if (open_ == "reasoning") {
    const std::string& text = *r_.reasoning;
    if (summary_) {
      out.push_back(ev("response.reasoning_summary_text.done", {{"item_id", r_.reasoning_item_id}, {"output_index", output_index_},
                                                                {"summary_index", 0}, {"text", text}}));
      out.push_back(ev("response.reasoning_summary_part.done", {{"item_id", r_.reasoning_item_id}, {"output_index", output_index_},
                                                                {"summary_index", 0}, {"part", {{"type", "summary_text"}, {"text", text}}}}));
    } else {
      out.push_back(ev("response.reasoning_text.done", {{"item_id", r_.reasoning_item_id}, {"output_index", output_index_},
                                                        {"content_index", 0}, {"text", text}}));
      out.push_back(ev("response.content_part.done", {{"item_id", r_.reasoning_item_id}, {"output_index", output_index_},
                                                      {"content_index", 0}, {"part", {{"type", "reasoning_text"}, {"text", text}}}}));
    }
    if (m_.seal) r_.reasoning_encrypted = m_.seal(text);
    else if (!encrypted.empty()) r_.reasoning_encrypted = encrypted;
    out.push_back(ev("response.output_item.done", {{"output_index", output_index_},
                                                   {"item", reasoning_item(r_.reasoning_item_id, text, summary_, r_.reasoning_encrypted)}}));
  } else if (open_ == "message") {
    const std::string text = r_.content.substr(msg_start_);
    out.push_back(ev("response.output_text.done", {{"item_id", msg_id_}, {"output_index", output_index_}, {"content_index", 0},
                                                   {"text", text}, {"logprobs", ojson::array()}}));
    ojson part = {{"type", "output_text"}, {"text", text}, {"annotations", ojson::array()}, {"logprobs", ojson::array()}};
    out.push_back(ev("response.content_part.done", {{"item_id", msg_id_}, {"output_index", output_index_}, {"content_index", 0}, {"part", part}}));
    out.push_back(ev("response.output_item.done", {{"output_index", output_index_}, {"item", message_item(msg_id_, text, "completed")}}));
  }
  open_.clear();
}

std::vector<SseFrame> StreamWriter::write(const StreamEvent& e) {
  using K = StreamEvent::Kind;
  std::vector<SseFrame> out;
  if (done_) return out;
  if (!started_) {
    started_ = true;
    out.push_back(ev("response.created", {{"response", snapshot("in_progress")}}));
    out.push_back(ev("response.in_progress", {{"response", snapshot("in_progress")}}));
  }
  switch (e.kind) {
    case K::Start:
    case K::Logprobs:
      break;
    case K::ReasoningDelta:
      if (open_ != "reasoning") {
        if (r_.reasoning) {  // reasoning resumed after other output: append to the one item
          break;
        }
        close_open(out, "");
        open_reasoning(out);
      }
      *r_.reasoning += e.text;
      if (summary_)
        out.push_back(ev("response.reasoning_summary_text.delta", {{"item_id", r_.reasoning_item_id}, {"output_index", output_index_},
                                                                   {"summary_index", 0}, {"delta", e.text}}));
      else
        out.push_back(ev("response.reasoning_text.delta", {{"item_id", r_.reasoning_item_id}, {"output_index", output_index_},
                                                           {"content_index", 0}, {"delta", e.text}}));
      break;
    case K::TextDelta:
      if (e.text.empty()) break;
      if (open_ != "message") {
        const size_t calls = r_.tool_calls.size();
        const size_t before = r_.text_breaks.empty() ? 0 : r_.text_breaks.back().calls;
        if (calls > before) {  // text after tool calls: its own message item, after them
          close_open(out, "");
          r_.text_breaks.push_back({r_.content.size(), calls});
          open_message(out, r_.text_breaks.size());
        } else if (!message_opened_) {
          close_open(out, "");
          open_message(out, 0);
        } else {  // text resumed after more reasoning, no call between: the item is closed
          if (r_.notes.empty() || r_.notes.back().rfind("text after", 0) != 0)
            r_.notes.push_back("text after further reasoning was left out of the stream");
          break;
        }
      }
      r_.content += e.text;
      out.push_back(ev("response.output_text.delta", {{"item_id", msg_id_}, {"output_index", output_index_}, {"content_index", 0},
                                                      {"delta", e.text}, {"logprobs", ojson::array()}}));
      break;
    case K::ToolCallStart: {
      close_open(out, "");
      ToolCall c;
      c.id = e.id;
      c.name = e.name;
      c.custom = e.custom;
      pending_.push_back({e.index, std::move(c)});
      break;
    }
    case K::ToolCallDelta:
      for (auto& p : pending_)
        if (p.index == e.index) p.call.arguments += e.text;
      break;
    case K::ToolCallEnd: {
      auto it = std::find_if(pending_.begin(), pending_.end(), [&](const PendingCall& p) { return p.index == e.index; });
      if (it == pending_.end()) break;
      ToolCall c = std::move(it->call);
      pending_.erase(it);
      if (!e.error.is_null()) {
        r_.notes.push_back("a call of tool '" + c.name + "' failed to parse or validate and was left out: " + e.error.value("message", ""));
        ToolCallFailure f;
        f.index = e.index;
        f.id = c.id;
        f.name = c.name;
        f.error = e.error;
        r_.failures.push_back(std::move(f));
        break;
      }
      ++output_index_;
      const std::string iid = item_id_for(c);
      ojson added = call_item(c, "in_progress");
      if (c.custom) added["input"] = "";
      else added["arguments"] = "";
      out.push_back(ev("response.output_item.added", {{"output_index", output_index_}, {"item", added}}));
      if (c.custom) {
        out.push_back(ev("response.custom_tool_call_input.delta", {{"item_id", iid}, {"output_index", output_index_}, {"delta", c.arguments}}));
        out.push_back(ev("response.custom_tool_call_input.done", {{"item_id", iid}, {"output_index", output_index_}, {"input", c.arguments}}));
      } else {
        out.push_back(ev("response.function_call_arguments.delta", {{"item_id", iid}, {"output_index", output_index_}, {"delta", c.arguments}}));
        out.push_back(ev("response.function_call_arguments.done", {{"item_id", iid}, {"output_index", output_index_}, {"name", c.name}, {"arguments", c.arguments}}));
      }
      out.push_back(ev("response.output_item.done", {{"output_index", output_index_}, {"item", call_item(c, "completed")}}));
      r_.tool_calls.push_back(std::move(c));
      break;
    }
    case K::Finish: {
      close_open(out, e.encrypted);
      r_.finish = e.finish;
      r_.usage = e.usage;
      if (r_.finish == FinishReason::Error) {
        r_.error_message = e.text;
        r_.error_code = e.code;
      }
      // A reply with no output item at all still carries an (empty) message.
      if (output_index_ < 0 && r_.finish != FinishReason::Error) {
        open_message(out, 0);
        close_open(out, "");
      }
      const char* status = status_of(r_);
      const char* type = r_.finish == FinishReason::Error ? "response.failed"
                         : r_.finish == FinishReason::Length ? "response.incomplete" : "response.completed";
      out.push_back(ev(type, {{"response", snapshot(status)}}));
      done_ = true;
      break;
    }
    case K::Error: {
      close_open(out, "");
      r_.finish = FinishReason::Error;
      r_.error_message = e.text;
      r_.error_code = e.code.empty() ? "server_error" : e.code;
      out.push_back(ev("response.failed", {{"response", snapshot("failed")}}));
      done_ = true;
      break;
    }
  }
  return out;
}

// ---- reader ----

std::vector<StreamEvent> StreamReader::read(const SseFrame& f) {
  std::vector<StreamEvent> out;
  if (done_) return out;
  ojson j = read_sse_object(f, "event");
  const std::string type = sse_event_type(j, f);
  auto open_for = [&](const std::string& item_id) -> Open* {
    for (auto& o : open_)
      if (o.item_id == item_id) return &o;
    return nullptr;
  };
  if (type == "response.created") {
    if (!started_) out.push_back(StreamEvent::start());
    started_ = true;
  } else if (type == "response.output_item.added") {
    const ojson& it = j.contains("item") ? j["item"] : ojson::object();
    const std::string t = it.is_object() ? it.value("type", "") : "";
    if (t == "function_call" || t == "custom_tool_call") {
      Open o{it.value("id", ""), calls_++, t == "custom_tool_call", false};
      out.push_back(StreamEvent::tool_start(o.call, it.value("call_id", ""), it.value("name", ""), o.custom));
      const std::string initial = o.custom ? it.value("input", "") : it.value("arguments", "");
      if (!initial.empty()) {
        out.push_back(StreamEvent::tool_delta(o.call, initial));
        o.got_delta = true;
      }
      open_.push_back(o);
    }
  } else if (type == "response.output_text.delta") {
    out.push_back(StreamEvent::content(j.value("delta", "")));
  } else if (type == "response.reasoning_text.delta" || type == "response.reasoning_summary_text.delta") {
    out.push_back(StreamEvent::reasoning(j.value("delta", "")));
  } else if (type == "response.function_call_arguments.delta" || type == "response.custom_tool_call_input.delta") {
    if (Open* o = open_for(j.value("item_id", ""))) {
      out.push_back(StreamEvent::tool_delta(o->call, j.value("delta", "")));
      o->got_delta = true;
    }
  } else if (type == "response.output_item.done") {
    const ojson& it = j.contains("item") ? j["item"] : ojson::object();
    const std::string id = it.is_object() ? it.value("id", "") : "";
    for (size_t k = 0; k < open_.size(); ++k)
      if (open_[k].item_id == id) {
        if (!open_[k].got_delta) {
          const std::string full = open_[k].custom ? it.value("input", "") : it.value("arguments", "");
          if (!full.empty()) out.push_back(StreamEvent::tool_delta(open_[k].call, full));
        }
        out.push_back(StreamEvent::tool_end(open_[k].call));
        open_.erase(open_.begin() + static_cast<long>(k));
        break;
      }
  } else if (type == "response.completed" || type == "response.incomplete" || type == "response.failed") {
    const ojson& resp = j.contains("response") && j["response"].is_object() ? j["response"] : ojson::object();
    for (auto& o : open_) out.push_back(StreamEvent::tool_end(o.call));
    open_.clear();
    if (type == "response.failed") {
      const ojson& er = resp.contains("error") && resp["error"].is_object() ? resp["error"] : ojson::object();
      out.push_back(StreamEvent::failed(er.value("message", "upstream response failed"), er.value("code", "server_error")));
    } else {
      Usage u = resp.contains("usage") ? parse_usage(resp["usage"]) : Usage{};
      FinishReason fr = type == "response.incomplete" ? FinishReason::Length : calls_ > 0 ? FinishReason::ToolCalls : FinishReason::Stop;
      StreamEvent e = StreamEvent::finished(fr, u);
      if (resp.contains("output") && resp["output"].is_array())
        for (auto& it : resp["output"])
          if (it.is_object() && it.value("type", "") == "reasoning" && it.contains("encrypted_content") && it["encrypted_content"].is_string())
            e.encrypted = it["encrypted_content"];
      out.push_back(e);
    }
    done_ = true;
  } else if (type == "error") {
    out.push_back(StreamEvent::failed(j.value("message", "upstream error"), j.value("code", "upstream_error")));
    done_ = true;
  }
  return out;
}

std::vector<StreamEvent> StreamReader::end() {
  if (done_) return {};
  done_ = true;
  return {StreamEvent::failed("upstream stream ended without response.completed", "bad_upstream_response")};
}

}  // namespace v4::protocol::responses
