#include "protocol/openai_chat.h"

#include <algorithm>

#include "protocol/fields.h"
#include "protocol/parse_common.h"

namespace v4::protocol::chat {

using namespace fields;

namespace {

// OpenAI message content (string | null | [parts]) -> text; non-text parts are noted in `dropped`.
void read_content(const ojson& c, const std::string& where, Message& m) {
  if (c.is_null()) {
    m.has_text = false;
    return;
  }
  if (c.is_string()) {
    m.text = c.get<std::string>();
    return;
  }
  if (!c.is_array()) throw ProtocolError(where, "content must be a string, null or an array of text parts");
  bool first = true;
  for (size_t i = 0; i < c.size(); ++i) {
    const ojson& p = c[i];
    if (!p.is_object() || !p.contains("type") || !p["type"].is_string())
      throw ProtocolError(at(where, i), "content parts must be objects with a 'type'");
    const std::string t = p["type"];
    if (t == "text" || t == "input_text" || t == "output_text") {
      if (!p.contains("text") || !p["text"].is_string()) throw ProtocolError(at(where, i) + ".text", "a text content part needs a string 'text'");
      if (!first) m.text += "\n";
      first = false;
      m.text += p["text"].get<std::string>();
    } else if (t == "refusal") {
      if (!first) m.text += "\n";
      first = false;
      m.text += p.value("refusal", "");
    } else if (t == "image_url") {
      // {"type": "image_url", "image_url": {"url": "https://…" | "data:image/png;base64,…", "detail": "auto"}}
      const ojson& iu = p.contains("image_url") ? p["image_url"] : ojson(nullptr);
      const ojson& url = iu.is_object() && iu.contains("url") ? iu["url"] : iu;
      if (!url.is_string() || url.get_ref<const std::string&>().empty())
        throw ProtocolError(at(where, i) + ".image_url.url", "an image_url part needs a string 'image_url.url'");
      Image img;
      img.url = url.get<std::string>();
      if (iu.is_object() && iu.contains("detail") && iu["detail"].is_string()) img.detail = iu["detail"];
      m.images.push_back(std::move(img));
    } else if (t == "input_audio" || t == "file" || t == "input_image") {
      throw ProtocolError(at(where, i) + ".type", "content part type '" + t + "' is not supported (text and image_url)");
    } else {
      throw ProtocolError(at(where, i) + ".type", "content part type '" + t + "' is not supported (text only)");
    }
  }
}

ToolCall read_tool_call(const ojson& c, const std::string& where) {
  if (!c.is_object()) throw ProtocolError(where, "each tool call must be an object");
  ToolCall t;
  t.id = c.contains("id") && c["id"].is_string() ? c["id"].get<std::string>() : "";
  const std::string type = c.contains("type") && c["type"].is_string() ? c["type"].get<std::string>() : "function";
  if (type == "custom") {
    if (!c.contains("custom") || !c["custom"].is_object() || !c["custom"].contains("name") || !c["custom"]["name"].is_string())
      throw ProtocolError(where + ".custom", "a custom tool call needs custom.name and custom.input");
    t.custom = true;
    t.name = c["custom"]["name"];
    t.arguments = c["custom"].contains("input") && c["custom"]["input"].is_string() ? c["custom"]["input"].get<std::string>() : "";
    return t;
  }
  if (!c.contains("function") || !c["function"].is_object() || !c["function"].contains("name") || !c["function"]["name"].is_string())
    throw ProtocolError(where + ".function", "each tool call needs function.name and function.arguments");
  t.name = c["function"]["name"];
  t.arguments = arguments_text(c["function"].contains("arguments") ? c["function"]["arguments"] : ojson("{}"));
  return t;
}

ojson tool_call_json(const ToolCall& c) {
  ojson o = ojson::object();
  o["id"] = c.id;
  if (c.custom) {
    o["type"] = "custom";
    o["custom"] = {{"name", c.name}, {"input", c.arguments}};
  } else {
    o["type"] = "function";
    o["function"] = {{"name", c.name}, {"arguments", c.arguments}};
  }
  return o;
}

Tool read_tool(const ojson& t, const std::string& p) {
  if (!t.is_object()) throw ProtocolError(p, p + " must be {\"type\": \"function\", \"function\": {...}}");
  const std::string type = t.contains("type") && t["type"].is_string() ? t["type"].get<std::string>() : "function";
  Tool out;
  out.type = type;
  if (type == "custom") {
    if (!t.contains("custom") || !t["custom"].is_object()) throw ProtocolError(p + ".custom", p + " must be {\"type\": \"custom\", \"custom\": {\"name\", ...}}");
    const ojson& c = t["custom"];
    out.kind = Tool::Kind::Custom;
    out.name = str(c, "name", p + ".custom");
    out.description = str_or(c, "description", "", p + ".custom");
    if (present(c, "format")) out.format = c["format"];
    return out;
  }
  if (type != "function" || !t.contains("function") || !t["function"].is_object())
    throw ProtocolError(p, p + " must be {\"type\": \"function\", \"function\": {...}}");
  const ojson& f = t["function"];
  if (!f.contains("name") || !f["name"].is_string() || f["name"].get<std::string>().empty())
    throw ProtocolError(p + ".function.name", "every tool needs a non-empty string name");
  out.name = f["name"];
  out.description = f.contains("description") && f["description"].is_string() ? f["description"].get<std::string>() : "";
  if (present(f, "parameters")) out.parameters = f["parameters"];
  if (present(f, "strict") && f["strict"].is_boolean()) out.strict = f["strict"].get<bool>();
  return out;
}

ojson tool_json(const Tool& t) {
  if (t.kind == Tool::Kind::Custom) {
    ojson c = {{"name", t.name}};
    if (!t.description.empty()) c["description"] = t.description;
    if (!t.format.is_null()) c["format"] = t.format;
    return {{"type", "custom"}, {"custom", c}};
  }
  if (t.kind == Tool::Kind::Other) return t.raw;
  ojson f = ojson::object();
  f["name"] = t.name;
  if (!t.description.empty()) f["description"] = t.description;
  if (!t.parameters.is_null()) f["parameters"] = t.parameters;
  if (t.strict) f["strict"] = *t.strict;
  return {{"type", "function"}, {"function", f}};
}

}  // namespace

Request parse_request(const ojson& body) {
  if (!body.is_object()) throw ProtocolError("", "the request body must be a JSON object");
  Request r;
  r.dialect = Dialect::ChatCompletions;
  if (!body.contains("model") || !body["model"].is_string()) throw ProtocolError("model", "'model' is required (a string)");
  r.model = body["model"];
  if (!body.contains("messages") || !body["messages"].is_array() || body["messages"].empty())
    throw ProtocolError("messages", "'messages' must be a non-empty array");

  read_chat_reasoning(body, r.reasoning);

  if (present(body, "tools")) {
    const ojson& tools = body["tools"];
    if (!tools.is_array()) throw ProtocolError("tools", "'tools' must be an array");
    for (size_t i = 0; i < tools.size(); ++i) r.tools.push_back(read_tool(tools[i], at("tools", i)));
  }
  if (present(body, "tool_choice")) {
    const ojson& tc = body["tool_choice"];
    if (tc.is_string()) {
      if (!read_tool_choice_word(tc.get<std::string>(), r.tool_choice))
        throw ProtocolError("tool_choice", "'tool_choice' must be 'auto', 'none', 'required' or {\"type\": \"function\", \"function\": {\"name\": ...}}");
    } else if (tc.is_object() && tc.contains("function") && tc["function"].is_object() && tc["function"].contains("name") &&
               tc["function"]["name"].is_string()) {
      r.tool_choice.mode = ToolChoice::Mode::Named;
      r.tool_choice.name = tc["function"]["name"];
    } else if (tc.is_object() && tc.contains("custom") && tc["custom"].is_object() && tc["custom"].contains("name") &&
               tc["custom"]["name"].is_string()) {
      r.tool_choice.mode = ToolChoice::Mode::Named;
      r.tool_choice.name = tc["custom"]["name"];
    } else {
      throw ProtocolError("tool_choice", "'tool_choice' must be 'auto', 'none', 'required' or {\"type\": \"function\", \"function\": {\"name\": ...}}");
    }
  }
  if (present(body, "parallel_tool_calls")) r.parallel_tool_calls = boolean(body, "parallel_tool_calls");

  if (present(body, "response_format")) {
    const ojson& rf = body["response_format"];
    if (!rf.is_object() || !rf.contains("type") || !rf["type"].is_string())
      throw ProtocolError("response_format", "'response_format' must be {\"type\": \"text\"|\"json_object\"|\"json_schema\", ...}");
    r.response_format.type = rf["type"];
    if (r.response_format.type == "json_schema") {
      if (!rf.contains("json_schema") || !rf["json_schema"].is_object() || !rf["json_schema"].contains("schema") ||
          !rf["json_schema"]["schema"].is_object())
        throw ProtocolError("response_format.json_schema", "json_schema needs an object 'schema'");
      r.response_format.schema = rf["json_schema"]["schema"];
      r.response_format.name = rf["json_schema"].value("name", "");
      if (rf["json_schema"].contains("strict") && rf["json_schema"]["strict"].is_boolean())
        r.response_format.strict = rf["json_schema"]["strict"].get<bool>();
    } else if (r.response_format.type != "text" && r.response_format.type != "json_object") {
      throw ProtocolError("response_format.type", "response_format type must be text, json_object or json_schema");
    }
  }

  for (const char* key : {"max_completion_tokens", "max_tokens"})
    if (present(body, key)) {
      r.max_tokens = integer(body, key, 1, 1 << 24);
      break;
    }
  read_sampling(body, r);
  r.stop = read_stop(body, "stop");
  if (present(body, "logprobs")) r.logprobs = boolean(body, "logprobs");
  if (present(body, "top_logprobs")) {
    r.top_logprobs = static_cast<int>(integer(body, "top_logprobs", 0, 20));
    if (!r.logprobs) throw ProtocolError("top_logprobs", "'top_logprobs' requires 'logprobs': true");
  }
  if (present(body, "n") && integer(body, "n", 1, 1) != 1) throw ProtocolError("n", "only n = 1 is supported");
  if (present(body, "stream")) r.stream = boolean(body, "stream");
  if (present(body, "stream_options")) {
    const ojson& so = body["stream_options"];
    if (!so.is_object()) throw ProtocolError("stream_options", "'stream_options' must be an object");
    if (so.contains("include_usage")) {
      if (!so["include_usage"].is_boolean()) throw ProtocolError("stream_options.include_usage", "must be a boolean");
      r.include_usage = so["include_usage"].get<bool>();
    }
  }
  if (present(body, "user") && body["user"].is_string()) r.user = body["user"];
  if (present(body, "metadata")) r.metadata = metadata(body);
  if (present(body, "store") && body["store"].is_boolean()) r.store = body["store"].get<bool>();
  if (present(body, "prompt_cache_key") && body["prompt_cache_key"].is_string()) r.prompt_cache_key = body["prompt_cache_key"];

  const ojson& in = body["messages"];
  for (size_t i = 0; i < in.size(); ++i) {
    const ojson& m = in[i];
    const std::string where = at("messages", i);
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string()) throw ProtocolError(where, where + " needs a string 'role'");
    const std::string role = m["role"];
    Message o;
    if (role == "system") o.role = Role::System;
    else if (role == "developer") o.role = Role::Developer;
    else if (role == "user") o.role = Role::User;
    else if (role == "assistant") o.role = Role::Assistant;
    else if (role == "tool") o.role = Role::Tool;
    else throw ProtocolError(where + ".role", "unsupported role '" + role + "'");
    read_content(m.contains("content") ? m["content"] : ojson(nullptr), where + ".content", o);
    if ((o.role == Role::User || o.role == Role::System || o.role == Role::Developer) && !o.has_text)
      throw ProtocolError(where + ".content", where + " (" + role + ") needs content");
    if (m.contains("name") && m["name"].is_string()) o.name = m["name"];
    if (o.role == Role::Assistant) {
      for (const char* k : {"reasoning_content", "reasoning"})
        if (m.contains(k) && m[k].is_string()) {
          o.reasoning = m[k].get<std::string>();
          break;
        }
      if (m.contains("tool_calls") && !m["tool_calls"].is_null()) {
        if (!m["tool_calls"].is_array()) throw ProtocolError(where + ".tool_calls", "tool_calls must be an array");
        for (size_t j = 0; j < m["tool_calls"].size(); ++j)
          o.tool_calls.push_back(read_tool_call(m["tool_calls"][j], at(where + ".tool_calls", j)));
      }
    }
    if (o.role == Role::Tool) {
      if (!m.contains("tool_call_id") || !m["tool_call_id"].is_string())
        throw ProtocolError(where + ".tool_call_id", "tool messages need a string 'tool_call_id'");
      o.tool_call_id = m["tool_call_id"];
      o.has_text = true;
    }
    r.messages.push_back(std::move(o));
  }
  return r;
}

ojson emit_request(const Request& r) {
  ojson b = ojson::object();
  b["model"] = r.model;
  ojson msgs = ojson::array();
  for (const Message& m : r.messages) {
    ojson o = ojson::object();
    o["role"] = role_name(m.role);
    if (m.role == Role::Assistant) {
      o["content"] = m.has_text && (!m.text.empty() || m.tool_calls.empty()) ? ojson(m.text) : ojson(nullptr);
      if (m.reasoning) o["reasoning_content"] = *m.reasoning;
      if (!m.tool_calls.empty()) {
        ojson calls = ojson::array();
        for (auto& c : m.tool_calls) calls.push_back(tool_call_json(c));
        o["tool_calls"] = calls;
      }
    } else if (m.role == Role::Tool) {
      o["tool_call_id"] = m.tool_call_id;
      o["content"] = m.is_error ? "Error: " + m.text : m.text;
    } else if (!m.images.empty()) {
      ojson parts = ojson::array();
      for (const Image& img : m.images) {
        ojson iu = {{"url", img.url}};
        if (!img.detail.empty()) iu["detail"] = img.detail;
        parts.push_back({{"type", "image_url"}, {"image_url", iu}});
      }
      if (!m.text.empty()) parts.push_back({{"type", "text"}, {"text", m.text}});
      o["content"] = parts;
    } else {
      o["content"] = m.text;
    }
    if (!m.name.empty() && m.role != Role::Tool) o["name"] = m.name;
    msgs.push_back(std::move(o));
  }
  b["messages"] = msgs;
  if (!r.tools.empty()) {
    ojson tools = ojson::array();
    for (auto& t : r.tools)
      if (t.kind != Tool::Kind::Other) tools.push_back(tool_json(t));
    if (!tools.empty()) b["tools"] = tools;
  }
  switch (r.tool_choice.mode) {
    case ToolChoice::Mode::Unset: break;
    case ToolChoice::Mode::Auto: b["tool_choice"] = "auto"; break;
    case ToolChoice::Mode::None: b["tool_choice"] = "none"; break;
    case ToolChoice::Mode::Required: b["tool_choice"] = "required"; break;
    case ToolChoice::Mode::Named: {
      bool custom = false;
      for (auto& t : r.tools) custom |= t.name == r.tool_choice.name && t.kind == Tool::Kind::Custom;
      b["tool_choice"] = custom ? ojson{{"type", "custom"}, {"custom", {{"name", r.tool_choice.name}}}}
                                : ojson{{"type", "function"}, {"function", {{"name", r.tool_choice.name}}}};
      break;
    }
  }
  if (r.parallel_tool_calls) b["parallel_tool_calls"] = *r.parallel_tool_calls;
  if (!r.reasoning.effort.empty()) b["reasoning_effort"] = r.reasoning.effort;
  if (r.reasoning.enabled) b["thinking"] = {{"type", *r.reasoning.enabled ? "enabled" : "disabled"}};
  if (r.response_format.type == "json_object") {
    b["response_format"] = {{"type", "json_object"}};
  } else if (r.response_format.type == "json_schema") {
    ojson js = {{"name", r.response_format.name.empty() ? "response" : r.response_format.name}, {"schema", r.response_format.schema}};
    if (r.response_format.strict) js["strict"] = *r.response_format.strict;
    b["response_format"] = {{"type", "json_schema"}, {"json_schema", js}};
  }
  if (r.max_tokens) b["max_tokens"] = *r.max_tokens;
  write_sampling(r, b);
  if (!r.stop.empty()) b["stop"] = r.stop;
  if (r.logprobs) {
    b["logprobs"] = true;
    if (r.top_logprobs) b["top_logprobs"] = r.top_logprobs;
  }
  if (r.stream) {
    b["stream"] = true;
    b["stream_options"] = {{"include_usage", true}};
  }
  if (!r.user.empty()) b["user"] = r.user;
  if (!r.prompt_cache_key.empty()) b["prompt_cache_key"] = r.prompt_cache_key;
  return b;
}

ojson usage_json(const Usage& u) {
  return {{"prompt_tokens", u.input_tokens},
          {"completion_tokens", u.output_tokens},
          {"total_tokens", u.total()},
          {"prompt_tokens_details", {{"cached_tokens", u.cached_tokens}}},
          {"completion_tokens_details", {{"reasoning_tokens", u.reasoning_tokens}}}};
}

Usage parse_usage(const ojson& u) { return read_openai_usage(u, "prompt", "completion"); }

ojson emit_response(const Response& r) {
  ojson msg = ojson::object();
  msg["role"] = "assistant";
  msg["content"] = !r.content.empty() || r.tool_calls.empty() ? ojson(r.content) : ojson(nullptr);
  if (r.reasoning) msg["reasoning_content"] = *r.reasoning;
  if (!r.tool_calls.empty()) {
    ojson calls = ojson::array();
    for (auto& c : r.tool_calls) calls.push_back(tool_call_json(c));
    msg["tool_calls"] = calls;
  }
  if (!r.failures.empty()) {
    ojson errs = ojson::array();
    for (auto& f : r.failures) {
      ojson e = f.error.is_object() ? f.error : ojson::object();
      e["id"] = f.id;
      e["name"] = f.name;
      errs.push_back(e);
    }
    msg["tool_call_errors"] = errs;
  }
  ojson choice = ojson::object();
  choice["index"] = 0;
  choice["message"] = msg;
  choice["finish_reason"] = finish_reason_name(r.finish);
  choice["logprobs"] = r.logprobs.is_null() ? ojson(nullptr) : ojson{{"content", r.logprobs}};
  ojson o = ojson::object();
  o["id"] = r.id;
  o["object"] = "chat.completion";
  o["created"] = r.created;
  o["model"] = r.model;
  o["system_fingerprint"] = "v4host-0.1.0";
  o["choices"] = ojson::array({choice});
  o["usage"] = usage_json(r.usage);
  return o;
}

FinishReason parse_finish(const ojson& f) {
  const std::string s = f.is_string() ? f.get<std::string>() : "stop";
  if (s == "length") return FinishReason::Length;
  if (s == "tool_calls" || s == "function_call") return FinishReason::ToolCalls;
  if (s == "content_filter") return FinishReason::ContentFilter;
  if (s == "error") return FinishReason::Error;
  return FinishReason::Stop;
}

Response parse_response(const ojson& body) {
  if (!body.is_object()) bad_upstream("", "not a JSON object");
  if (body.contains("error") && body["error"].is_object())
    throw ProtocolError("error", "upstream error: " + body["error"].value("message", body["error"].dump()), 502, "upstream_error");
  if (!body.contains("choices") || !body["choices"].is_array() || body["choices"].empty()) bad_upstream("choices", "no choices");
  const ojson& ch = body["choices"][0];
  if (!ch.is_object() || !ch.contains("message") || !ch["message"].is_object()) bad_upstream("choices[0].message", "no message");
  const ojson& m = ch["message"];
  Response r;
  r.id = body.value("id", "");
  r.model = body.value("model", "");
  r.created = body.contains("created") && body["created"].is_number_integer() ? body["created"].get<int64_t>() : 0;
  if (m.contains("content") && m["content"].is_string()) r.content = m["content"];
  for (const char* k : {"reasoning_content", "reasoning"})
    if (m.contains(k) && m[k].is_string()) {
      r.reasoning = m[k].get<std::string>();
      break;
    }
  if (m.contains("tool_calls") && m["tool_calls"].is_array())
    for (size_t j = 0; j < m["tool_calls"].size(); ++j) {
      try {
        r.tool_calls.push_back(read_tool_call(m["tool_calls"][j], at("choices[0].message.tool_calls", j)));
      } catch (const ProtocolError& e) {
        bad_upstream(e.param, e.what());
      }
    }
  if (m.contains("tool_call_errors") && m["tool_call_errors"].is_array())
    for (auto& e : m["tool_call_errors"]) {
      ToolCallFailure f;
      f.id = e.value("id", "");
      f.name = e.value("name", "");
      f.error = e;
      r.failures.push_back(std::move(f));
    }
  r.finish = parse_finish(ch.contains("finish_reason") ? ch["finish_reason"] : ojson(nullptr));
  if (ch.contains("logprobs") && ch["logprobs"].is_object() && ch["logprobs"].contains("content")) r.logprobs = ch["logprobs"]["content"];
  if (body.contains("usage")) r.usage = parse_usage(body["usage"]);
  return r;
}

// ---- streaming ----

SseFrame StreamWriter::chunk(ojson delta, ojson finish, ojson logprobs) const {
  ojson c = ojson::object();
  c["index"] = 0;
  c["delta"] = std::move(delta);
  c["finish_reason"] = std::move(finish);
  c["logprobs"] = std::move(logprobs);
  ojson o = ojson::object();
  o["id"] = m_.id;
  o["object"] = "chat.completion.chunk";
  o["created"] = m_.created;
  o["model"] = m_.model;
  o["system_fingerprint"] = "v4host-0.1.0";
  o["choices"] = ojson::array({c});
  return {"", wire(o)};
}

std::vector<SseFrame> StreamWriter::write(const StreamEvent& e) {
  using K = StreamEvent::Kind;
  std::vector<SseFrame> out;
  if (done_) return out;
  if (!started_) {
    started_ = true;
    out.push_back(chunk({{"role", "assistant"}, {"content", ""}}));
    if (e.kind == K::Start) return out;
  }
  switch (e.kind) {
    case K::Start: break;
    case K::ReasoningDelta: out.push_back(chunk({{"reasoning_content", e.text}})); break;
    case K::TextDelta: out.push_back(chunk({{"content", e.text}})); break;
    case K::ToolCallStart: {
      ojson c = {{"index", e.index}, {"id", e.id}};
      if (e.custom) {
        c["type"] = "custom";
        c["custom"] = {{"name", e.name}, {"input", ""}};
      } else {
        c["type"] = "function";
        c["function"] = {{"name", e.name}, {"arguments", ""}};
      }
      if (e.custom) custom_.push_back(e.index);
      out.push_back(chunk({{"tool_calls", ojson::array({c})}}));
      break;
    }
    case K::ToolCallDelta:
      if (std::find(custom_.begin(), custom_.end(), e.index) != custom_.end())
        out.push_back(chunk({{"tool_calls", ojson::array({{{"index", e.index}, {"custom", {{"input", e.text}}}}})}}));
      else
        out.push_back(chunk({{"tool_calls", ojson::array({{{"index", e.index}, {"function", {{"arguments", e.text}}}}})}}));
      break;
    case K::ToolCallEnd:
      if (!e.error.is_null()) {
        ojson err = e.error;
        err["index"] = e.index;
        out.push_back(chunk({{"tool_call_errors", ojson::array({err})}}));
      }
      break;
    case K::Logprobs: out.push_back(chunk(ojson::object(), nullptr, {{"content", e.logprobs}})); break;
    case K::Error: {
      ojson err = {{"error", {{"message", e.text}, {"type", "server_error"}, {"param", nullptr}, {"code", e.code.empty() ? ojson(nullptr) : ojson(e.code)}}}};
      out.push_back({"", wire(err)});
      out.push_back(chunk(ojson::object(), "error"));
      out.push_back({"", "[DONE]"});
      done_ = true;
      break;
    }
    case K::Finish: {
      out.push_back(chunk(ojson::object(), finish_reason_name(e.finish)));
      if (m_.include_usage) {
        ojson o = ojson::object();
        o["id"] = m_.id;
        o["object"] = "chat.completion.chunk";
        o["created"] = m_.created;
        o["model"] = m_.model;
        o["choices"] = ojson::array();
        o["usage"] = usage_json(e.usage);
        out.push_back({"", wire(o)});
      }
      out.push_back({"", "[DONE]"});
      done_ = true;
      break;
    }
  }
  return out;
}

std::vector<StreamEvent> StreamReader::close_calls() {
  std::vector<StreamEvent> out;
  for (int i : open_) out.push_back(StreamEvent::tool_end(i));
  open_.clear();
  return out;
}

std::vector<StreamEvent> StreamReader::read(const SseFrame& f) {
  std::vector<StreamEvent> out;
  if (done_) return out;
  if (f.data == "[DONE]") return end();
  ojson j = read_sse_object(f, "chunk");
  if (j.contains("error") && j["error"].is_object()) {
    auto c = close_calls();
    out.insert(out.end(), c.begin(), c.end());
    out.push_back(StreamEvent::failed(j["error"].value("message", "upstream error"),
                                      j["error"].contains("code") && j["error"]["code"].is_string() ? j["error"]["code"].get<std::string>() : "upstream_error"));
    done_ = true;
    finish_.reset();
    return out;
  }
  if (!started_) {
    started_ = true;
    out.push_back(StreamEvent::start());
  }
  if (j.contains("usage") && j["usage"].is_object() && finish_) finish_->usage = parse_usage(j["usage"]);
  else if (j.contains("usage") && j["usage"].is_object()) pending_usage_ = parse_usage(j["usage"]);
  if (!j.contains("choices") || !j["choices"].is_array()) return out;
  for (auto& ch : j["choices"]) {
    if (!ch.is_object()) continue;
    if (ch.contains("delta") && ch["delta"].is_object()) {
      const ojson& d = ch["delta"];
      for (const char* k : {"reasoning_content", "reasoning"})
        if (d.contains(k) && d[k].is_string() && !d[k].get_ref<const std::string&>().empty()) {
          out.push_back(StreamEvent::reasoning(d[k]));
          break;
        }
      if (d.contains("content") && d["content"].is_string() && !d["content"].get_ref<const std::string&>().empty())
        out.push_back(StreamEvent::content(d["content"]));
      if (d.contains("tool_calls") && d["tool_calls"].is_array())
        for (auto& c : d["tool_calls"]) {
          if (!c.is_object()) continue;
          const int idx = c.contains("index") && c["index"].is_number_integer() ? c["index"].get<int>() : 0;
          const bool known = std::find(open_.begin(), open_.end(), idx) != open_.end() || std::find(ended_.begin(), ended_.end(), idx) != ended_.end();
          const bool custom = c.value("type", "function") == "custom" || c.contains("custom");
          const ojson& fn = custom ? (c.contains("custom") ? c["custom"] : ojson::object()) : (c.contains("function") ? c["function"] : ojson::object());
          if (!known) {
            // A new call: previous ones are complete (chat streams calls one after another).
            auto cl = close_calls();
            for (auto& e : cl) ended_.push_back(e.index);
            out.insert(out.end(), cl.begin(), cl.end());
            out.push_back(StreamEvent::tool_start(idx, c.value("id", ""), fn.is_object() ? fn.value("name", "") : "", custom));
            open_.push_back(idx);
          }
          const char* argk = custom ? "input" : "arguments";
          if (fn.is_object() && fn.contains(argk) && fn[argk].is_string() && !fn[argk].get_ref<const std::string&>().empty())
            out.push_back(StreamEvent::tool_delta(idx, fn[argk]));
        }
      if (d.contains("tool_call_errors") && d["tool_call_errors"].is_array())
        for (auto& e : d["tool_call_errors"]) {
          const int idx = e.value("index", -1);
          auto it = std::find(open_.begin(), open_.end(), idx);
          if (it != open_.end()) open_.erase(it);
          ojson err = e;
          err.erase("index");
          out.push_back(StreamEvent::tool_end(idx, err));
        }
    }
    if (ch.contains("logprobs") && ch["logprobs"].is_object() && ch["logprobs"].contains("content") && ch["logprobs"]["content"].is_array()) {
      StreamEvent e;
      e.kind = StreamEvent::Kind::Logprobs;
      e.logprobs = ch["logprobs"]["content"];
      out.push_back(e);
    }
    if (ch.contains("finish_reason") && ch["finish_reason"].is_string()) {
      auto cl = close_calls();
      out.insert(out.end(), cl.begin(), cl.end());
      finish_ = StreamEvent::finished(parse_finish(ch["finish_reason"]), pending_usage_);
    }
  }
  return out;
}

std::vector<StreamEvent> StreamReader::end() {
  std::vector<StreamEvent> out;
  if (done_) return out;
  if (!started_) out.push_back(StreamEvent::start());
  started_ = true;
  auto cl = close_calls();
  out.insert(out.end(), cl.begin(), cl.end());
  if (finish_) out.push_back(*finish_);
  else out.push_back(StreamEvent::failed("upstream stream ended without a finish_reason", "bad_upstream_response"));
  finish_.reset();
  done_ = true;
  return out;
}

}  // namespace v4::protocol::chat
