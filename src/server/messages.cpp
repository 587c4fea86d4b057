// POST /v1/messages (Anthropic Messages API): converted to the chat request the V4 encoder
// takes (thinking blocks -> reasoning_content, tool_use -> tool_calls, tool_result -> tool
// messages), answered with content blocks and the Anthropic streaming events.
#include <chrono>

#include "server/api_error.h"
#include "server/chat_run.h"
#include "server/service.h"
#include "server/sse.h"
#include "server/submit.h"

namespace v4 {

using json = nlohmann::ordered_json;
using Kind = text::Delta::Kind;

namespace {

std::string block_text(const json& content, const std::string& where) {
  if (content.is_string()) return content;
  if (!content.is_array()) throw bad_param(where, "content must be a string or an array of blocks");
  std::string s;
  for (auto& b : content) {
    if (!b.is_object() || !b.contains("type")) throw bad_param(where, "content blocks need a 'type'");
    if (b["type"] == "text") {
      if (!s.empty()) s += "\n";
      s += b.value("text", "");
    }
  }
  return s;
}

// Anthropic request -> OpenAI chat request body.
json to_openai(const json& body) {
  if (!body.is_object()) throw ApiError(400, "the request body must be a JSON object");
  if (!body.contains("max_tokens") || !body["max_tokens"].is_number_integer() || body["max_tokens"].get<int64_t>() < 1)
    throw bad_param("max_tokens", "'max_tokens' is required (a positive integer)");
  if (!body.contains("messages") || !body["messages"].is_array() || body["messages"].empty())
    throw bad_param("messages", "'messages' must be a non-empty array");
  json o = json::object();
  o["model"] = body.value("model", json(nullptr));
  o["max_tokens"] = body["max_tokens"];
  for (const char* k : {"temperature", "top_p", "top_k", "stream"})
    if (body.contains(k)) o[k] = body[k];
  if (body.contains("stop_sequences")) o["stop"] = body["stop_sequences"];
  // Anthropic semantics: no extended thinking unless asked for.
  o["thinking"] = {{"type", "disabled"}};
  if (body.contains("thinking") && body["thinking"].is_object()) {
    const std::string t = body["thinking"].value("type", "");
    if (t != "enabled" && t != "disabled" && t != "adaptive") throw bad_param("thinking.type", "'thinking.type' must be 'enabled' or 'disabled'");
    o["thinking"] = {{"type", t == "disabled" ? "disabled" : "enabled"}};
  }
  json msgs = json::array();
  if (body.contains("system") && !body["system"].is_null()) msgs.push_back({{"role", "system"}, {"content", block_text(body["system"], "system")}});
  for (size_t i = 0; i < body["messages"].size(); ++i) {
    const json& m = body["messages"][i];
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (!m.is_object() || !m.contains("role") || !m.contains("content")) throw bad_param(where, where + " needs role and content");
    const std::string role = m["role"].is_string() ? m["role"].get<std::string>() : "";
    if (role != "user" && role != "assistant") throw bad_param(where + ".role", "role must be 'user' or 'assistant'");
    const json& c = m["content"];
    if (c.is_string()) {
      msgs.push_back({{"role", role}, {"content", c}});
      continue;
    }
    if (!c.is_array()) throw bad_param(where + ".content", "content must be a string or an array of blocks");
    if (role == "user") {
      std::string text;
      for (auto& b : c) {
        if (!b.is_object() || !b.contains("type")) throw bad_param(where + ".content", "content blocks need a 'type'");
        const std::string t = b["type"];
        if (t == "tool_result") {
          if (!b.contains("tool_use_id") || !b["tool_use_id"].is_string())
            throw bad_param(where + ".content", "tool_result blocks need a 'tool_use_id'");
          std::string rc = b.contains("content") ? block_text(b["content"], where + ".content") : "";
          if (b.value("is_error", false)) rc = "Error: " + rc;
          msgs.push_back({{"role", "tool"}, {"tool_call_id", b["tool_use_id"]}, {"content", rc}});
        } else if (t == "text") {
          if (!text.empty()) text += "\n";
          text += b.value("text", "");
        } else {
          throw bad_param(where + ".content", "content block type '" + t + "' is not supported (text and tool_result only)");
        }
      }
      if (!text.empty()) msgs.push_back({{"role", "user"}, {"content", text}});
    } else {
      json a = {{"role", "assistant"}, {"content", ""}};
      std::string text, thinking;
      json calls = json::array();
      for (auto& b : c) {
        if (!b.is_object() || !b.contains("type")) throw bad_param(where + ".content", "content blocks need a 'type'");
        const std::string t = b["type"];
        if (t == "text") text += b.value("text", "");
        else if (t == "thinking") thinking += b.value("thinking", "");
        else if (t == "redacted_thinking") continue;
        else if (t == "tool_use")
          calls.push_back({{"id", b.value("id", "")}, {"type", "function"},
                           {"function", {{"name", b.value("name", "")}, {"arguments", b.contains("input") ? b["input"].dump() : "{}"}}}});
        else throw bad_param(where + ".content", "content block type '" + t + "' is not supported");
      }
      a["content"] = text;
      if (!thinking.empty()) a["reasoning_content"] = thinking;
      if (!calls.empty()) a["tool_calls"] = calls;
      msgs.push_back(a);
    }
  }
  o["messages"] = msgs;
  if (body.contains("tools") && body["tools"].is_array()) {
    json tools = json::array();
    for (auto& t : body["tools"]) {
      if (!t.is_object() || !t.contains("name")) throw bad_param("tools", "every tool needs a 'name'");
      json f = {{"name", t["name"]}};
      if (t.contains("description")) f["description"] = t["description"];
      f["parameters"] = t.contains("input_schema") ? t["input_schema"] : json{{"type", "object"}, {"properties", json::object()}};
      tools.push_back({{"type", "function"}, {"function", f}});
    }
    o["tools"] = tools;
  }
  if (body.contains("tool_choice") && body["tool_choice"].is_object()) {
    const std::string t = body["tool_choice"].value("type", "auto");
    if (t == "auto") o["tool_choice"] = "auto";
    else if (t == "any") o["tool_choice"] = "required";
    else if (t == "none") o["tool_choice"] = "none";
    else if (t == "tool") o["tool_choice"] = {{"type", "function"}, {"function", {{"name", body["tool_choice"].value("name", "")}}}};
    else throw bad_param("tool_choice.type", "tool_choice type must be auto, any, tool or none");
    if (body["tool_choice"].value("disable_parallel_tool_use", false)) o["parallel_tool_calls"] = false;
  }
  return o;
}

std::string stop_reason(const ChatRun& run) {
  const std::string r = run.finish_reason();
  if (r == "tool_calls") return "tool_use";
  if (r == "length") return "max_tokens";
  return run.stopped_by_string() ? "stop_sequence" : "end_turn";
}

json usage(const ChatRun& run) {
  return {{"input_tokens", run.prompt_tokens() - run.handle()->cached_tokens},
          {"cache_read_input_tokens", run.handle()->cached_tokens},
          {"cache_creation_input_tokens", 0},
          {"output_tokens", run.completion_tokens()}};
}

}  // namespace

void Service::handle_messages(const net::Request& req, net::Reply& res) {
  // Errors propagate as ApiError; the route wrapper answers them in the Anthropic shape.
  json body = parse_body(req.body);
  json oai = to_openai(body);
  if (!oai["model"].is_string()) throw bad_param("model", "'model' is required (a string)");
  ChatParams p = parse_chat_params(oai, false);
  check_model(p.model);
  auto run = std::make_shared<ChatRun>(std::move(p), *sched_, tok_, masker_.get(), opt_.sched.ctx, opt_.log_prompts, grammars_.get());
  const std::string id = new_id("msg_", next_id_++);
  const bool stream = body.value("stream", false);
  if (!stream) {
    respond_when_done(res, run->handle(), [=, this](net::Reply& res, std::vector<TokenEvent>& ev) {
      bool stop = false;
      run->feed(ev, &stop);
      run->finish();
      record_chat(*run);
      const text::ParsedMessage& m = run->message();
      json content = json::array();
      if (run->params().reasoning.thinking && !m.reasoning.empty())
        content.push_back({{"type", "thinking"}, {"thinking", m.reasoning}, {"signature", ""}});
      if (!m.content.empty()) content.push_back({{"type", "text"}, {"text", m.content}});
      for (auto& c : m.tool_calls)
        if (!c.error)
          content.push_back({{"type", "tool_use"}, {"id", c.id}, {"name", c.name}, {"input", json::parse(c.arguments)}});
      json r = {{"id", id}, {"type", "message"}, {"role", "assistant"}, {"model", model_id_}, {"content", content},
                {"stop_reason", stop_reason(*run)}, {"stop_sequence", nullptr}, {"usage", usage(*run)}};
      res.set_content(wire(r), "application/json");
      log_request(res, run->prompt_tokens(),
                  run->completion_tokens(), stop_reason(*run));
    });
    return;
  }
  // Streaming: message_start, then content blocks (thinking / text / tool_use) opened and closed
  // as the parser moves between them, then message_delta and message_stop.
  struct Blocks {
    int index = -1;
    std::string open;  // "", "thinking", "text", "tool_use"
  };
  auto bl = std::make_shared<Blocks>();
  auto started = std::make_shared<bool>(false);
  auto ev_json = [](const char* type, json j) {
    j["type"] = type;
    return sse_event(type, wire(j));
  };
  auto close_block = [=](std::vector<std::string>& out) {
    if (bl->open.empty()) return;
    out.push_back(ev_json("content_block_stop", {{"index", bl->index}}));
    bl->open.clear();
  };
  auto open_block = [=](std::vector<std::string>& out, const std::string& kind, const json& block) {
    close_block(out);
    bl->open = kind;
    out.push_back(ev_json("content_block_start", {{"index", ++bl->index}, {"content_block", block}}));
  };
  auto start = [=, this](std::vector<std::string>& out) {
    if (*started) return;
    *started = true;
    json msg = {{"id", id}, {"type", "message"}, {"role", "assistant"}, {"model", model_id_}, {"content", json::array()},
                {"stop_reason", nullptr}, {"stop_sequence", nullptr},
                {"usage", {{"input_tokens", run->prompt_tokens()}, {"output_tokens", 0}}}};
    out.push_back(ev_json("message_start", {{"message", msg}}));
  };
  auto to_events = [=](const std::vector<text::Delta>& ds, std::vector<std::string>& out) {
    for (auto& d : ds) {
      switch (d.kind) {
        case Kind::Reasoning:
          if (bl->open != "thinking") open_block(out, "thinking", {{"type", "thinking"}, {"thinking", ""}, {"signature", ""}});
          out.push_back(ev_json("content_block_delta", {{"index", bl->index}, {"delta", {{"type", "thinking_delta"}, {"thinking", d.text}}}}));
          break;
        case Kind::Content:
          if (bl->open != "text") open_block(out, "text", {{"type", "text"}, {"text", ""}});
          out.push_back(ev_json("content_block_delta", {{"index", bl->index}, {"delta", {{"type", "text_delta"}, {"text", d.text}}}}));
          break;
        case Kind::ToolCallBegin:
          open_block(out, "tool_use", {{"type", "tool_use"}, {"id", d.id}, {"name", d.name}, {"input", json::object()}});
          break;
        case Kind::ToolCallArguments:
          out.push_back(ev_json("content_block_delta", {{"index", bl->index}, {"delta", {{"type", "input_json_delta"}, {"partial_json", d.text}}}}));
          break;
        case Kind::ToolCallEnd:
          close_block(out);
          break;
      }
    }
  };
  SseCallbacks cb;
  cb.on_tokens = [=](const std::vector<TokenEvent>& ev, bool* stop) {
    std::vector<std::string> out;
    start(out);
    to_events(run->feed(ev, stop), out);
    return out;
  };
  cb.on_finish = [=, this]() {
    std::vector<std::string> out;
    start(out);
    to_events(run->finish(), out);
    close_block(out);
    record_chat(*run);
    out.push_back(ev_json("message_delta", {{"delta", {{"stop_reason", stop_reason(*run)}, {"stop_sequence", nullptr}}},
                                            {"usage", {{"output_tokens", run->completion_tokens()}}}}));
    out.push_back(ev_json("message_stop", json::object()));
    return out;
  };
  cb.on_close = stream_logger(res, run->handle());
  respond_sse(res, run->handle(), std::move(cb), opt_.keepalive_s);
}

}  // namespace v4
