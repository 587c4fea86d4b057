#include "eval/item.h"

#include <stdexcept>

namespace v4::eval {

Json Outcome::to_json() const {
  Json j;
  j["id"] = id;
  j["sample"] = sample;
  if (!category.empty()) j["category"] = category;
  j["passed"] = passed;
  j["score"] = score;
  j["answer"] = answer;
  if (!reasoning.empty()) j["reasoning"] = reasoning;
  if (!tool_calls.empty()) j["tool_calls"] = tool_calls;
  j["tokens"] = {{"prompt", prompt_tokens}, {"completion", completion_tokens}, {"reasoning", reasoning_tokens}};
  j["latency_s"] = latency_s;
  if (!error.empty()) {
    j["error"] = error;
    j["error_kind"] = error_kind;
  }
  if (!meta.empty()) j["meta"] = meta;
  if (!detail.empty()) j["detail"] = detail;
  return j;
}

Outcome Outcome::from_json(const Json& j) {
  if (!j.is_object()) throw std::runtime_error("not a JSON object");
  if (!j.contains("id") || !j["id"].is_string()) throw std::runtime_error("missing string field 'id'");
  if (!j.contains("passed") || !j["passed"].is_boolean()) throw std::runtime_error("missing boolean field 'passed'");
  Outcome o;
  o.id = j["id"].get<std::string>();
  o.sample = j.value("sample", 0);
  o.category = j.value("category", std::string());
  o.passed = j["passed"].get<bool>();
  o.score = j.contains("score") && j["score"].is_number() ? j["score"].get<double>() : (o.passed ? 1.0 : 0.0);
  o.answer = j.value("answer", std::string());
  o.reasoning = j.value("reasoning", std::string());
  if (j.contains("tool_calls")) o.tool_calls = j["tool_calls"];
  if (j.contains("tokens") && j["tokens"].is_object()) {
    o.prompt_tokens = j["tokens"].value("prompt", 0L);
    o.completion_tokens = j["tokens"].value("completion", 0L);
    o.reasoning_tokens = j["tokens"].value("reasoning", 0L);
  }
  o.latency_s = j.value("latency_s", 0.0);
  o.error = j.value("error", std::string());
  o.error_kind = j.value("error_kind", std::string());
  if (j.contains("meta") && j["meta"].is_object()) o.meta = j["meta"];
  if (j.contains("detail")) o.detail = j["detail"];
  return o;
}

void take_answer(Outcome& o, const Answer& a) {
  o.answer = a.text;
  o.reasoning = a.reasoning;
  o.tool_calls = a.tool_calls;
  o.prompt_tokens += a.prompt_tokens;
  o.completion_tokens += a.completion_tokens;
  o.reasoning_tokens += a.reasoning_tokens;
  o.latency_s += a.latency_s;
  if (!a.error.empty()) {
    o.error = a.error;
    o.error_kind = a.transport ? "transport" : "request";
  }
}

}  // namespace v4::eval
