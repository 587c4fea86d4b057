// DeepSeek V4 chat encoding, byte-exact with the official `encoding_dsv4.py` (spec §6, §7).
// There is no Jinja template for V4: this is the normative prompt format.
//
// Input is OpenAI-style messages (roles system, user, assistant, tool, developer, latest_reminder;
// assistant `reasoning_content` and `tool_calls`; `tools` / `response_format` on a system or
// developer message; `task` for the quick-instruction task tokens; `wo_eos`). Everything the
// official encoder rejects (bad thinking_mode / reasoning_effort, an unknown role, empty developer
// content, invalid task, malformed tool calls, non-string user text, ...) throws v4::InputError.
// Python-isms are reproduced: json.dumps(ensure_ascii=False) for tool schemas and arguments,
// str() of non-string contents, truthiness of optional fields.
#pragma once
#include <string>

#include "text/py_json.h"

namespace v4::text {

struct EncodeOptions {
  std::string thinking_mode = "thinking";  // "chat" | "thinking"
  bool drop_thinking = true;                // drop reasoning of turns before the last user turn
  ojson reasoning_effort = nullptr;         // null | "high" | "max" (anything else is rejected)
  bool add_bos = true;                      // prepend <｜begin▁of▁sentence｜>
};

// encode_messages(messages, thinking_mode, drop_thinking=..., reasoning_effort=...).
std::string encode_messages(const ojson& messages, const EncodeOptions& opt);

// The request file of `v4host render`: {"messages": [...], "tools": [...]?, "thinking_mode":
// "chat"|"thinking", "reasoning_effort": null|"high"|"max", "drop_thinking": bool}. `tools` is
// attached to messages[0] as the official tests do.
struct ChatRequest {
  ojson messages = ojson::array();
  EncodeOptions options;

  static ChatRequest from_json(const ojson& request);      // throws InputError
  static ChatRequest from_text(const std::string& json);   // parse + from_json
  std::string render() const { return encode_messages(messages, options); }
};

}  // namespace v4::text
