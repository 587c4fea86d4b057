#include "protocol/parse_common.h"

#include "protocol/fields.h"

namespace v4::protocol {

using namespace fields;

void read_sampling(const ojson& body, Request& r) {
  if (present(body, "temperature")) r.temperature = number(body, "temperature", 0, 2);
  if (present(body, "top_p")) {
    r.top_p = number(body, "top_p", 0, 1);
    if (*r.top_p <= 0) throw ProtocolError("top_p", "'top_p' must be greater than 0");
  }
  if (present(body, "min_p")) r.min_p = number(body, "min_p", 0, 1);
  if (present(body, "top_k")) r.top_k = integer(body, "top_k", -1, 1 << 20);
  if (present(body, "seed")) r.seed = integer(body, "seed", INT64_MIN, INT64_MAX);
}

void write_sampling(const Request& r, ojson& b) {
  if (r.temperature) b["temperature"] = *r.temperature;
  if (r.top_p) b["top_p"] = *r.top_p;
  if (r.min_p) b["min_p"] = *r.min_p;
  if (r.top_k) b["top_k"] = *r.top_k;
  if (r.seed) b["seed"] = *r.seed;
}

std::vector<std::string> read_stop(const ojson& body, const char* key, size_t max) {
  std::vector<std::string> out;
  if (!present(body, key)) return out;
  const ojson& s = body[key];
  const std::string k = key;
  if (s.is_string()) {
    out.push_back(s);
  } else if (s.is_array()) {
    if (s.size() > max) throw ProtocolError(k, "'" + k + "' may hold at most " + std::to_string(max) + " sequences");
    for (auto& x : s) {
      if (!x.is_string()) throw ProtocolError(k, "'" + k + "' entries must be strings");
      out.push_back(x);
    }
  } else {
    throw ProtocolError(k, "'" + k + "' must be a string or an array of strings");
  }
  for (auto& x : out)
    if (x.empty()) throw ProtocolError(k, "'" + k + "' sequences must not be empty");
  return out;
}

bool known_effort(const std::string& e) {
  for (const char* k : {"none", "minimal", "low", "medium", "high", "xhigh", "max"})
    if (e == k) return true;
  return false;
}

bool read_tool_choice_word(const std::string& word, ToolChoice& out) {
  if (word == "auto") out.mode = ToolChoice::Mode::Auto;
  else if (word == "none") out.mode = ToolChoice::Mode::None;
  else if (word == "required") out.mode = ToolChoice::Mode::Required;
  else return false;
  return true;
}

void read_chat_reasoning(const ojson& body, ReasoningRequest& out) {
  std::string effort;
  if (present(body, "thinking")) {
    const ojson& t = body["thinking"];
    if (t.is_boolean()) {
      out.enabled = t.get<bool>();
    } else if (t.is_object() && t.contains("type") && t["type"].is_string()) {
      const std::string ty = t["type"];
      if (ty == "enabled" || ty == "adaptive") out.enabled = true;
      else if (ty == "disabled") out.enabled = false;
      else throw ProtocolError("thinking.type", "'thinking.type' must be 'enabled' or 'disabled'");
      if (present(t, "budget_tokens")) out.budget_tokens = integer(t, "budget_tokens", 0, INT64_MAX, "thinking");
    } else {
      throw ProtocolError("thinking", "'thinking' must be {\"type\": \"enabled\"|\"disabled\"}");
    }
  }
  if (present(body, "chat_template_kwargs")) {
    const ojson& k = body["chat_template_kwargs"];
    if (!k.is_object()) throw ProtocolError("chat_template_kwargs", "'chat_template_kwargs' must be an object");
    for (const char* key : {"thinking", "enable_thinking"})
      if (k.contains(key)) {
        if (!k[key].is_boolean()) throw ProtocolError(std::string("chat_template_kwargs.") + key, "must be a boolean");
        out.enabled = k[key].get<bool>();
      }
    if (k.contains("thinking_mode")) {
      if (k["thinking_mode"] == "thinking") out.enabled = true;
      else if (k["thinking_mode"] == "chat") out.enabled = false;
      else throw ProtocolError("chat_template_kwargs.thinking_mode", "must be 'chat' or 'thinking'");
    }
    if (k.contains("reasoning_effort") && k["reasoning_effort"].is_string()) effort = k["reasoning_effort"];
    if (k.contains("drop_thinking")) {
      if (!k["drop_thinking"].is_boolean()) throw ProtocolError("chat_template_kwargs.drop_thinking", "must be a boolean");
      out.drop_thinking = k["drop_thinking"].get<bool>();
    }
  }
  if (present(body, "thinking_mode")) {
    if (body["thinking_mode"] == "thinking") out.enabled = true;
    else if (body["thinking_mode"] == "chat") out.enabled = false;
    else throw ProtocolError("thinking_mode", "'thinking_mode' must be 'chat' or 'thinking'");
  }
  if (present(body, "enable_thinking")) out.enabled = boolean(body, "enable_thinking");
  if (present(body, "reasoning_effort")) {
    if (!body["reasoning_effort"].is_string()) throw ProtocolError("reasoning_effort", "'reasoning_effort' must be a string");
    effort = body["reasoning_effort"];
  }
  if (!effort.empty() && !known_effort(effort))
    throw ProtocolError("reasoning_effort", "'reasoning_effort' must be none, minimal, low, medium, high, xhigh or max");
  out.effort = effort;
}

ojson read_sse_object(const SseFrame& f, const char* what) {
  ojson j = try_parse(f.data);
  if (!j.is_object()) bad_upstream("data", std::string(what) + " is not a JSON object: " + f.data.substr(0, 200));
  return j;
}

std::string sse_event_type(const ojson& j, const SseFrame& f) {
  return j.contains("type") && j["type"].is_string() ? j["type"].get<std::string>() : f.event;
}

Usage read_openai_usage(const ojson& u, const std::string& in, const std::string& out) {
  Usage o;
  if (!u.is_object()) return o;
  o.input_tokens = u.value(in + "_tokens", int64_t{0});
  o.output_tokens = u.value(out + "_tokens", int64_t{0});
  const std::string in_d = in + "_tokens_details", out_d = out + "_tokens_details";
  if (u.contains(in_d) && u[in_d].is_object()) o.cached_tokens = u[in_d].value("cached_tokens", int64_t{0});
  if (u.contains(out_d) && u[out_d].is_object()) o.reasoning_tokens = u[out_d].value("reasoning_tokens", int64_t{0});
  // DeepSeek's API reports prefix-cache hits at the top level.
  if (o.cached_tokens == 0 && u.contains("prompt_cache_hit_tokens") && u["prompt_cache_hit_tokens"].is_number_integer())
    o.cached_tokens = u["prompt_cache_hit_tokens"].get<int64_t>();
  return o;
}

}  // namespace v4::protocol
