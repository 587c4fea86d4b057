// Parsing and validation of OpenAI chat-completion / completion request bodies into what the
// service needs (bodies are parsed with key order kept: tool schemas are rendered as sent): the messages for the V4 encoder, the reasoning mode (every way clients ask for
// it), sampling, limits, stop strings, logprobs, tools / tool_choice and response_format.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/sampler.h"
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
};

// Throws ApiError (400, naming the parameter) on anything invalid.
ChatParams parse_chat_params(const text::ojson& body, bool default_thinking);

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

// Common sampling fields: temperature, top_p, min_p, top_k, seed.
void parse_sampling(const text::ojson& body, SamplingParams& s);
std::vector<std::string> parse_stop(const text::ojson& body);

}  // namespace v4
