#include "server/chat_params.h"

#include <cmath>

#include "server/api_error.h"

namespace v4 {

using json = text::ojson;  // ordered: tool schemas keep the client's key order
using text::ojson;

namespace {

double number(const json& body, const char* key, double lo, double hi) {
  const json& v = body[key];
  if (!v.is_number()) throw bad_param(key, std::string("'") + key + "' must be a number");
  double d = v.get<double>();
  if (!(d >= lo && d <= hi))
    throw bad_param(key, std::string("'") + key + "' must be between " + json(lo).dump() + " and " + json(hi).dump());
  return d;
}

int64_t integer(const json& body, const char* key, int64_t lo, int64_t hi) {
  const json& v = body[key];
  if (!v.is_number_integer()) throw bad_param(key, std::string("'") + key + "' must be an integer");
  int64_t d = v.get<int64_t>();
  if (d < lo || d > hi)
    throw bad_param(key, std::string("'") + key + "' must be between " + std::to_string(lo) + " and " + std::to_string(hi));
  return d;
}

bool boolean(const json& body, const char* key) {
  const json& v = body[key];
  if (!v.is_boolean()) throw bad_param(key, std::string("'") + key + "' must be a boolean");
  return v.get<bool>();
}

bool present(const json& body, const char* key) { return body.contains(key) && !body[key].is_null(); }

// OpenAI message content (string | null | [parts]) -> a string for the encoder.
ojson content_text(const json& c, const std::string& where) {
  if (c.is_null()) return nullptr;
  if (c.is_string()) return c.get<std::string>();
  if (c.is_array()) {
    std::string s;
    bool first = true;
    for (const auto& p : c) {
      if (!p.is_object() || !p.contains("type") || !p["type"].is_string())
        throw bad_param(where, "content parts must be objects with a 'type'");
      const std::string t = p["type"];
      if (t != "text" && t != "input_text")
        throw bad_param(where, "content part type '" + t + "' is not supported (text only)");
      if (!p.contains("text") || !p["text"].is_string()) throw bad_param(where, "a text content part needs a string 'text'");
      if (!first) s += "\n";
      first = false;
      s += p["text"].get<std::string>();
    }
    return s;
  }
  throw bad_param(where, "content must be a string, null or an array of text parts");
}

void validate_tools(const json& tools) {
  if (!tools.is_array()) throw bad_param("tools", "'tools' must be an array");
  for (size_t i = 0; i < tools.size(); ++i) {
    const json& t = tools[i];
    const std::string p = "tools[" + std::to_string(i) + "]";
    if (!t.is_object() || t.value("type", "function") != "function" || !t.contains("function") || !t["function"].is_object())
      throw bad_param(p, p + " must be {\"type\": \"function\", \"function\": {...}}");
    const json& f = t["function"];
    if (!f.contains("name") || !f["name"].is_string() || f["name"].get<std::string>().empty())
      throw bad_param(p + ".function.name", "every tool needs a non-empty string name");
    const std::string name = f["name"];
    for (char ch : name)
      if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '-' || ch == '.'))
        throw bad_param(p + ".function.name", "tool name '" + name + "' may only contain letters, digits, '_', '-' and '.'");
    if (f.contains("parameters") && !f["parameters"].is_null()) {
      const json& s = f["parameters"];
      if (!s.is_object()) throw bad_param(p + ".function.parameters", "parameters must be a JSON Schema object");
      if (s.contains("type") && s["type"] != "object")
        throw bad_param(p + ".function.parameters", "parameters must describe an object (\"type\": \"object\")");
      if (s.contains("properties") && !s["properties"].is_object())
        throw bad_param(p + ".function.parameters", "'properties' must be an object");
      if (s.contains("required") && !s["required"].is_array())
        throw bad_param(p + ".function.parameters", "'required' must be an array");
    }
    for (size_t j = 0; j < i; ++j)
      if (tools[j]["function"]["name"] == f["name"]) throw bad_param(p + ".function.name", "duplicate tool name '" + name + "'");
  }
}

}  // namespace

void parse_sampling(const json& body, SamplingParams& s) {
  s.temperature = present(body, "temperature") ? static_cast<float>(number(body, "temperature", 0, 2)) : 1.0f;
  if (present(body, "top_p")) {
    s.top_p = static_cast<float>(number(body, "top_p", 0, 1));
    if (s.top_p <= 0) throw bad_param("top_p", "'top_p' must be greater than 0");
  }
  if (present(body, "min_p")) s.min_p = static_cast<float>(number(body, "min_p", 0, 1));
  if (present(body, "top_k")) {
    int64_t k = integer(body, "top_k", -1, 1 << 20);
    s.top_k = k < 0 ? 0 : static_cast<int>(k);
  }
  if (present(body, "seed")) s.seed = static_cast<uint64_t>(integer(body, "seed", INT64_MIN, INT64_MAX));
  else s.seed = std::random_device{}();
}

std::vector<std::string> parse_stop(const json& body) {
  std::vector<std::string> out;
  if (!present(body, "stop")) return out;
  const json& s = body["stop"];
  if (s.is_string()) out.push_back(s);
  else if (s.is_array()) {
    if (s.size() > 4) throw bad_param("stop", "'stop' may hold at most 4 sequences");
    for (auto& x : s) {
      if (!x.is_string()) throw bad_param("stop", "'stop' entries must be strings");
      out.push_back(x);
    }
  } else {
    throw bad_param("stop", "'stop' must be a string or an array of strings");
  }
  for (auto& x : out)
    if (x.empty()) throw bad_param("stop", "'stop' sequences must not be empty");
  return out;
}

ChatParams parse_chat_params(const json& body, bool default_thinking) {
  if (!body.is_object()) throw ApiError(400, "the request body must be a JSON object");
  ChatParams p;
  if (!body.contains("model") || !body["model"].is_string()) throw bad_param("model", "'model' is required (a string)");
  p.model = body["model"];
  if (!body.contains("messages") || !body["messages"].is_array() || body["messages"].empty())
    throw bad_param("messages", "'messages' must be a non-empty array");

  // Reasoning mode: official `thinking`, `reasoning_effort`, chat_template_kwargs variants.
  bool thinking = default_thinking;
  std::string effort;
  if (present(body, "thinking")) {
    const json& t = body["thinking"];
    if (t.is_boolean()) thinking = t.get<bool>();
    else if (t.is_object() && t.contains("type") && t["type"].is_string()) {
      const std::string ty = t["type"];
      if (ty == "enabled") thinking = true;
      else if (ty == "disabled") thinking = false;
      else throw bad_param("thinking.type", "'thinking.type' must be 'enabled' or 'disabled'");
    } else {
      throw bad_param("thinking", "'thinking' must be {\"type\": \"enabled\"|\"disabled\"}");
    }
  }
  if (present(body, "chat_template_kwargs")) {
    const json& k = body["chat_template_kwargs"];
    if (!k.is_object()) throw bad_param("chat_template_kwargs", "'chat_template_kwargs' must be an object");
    for (const char* key : {"thinking", "enable_thinking"})
      if (k.contains(key)) {
        if (!k[key].is_boolean()) throw bad_param(std::string("chat_template_kwargs.") + key, "must be a boolean");
        thinking = k[key].get<bool>();
      }
    if (k.contains("thinking_mode")) {
      if (k["thinking_mode"] == "thinking") thinking = true;
      else if (k["thinking_mode"] == "chat") thinking = false;
      else throw bad_param("chat_template_kwargs.thinking_mode", "must be 'chat' or 'thinking'");
    }
    if (k.contains("reasoning_effort") && k["reasoning_effort"].is_string()) effort = k["reasoning_effort"];
    if (k.contains("drop_thinking")) {
      if (!k["drop_thinking"].is_boolean()) throw bad_param("chat_template_kwargs.drop_thinking", "must be a boolean");
      p.encode.drop_thinking = k["drop_thinking"].get<bool>();
    }
  }
  if (present(body, "thinking_mode")) {
    if (body["thinking_mode"] == "thinking") thinking = true;
    else if (body["thinking_mode"] == "chat") thinking = false;
    else throw bad_param("thinking_mode", "'thinking_mode' must be 'chat' or 'thinking'");
  }
  if (present(body, "enable_thinking")) thinking = boolean(body, "enable_thinking");
  if (present(body, "reasoning_effort")) {
    if (!body["reasoning_effort"].is_string()) throw bad_param("reasoning_effort", "'reasoning_effort' must be a string");
    effort = body["reasoning_effort"];
  }
  if (!effort.empty()) {
    if (effort == "none") thinking = false;
    else if (effort == "minimal" || effort == "low" || effort == "medium" || effort == "high") p.reasoning.max = false, thinking = true;
    else if (effort == "xhigh" || effort == "max") p.reasoning.max = true, thinking = true;
    else throw bad_param("reasoning_effort", "'reasoning_effort' must be none, minimal, low, medium, high, xhigh or max");
  }
  p.reasoning.thinking = thinking;
  if (!thinking) p.reasoning.max = false;
  p.encode.thinking_mode = thinking ? "thinking" : "chat";
  p.encode.reasoning_effort = p.reasoning.max ? ojson("max") : ojson(nullptr);

  // Tools.
  if (present(body, "tools")) {
    validate_tools(body["tools"]);
    p.tools = body["tools"];
  }
  if (present(body, "tool_choice")) {
    const json& tc = body["tool_choice"];
    if (tc.is_string()) {
      p.tool_choice = tc;
      if (p.tool_choice != "auto" && p.tool_choice != "none" && p.tool_choice != "required")
        throw bad_param("tool_choice", "'tool_choice' must be 'auto', 'none', 'required' or {\"type\": \"function\", ...}");
    } else if (tc.is_object() && tc.contains("function") && tc["function"].is_object() && tc["function"].contains("name") &&
               tc["function"]["name"].is_string()) {
      p.tool_choice = "function";
      p.tool_choice_name = tc["function"]["name"];
    } else {
      throw bad_param("tool_choice", "'tool_choice' must be 'auto', 'none', 'required' or {\"type\": \"function\", \"function\": {\"name\": ...}}");
    }
    if ((p.tool_choice == "required" || p.tool_choice == "function") && p.tools.empty())
      throw bad_param("tool_choice", "'tool_choice' requires 'tools'");
    if (p.tool_choice == "function") {
      bool found = false;
      for (auto& t : p.tools) found |= t["function"]["name"] == p.tool_choice_name;
      if (!found) throw bad_param("tool_choice", "tool_choice names '" + p.tool_choice_name + "', which is not in 'tools'");
    }
  }
  if (present(body, "parallel_tool_calls")) p.parallel_tool_calls = boolean(body, "parallel_tool_calls");

  // Response format.
  if (present(body, "response_format")) {
    const json& rf = body["response_format"];
    if (!rf.is_object() || !rf.contains("type") || !rf["type"].is_string())
      throw bad_param("response_format", "'response_format' must be {\"type\": \"text\"|\"json_object\"|\"json_schema\", ...}");
    p.response_format = rf["type"];
    if (p.response_format == "json_schema") {
      if (!rf.contains("json_schema") || !rf["json_schema"].is_object() || !rf["json_schema"].contains("schema") ||
          !rf["json_schema"]["schema"].is_object())
        throw bad_param("response_format.json_schema", "json_schema needs an object 'schema'");
      p.response_schema = rf["json_schema"]["schema"];
    } else if (p.response_format != "text" && p.response_format != "json_object") {
      throw bad_param("response_format.type", "response_format type must be text, json_object or json_schema");
    }
  }

  // Limits, sampling, stop, logprobs, streaming.
  for (const char* key : {"max_completion_tokens", "max_tokens"})
    if (present(body, key)) {
      p.max_tokens = static_cast<int>(integer(body, key, 1, 1 << 24));
      break;
    }
  parse_sampling(body, p.sampling);
  p.stop = parse_stop(body);
  if (present(body, "logprobs")) p.logprobs = boolean(body, "logprobs");
  if (present(body, "top_logprobs")) {
    p.top_logprobs = static_cast<int>(integer(body, "top_logprobs", 0, 20));
    if (!p.logprobs) throw bad_param("top_logprobs", "'top_logprobs' requires 'logprobs': true");
  }
  if (present(body, "n") && integer(body, "n", 1, 1) != 1) throw bad_param("n", "only n = 1 is supported");
  if (present(body, "stream")) p.stream = boolean(body, "stream");
  if (present(body, "stream_options")) {
    const json& so = body["stream_options"];
    if (!so.is_object()) throw bad_param("stream_options", "'stream_options' must be an object");
    if (so.contains("include_usage")) {
      if (!so["include_usage"].is_boolean()) throw bad_param("stream_options.include_usage", "must be a boolean");
      p.include_usage = so["include_usage"].get<bool>();
    }
  }

  // Messages for the encoder.
  ojson msgs = ojson::array();
  const json& in = body["messages"];
  for (size_t i = 0; i < in.size(); ++i) {
    const json& m = in[i];
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string()) throw bad_param(where, where + " needs a string 'role'");
    std::string role = m["role"];
    if (role == "developer") role = "system";  // OpenAI's newer name for the system role
    if (role != "system" && role != "user" && role != "assistant" && role != "tool" && role != "latest_reminder")
      throw bad_param(where + ".role", "unsupported role '" + role + "'");
    ojson o = ojson::object();
    o["role"] = role;
    o["content"] = content_text(m.contains("content") ? m["content"] : json(nullptr), where + ".content");
    if (role == "user" || role == "system" || role == "latest_reminder")
      if (o["content"].is_null()) throw bad_param(where + ".content", where + " (" + role + ") needs content");
    if (role == "assistant") {
      for (const char* k : {"reasoning_content", "reasoning"})
        if (m.contains(k) && m[k].is_string()) o["reasoning_content"] = m[k].get<std::string>();
      if (m.contains("tool_calls") && !m["tool_calls"].is_null()) {
        if (!m["tool_calls"].is_array()) throw bad_param(where + ".tool_calls", "tool_calls must be an array");
        ojson calls = ojson::array();
        for (auto& c : m["tool_calls"]) {
          if (!c.is_object() || !c.contains("function") || !c["function"].is_object() || !c["function"].contains("name"))
            throw bad_param(where + ".tool_calls", "each tool call needs function.name and function.arguments");
          ojson fc = ojson::object();
          fc["name"] = c["function"]["name"].get<std::string>();
          const json& args = c["function"].contains("arguments") ? c["function"]["arguments"] : json("{}");
          fc["arguments"] = args.is_string() ? args.get<std::string>() : args.dump();
          ojson call = ojson::object();
          call["id"] = c.value("id", "");
          call["type"] = "function";
          call["function"] = fc;
          calls.push_back(call);
        }
        o["tool_calls"] = calls;
      }
    }
    if (role == "tool") {
      if (!m.contains("tool_call_id") || !m["tool_call_id"].is_string())
        throw bad_param(where + ".tool_call_id", "tool messages need a string 'tool_call_id'");
      o["tool_call_id"] = m["tool_call_id"].get<std::string>();
      if (o["content"].is_null()) o["content"] = "";
    }
    msgs.push_back(o);
  }
  // Request-level tools and response format live on the (possibly inserted) first system message.
  // Tools stay in the prompt with tool_choice "none" (as OpenAI does: the model still sees them,
  // and the prompt prefix stays cacheable across turns); the server then forbids the call markup.
  const bool want_tools = !p.tools.empty();
  const bool want_format = p.response_format == "json_schema" || p.response_format == "json_object";
  if (want_tools || want_format) {
    if (msgs[0]["role"] != "system") {
      ojson sys = ojson::object();
      sys["role"] = "system";
      sys["content"] = "";
      msgs.insert(msgs.begin(), sys);
    }
    if (want_tools) msgs[0]["tools"] = p.tools;
    if (want_format)
      msgs[0]["response_format"] = p.response_format == "json_schema" ? p.response_schema
                                                                       : ojson::parse(R"({"type": "json_object"})");
  }
  p.messages = std::move(msgs);
  return p;
}

CompletionParams parse_completion_params(const json& body) {
  if (!body.is_object()) throw ApiError(400, "the request body must be a JSON object");
  CompletionParams p;
  if (!body.contains("model") || !body["model"].is_string()) throw bad_param("model", "'model' is required (a string)");
  p.model = body["model"];
  if (!body.contains("prompt")) throw bad_param("prompt", "'prompt' is required");
  const json& pr = body["prompt"];
  if (pr.is_string()) {
    p.prompt_text = pr;
  } else if (pr.is_array() && pr.size() == 1 && pr[0].is_string()) {
    p.prompt_text = pr[0];
  } else if (pr.is_array() && !pr.empty() && pr[0].is_number_integer()) {
    p.has_ids = true;
    for (auto& t : pr) {
      if (!t.is_number_integer()) throw bad_param("prompt", "a token-id prompt must hold only integers");
      p.prompt_ids.push_back(t.get<int32_t>());
    }
  } else {
    throw bad_param("prompt", "'prompt' must be a string or an array of token ids (batches are not supported)");
  }
  if (!p.has_ids && p.prompt_text.empty()) throw bad_param("prompt", "'prompt' is empty");
  if (present(body, "max_tokens")) p.max_tokens = static_cast<int>(integer(body, "max_tokens", 1, 1 << 24));
  parse_sampling(body, p.sampling);
  p.stop = parse_stop(body);
  if (present(body, "logprobs")) p.logprobs = static_cast<int>(integer(body, "logprobs", 0, 20));
  if (present(body, "echo")) p.echo = boolean(body, "echo");
  if (present(body, "n") && integer(body, "n", 1, 1) != 1) throw bad_param("n", "only n = 1 is supported");
  if (present(body, "stream")) p.stream = boolean(body, "stream");
  if (present(body, "stream_options") && body["stream_options"].is_object() && body["stream_options"].contains("include_usage"))
    p.include_usage = body["stream_options"]["include_usage"].is_boolean() && body["stream_options"]["include_usage"].get<bool>();
  return p;
}

}  // namespace v4
