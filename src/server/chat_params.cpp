#include "server/chat_params.h"

#include <cctype>
#include <cstdio>
#include <mutex>
#include <optional>
#include <random>

#include "core/error.h"
#include "protocol/openai_chat.h"
#include "protocol/openai_completions.h"
#include "server/api_error.h"

namespace v4 {

using json = text::ojson;  // ordered: tool schemas keep the client's key order
using text::ojson;
using protocol::Message;
using protocol::Role;
using protocol::Tool;
using protocol::ToolChoice;

void rethrow_protocol(const protocol::ProtocolError& e) {
  throw ApiError(e.status, e.what(), e.param, e.code);
}

namespace {

void check_tool_name(const std::string& name, const std::string& where) {
  for (char ch : name)
    if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '-' || ch == '.'))
      throw bad_param(where, "tool name '" + name + "' may only contain letters, digits, '_', '-' and '.'");
}

// A function tool in the OpenAI form the encoder, the DSML parser and the grammar take.
ojson function_tool(const Tool& t, size_t i) {
  const std::string p = "tools[" + std::to_string(i) + "]";
  if (t.name.empty()) throw bad_param(p + ".name", "every tool needs a non-empty string name");
  check_tool_name(t.name, p + ".name");
  ojson f = ojson::object();
  f["name"] = t.name;
  if (t.kind == Tool::Kind::Custom) {
    // Freeform input: one string parameter. A grammar the client gives is shown to the model
    // and, when it compiles, enforced (see freeform_grammar below).
    std::string d = t.description;
    if (t.format.is_object() && t.format.value("type", "") == "grammar" && t.format.contains("definition") &&
        t.format["definition"].is_string()) {
      d += "\n\nThe input must follow this " + t.format.value("syntax", std::string("grammar")) + " grammar:\n" +
           t.format["definition"].get<std::string>();
    }
    if (!d.empty()) f["description"] = d;
    f["parameters"] = ojson::parse(R"J({"type": "object", "properties": {"input": {"type": "string", "description": "the raw input of the tool (freeform text)"}}, "required": ["input"]})J");
  } else {
    if (!t.description.empty()) f["description"] = t.description;
    if (!t.parameters.is_null()) {
      const ojson& s = t.parameters;
      const std::string w = p + ".parameters";
      if (!s.is_object()) throw bad_param(w, "parameters must be a JSON Schema object");
      if (s.contains("type") && s["type"] != "object") throw bad_param(w, "parameters must describe an object (\"type\": \"object\")");
      if (s.contains("properties") && !s["properties"].is_object()) throw bad_param(w, "'properties' must be an object");
      if (s.contains("required") && !s["required"].is_array()) throw bad_param(w, "'required' must be an array");
      f["parameters"] = s;
    }
  }
  ojson o = ojson::object();
  o["type"] = "function";
  o["function"] = f;
  return o;
}

// The grammar of a custom tool, when it has one that can be enforced; otherwise a note saying
// why it is only shown. Logged the first time a grammar is enforced for a tool.
std::optional<ChatParams::Freeform> freeform_grammar(const Tool& t, std::vector<std::string>& notes) {
  const ojson& f = t.format;
  if (!f.is_object() || f.value("type", "") != "grammar") return std::nullopt;
  const std::string syntax = f.contains("syntax") && f["syntax"].is_string() ? f["syntax"].get<std::string>() : "";
  if (!f.contains("definition") || !f["definition"].is_string()) {
    notes.push_back("custom tool '" + t.name + "': format has no string 'definition'; the input is not constrained");
    return std::nullopt;
  }
  ChatParams::Freeform ff;
  ff.spec = {t.name, syntax, f["definition"].get<std::string>()};
  try {
    ff.grammar = compile_freeform(ff.spec.syntax, ff.spec.definition);
    std::string why;
    if (!freeform_fits_dsml(ff.spec.syntax, ff.spec.definition, &why)) throw InputError(why);
  } catch (const InputError& e) {
    notes.push_back("custom tool '" + t.name + "': its " + (syntax.empty() ? std::string("grammar") : syntax) +
                    " grammar is shown to the model but not enforced (" + e.what() + ")");
    return std::nullopt;
  }
  static std::mutex mu;
  static std::vector<std::pair<std::string, const Grammar*>> logged;  // bounded: most recent 64
  std::lock_guard<std::mutex> lk(mu);
  bool seen = false;
  for (auto& [n, g] : logged) seen = seen || (n == t.name && g == ff.grammar.get());
  if (!seen) {
    std::fprintf(stderr, "grammar: custom tool '%s' input constrained by its %s grammar (%u states)\n", t.name.c_str(),
                 syntax.c_str(), ff.grammar->num_states());
    logged.emplace_back(t.name, ff.grammar.get());
    if (logged.size() > 64) logged.erase(logged.begin());
  }
  return ff;
}

// Sampling as any dialect asks for it (no seed: a random one).
SamplingParams sampling_from(const protocol::Request& r) {
  SamplingParams sp;
  sp.temperature = r.temperature ? static_cast<float>(*r.temperature) : 1.0f;
  if (r.top_p) sp.top_p = static_cast<float>(*r.top_p);
  if (r.min_p) sp.min_p = static_cast<float>(*r.min_p);
  if (r.top_k) sp.top_k = *r.top_k < 0 ? 0 : static_cast<int>(*r.top_k);
  sp.seed = r.seed ? static_cast<uint64_t>(*r.seed) : std::random_device{}();
  return sp;
}

const char* encoder_role(Role r) {
  switch (r) {
    case Role::System:
    case Role::Developer: return "system";  // OpenAI's developer role is the system role
    case Role::User: return "user";
    case Role::Assistant: return "assistant";
    case Role::Tool: return "tool";
  }
  return "user";
}

}  // namespace

ChatParams chat_params_from(const protocol::Request& r, bool default_thinking) {
  ChatParams p;
  p.model = r.model;
  p.notes = r.notes;
  if (r.messages.empty()) throw bad_param("messages", "the conversation is empty");
  size_t images = 0;
  for (const Message& m : r.messages) images += m.images.size();
  if (images) p.notes.push_back(std::to_string(images) + " image part(s) dropped: this model reads text only");

  // Reasoning mode: explicit switches, then the effort (last word).
  bool thinking = r.reasoning.enabled.value_or(default_thinking);
  const std::string& effort = r.reasoning.effort;
  if (!effort.empty()) {
    if (effort == "none") thinking = false;
    else if (effort == "xhigh" || effort == "max") thinking = true, p.reasoning.max = true;
    else thinking = true;
  }
  p.reasoning.thinking = thinking;
  if (!thinking) p.reasoning.max = false;
  p.encode.thinking_mode = thinking ? "thinking" : "chat";
  p.encode.reasoning_effort = p.reasoning.max ? ojson("max") : ojson(nullptr);
  if (r.reasoning.drop_thinking) p.encode.drop_thinking = *r.reasoning.drop_thinking;

  // Tools: function and custom ones reach the model; others were noted by the parser.
  ojson tools = ojson::array();
  for (size_t i = 0; i < r.tools.size(); ++i) {
    const Tool& t = r.tools[i];
    if (t.kind == Tool::Kind::Other) continue;
    ojson ft = function_tool(t, i);
    for (auto& prev : tools)
      if (prev["function"]["name"] == t.name)
        throw bad_param("tools[" + std::to_string(i) + "].name", "duplicate tool name '" + t.name + "'");
    if (t.kind == Tool::Kind::Custom) {
      p.custom_tools.push_back(t.name);
      if (auto ff = freeform_grammar(t, p.notes)) p.freeform.push_back(std::move(*ff));
    }
    tools.push_back(std::move(ft));
  }
  p.tools = tools;
  switch (r.tool_choice.mode) {
    case ToolChoice::Mode::Unset:
    case ToolChoice::Mode::Auto: p.tool_choice = "auto"; break;
    case ToolChoice::Mode::None: p.tool_choice = "none"; break;
    case ToolChoice::Mode::Required: p.tool_choice = "required"; break;
    case ToolChoice::Mode::Named:
      p.tool_choice = "function";
      p.tool_choice_name = r.tool_choice.name;
      break;
  }
  if ((p.tool_choice == "required" || p.tool_choice == "function") && p.tools.empty())
    throw bad_param("tool_choice", "'tool_choice' requires 'tools'");
  if (p.tool_choice == "function") {
    bool found = false;
    for (auto& t : p.tools) found |= t["function"]["name"] == p.tool_choice_name;
    if (!found) throw bad_param("tool_choice", "tool_choice names '" + p.tool_choice_name + "', which is not in 'tools'");
  }
  if (r.parallel_tool_calls) p.parallel_tool_calls = *r.parallel_tool_calls;

  p.response_format = r.response_format.type;
  if (p.response_format == "json_schema") p.response_schema = r.response_format.schema;

  if (r.max_tokens) p.max_tokens = static_cast<int>(std::min<int64_t>(*r.max_tokens, 1 << 24));
  p.sampling = sampling_from(r);
  p.stop = r.stop;
  p.logprobs = r.logprobs;
  p.top_logprobs = r.top_logprobs;
  p.stream = r.stream;
  p.include_usage = r.include_usage;
  p.cache_key = r.prompt_cache_key;

  // Messages for the encoder. A system turn anywhere stays where it is: the official encoder
  // renders a system message at any position as its plain content.
  ojson msgs = ojson::array();
  for (size_t i = 0; i < r.messages.size(); ++i) {
    const Message& m = r.messages[i];
    ojson o = ojson::object();
    o["role"] = encoder_role(m.role);
    if (m.role == Role::Assistant) {
      o["content"] = m.has_text ? ojson(m.text) : ojson(nullptr);
      if (m.reasoning) o["reasoning_content"] = *m.reasoning;
      if (!m.tool_calls.empty()) {
        ojson calls = ojson::array();
        for (auto& c : m.tool_calls) {
          ojson fc = ojson::object();
          fc["name"] = c.name;
          // A custom call's raw input travels as the one "input" parameter.
          fc["arguments"] = c.custom ? ojson{{"input", c.arguments}}.dump() : c.arguments;
          ojson call = ojson::object();
          call["id"] = c.id;
          call["type"] = "function";
          call["function"] = fc;
          calls.push_back(call);
        }
        o["tool_calls"] = calls;
      }
    } else if (m.role == Role::Tool) {
      o["tool_call_id"] = m.tool_call_id;
      o["content"] = m.is_error ? "Error: " + m.text : m.text;
    } else {
      o["content"] = m.text;
    }
    msgs.push_back(std::move(o));
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

ChatParams parse_chat_params(const json& body, bool default_thinking) {
  try {
    return chat_params_from(protocol::chat::parse_request(body), default_thinking);
  } catch (const protocol::ProtocolError& e) {
    rethrow_protocol(e);
  }
}

CompletionParams parse_completion_params(const json& body) {
  protocol::Request r;
  try {
    r = protocol::completions::parse_request(body);
  } catch (const protocol::ProtocolError& e) {
    rethrow_protocol(e);
  }
  CompletionParams p;
  p.model = r.model;
  p.prompt_text = r.prompt;
  p.prompt_ids = r.prompt_ids;
  p.has_ids = r.prompt_is_ids;
  p.max_tokens = static_cast<int>(r.max_tokens.value_or(16));
  p.sampling = sampling_from(r);
  p.stop = r.stop;
  p.logprobs = r.completion_logprobs;
  p.echo = r.echo;
  p.stream = r.stream;
  p.include_usage = r.include_usage;
  return p;
}

}  // namespace v4
