#include "text/chat_encoding.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>

#include "core/error.h"
#include "text/special_tokens.h"

namespace v4::text {

namespace {

const std::string kBos(tokens::kBos), kEos(tokens::kEos), kUser(tokens::kUser), kAssistant(tokens::kAssistant),
    kReminder(tokens::kLatestReminder), kThinkStart(tokens::kThinkStart), kThinkEnd(tokens::kThinkEnd),
    kDsml(tokens::kDsml);

const char* kReasoningEffortMax =
    "Reasoning Effort: Absolute maximum with no shortcuts permitted.\n"
    "You MUST be very thorough in your thinking and comprehensively decompose the problem to resolve the root "
    "cause, rigorously stress-testing your logic against all potential paths, edge cases, and adversarial "
    "scenarios.\n"
    "Explicitly write out your entire deliberation process, documenting every intermediate step, considered "
    "alternative, and rejected hypothesis to ensure absolutely no assumption is left unchecked.\n\n";

std::string tools_block(const std::string& schemas) {
  const std::string d = kDsml;
  return "## Tools\n\nYou have access to a set of tools to help answer the user's question. You can invoke tools by "
         "writing a \"<" + d + "tool_calls>\" block like the following:\n\n"
         "<" + d + "tool_calls>\n"
         "<" + d + "invoke name=\"$TOOL_NAME\">\n"
         "<" + d + "parameter name=\"$PARAMETER_NAME\" string=\"true|false\">$PARAMETER_VALUE</" + d + "parameter>\n"
         "...\n"
         "</" + d + "invoke>\n"
         "<" + d + "invoke name=\"$TOOL_NAME2\">\n"
         "...\n"
         "</" + d + "invoke>\n"
         "</" + d + "tool_calls>\n\n"
         "String parameters should be specified as is and set `string=\"true\"`. For all other types (numbers, "
         "booleans, arrays, objects), pass the value in JSON format and set `string=\"false\"`.\n\n"
         "If thinking_mode is enabled (triggered by " + kThinkStart + "), you MUST output your complete reasoning "
         "inside " + kThinkStart + "..." + kThinkEnd + " BEFORE any tool calls or final response.\n\n"
         "Otherwise, output directly after " + kThinkEnd + " with tool calls or final response.\n\n"
         "### Available Tool Schemas\n\n" + schemas +
         "\n\nYou MUST strictly follow the above defined tool name and parameter schemas to invoke tool calls.\n";
}

[[noreturn]] void reject(const std::string& msg) { throw InputError("chat encoding: " + msg); }

// msg.get(key) with Python semantics (missing -> null).
const ojson& get(const ojson& msg, const char* key) {
  static const ojson null_value;
  auto it = msg.find(key);
  return it == msg.end() ? null_value : *it;
}
bool has(const ojson& msg, const char* key) { return msg.find(key) != msg.end(); }
bool role_is(const ojson& msg, const char* r) {
  const ojson& role = get(msg, "role");
  return role.is_string() && role.get_ref<const std::string&>() == r;
}

std::string render_tools(const ojson& tools) {
  // tools_from_openai_format: [tool["function"] for tool in tools]
  if (!tools.is_array()) reject("`tools` must be a list of {\"type\": \"function\", \"function\": {...}} objects");
  std::string schemas;
  bool first = true;
  for (const auto& t : tools) {
    if (!t.is_object() || !has(t, "function")) reject("every tool needs a \"function\" object: " + py_json_dumps(t));
    if (!first) schemas += "\n";
    first = false;
    py_json_dumps_into(t["function"], schemas);
  }
  return tools_block(schemas);
}

std::string response_format_block(const ojson& rf) {
  return "## Response Format:\n\nYou MUST strictly adhere to the following schema to reply:\n" + py_json_dumps(rf);
}

// encode_arguments_to_dsml
std::string encode_arguments(const ojson& arguments) {
  ojson args;
  bool parsed = false;
  if (arguments.is_string()) {
    const std::string& s = arguments.get_ref<const std::string&>();
    try {
      args = parse_json_exact(s, "tool call arguments");  // integers of any size stay exact
      parsed = true;
    } catch (const InputError&) {
    }
  }
  if (!parsed) {
    args = ojson::object();
    args["arguments"] = arguments;
  }
  if (!args.is_object()) reject("tool call arguments must decode to a JSON object, got: " + py_json_dumps(args));
  std::string out;
  bool first = true;
  for (auto it = args.begin(); it != args.end(); ++it) {
    if (!first) out += "\n";
    first = false;
    bool is_str = it.value().is_string();
    out += "<" + kDsml + "parameter name=\"" + it.key() + "\" string=\"" + (is_str ? "true" : "false") + "\">";
    if (is_str) out += it.value().get_ref<const std::string&>();
    else py_json_dumps_into(it.value(), out);
    out += "</" + kDsml + "parameter>";
  }
  return out;
}

int find_last_user_index(const ojson& msgs) {
  for (int i = static_cast<int>(msgs.size()) - 1; i >= 0; --i)
    if (role_is(msgs[i], "user") || role_is(msgs[i], "developer")) return i;
  return -1;
}

ojson merge_tool_messages(const ojson& messages) {
  ojson merged = ojson::array();
  for (const auto& msg : messages) {
    if (role_is(msg, "tool")) {
      ojson block = ojson::object();
      block["type"] = "tool_result";
      block["tool_use_id"] = has(msg, "tool_call_id") ? msg["tool_call_id"] : ojson("");
      block["content"] = has(msg, "content") ? msg["content"] : ojson("");
      if (!merged.empty() && role_is(merged.back(), "user") && has(merged.back(), "content_blocks")) {
        auto& cb = merged.back()["content_blocks"];
        if (!cb.is_array()) reject("content_blocks must be a list");
        cb.push_back(std::move(block));
      } else {
        ojson m = ojson::object();
        m["role"] = "user";
        m["content_blocks"] = ojson::array({std::move(block)});
        merged.push_back(std::move(m));
      }
    } else if (role_is(msg, "user")) {
      ojson content = has(msg, "content") ? msg["content"] : ojson("");
      ojson text_block = ojson::object();
      text_block["type"] = "text";
      text_block["text"] = content;
      if (!merged.empty() && role_is(merged.back(), "user") && has(merged.back(), "content_blocks") &&
          get(merged.back(), "task").is_null()) {
        auto& cb = merged.back()["content_blocks"];
        if (!cb.is_array()) reject("content_blocks must be a list");
        cb.push_back(std::move(text_block));
      } else {
        ojson m = ojson::object();
        m["role"] = "user";
        m["content"] = content;
        m["content_blocks"] = ojson::array({std::move(text_block)});
        for (const char* k : {"task", "wo_eos", "mask"})
          if (has(msg, k)) m[k] = msg[k];
        merged.push_back(std::move(m));
      }
    } else {
      merged.push_back(msg);
    }
  }
  return merged;
}

// Python dict keys compare by value and type; JSON dumps distinguishes them the same way for the
// hashable JSON types. Lists/dicts are unhashable in Python -> TypeError.
std::string hash_key(const ojson& v) {
  if (v.is_array() || v.is_object()) reject("unhashable tool call id: " + py_json_dumps(v));
  if (v.is_boolean()) return v.get<bool>() ? "i1" : "i0";  // True == 1 in Python
  if (v.is_number_float() && std::isfinite(v.get<double>()) && std::floor(v.get<double>()) == v.get<double>()) {
    char buf[400];  // an integral double equals the int of the same value (1e20 == 10**20): its exact digits
    std::snprintf(buf, sizeof buf, "%.0f", v.get<double>());
    return std::string("i") + (std::string(buf) == "-0" ? "0" : buf);
  }
  if (v.is_number_integer() || v.is_number_unsigned() || is_big_integer(v)) return "i" + py_json_dumps(v);
  return (v.is_string() ? "s" : "o") + py_json_dumps(v);
}

void sort_tool_results(ojson& messages) {
  std::map<std::string, int> order;
  for (auto& msg : messages) {
    if (role_is(msg, "assistant") && py_truthy(get(msg, "tool_calls"))) {
      order.clear();
      const ojson& tcs = msg["tool_calls"];
      if (!tcs.is_array()) reject("tool_calls must be a list");
      int idx = 0;
      for (const auto& tc : tcs) {
        if (!tc.is_object()) reject("every tool call must be an object");
        ojson id = get(tc, "id");
        if (!py_truthy(id)) {
          const ojson& fn = has(tc, "function") ? tc["function"] : ojson::object();
          if (!fn.is_object()) reject("tool call \"function\" must be an object");
          id = has(fn, "id") ? fn["id"] : ojson("");
        }
        if (py_truthy(id)) order[hash_key(id)] = idx;
        ++idx;
      }
    } else if (role_is(msg, "user") && py_truthy(get(msg, "content_blocks"))) {
      ojson& blocks = msg["content_blocks"];
      if (!blocks.is_array()) reject("content_blocks must be a list");
      std::vector<ojson> tool_blocks;
      for (const auto& b : blocks) {
        if (!b.is_object()) reject("content blocks must be objects");
        const ojson& t = get(b, "type");
        if (t.is_string() && t.get_ref<const std::string&>() == "tool_result") tool_blocks.push_back(b);
      }
      if (tool_blocks.size() > 1 && !order.empty()) {
        auto key = [&](const ojson& b) {
          ojson id = has(b, "tool_use_id") ? b["tool_use_id"] : ojson("");
          auto it = order.find(hash_key(id));
          return it == order.end() ? 0 : it->second;
        };
        std::stable_sort(tool_blocks.begin(), tool_blocks.end(),
                         [&](const ojson& a, const ojson& b) { return key(a) < key(b); });
        size_t k = 0;
        for (auto& b : blocks) {
          const ojson& t = get(b, "type");
          if (t.is_string() && t.get_ref<const std::string&>() == "tool_result") b = tool_blocks[k++];
        }
      }
    }
  }
}

ojson drop_thinking_messages(const ojson& messages) {
  int last_user = find_last_user_index(messages);
  ojson out = ojson::array();
  for (int i = 0; i < static_cast<int>(messages.size()); ++i) {
    const ojson& m = messages[i];
    bool keep = false;
    for (const char* r : {"user", "system", "tool", "latest_reminder", "direct_search_results"})
      if (role_is(m, r)) keep = true;
    if (keep || i >= last_user) {
      out.push_back(m);
    } else if (role_is(m, "assistant")) {
      ojson c = m;
      c.erase("reasoning_content");
      out.push_back(std::move(c));
    }
  }
  return out;
}

std::string join_text(const std::vector<std::string>& parts) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i) out += "\n\n";
    out += parts[i];
  }
  return out;
}

const std::string& require_str(const ojson& v, const char* what) {
  if (!v.is_string()) reject(std::string(what) + " must be a string, got " + py_json_dumps(v));
  return v.get_ref<const std::string&>();
}

std::string render_message(int index, const ojson& msgs, const std::string& thinking_mode, bool drop_thinking,
                           const ojson& reasoning_effort) {
  if (thinking_mode != "chat" && thinking_mode != "thinking")
    reject("invalid thinking_mode `" + thinking_mode + "` (expected \"chat\" or \"thinking\")");
  std::string prompt;
  const ojson& msg = msgs[index];
  int last_user = find_last_user_index(msgs);
  const ojson& role = get(msg, "role");
  const ojson& content = get(msg, "content");
  const ojson& tools = get(msg, "tools");
  const ojson& response_format = get(msg, "response_format");
  const ojson& tool_calls = get(msg, "tool_calls");
  const ojson& reasoning_content = get(msg, "reasoning_content");
  bool wo_eos = py_truthy(get(msg, "wo_eos"));

  // tool_calls_from_openai_format (evaluated up front, as in the official encoder).
  std::vector<std::pair<ojson, ojson>> calls;  // (name, arguments)
  if (py_truthy(tool_calls)) {
    if (!tool_calls.is_array()) reject("tool_calls must be a list");
    for (const auto& tc : tool_calls) {
      if (!tc.is_object() || !has(tc, "function") || !tc["function"].is_object())
        reject("every tool call needs a \"function\" object: " + py_json_dumps(tc));
      const ojson& fn = tc["function"];
      if (!has(fn, "name")) reject("tool call function has no \"name\": " + py_json_dumps(tc));
      if (!has(fn, "arguments")) reject("tool call function has no \"arguments\": " + py_json_dumps(tc));
      calls.emplace_back(fn["name"], fn["arguments"]);
    }
  }
  bool effort_ok = reasoning_effort.is_null() ||
                   (reasoning_effort.is_string() && (reasoning_effort == "max" || reasoning_effort == "high"));
  if (!effort_ok) reject("invalid reasoning_effort " + py_json_dumps(reasoning_effort) + " (expected null, \"high\" or \"max\")");
  if (index == 0 && thinking_mode == "thinking" && reasoning_effort == "max") prompt += kReasoningEffortMax;

  auto rolestr = role.is_string() ? role.get<std::string>() : std::string();
  if (role.is_string() && rolestr == "system") {
    prompt += py_truthy(content) ? py_str(content) : "";
    if (py_truthy(tools)) prompt += "\n\n" + render_tools(tools);
    if (py_truthy(response_format)) prompt += "\n\n" + response_format_block(response_format);
  } else if (role.is_string() && rolestr == "developer") {
    if (!py_truthy(content)) reject("developer message needs non-empty content: " + py_json_dumps(msg));
    prompt += kUser + require_str(content, "developer content");
    if (py_truthy(tools)) prompt += "\n\n" + render_tools(tools);
    if (py_truthy(response_format)) prompt += "\n\n" + response_format_block(response_format);
  } else if (role.is_string() && rolestr == "user") {
    prompt += kUser;
    const ojson& blocks = get(msg, "content_blocks");
    if (py_truthy(blocks)) {
      if (!blocks.is_array()) reject("content_blocks must be a list");
      std::vector<std::string> parts;
      for (const auto& block : blocks) {
        if (!block.is_object()) reject("content blocks must be objects");
        const ojson& type = get(block, "type");
        std::string t = type.is_string() ? type.get<std::string>() : std::string();
        if (type.is_string() && t == "text") {
          parts.push_back(require_str(has(block, "text") ? block["text"] : ojson(""), "user message content"));
        } else if (type.is_string() && t == "tool_result") {
          ojson tc = has(block, "content") ? block["content"] : ojson("");
          std::string rendered;
          if (tc.is_array()) {
            std::vector<std::string> tp;
            for (const auto& b : tc) {
              if (!b.is_object()) reject("tool result content parts must be objects");
              const ojson& bt = get(b, "type");
              if (bt.is_string() && bt == "text") tp.push_back(require_str(has(b, "text") ? b["text"] : ojson(""), "tool result text"));
              else tp.push_back("[Unsupported " + py_str(bt) + "]");
            }
            rendered = join_text(tp);
          } else {
            rendered = py_str(tc);
          }
          parts.push_back("<tool_result>" + rendered + "</tool_result>");
        } else {
          parts.push_back("[Unsupported " + py_str(type) + "]");
        }
      }
      prompt += join_text(parts);
    } else if (py_truthy(content)) {
      prompt += require_str(content, "user message content");
    }
  } else if (role.is_string() && rolestr == "latest_reminder") {
    prompt += kReminder + py_str(content);
  } else if (role.is_string() && rolestr == "tool") {
    reject("tool messages must be merged first");  // unreachable after merge_tool_messages
  } else if (role.is_string() && rolestr == "assistant") {
    std::string tc_content;
    if (!calls.empty()) {
      std::string list;
      for (size_t i = 0; i < calls.size(); ++i) {
        if (i) list += "\n";
        list += "<" + kDsml + "invoke name=\"" + py_str(calls[i].first) + "\">\n" + encode_arguments(calls[i].second) +
                "\n</" + kDsml + "invoke>";
      }
      tc_content = "\n\n<" + kDsml + "tool_calls>\n" + list + "\n</" + kDsml + "tool_calls>";
    }
    std::string summary = py_truthy(content) ? py_str(content) : "";
    std::string rc = py_truthy(reasoning_content) ? py_str(reasoning_content) : "";
    bool prev_has_task = index - 1 >= 0 && !get(msgs[index - 1], "task").is_null();
    std::string thinking_part;
    if (thinking_mode == "thinking" && !prev_has_task)
      if (!drop_thinking || index > last_user) thinking_part = rc + kThinkEnd;
    prompt += thinking_part + summary + tc_content;
    if (!wo_eos) prompt += kEos;
  } else {
    reject("unknown role " + py_json_dumps(role) + " in message " + std::to_string(index));
  }

  // Transition to what follows (generation prompt after the last user turn).
  if (index + 1 < static_cast<int>(msgs.size()) && !role_is(msgs[index + 1], "assistant") &&
      !role_is(msgs[index + 1], "latest_reminder"))
    return prompt;
  const ojson& task = get(msg, "task");
  if (!task.is_null()) {
    static const std::map<std::string, std::string_view> kTasks = {
        {"action", tokens::kTaskAction}, {"query", tokens::kTaskQuery},   {"authority", tokens::kTaskAuthority},
        {"domain", tokens::kTaskDomain}, {"title", tokens::kTaskTitle}, {"read_url", tokens::kTaskReadUrl}};
    auto it = task.is_string() ? kTasks.find(task.get<std::string>()) : kTasks.end();
    if (it == kTasks.end())
      reject("invalid task " + py_json_dumps(task) + " (valid: action, query, authority, domain, title, read_url)");
    if (it->first != "action") {
      prompt += it->second;
    } else {
      prompt += kAssistant;
      prompt += thinking_mode != "thinking" ? kThinkEnd : kThinkStart;
      prompt += it->second;
    }
  } else if (role_is(msg, "user") || role_is(msg, "developer")) {
    prompt += kAssistant;
    if ((!drop_thinking && thinking_mode == "thinking") || (drop_thinking && thinking_mode == "thinking" && index >= last_user))
      prompt += kThinkStart;
    else
      prompt += kThinkEnd;
  }
  return prompt;
}

}  // namespace

std::string encode_messages(const ojson& messages, const EncodeOptions& opt) {
  if (!messages.is_array()) reject("messages must be a list");
  for (const auto& m : messages)
    if (!m.is_object()) reject("every message must be an object, got " + py_json_dumps(m));
  ojson msgs = merge_tool_messages(messages);
  sort_tool_results(msgs);
  std::string prompt = opt.add_bos ? kBos : "";
  bool drop = opt.drop_thinking;
  for (const auto& m : msgs)
    if (py_truthy(get(m, "tools"))) drop = false;
  if (opt.thinking_mode == "thinking" && drop) msgs = drop_thinking_messages(msgs);
  for (int i = 0; i < static_cast<int>(msgs.size()); ++i)
    prompt += render_message(i, msgs, opt.thinking_mode, drop, opt.reasoning_effort);
  return prompt;
}

ChatRequest ChatRequest::from_json(const ojson& req) {
  if (!req.is_object()) throw InputError("render request must be a JSON object with \"messages\"");
  for (auto it = req.begin(); it != req.end(); ++it) {
    static const char* known[] = {"messages", "tools", "thinking_mode", "reasoning_effort", "drop_thinking"};
    if (std::find_if(std::begin(known), std::end(known), [&](const char* k) { return it.key() == k; }) == std::end(known))
      throw InputError("render request: unknown key \"" + it.key() +
                       "\" (expected messages, tools, thinking_mode, reasoning_effort, drop_thinking)");
  }
  ChatRequest r;
  if (!req.contains("messages")) throw InputError("render request: \"messages\" is required");
  r.messages = req["messages"];
  if (!r.messages.is_array()) throw InputError("render request: \"messages\" must be a list");
  if (req.contains("tools")) {
    if (r.messages.empty()) throw InputError("render request: \"tools\" given but there is no message to attach them to");
    if (!r.messages[0].is_object()) throw InputError("render request: messages[0] must be an object");
    r.messages[0]["tools"] = req["tools"];
  }
  if (!req.contains("thinking_mode")) throw InputError("render request: \"thinking_mode\" is required (\"chat\" or \"thinking\")");
  const ojson& tm = req["thinking_mode"];
  if (!tm.is_string() || (tm != "chat" && tm != "thinking"))
    throw InputError("render request: invalid thinking_mode " + py_json_dumps(tm) + " (expected \"chat\" or \"thinking\")");
  r.options.thinking_mode = tm.get<std::string>();
  if (req.contains("reasoning_effort")) r.options.reasoning_effort = req["reasoning_effort"];
  const ojson& re = r.options.reasoning_effort;
  if (!(re.is_null() || re == "high" || re == "max"))
    throw InputError("render request: invalid reasoning_effort " + py_json_dumps(re) + " (expected null, \"high\" or \"max\")");
  if (req.contains("drop_thinking")) r.options.drop_thinking = py_truthy(req["drop_thinking"]);
  return r;
}

ChatRequest ChatRequest::from_text(const std::string& text) {
  return from_json(parse_ordered_json(text, "render request"));
}

}  // namespace v4::text
