// Incremental parser for DeepSeek V4 model output (spec §6.4): splits the generated text into
// reasoning, content and DSML tool calls, emitting OpenAI-style deltas as soon as they are known.
//
//   turn := [REASONING "</think>"] CONTENT ["\n\n<｜DSML｜tool_calls>\n" invoke* "</｜DSML｜tool_calls>"] EOS
//
// Feed it the decoded text of each generated token (any split works, even mid-character: deltas
// only ever carry complete UTF-8). Guarantees and tolerance:
//  * markup never reaches content or reasoning (DSML tags, <think>, </think>, BOS/EOS are consumed);
//  * a DSML tag inside the reasoning ends the reasoning (the model skipped </think>);
//  * string="true" values become JSON strings, string="false" values are JSON (kept as written;
//    a value that is not valid JSON becomes a string, with a warning); a missing string attribute
//    is inferred from the tool schema;
//  * variants: `function_calls` for `tool_calls`, ASCII `|DSML|` for `｜DSML｜`, an invoke without
//    the surrounding block, an invoke whose body is a JSON object instead of parameters, missing
//    closing tags, several blocks;
//  * every tool call ends with a ToolCallEnd delta whose `error` is set when the call is malformed
//    (truncated, duplicate parameter, bad JSON), names an unknown tool, or its arguments violate
//    the tool's JSON schema.
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "text/json_schema.h"

namespace v4::text {

struct ParserOptions {
  bool thinking = false;                   // the prompt ended with <think>: output starts as reasoning
  nlohmann::ordered_json tools = nullptr;  // OpenAI `tools` list: enables name and schema checks
  std::string id_prefix = "call_";         // tool call ids are id_prefix + 24 chars (unique per parser)
};

struct ToolCallError {
  std::string code;  // unknown_tool | invalid_arguments | schema_violation | malformed_markup | truncated | duplicate_parameter
  std::string message;
  std::vector<SchemaError> details;  // schema violations
  // {"type": "invalid_tool_call", "code", "message", "errors": [{"path", "message"}...]}
  nlohmann::ordered_json to_json() const;
};

struct Delta {
  enum class Kind { Reasoning, Content, ToolCallBegin, ToolCallArguments, ToolCallEnd };
  Kind kind;
  std::string text;  // Reasoning / Content text, or a ToolCallArguments fragment
  int index = -1;    // tool call index (0-based, in order of appearance)
  std::string id;    // ToolCallBegin
  std::string name;  // ToolCallBegin
  std::optional<ToolCallError> error;  // ToolCallEnd: set when the call is malformed or invalid
};

struct ToolCall {
  std::string id, name, arguments;  // arguments: JSON object text
  std::optional<ToolCallError> error;
  nlohmann::ordered_json to_openai() const;  // {"id", "type": "function", "function": {"name", "arguments"}}
};

struct ParsedMessage {
  std::string reasoning, content;
  std::vector<ToolCall> tool_calls;
  std::vector<std::string> warnings;  // tolerated deviations from the grammar
  bool ended_with_eos = false;
};

class DsmlParser {
 public:
  explicit DsmlParser(ParserOptions opt = {});
  std::vector<Delta> feed(std::string_view piece);
  // End of generation: flushes held-back text and closes anything left open (as truncated).
  std::vector<Delta> finish();
  // Everything parsed so far.
  const ParsedMessage& message() const { return msg_; }
  // Whole-text convenience: feed(text) + finish().
  static ParsedMessage parse(std::string_view text, ParserOptions opt = {});

 private:
  enum class State { Reasoning, Content, Block, Invoke, Param, Done };
  void run(bool final);
  bool step_text(bool final);
  bool step_block(bool final);
  bool step_param(bool final);
  // Tag at buf_[0] ('<' ...): returns false if more input is needed.
  struct Tag {
    bool closing = false, dsml = false;
    std::string name;  // e.g. "invoke"
    std::string attr_name, attr_string;
    bool has_name = false, has_string = false;
    size_t length = 0;
  };
  bool read_tag(Tag& t, bool final, bool& malformed);
  void emit_text(State which, std::string_view s, bool final_piece);
  void flush_pending_text(bool final);
  void append_text(Delta::Kind kind, std::string text);
  void begin_call(const std::string& name, bool has_name);
  void end_call(std::optional<ToolCallError> err);
  void begin_param(const Tag& t);
  void emit_param_value(std::string_view v, bool final_piece);
  void end_param();
  void emit_args(const std::string& frag);
  const nlohmann::ordered_json* tool_schema(const std::string& name) const;
  void warn(std::string w) { msg_.warnings.push_back(std::move(w)); }

  ParserOptions opt_;
  State state_;
  std::string buf_;
  std::vector<Delta> out_;
  ParsedMessage msg_;
  bool any_text_ = false;         // some reasoning/content already emitted
  std::string tail_content_, tail_reasoning_;  // last bytes sent, to stop markup forming across sends
  std::string held_ws_;           // trailing content whitespace held back (may precede a tool block)
  std::string utf8_hold_;         // incomplete UTF-8 tail of the text being emitted
  State utf8_hold_state_ = State::Content;
  bool strip_leading_ws_ = false; // after a tool block: skip whitespace before further content
  // current call / parameter
  int call_index_ = -1;
  bool call_open_ = false;
  std::string call_name_, call_body_;
  int n_params_ = 0;
  std::vector<std::string> param_keys_;
  std::optional<ToolCallError> call_error_;
  enum class ParamMode { String, Json, Infer };
  ParamMode param_mode_ = ParamMode::String;
  std::string param_key_, param_raw_;
  std::string param_utf8_hold_;
  uint64_t id_seed_;
};

}  // namespace v4::text
