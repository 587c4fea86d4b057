// Parsing and validation of OpenAI chat-completion / completion request bodies into what the
// service needs (bodies are parsed with key order kept: tool schemas are rendered as sent): the messages for the V4 encoder, the reasoning mode (every way clients ask for
// it), sampling, limits, stop strings, logprobs, tools / tool_choice and response_format.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/sampler.h"
#include "protocol/types.h"
#include "grammar/grammar.h"
#include "text/chat_encoding.h"

namespace v4 {

struct ReasoningMode {
  bool thinking = true;
  bool max = false;  // Think Max
};

struct ChatParams {
  std::string model;
  text::ojson messages;              // normalised for the encoder (tools attached to the system msg)
  text::EncodeOptions encode;
  ReasoningMode reasoning;
  SamplingParams sampling;
  int max_tokens = -1;               // -1 = up to the context limit
  std::vector<std::string> stop;
  bool logprobs = false;
  int top_logprobs = 0;
  text::ojson tools = text::ojson::array();  // OpenAI tools (client key order kept)
  std::string tool_choice = "auto";  // auto | none | required | function
  std::string tool_choice_name;
  bool parallel_tool_calls = true;
  std::string response_format = "text";  // text | json_object | json_schema
  text::ojson response_schema;
  bool stream = false;
  bool include_usage = false;
  int n = 1;
  std::string cache_key;             // prompt_cache_key: a prefix-cache hint (fair eviction per key)
  // Custom (freeform) tools: presented to the model as a function with one string parameter
  // "input"; calls of these names come back as custom tool calls with that raw input.
  std::vector<std::string> custom_tools;
  // Custom tools whose `format` grammar (lark / regex) is enforced: their `input` is generated
  // in the grammar's language and the finished input is checked against `grammar`. A grammar
  // that cannot be compiled is only shown to the model (in the tool description), with a note.
  struct Freeform {
    FreeformGrammar spec;
    GrammarPtr grammar;  // standalone, for checking a finished input
  };
  std::vector<Freeform> freeform;
  std::vector<std::string> notes;    // accepted-and-ignored parts of the request
};

// The generation a dialect-neutral request asks for (any dialect: the parsers in src/protocol
// have checked the field types). Throws ApiError (400, naming the parameter) on anything this
// server cannot serve: bad tool names or schemas, tool_choice naming an absent tool, ….
ChatParams chat_params_from(const protocol::Request& r, bool default_thinking);

// An OpenAI chat body: protocol::chat::parse_request + chat_params_from.
ChatParams parse_chat_params(const text::ojson& body, bool default_thinking);

// ProtocolError -> ApiError (same status, param and message).
[[noreturn]] void rethrow_protocol(const protocol::ProtocolError& e);

// Shared by /v1/completions.
struct CompletionParams {
  std::string model;
  std::string prompt_text;
  std::vector<int32_t> prompt_ids;   // when the prompt is given as token ids
  bool has_ids = false;
  SamplingParams sampling;
  int max_tokens = 16;
  std::vector<std::string> stop;
  int logprobs = -1;
  bool echo = false;
  bool stream = false;
  bool include_usage = false;
};
CompletionParams parse_completion_params(const text::ojson& body);

}  // namespace v4
