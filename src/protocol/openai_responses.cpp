#include "protocol/openai_responses.h"

#include <algorithm>

#include "protocol/fields.h"
#include "protocol/openai_responses_items.h"
#include "protocol/parse_common.h"

namespace v4::protocol::responses {

using namespace fields;
using namespace items;

namespace {

// Text of a message item's content: a string or input_text / output_text / refusal parts.
std::string parts_text(const ojson& c, const std::string& where, std::vector<std::string>& dropped,
                       std::vector<Image>* images = nullptr) {
  if (c.is_string()) return c;
  if (c.is_null()) return "";
  if (!c.is_array()) throw ProtocolError(where, "'" + where + "' must be a string or an array of content parts");
  std::string s;
  bool first = true;
  for (size_t i = 0; i < c.size(); ++i) {
    const ojson& p = c[i];
    const std::string pw = at(where, i);
    if (!p.is_object() || !p.contains("type") || !p["type"].is_string()) throw ProtocolError(pw, "content parts need a 'type'");
    const std::string t = p["type"];
    std::string text;
    if (t == "input_text" || t == "output_text" || t == "text" || t == "summary_text" || t == "reasoning_text") {
      if (!p.contains("text") || !p["text"].is_string()) throw ProtocolError(pw + ".text", "a " + t + " part needs a string 'text'");
      text = p["text"];
    } else if (t == "refusal") {
      text = p.value("refusal", "");
    } else if (t == "input_image" && images && p.contains("image_url") && p["image_url"].is_string()) {
      // {"type": "input_image", "image_url": "https://…" | "data:…", "detail": "auto"}; a file_id
      // image names a file the router cannot fetch, so it is dropped (noted) like other files.
      Image img;
      img.url = p["image_url"];
      if (p.contains("detail") && p["detail"].is_string()) img.detail = p["detail"];
      images->push_back(std::move(img));
      continue;
    } else if (t == "input_image" || t == "input_file" || t == "input_audio") {
      dropped.push_back(t);
      continue;
    } else {
      throw ProtocolError(pw + ".type", "content part type '" + t + "' is not supported");
    }
    if (!first) s += "\n";
    first = false;
    s += text;
  }
  return s;
}

std::string output_text(const ojson& o, const std::string& where, std::vector<std::string>& dropped) {
  if (o.is_string()) return o;
  if (o.is_array()) return parts_text(o, where, dropped);
  if (o.is_null()) return "";
  return o.dump();
}

Tool read_tool(const ojson& t, const std::string& p, std::vector<std::string>& notes) {
  if (!t.is_object() || !t.contains("type") || !t["type"].is_string()) throw ProtocolError(p + ".type", p + " needs a string 'type'");
  Tool out;
  out.type = t["type"];
  if (out.type == "function") {
    out.kind = Tool::Kind::Function;
    if (!t.contains("name") || !t["name"].is_string() || t["name"].get<std::string>().empty())
      throw ProtocolError(p + ".name", "every function tool needs a non-empty string 'name'");
    out.name = t["name"];
    out.description = t.contains("description") && t["description"].is_string() ? t["description"].get<std::string>() : "";
    if (present(t, "parameters")) out.parameters = t["parameters"];
    if (present(t, "strict") && t["strict"].is_boolean()) out.strict = t["strict"].get<bool>();
  } else if (out.type == "custom") {
    out.kind = Tool::Kind::Custom;
    if (!t.contains("name") || !t["name"].is_string() || t["name"].get<std::string>().empty())
      throw ProtocolError(p + ".name", "every custom tool needs a non-empty string 'name'");
    out.name = t["name"];
    out.description = t.contains("description") && t["description"].is_string() ? t["description"].get<std::string>() : "";
    if (present(t, "format")) {
      if (!t["format"].is_object()) throw ProtocolError(p + ".format", "'" + p + ".format' must be an object");
      out.format = t["format"];
    }
  } else {
    out.kind = Tool::Kind::Other;
    out.name = t.contains("name") && t["name"].is_string() ? t["name"].get<std::string>() : out.type;
    out.raw = t;
    notes.push_back("tool '" + out.name + "' of type '" + out.type + "' is not supported by this server and was ignored");
  }
  return out;
}

ojson tool_json(const Tool& t) {
  if (t.kind == Tool::Kind::Other) return t.raw;
  ojson o = ojson::object();
  o["type"] = t.kind == Tool::Kind::Custom ? "custom" : "function";
  o["name"] = t.name;
  if (!t.description.empty()) o["description"] = t.description;
  if (t.kind == Tool::Kind::Custom) {
    if (!t.format.is_null()) o["format"] = t.format;
  } else {
    o["parameters"] = t.parameters.is_null() ? ojson{{"type", "object"}, {"properties", ojson::object()}} : t.parameters;
    o["strict"] = t.strict.value_or(false);
  }
  return o;
}

ojson tool_choice_json(const Request& r) {
  switch (r.tool_choice.mode) {
    case ToolChoice::Mode::Unset:
    case ToolChoice::Mode::Auto: return "auto";
    case ToolChoice::Mode::None: return "none";
    case ToolChoice::Mode::Required: return "required";
    case ToolChoice::Mode::Named: {
      for (auto& t : r.tools)
        if (t.name == r.tool_choice.name && t.kind == Tool::Kind::Custom) return {{"type", "custom"}, {"name", t.name}};
      return {{"type", "function"}, {"name", r.tool_choice.name}};
    }
  }
  return "auto";
}

ojson format_json(const ResponseFormat& f) {
  if (f.type == "json_schema") {
    ojson o = {{"type", "json_schema"}, {"name", f.name.empty() ? "response" : f.name}, {"schema", f.schema}};
    if (f.strict) o["strict"] = *f.strict;
    return o;
  }
  return {{"type", f.type}};
}

}  // namespace

namespace items {

// The call id a ToolCall travels under as a Responses item id: fc_… / ctc_….
std::string item_id_for(const ToolCall& c) {
  if (!c.item_id.empty()) return c.item_id;
  std::string base = c.id.rfind("call_", 0) == 0 ? c.id.substr(5) : c.id;
  return (c.custom ? "ctc_" : "fc_") + base;
}

ojson call_item(const ToolCall& c, const char* status) {
  ojson o = ojson::object();
  o["id"] = item_id_for(c);
  if (c.custom) {
    o["type"] = "custom_tool_call";
    o["status"] = status;
    o["call_id"] = c.id;
    o["name"] = c.name;
    o["input"] = c.arguments;
  } else {
    o["type"] = "function_call";
    o["status"] = status;
    o["call_id"] = c.id;
    o["name"] = c.name;
    o["arguments"] = c.arguments;
  }
  return o;
}

ojson reasoning_item(const std::string& id, const std::string& text, bool summary, const std::string& encrypted) {
  ojson o = ojson::object();
  o["id"] = id;
  o["type"] = "reasoning";
  o["summary"] = summary ? ojson::array({{{"type", "summary_text"}, {"text", text}}}) : ojson::array();
  if (!summary) o["content"] = ojson::array({{{"type", "reasoning_text"}, {"text", text}}});
  if (!encrypted.empty()) o["encrypted_content"] = encrypted;
  return o;
}

ojson message_item(const std::string& id, const std::string& text, const char* status) {
  ojson part = {{"type", "output_text"}, {"text", text}, {"annotations", ojson::array()}, {"logprobs", ojson::array()}};
  ojson o = ojson::object();
  o["id"] = id;
  o["type"] = "message";
  o["status"] = status;
  o["role"] = "assistant";
  o["content"] = ojson::array({part});
  return o;
}

std::string default_id(const std::string& prefix, const std::string& resp_id) {
  std::string base = resp_id.rfind("resp_", 0) == 0 ? resp_id.substr(5) : resp_id;
  return prefix + base;
}

}  // namespace items

bool wants_summary(const Request& req) {
  const std::string& s = req.reasoning.summary;
  return !s.empty() && s != "none";
}

Request parse_request(const ojson& body) {
  if (!body.is_object()) throw ProtocolError("", "the request body must be a JSON object");
  Request r;
  r.dialect = Dialect::Responses;
  if (!body.contains("model") || !body["model"].is_string()) throw ProtocolError("model", "'model' is required (a string)");
  r.model = body["model"];
  if (present(body, "background") && boolean(body, "background"))
    throw ProtocolError("background", "background responses are not supported by this server");
  if (present(body, "conversation")) throw ProtocolError("conversation", "'conversation' objects are not supported; use previous_response_id");
  if (present(body, "prompt")) throw ProtocolError("prompt", "prompt templates are not supported by this server");

  if (present(body, "instructions")) {
    r.instructions = str(body, "instructions");
    if (!r.instructions.empty()) {
      Message m;
      m.role = Role::System;
      m.text = r.instructions;
      r.messages.push_back(std::move(m));
    }
  }
  if (!body.contains("input") && !present(body, "previous_response_id"))
    throw ProtocolError("input", "'input' is required (a string or an array of items)");
  const ojson& input = body.contains("input") ? body["input"] : ojson(nullptr);
  if (input.is_string()) {
    Message m;
    m.role = Role::User;
    m.text = input;
    r.messages.push_back(std::move(m));
  } else if (input.is_array()) {
    // Pending reasoning waits for the assistant turn it belongs to.
    std::optional<Message> reasoning;
    auto assistant = [&]() -> Message& {
      if (reasoning) {
        r.messages.push_back(std::move(*reasoning));
        reasoning.reset();
      } else if (r.messages.empty() || r.messages.back().role != Role::Assistant) {
        Message a;
        a.role = Role::Assistant;
        a.has_text = false;
        r.messages.push_back(std::move(a));
      }
      return r.messages.back();
    };
    for (size_t i = 0; i < input.size(); ++i) {
      const ojson& it = input[i];
      const std::string w = at("input", i);
      if (!it.is_object()) throw ProtocolError(w, w + " must be an object");
      std::string type = it.contains("type") && it["type"].is_string() ? it["type"].get<std::string>() : "";
      if (type.empty() && it.contains("role")) type = "message";
      if (type == "message") {
        if (!it.contains("role") || !it["role"].is_string()) throw ProtocolError(w + ".role", w + " needs a string 'role'");
        const std::string role = it["role"];
        Message m;
        if (role == "user") m.role = Role::User;
        else if (role == "assistant") m.role = Role::Assistant;
        else if (role == "system") m.role = Role::System;
        else if (role == "developer") m.role = Role::Developer;
        else throw ProtocolError(w + ".role", "unsupported role '" + role + "' (user, assistant, system or developer)");
        m.text = parts_text(it.contains("content") ? it["content"] : ojson(""), w + ".content", m.dropped, &m.images);
        if (m.role == Role::Assistant) {
          if (!reasoning && !r.messages.empty() && r.messages.back().role == Role::Assistant &&
              !r.messages.back().has_text && r.messages.back().tool_calls.empty()) {
            Message& a = r.messages.back();  // a reasoning-only turn gets its text
            a.text = m.text;
            a.has_text = true;
          } else {
            if (reasoning) {
              m.reasoning = reasoning->reasoning;
              m.reasoning_encrypted = reasoning->reasoning_encrypted;
              m.reasoning_item_id = reasoning->reasoning_item_id;
              reasoning.reset();
            }
            r.messages.push_back(std::move(m));
          }
        } else {
          if (reasoning) {  // reasoning with no assistant output after it: its own turn
            r.messages.push_back(std::move(*reasoning));
            reasoning.reset();
          }
          r.messages.push_back(std::move(m));
        }
      } else if (type == "function_call" || type == "custom_tool_call") {
        ToolCall c;
        c.custom = type == "custom_tool_call";
        c.id = str(it, "call_id", w);
        c.name = str(it, "name", w);
        if (it.contains("id") && it["id"].is_string()) c.item_id = it["id"];
        c.arguments = c.custom ? str_or(it, "input", "", w) : arguments_text(it.contains("arguments") ? it["arguments"] : ojson("{}"));
        Message& a = assistant();
        a.tool_calls.push_back(std::move(c));
      } else if (type == "function_call_output" || type == "custom_tool_call_output") {
        Message t;
        t.role = Role::Tool;
        t.tool_call_id = str(it, "call_id", w);
        t.custom_output = type == "custom_tool_call_output";
        t.text = output_text(it.contains("output") ? it["output"] : ojson(""), w + ".output", t.dropped);
        if (reasoning) {
          r.messages.push_back(std::move(*reasoning));
          reasoning.reset();
        }
        r.messages.push_back(std::move(t));
      } else if (type == "reasoning") {
        Message a;
        a.role = Role::Assistant;
        a.has_text = false;
        if (it.contains("id") && it["id"].is_string()) a.reasoning_item_id = it["id"];
        if (it.contains("encrypted_content") && it["encrypted_content"].is_string()) a.reasoning_encrypted = it["encrypted_content"];
        std::vector<std::string> dropped;
        std::string text;
        if (it.contains("content") && it["content"].is_array() && !it["content"].empty()) text = parts_text(it["content"], w + ".content", dropped);
        else if (it.contains("summary") && it["summary"].is_array()) text = parts_text(it["summary"], w + ".summary", dropped);
        a.reasoning = text;
        if (reasoning) r.messages.push_back(std::move(*reasoning));
        reasoning = std::move(a);
      } else if (type == "item_reference") {
        throw ProtocolError(w + ".type", "item_reference inputs are not supported; send the items themselves or use previous_response_id");
      } else {
        r.notes.push_back("input item type '" + type + "' is not supported by this server and was ignored");
      }
    }
    if (reasoning) r.messages.push_back(std::move(*reasoning));
  } else if (!input.is_null()) {
    throw ProtocolError("input", "'input' must be a string or an array of items");
  }

  if (present(body, "tools")) {
    const ojson& tools = array(body, "tools");
    for (size_t i = 0; i < tools.size(); ++i) r.tools.push_back(read_tool(tools[i], at("tools", i), r.notes));
  }
  if (present(body, "tool_choice")) {
    const ojson& tc = body["tool_choice"];
    if (tc.is_string()) {
      if (!read_tool_choice_word(tc.get<std::string>(), r.tool_choice))
        throw ProtocolError("tool_choice", "'tool_choice' must be 'auto', 'none', 'required' or {\"type\": \"function\", \"name\": ...}");
    } else if (tc.is_object() && tc.contains("type") && tc["type"].is_string()) {
      const std::string t = tc["type"];
      if (t == "function" || t == "custom") {
        r.tool_choice.mode = ToolChoice::Mode::Named;
        r.tool_choice.name = str(tc, "name", "tool_choice");
      } else if (t == "allowed_tools") {
        r.tool_choice.mode = tc.value("mode", "auto") == "required" ? ToolChoice::Mode::Required : ToolChoice::Mode::Auto;
        r.notes.push_back("tool_choice allowed_tools: the list is not enforced; every tool stays callable");
      } else {
        r.tool_choice.mode = ToolChoice::Mode::Auto;
        r.notes.push_back("tool_choice type '" + t + "' names a tool this server does not run; served as 'auto'");
      }
    } else {
      throw ProtocolError("tool_choice", "'tool_choice' must be 'auto', 'none', 'required' or {\"type\": \"function\", \"name\": ...}");
    }
  }
  if (present(body, "parallel_tool_calls")) r.parallel_tool_calls = boolean(body, "parallel_tool_calls");
  if (present(body, "reasoning")) {
    const ojson& re = object(body, "reasoning");
    if (present(re, "effort")) {
      r.reasoning.effort = str(re, "effort", "reasoning");
      if (!known_effort(r.reasoning.effort))
        throw ProtocolError("reasoning.effort", "'reasoning.effort' must be none, minimal, low, medium, high or xhigh");
    }
    for (const char* k : {"summary", "generate_summary"})
      if (present(re, k)) {
        r.reasoning.summary = str(re, k, "reasoning");
        if (r.reasoning.summary != "auto" && r.reasoning.summary != "concise" && r.reasoning.summary != "detailed" && r.reasoning.summary != "none")
          throw ProtocolError(std::string("reasoning.") + k, "'reasoning." + std::string(k) + "' must be auto, concise, detailed or none");
      }
  }
  if (present(body, "text")) {
    const ojson& t = object(body, "text");
    if (present(t, "format")) {
      const ojson& f = object(t, "format", "text");
      const std::string ty = str(f, "type", "text.format");
      r.response_format.type = ty;
      if (ty == "json_schema") {
        if (!f.contains("schema") || !f["schema"].is_object()) throw ProtocolError("text.format.schema", "json_schema needs an object 'schema'");
        r.response_format.schema = f["schema"];
        r.response_format.name = f.value("name", "");
        if (f.contains("strict") && f["strict"].is_boolean()) r.response_format.strict = f["strict"].get<bool>();
      } else if (ty != "text" && ty != "json_object") {
        throw ProtocolError("text.format.type", "text.format type must be text, json_object or json_schema");
      }
    }
    if (present(t, "verbosity")) r.text_verbosity = str(t, "verbosity", "text");
  }
  if (present(body, "max_output_tokens")) r.max_tokens = integer(body, "max_output_tokens", 1, 1 << 24);
  if (present(body, "max_tool_calls")) r.notes.push_back("max_tool_calls is accepted and not enforced");
  read_sampling(body, r);
  if (present(body, "stream")) r.stream = boolean(body, "stream");
  if (present(body, "store")) r.store = boolean(body, "store");
  if (present(body, "previous_response_id")) r.previous_response_id = str(body, "previous_response_id");
  if (present(body, "include")) {
    const ojson& inc = array(body, "include");
    for (size_t i = 0; i < inc.size(); ++i) {
      if (!inc[i].is_string()) throw ProtocolError(at("include", i), "'include' entries must be strings");
      r.include.push_back(inc[i]);
    }
  }
  if (present(body, "prompt_cache_key")) r.prompt_cache_key = str(body, "prompt_cache_key");
  if (present(body, "metadata")) r.metadata = metadata(body);
  if (present(body, "user")) r.user = str(body, "user");
  if (present(body, "service_tier")) r.service_tier = str(body, "service_tier");
  if (present(body, "top_logprobs")) r.notes.push_back("top_logprobs is accepted and ignored on /v1/responses");
  if (present(body, "truncation") && body["truncation"] == "auto")
    r.notes.push_back("truncation 'auto' is accepted; prompts over the context limit are still refused");
  return r;
}

ojson emit_request(const Request& r) {
  ojson b = ojson::object();
  b["model"] = r.model;
  size_t i = 0;
  if (!r.messages.empty() && r.messages[0].role == Role::System) {
    b["instructions"] = r.messages[0].text;
    i = 1;
  }
  ojson input = ojson::array();
  for (; i < r.messages.size(); ++i) {
    const Message& m = r.messages[i];
    switch (m.role) {
      case Role::System:
      case Role::Developer:
      case Role::User: {
        const char* role = m.role == Role::User ? "user" : m.role == Role::System ? "system" : "developer";
        ojson content = ojson::array();
        for (const Image& img : m.images)
          content.push_back({{"type", "input_image"}, {"image_url", img.url}, {"detail", img.detail.empty() ? "auto" : img.detail}});
        if (!m.text.empty() || m.images.empty()) content.push_back({{"type", "input_text"}, {"text", m.text}});
        input.push_back({{"type", "message"}, {"role", role}, {"content", content}});
        break;
      }
      case Role::Tool:
        input.push_back({{"type", m.custom_output ? "custom_tool_call_output" : "function_call_output"}, {"call_id", m.tool_call_id},
                         {"output", m.text}});
        break;
      case Role::Assistant: {
        if (m.reasoning || !m.reasoning_encrypted.empty()) {
          ojson it = reasoning_item(m.reasoning_item_id.empty() ? "rs_" + std::to_string(i) : m.reasoning_item_id,
                                    m.reasoning.value_or(""), false, m.reasoning_encrypted);
          input.push_back(it);
        }
        if (m.has_text && !m.text.empty()) input.push_back(message_item("msg_" + std::to_string(i), m.text, "completed"));
        for (auto& c : m.tool_calls) input.push_back(call_item(c, "completed"));
        break;
      }
    }
  }
  b["input"] = input;
  if (!r.tools.empty()) {
    ojson tools = ojson::array();
    for (auto& t : r.tools) tools.push_back(tool_json(t));
    b["tools"] = tools;
  }
  if (r.tool_choice.mode != ToolChoice::Mode::Unset) b["tool_choice"] = tool_choice_json(r);
  if (r.parallel_tool_calls) b["parallel_tool_calls"] = *r.parallel_tool_calls;
  ojson re = ojson::object();
  if (!r.reasoning.effort.empty()) re["effort"] = r.reasoning.effort == "max" ? "xhigh" : r.reasoning.effort;
  else if (r.reasoning.enabled) re["effort"] = *r.reasoning.enabled ? "medium" : "none";
  if (!r.reasoning.summary.empty()) re["summary"] = r.reasoning.summary;
  if (!re.empty()) b["reasoning"] = re;
  if (r.response_format.type != "text") b["text"] = {{"format", format_json(r.response_format)}};
  if (r.max_tokens) b["max_output_tokens"] = *r.max_tokens;
  if (r.temperature) b["temperature"] = *r.temperature;
  if (r.top_p) b["top_p"] = *r.top_p;
  if (r.stream) b["stream"] = true;
  if (r.store) b["store"] = *r.store;
  if (!r.previous_response_id.empty()) b["previous_response_id"] = r.previous_response_id;
  if (!r.include.empty()) b["include"] = r.include;
  if (!r.prompt_cache_key.empty()) b["prompt_cache_key"] = r.prompt_cache_key;
  if (!r.user.empty()) b["user"] = r.user;
  if (r.metadata.is_object()) b["metadata"] = r.metadata;
  return b;
}

ojson usage_json(const Usage& u) {
  return {{"input_tokens", u.input_tokens},
          {"input_tokens_details", {{"cached_tokens", u.cached_tokens}}},
          {"output_tokens", u.output_tokens},
          {"output_tokens_details", {{"reasoning_tokens", u.reasoning_tokens}}},
          {"total_tokens", u.total()}};
}

Usage parse_usage(const ojson& u) { return read_openai_usage(u, "input", "output"); }

namespace items {
// The id of the k-th message item (k > 0: text after tool calls).
std::string message_id(const Response& r, size_t k) {
  const std::string base = r.message_item_id.empty() ? default_id("msg_", r.id) : r.message_item_id;
  return k == 0 ? base : base + "_" + std::to_string(k);
}
}  // namespace items

ojson output_items(const Response& r, const Request& req) {
  ojson out = ojson::array();
  const bool summary = wants_summary(req);
  if (r.reasoning)
    out.push_back(reasoning_item(r.reasoning_item_id.empty() ? default_id("rs_", r.id) : r.reasoning_item_id, *r.reasoning, summary,
                                 r.reasoning_encrypted));
  const char* status = r.finish == FinishReason::Length ? "incomplete" : "completed";
  // Text, then the calls it preceded, then each stretch of text written after calls, in order.
  std::vector<Response::TextBreak> breaks;
  for (const auto& b : r.text_breaks)
    if (b.offset <= r.content.size() && b.calls <= r.tool_calls.size() && (breaks.empty() || b.offset >= breaks.back().offset))
      breaks.push_back(b);
  const size_t first_end = breaks.empty() ? r.content.size() : breaks[0].offset;
  if (first_end > 0 || (r.tool_calls.empty() && r.finish != FinishReason::Error))
    out.push_back(message_item(message_id(r, 0), r.content.substr(0, first_end), status));
  size_t c = 0;
  for (size_t k = 0; k < breaks.size(); ++k) {
    for (; c < breaks[k].calls; ++c) out.push_back(call_item(r.tool_calls[c], "completed"));
    const size_t end = k + 1 < breaks.size() ? breaks[k + 1].offset : r.content.size();
    if (end > breaks[k].offset) out.push_back(message_item(message_id(r, k + 1), r.content.substr(breaks[k].offset, end - breaks[k].offset), status));
  }
  for (; c < r.tool_calls.size(); ++c) out.push_back(call_item(r.tool_calls[c], "completed"));
  return out;
}

namespace items {
ojson response_object(const Response& r, const Request& req, const char* status, const ojson& output) {
  ojson o = ojson::object();
  o["id"] = r.id;
  o["object"] = "response";
  o["created_at"] = r.created;
  o["status"] = status;
  o["background"] = false;
  o["error"] = nullptr;
  o["incomplete_details"] = nullptr;
  if (std::string(status) == "failed")
    o["error"] = {{"code", r.error_code.empty() ? "server_error" : r.error_code}, {"message", r.error_message}};
  if (std::string(status) == "incomplete") o["incomplete_details"] = {{"reason", "max_output_tokens"}};
  o["instructions"] = req.instructions.empty() ? ojson(nullptr) : ojson(req.instructions);
  o["max_output_tokens"] = req.max_tokens ? ojson(*req.max_tokens) : ojson(nullptr);
  o["model"] = r.model;
  o["output"] = output;
  o["parallel_tool_calls"] = req.parallel_tool_calls.value_or(true);
  o["previous_response_id"] = req.previous_response_id.empty() ? ojson(nullptr) : ojson(req.previous_response_id);
  o["prompt_cache_key"] = req.prompt_cache_key.empty() ? ojson(nullptr) : ojson(req.prompt_cache_key);
  ojson re = ojson::object();
  re["effort"] = req.reasoning.effort.empty() ? ojson(nullptr) : ojson(req.reasoning.effort);
  re["summary"] = req.reasoning.summary.empty() ? ojson(nullptr) : ojson(req.reasoning.summary);
  o["reasoning"] = re;
  o["store"] = req.store.value_or(true);
  o["temperature"] = req.temperature ? ojson(*req.temperature) : ojson(1.0);
  o["text"] = {{"format", format_json(req.response_format)}};
  if (!req.text_verbosity.empty()) o["text"]["verbosity"] = req.text_verbosity;
  o["tool_choice"] = tool_choice_json(req);
  ojson tools = ojson::array();
  for (auto& t : req.tools) tools.push_back(tool_json(t));
  o["tools"] = tools;
  o["top_p"] = req.top_p ? ojson(*req.top_p) : ojson(1.0);
  o["truncation"] = "disabled";
  o["usage"] = std::string(status) == "in_progress" ? ojson(nullptr) : usage_json(r.usage);
  o["user"] = req.user.empty() ? ojson(nullptr) : ojson(req.user);
  o["metadata"] = req.metadata.is_object() ? req.metadata : ojson::object();
  if (!r.notes.empty()) o["warnings"] = r.notes;
  return o;
}

const char* status_of(const Response& r) {
  return r.finish == FinishReason::Error ? "failed" : r.finish == FinishReason::Length ? "incomplete" : "completed";
}
}  // namespace items

ojson emit_response(const Response& r, const Request& req) {
  ojson o = response_object(r, req, status_of(r), output_items(r, req));
  std::string text;
  for (auto& it : o["output"])
    if (it["type"] == "message")
      for (auto& p : it["content"]) text += p.value("text", "");
  o["output_text"] = text;
  return o;
}

Response parse_response(const ojson& body) {
  if (!body.is_object()) bad_upstream("", "not a JSON object");
  if (body.contains("error") && body["error"].is_object() && !body.contains("output"))
    throw ProtocolError("error", "upstream error: " + body["error"].value("message", body["error"].dump()), 502, "upstream_error");
  if (!body.contains("output") || !body["output"].is_array()) bad_upstream("output", "no output array");
  Response r;
  r.id = body.value("id", "");
  r.model = body.value("model", "");
  r.created = body.contains("created_at") && body["created_at"].is_number() ? body["created_at"].get<int64_t>() : 0;
  std::vector<std::string> dropped;
  for (auto& it : body["output"]) {
    if (!it.is_object()) continue;
    const std::string t = it.value("type", "");
    if (t == "reasoning") {
      std::string text;
      if (it.contains("content") && it["content"].is_array() && !it["content"].empty()) text = parts_text(it["content"], "output.content", dropped);
      else if (it.contains("summary") && it["summary"].is_array()) text = parts_text(it["summary"], "output.summary", dropped);
      r.reasoning = r.reasoning.value_or("") + text;
      if (it.contains("encrypted_content") && it["encrypted_content"].is_string()) r.reasoning_encrypted = it["encrypted_content"];
      r.reasoning_item_id = it.value("id", "");
    } else if (t == "message") {
      if (it.contains("content")) r.content += parts_text(it["content"], "output.content", dropped);
      r.message_item_id = it.value("id", "");
    } else if (t == "function_call" || t == "custom_tool_call") {
      ToolCall c;
      c.custom = t == "custom_tool_call";
      c.id = it.value("call_id", "");
      c.item_id = it.value("id", "");
      c.name = it.value("name", "");
      c.arguments = c.custom ? it.value("input", "") : arguments_text(it.contains("arguments") ? it["arguments"] : ojson("{}"));
      r.tool_calls.push_back(std::move(c));
    }
  }
  const std::string status = body.value("status", "completed");
  if (status == "failed") {
    r.finish = FinishReason::Error;
    if (body.contains("error") && body["error"].is_object()) {
      r.error_message = body["error"].value("message", "");
      r.error_code = body["error"].value("code", "");
    }
  } else if (status == "incomplete") {
    r.finish = FinishReason::Length;
  } else {
    r.finish = r.tool_calls.empty() ? FinishReason::Stop : FinishReason::ToolCalls;
  }
  if (body.contains("usage")) r.usage = parse_usage(body["usage"]);
  return r;
}

}  // namespace v4::protocol::responses
