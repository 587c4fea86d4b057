#include "protocol/anthropic.h"

#include <algorithm>

#include "protocol/fields.h"
#include "protocol/parse_common.h"
#include "text/py_json.h"

namespace v4::protocol::anthropic {

using namespace fields;

namespace {

bool is_billing_header(const std::string& s) { return s.rfind("x-anthropic-billing-header", 0) == 0; }

// Text of a string or an array of blocks (text blocks joined with "\n"; others noted in `dropped`).
std::string block_text(const ojson& content, const std::string& where, std::vector<std::string>* dropped = nullptr,
                       bool strip_billing = false) {
  if (content.is_string()) return content;
  if (!content.is_array()) throw ProtocolError(where, "content must be a string or an array of blocks");
  std::string s;
  bool first = true;
  for (size_t i = 0; i < content.size(); ++i) {
    const ojson& b = content[i];
    if (!b.is_object() || !b.contains("type") || !b["type"].is_string()) throw ProtocolError(at(where, i), "content blocks need a 'type'");
    const std::string t = b["type"];
    if (t == "text") {
      if (!b.contains("text") || !b["text"].is_string()) throw ProtocolError(at(where, i) + ".text", "a text block needs a string 'text'");
      const std::string& x = b["text"].get_ref<const std::string&>();
      if (strip_billing && is_billing_header(x)) continue;
      if (!first) s += "\n";
      first = false;
      s += x;
    } else if (dropped) {
      dropped->push_back(t);
    }
  }
  return s;
}

Tool read_tool(const ojson& t, const std::string& p, std::vector<std::string>& notes) {
  if (!t.is_object()) throw ProtocolError(p, p + " must be an object");
  Tool out;
  const std::string type = t.contains("type") && t["type"].is_string() ? t["type"].get<std::string>() : "custom";
  if (type != "custom") {
    // Server / client-defined built-ins (web_search_20250305, bash_20250124, text_editor_*, ...).
    out.kind = Tool::Kind::Other;
    out.type = type;
    out.name = t.value("name", type);
    out.raw = t;
    notes.push_back("tool '" + out.name + "' of type '" + type + "' is not supported by this server and was ignored");
    return out;
  }
  if (!t.contains("name") || !t["name"].is_string() || t["name"].get<std::string>().empty())
    throw ProtocolError(p + ".name", "every tool needs a 'name'");
  out.kind = Tool::Kind::Function;
  out.type = "function";
  out.name = t["name"];
  out.description = t.contains("description") && t["description"].is_string() ? t["description"].get<std::string>() : "";
  out.parameters = present(t, "input_schema") ? t["input_schema"] : ojson{{"type", "object"}, {"properties", ojson::object()}};
  if (present(t, "strict") && t["strict"].is_boolean()) out.strict = t["strict"].get<bool>();
  return out;
}

}  // namespace

Request parse_request(const ojson& body, bool for_count) {
  if (!body.is_object()) throw ProtocolError("", "the request body must be a JSON object");
  Request r;
  r.dialect = Dialect::AnthropicMessages;
  if (!body.contains("model") || !body["model"].is_string()) throw ProtocolError("model", "'model' is required (a string)");
  r.model = body["model"];
  if (!for_count) {
    if (!body.contains("max_tokens") || !body["max_tokens"].is_number_integer() || body["max_tokens"].get<int64_t>() < 1)
      throw ProtocolError("max_tokens", "'max_tokens' is required (a positive integer)");
    r.max_tokens = integer(body, "max_tokens", 1, INT64_MAX);
  } else if (present(body, "max_tokens")) {
    r.max_tokens = integer(body, "max_tokens", 1, INT64_MAX);
  }
  if (!body.contains("messages") || !body["messages"].is_array() || body["messages"].empty())
    throw ProtocolError("messages", "'messages' must be a non-empty array");
  if (present(body, "temperature")) r.temperature = number(body, "temperature", 0, 2);
  if (present(body, "top_p")) r.top_p = number(body, "top_p", 0, 1);
  if (r.top_p && *r.top_p <= 0) throw ProtocolError("top_p", "'top_p' must be greater than 0");
  if (present(body, "top_k")) r.top_k = integer(body, "top_k", -1, 1 << 20);
  r.stop = read_stop(body, "stop_sequences", 16);
  if (present(body, "stream")) r.stream = boolean(body, "stream");
  if (present(body, "metadata")) r.metadata = metadata(body);
  if (present(body, "service_tier") && body["service_tier"].is_string()) r.service_tier = body["service_tier"];

  // Anthropic semantics: no extended thinking unless asked for.
  r.reasoning.enabled = false;
  if (present(body, "thinking")) {
    const ojson& t = body["thinking"];
    if (!t.is_object()) throw ProtocolError("thinking", "'thinking' must be {\"type\": \"enabled\"|\"disabled\"|\"adaptive\"}");
    const std::string ty = t.value("type", "");
    if (ty != "enabled" && ty != "disabled" && ty != "adaptive")
      throw ProtocolError("thinking.type", "'thinking.type' must be 'enabled', 'disabled' or 'adaptive'");
    r.reasoning.enabled = ty != "disabled";
    if (present(t, "budget_tokens")) r.reasoning.budget_tokens = integer(t, "budget_tokens", 0, INT64_MAX, "thinking");
  }
  if (present(body, "output_config") && body["output_config"].is_object() && present(body["output_config"], "effort"))
    r.notes.push_back("output_config.effort is accepted and ignored (the thinking switch chooses V4's mode)");

  if (present(body, "system")) {
    Message m;
    m.role = Role::System;
    m.text = block_text(body["system"], "system", nullptr, true);
    r.messages.push_back(std::move(m));
  }
  const ojson& in = body["messages"];
  for (size_t i = 0; i < in.size(); ++i) {
    const ojson& m = in[i];
    const std::string where = at("messages", i);
    if (!m.is_object() || !m.contains("role") || !m.contains("content")) throw ProtocolError(where, where + " needs role and content");
    const std::string role = m["role"].is_string() ? m["role"].get<std::string>() : "";
    if (role != "user" && role != "assistant" && role != "system")
      throw ProtocolError(where + ".role", "role must be 'user', 'assistant' or 'system'");
    const ojson& c = m["content"];
    if (role == "system") {
      Message s;
      s.role = Role::System;
      s.text = block_text(c, where + ".content", nullptr, true);
      r.messages.push_back(std::move(s));
      continue;
    }
    if (c.is_string()) {
      Message u;
      u.role = role == "user" ? Role::User : Role::Assistant;
      u.text = c;
      r.messages.push_back(std::move(u));
      continue;
    }
    if (!c.is_array()) throw ProtocolError(where + ".content", "content must be a string or an array of blocks");
    if (role == "user") {
      Message u;
      u.role = Role::User;
      bool any_text = false;
      for (size_t j = 0; j < c.size(); ++j) {
        const ojson& b = c[j];
        const std::string bw = at(where + ".content", j);
        if (!b.is_object() || !b.contains("type") || !b["type"].is_string()) throw ProtocolError(bw, "content blocks need a 'type'");
        const std::string t = b["type"];
        if (t == "tool_result") {
          if (!b.contains("tool_use_id") || !b["tool_use_id"].is_string())
            throw ProtocolError(bw + ".tool_use_id", "tool_result blocks need a 'tool_use_id'");
          Message tr;
          tr.role = Role::Tool;
          tr.tool_call_id = b["tool_use_id"];
          if (present(b, "content")) tr.text = block_text(b["content"], bw + ".content", &tr.dropped);
          tr.is_error = b.contains("is_error") && b["is_error"].is_boolean() && b["is_error"].get<bool>();
          r.messages.push_back(std::move(tr));
        } else if (t == "text") {
          if (!b.contains("text") || !b["text"].is_string()) throw ProtocolError(bw + ".text", "a text block needs a string 'text'");
          if (any_text) u.text += "\n";
          u.text += b["text"].get<std::string>();
          any_text = true;
        } else if (t == "image" && b.contains("source") && b["source"].is_object()) {
          // source {type: base64, media_type, data} is carried as a data: URL, {type: url, url} as is.
          const ojson& src = b["source"];
          const std::string st = src.value("type", "");
          Image img;
          if (st == "base64" && src.contains("data") && src["data"].is_string() && src.contains("media_type") && src["media_type"].is_string())
            img.url = "data:" + src["media_type"].get<std::string>() + ";base64," + src["data"].get<std::string>();
          else if (st == "url" && src.contains("url") && src["url"].is_string())
            img.url = src["url"];
          else
            throw ProtocolError(bw + ".source", "an image source must be {type: base64, media_type, data} or {type: url, url}");
          u.images.push_back(std::move(img));
        } else if (t == "image" || t == "document" || t == "search_result") {
          u.dropped.push_back(t);
        } else {
          throw ProtocolError(bw + ".type", "content block type '" + t + "' is not supported (text, tool_result, image, document)");
        }
      }
      if (any_text || !u.dropped.empty() || !u.images.empty()) r.messages.push_back(std::move(u));
    } else {
      Message a;
      a.role = Role::Assistant;
      for (size_t j = 0; j < c.size(); ++j) {
        const ojson& b = c[j];
        const std::string bw = at(where + ".content", j);
        if (!b.is_object() || !b.contains("type") || !b["type"].is_string()) throw ProtocolError(bw, "content blocks need a 'type'");
        const std::string t = b["type"];
        if (t == "text") {
          a.text += b.value("text", "");
        } else if (t == "thinking") {
          if (!a.reasoning) a.reasoning = "";
          *a.reasoning += b.value("thinking", "");
          if (b.contains("signature") && b["signature"].is_string()) a.reasoning_signature = b["signature"];
        } else if (t == "redacted_thinking") {
          continue;
        } else if (t == "tool_use") {
          ToolCall call;
          call.id = b.value("id", "");
          if (!b.contains("name") || !b["name"].is_string()) throw ProtocolError(bw + ".name", "tool_use blocks need a 'name'");
          call.name = b["name"];
          call.arguments = b.contains("input") ? text::json_dump_exact(b["input"]) : "{}";
          a.tool_calls.push_back(std::move(call));
        } else if (t == "server_tool_use" || t == "web_search_tool_result" || t == "web_fetch_tool_result") {
          a.dropped.push_back(t);
        } else {
          throw ProtocolError(bw + ".type", "content block type '" + t + "' is not supported");
        }
      }
      a.has_text = !a.text.empty() || a.tool_calls.empty();
      r.messages.push_back(std::move(a));
    }
  }
  if (present(body, "tools")) {
    const ojson& tools = array(body, "tools");
    for (size_t i = 0; i < tools.size(); ++i) r.tools.push_back(read_tool(tools[i], at("tools", i), r.notes));
  }
  if (present(body, "tool_choice")) {
    const ojson& tc = body["tool_choice"];
    if (!tc.is_object()) throw ProtocolError("tool_choice", "'tool_choice' must be an object {\"type\": ...}");
    const std::string t = tc.value("type", "auto");
    if (t == "auto") r.tool_choice.mode = ToolChoice::Mode::Auto;
    else if (t == "any") r.tool_choice.mode = ToolChoice::Mode::Required;
    else if (t == "none") r.tool_choice.mode = ToolChoice::Mode::None;
    else if (t == "tool") {
      r.tool_choice.mode = ToolChoice::Mode::Named;
      r.tool_choice.name = str(tc, "name", "tool_choice");
    } else {
      throw ProtocolError("tool_choice.type", "tool_choice type must be auto, any, tool or none");
    }
    if (present(tc, "disable_parallel_tool_use") && boolean(tc, "disable_parallel_tool_use", "tool_choice")) r.parallel_tool_calls = false;
  }
  return r;
}

ojson usage_json(const Usage& u) {
  return {{"input_tokens", u.input_tokens - u.cached_tokens - u.cache_creation_tokens},
          {"cache_creation_input_tokens", u.cache_creation_tokens},
          {"cache_read_input_tokens", u.cached_tokens},
          {"output_tokens", u.output_tokens}};
}

Usage parse_usage(const ojson& u) {
  Usage o;
  if (!u.is_object()) return o;
  auto get = [&](const char* k) { return u.contains(k) && u[k].is_number_integer() ? u[k].get<int64_t>() : int64_t{0}; };
  o.cached_tokens = get("cache_read_input_tokens");
  o.cache_creation_tokens = get("cache_creation_input_tokens");
  o.input_tokens = get("input_tokens") + o.cached_tokens + o.cache_creation_tokens;
  o.output_tokens = get("output_tokens");
  return o;
}

const char* stop_reason(FinishReason f) {
  switch (f) {
    case FinishReason::ToolCalls: return "tool_use";
    case FinishReason::Length: return "max_tokens";
    case FinishReason::StopSequence: return "stop_sequence";
    case FinishReason::ContentFilter: return "refusal";
    default: return "end_turn";
  }
}

FinishReason parse_stop_reason(const ojson& s) {
  const std::string r = s.is_string() ? s.get<std::string>() : "end_turn";
  if (r == "tool_use") return FinishReason::ToolCalls;
  if (r == "max_tokens" || r == "model_context_window_exceeded") return FinishReason::Length;
  if (r == "stop_sequence") return FinishReason::StopSequence;
  if (r == "refusal") return FinishReason::ContentFilter;
  return FinishReason::Stop;
}

ojson emit_response(const Response& r) {
  ojson content = ojson::array();
  if (r.reasoning && !r.reasoning->empty())
    content.push_back({{"type", "thinking"}, {"thinking", *r.reasoning}, {"signature", r.reasoning_encrypted}});
  if (!r.content.empty()) content.push_back({{"type", "text"}, {"text", r.content}});
  for (auto& c : r.tool_calls) {
    ojson input = try_parse(c.arguments);
    if (!input.is_object()) input = ojson{{"input", c.arguments}};
    content.push_back({{"type", "tool_use"}, {"id", c.id}, {"name", c.name}, {"input", input}});
  }
  ojson o = ojson::object();
  o["id"] = r.id;
  o["type"] = "message";
  o["role"] = "assistant";
  o["model"] = r.model;
  o["content"] = content;
  o["stop_reason"] = stop_reason(r.finish);
  o["stop_sequence"] = r.stop_sequence.empty() ? ojson(nullptr) : ojson(r.stop_sequence);
  o["usage"] = usage_json(r.usage);
  return o;
}

Response parse_response(const ojson& body) {
  if (!body.is_object()) bad_upstream("", "not a JSON object");
  if (body.value("type", "") == "error" && body.contains("error") && body["error"].is_object())
    throw ProtocolError("error", "upstream error: " + body["error"].value("message", body["error"].dump()), 502, "upstream_error");
  if (!body.contains("content") || !body["content"].is_array()) bad_upstream("content", "no content array");
  Response r;
  r.id = body.value("id", "");
  r.model = body.value("model", "");
  for (auto& b : body["content"]) {
    if (!b.is_object()) continue;
    const std::string t = b.value("type", "");
    if (t == "text") r.content += b.value("text", "");
    else if (t == "thinking") {
      if (!r.reasoning) r.reasoning = "";
      *r.reasoning += b.value("thinking", "");
      if (b.contains("signature") && b["signature"].is_string()) r.reasoning_encrypted = b["signature"];
    } else if (t == "tool_use") {
      ToolCall c;
      c.id = b.value("id", "");
      c.name = b.value("name", "");
      c.arguments = b.contains("input") ? text::json_dump_exact(b["input"]) : "{}";
      r.tool_calls.push_back(std::move(c));
    }
  }
  r.finish = parse_stop_reason(body.contains("stop_reason") ? body["stop_reason"] : ojson(nullptr));
  if (body.contains("stop_sequence") && body["stop_sequence"].is_string()) r.stop_sequence = body["stop_sequence"];
  if (body.contains("usage")) r.usage = parse_usage(body["usage"]);
  return r;
}

namespace {
// An image as an Anthropic block: a data: URL becomes a base64 source, anything else a url source.
ojson image_block(const Image& img) {
  const std::string& u = img.url;
  const size_t comma = u.find(',');
  if (u.rfind("data:", 0) == 0 && comma != std::string::npos) {
    const std::string meta = u.substr(5, comma - 5);  // "image/png;base64"
    const size_t semi = meta.find(';');
    if (semi != std::string::npos && meta.substr(semi + 1) == "base64")
      return {{"type", "image"}, {"source", {{"type", "base64"}, {"media_type", meta.substr(0, semi)}, {"data", u.substr(comma + 1)}}}};
  }
  return {{"type", "image"}, {"source", {{"type", "url"}, {"url", u}}}};
}
}  // namespace

ojson emit_request(const Request& r) {
  ojson b = ojson::object();
  b["model"] = r.model;
  b["max_tokens"] = r.max_tokens.value_or(4096);
  // Leading system/developer turns become `system`; later ones stay in place as role "system".
  size_t i = 0;
  std::string system;
  for (; i < r.messages.size() && (r.messages[i].role == Role::System || r.messages[i].role == Role::Developer); ++i) {
    if (!system.empty()) system += "\n\n";
    system += r.messages[i].text;
  }
  if (i > 0) b["system"] = system;
  ojson msgs = ojson::array();
  auto user_turn = [&]() -> ojson& {
    if (msgs.empty() || msgs.back()["role"] != "user" || !msgs.back()["content"].is_array())
      msgs.push_back({{"role", "user"}, {"content", ojson::array()}});
    return msgs.back()["content"];
  };
  for (; i < r.messages.size(); ++i) {
    const Message& m = r.messages[i];
    switch (m.role) {
      case Role::System:
      case Role::Developer:
        msgs.push_back({{"role", "system"}, {"content", m.text}});
        break;
      case Role::User: {
        ojson& turn = user_turn();
        for (const Image& img : m.images) turn.push_back(image_block(img));
        if (!m.text.empty() || m.images.empty()) turn.push_back({{"type", "text"}, {"text", m.text}});
        break;
      }
      case Role::Tool: {
        ojson tr = {{"type", "tool_result"}, {"tool_use_id", m.tool_call_id}, {"content", m.text}};
        if (m.is_error) tr["is_error"] = true;
        user_turn().push_back(tr);
        break;
      }
      case Role::Assistant: {
        ojson blocks = ojson::array();
        if (m.reasoning && !m.reasoning->empty())
          blocks.push_back({{"type", "thinking"}, {"thinking", *m.reasoning}, {"signature", m.reasoning_signature}});
        if (!m.text.empty()) blocks.push_back({{"type", "text"}, {"text", m.text}});
        for (auto& c : m.tool_calls) {
          ojson input = try_parse(c.arguments);
          if (!input.is_object()) input = ojson{{"input", c.arguments}};
          blocks.push_back({{"type", "tool_use"}, {"id", c.id}, {"name", c.name}, {"input", input}});
        }
        if (blocks.empty()) blocks.push_back({{"type", "text"}, {"text", ""}});
        msgs.push_back({{"role", "assistant"}, {"content", blocks}});
        break;
      }
    }
  }
  b["messages"] = msgs;
  ojson tools = ojson::array();
  for (auto& t : r.tools) {
    if (t.kind == Tool::Kind::Other) continue;
    ojson o = {{"name", t.name}};
    if (!t.description.empty()) o["description"] = t.description;
    if (t.kind == Tool::Kind::Custom)
      o["input_schema"] = {{"type", "object"}, {"properties", {{"input", {{"type", "string"}}}}}, {"required", {"input"}}};
    else
      o["input_schema"] = t.parameters.is_null() ? ojson{{"type", "object"}, {"properties", ojson::object()}} : t.parameters;
    tools.push_back(o);
  }
  if (!tools.empty()) b["tools"] = tools;
  ojson tc;
  switch (r.tool_choice.mode) {
    case ToolChoice::Mode::Unset: break;
    case ToolChoice::Mode::Auto: tc = {{"type", "auto"}}; break;
    case ToolChoice::Mode::None: tc = {{"type", "none"}}; break;
    case ToolChoice::Mode::Required: tc = {{"type", "any"}}; break;
    case ToolChoice::Mode::Named: tc = {{"type", "tool"}, {"name", r.tool_choice.name}}; break;
  }
  if (r.parallel_tool_calls && !*r.parallel_tool_calls) {
    if (tc.is_null()) tc = {{"type", "auto"}};
    tc["disable_parallel_tool_use"] = true;
  }
  if (!tc.is_null()) b["tool_choice"] = tc;
  const bool think = r.reasoning.effort.empty() ? r.reasoning.enabled.value_or(false) : r.reasoning.effort != "none";
  if (think) b["thinking"] = {{"type", "enabled"}, {"budget_tokens", r.reasoning.budget_tokens.value_or(std::max<int64_t>(1024, r.max_tokens.value_or(4096) / 2))}};
  if (r.temperature) b["temperature"] = std::min(1.0, *r.temperature);
  if (r.top_p) b["top_p"] = *r.top_p;
  if (r.top_k) b["top_k"] = *r.top_k;
  if (!r.stop.empty()) b["stop_sequences"] = r.stop;
  if (r.stream) b["stream"] = true;
  if (r.metadata.is_object()) b["metadata"] = r.metadata;
  return b;
}

// ---- streaming ----

namespace {
SseFrame ev(const char* type, ojson j) {
  ojson o = ojson::object();
  o["type"] = type;
  for (auto it = j.begin(); it != j.end(); ++it) o[it.key()] = it.value();
  return {type, wire(o)};
}
}  // namespace

void StreamWriter::start(std::vector<SseFrame>& out, const Usage& u) {
  if (started_) return;
  started_ = true;
  ojson usage = usage_json(u);
  usage["output_tokens"] = 0;
  ojson msg = ojson::object();
  msg["id"] = m_.id;
  msg["type"] = "message";
  msg["role"] = "assistant";
  msg["model"] = m_.model;
  msg["content"] = ojson::array();
  msg["stop_reason"] = nullptr;
  msg["stop_sequence"] = nullptr;
  msg["usage"] = usage;
  out.push_back(ev("message_start", {{"message", msg}}));
}

void StreamWriter::close(std::vector<SseFrame>& out) {
  if (open_.empty()) return;
  out.push_back(ev("content_block_stop", {{"index", index_}}));
  open_.clear();
}

void StreamWriter::open(std::vector<SseFrame>& out, const std::string& kind, ojson block) {
  close(out);
  open_ = kind;
  out.push_back(ev("content_block_start", {{"index", ++index_}, {"content_block", std::move(block)}}));
}

std::vector<SseFrame> StreamWriter::write(const StreamEvent& e) {
  using K = StreamEvent::Kind;
  std::vector<SseFrame> out;
  if (done_) return out;
  start(out, e.kind == K::Start ? e.usage : Usage{});
  switch (e.kind) {
    case K::Start:
    case K::Logprobs:
      break;
    case K::ReasoningDelta:
      if (open_ != "thinking") open(out, "thinking", {{"type", "thinking"}, {"thinking", ""}, {"signature", ""}});
      out.push_back(ev("content_block_delta", {{"index", index_}, {"delta", {{"type", "thinking_delta"}, {"thinking", e.text}}}}));
      break;
    case K::TextDelta:
      if (open_ != "text") open(out, "text", {{"type", "text"}, {"text", ""}});
      out.push_back(ev("content_block_delta", {{"index", index_}, {"delta", {{"type", "text_delta"}, {"text", e.text}}}}));
      break;
    // A tool_use block is sent once its call is complete and valid (an invalid call would
    // otherwise reach the client with no way to retract it): start, one input_json_delta, stop.
    case K::ToolCallStart:
      close(out);
      pending_.push_back({e.index, e.id, e.name, ""});
      break;
    case K::ToolCallDelta:
      for (auto& p : pending_)
        if (p.index == e.index) p.input += e.text;
      break;
    case K::ToolCallEnd: {
      auto it = std::find_if(pending_.begin(), pending_.end(), [&](const Pending& p) { return p.index == e.index; });
      if (it == pending_.end()) break;
      Pending p = std::move(*it);
      pending_.erase(it);
      if (!e.error.is_null()) break;  // counted and logged by the server; never sent as a call
      open(out, "tool_use", {{"type", "tool_use"}, {"id", p.id}, {"name", p.name}, {"input", ojson::object()}});
      out.push_back(ev("content_block_delta", {{"index", index_}, {"delta", {{"type", "input_json_delta"}, {"partial_json", p.input}}}}));
      close(out);
      break;
    }
    case K::Finish: {
      close(out);
      ojson usage = usage_json(e.usage);
      out.push_back(ev("message_delta", {{"delta", {{"stop_reason", stop_reason(e.finish)},
                                                    {"stop_sequence", e.stop_sequence.empty() ? ojson(nullptr) : ojson(e.stop_sequence)}}},
                                         {"usage", usage}}));
      out.push_back(ev("message_stop", ojson::object()));
      done_ = true;
      break;
    }
    case K::Error:
      close(out);
      out.push_back(ev("error", {{"error", {{"type", e.code == "overloaded" ? "overloaded_error" : "api_error"}, {"message", e.text}}}}));
      done_ = true;
      break;
  }
  return out;
}

std::vector<StreamEvent> StreamReader::read(const SseFrame& f) {
  std::vector<StreamEvent> out;
  if (done_) return out;
  ojson j = read_sse_object(f, "event");
  const std::string type = sse_event_type(j, f);
  if (type == "ping") return out;
  if (type == "message_start") {
    if (j.contains("message") && j["message"].is_object() && j["message"].contains("usage")) usage_ = parse_usage(j["message"]["usage"]);
    out.push_back(StreamEvent::start(usage_));
  } else if (type == "content_block_start") {
    const int idx = j.value("index", static_cast<int>(blocks_.size()));
    if (idx < 0 || idx > 4096) bad_upstream("index", "content block index out of range");
    if (static_cast<size_t>(idx) >= blocks_.size()) blocks_.resize(static_cast<size_t>(idx) + 1);
    const ojson& b = j.contains("content_block") ? j["content_block"] : ojson::object();
    Block& bl = blocks_[static_cast<size_t>(idx)];
    bl.type = b.is_object() ? b.value("type", "") : "";
    if (bl.type == "tool_use") {
      bl.call = calls_++;
      out.push_back(StreamEvent::tool_start(bl.call, b.value("id", ""), b.value("name", "")));
    } else if (bl.type == "text" && b.contains("text") && b["text"].is_string() && !b["text"].get_ref<const std::string&>().empty()) {
      out.push_back(StreamEvent::content(b["text"]));
    }
  } else if (type == "content_block_delta") {
    const int idx = j.value("index", 0);
    const ojson& d = j.contains("delta") ? j["delta"] : ojson::object();
    const std::string dt = d.is_object() ? d.value("type", "") : "";
    if (dt == "text_delta") out.push_back(StreamEvent::content(d.value("text", "")));
    else if (dt == "thinking_delta") out.push_back(StreamEvent::reasoning(d.value("thinking", "")));
    else if (dt == "input_json_delta") {
      int call = idx >= 0 && static_cast<size_t>(idx) < blocks_.size() ? blocks_[static_cast<size_t>(idx)].call : -1;
      if (call < 0) bad_upstream("index", "input_json_delta outside a tool_use block");
      out.push_back(StreamEvent::tool_delta(call, d.value("partial_json", "")));
    }
  } else if (type == "content_block_stop") {
    const int idx = j.value("index", 0);
    if (idx >= 0 && static_cast<size_t>(idx) < blocks_.size() && blocks_[static_cast<size_t>(idx)].call >= 0)
      out.push_back(StreamEvent::tool_end(blocks_[static_cast<size_t>(idx)].call));
  } else if (type == "message_delta") {
    if (j.contains("delta") && j["delta"].is_object()) {
      if (j["delta"].contains("stop_reason")) finish_ = parse_stop_reason(j["delta"]["stop_reason"]);
      if (j["delta"].contains("stop_sequence") && j["delta"]["stop_sequence"].is_string()) stop_sequence_ = j["delta"]["stop_sequence"];
    }
    if (j.contains("usage") && j["usage"].is_object()) {
      const ojson& u = j["usage"];
      if (u.contains("output_tokens")) usage_.output_tokens = u.value("output_tokens", int64_t{0});
      if (u.contains("input_tokens") || u.contains("cache_read_input_tokens")) {
        Usage in = parse_usage(u);
        usage_.input_tokens = in.input_tokens;
        usage_.cached_tokens = in.cached_tokens;
        usage_.cache_creation_tokens = in.cache_creation_tokens;
      }
    }
  } else if (type == "message_stop") {
    StreamEvent e = StreamEvent::finished(finish_, usage_);
    e.stop_sequence = stop_sequence_;
    out.push_back(e);
    done_ = true;
  } else if (type == "error") {
    const ojson& er = j.contains("error") && j["error"].is_object() ? j["error"] : ojson::object();
    out.push_back(StreamEvent::failed(er.value("message", "upstream error"), er.value("type", "api_error")));
    done_ = true;
  }
  return out;
}

std::vector<StreamEvent> StreamReader::end() {
  if (done_) return {};
  done_ = true;
  return {StreamEvent::failed("upstream stream ended without message_stop", "bad_upstream_response")};
}

}  // namespace v4::protocol::anthropic
