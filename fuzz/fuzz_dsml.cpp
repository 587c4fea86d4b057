// DSML parser fuzzer: any output, split into any chunks, never crashes, never leaks markup into
// content/reasoning, only emits valid UTF-8, and every error-free tool call has JSON arguments.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "text/dsml_parser.h"
#include "text/utf8.h"

using namespace v4::text;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  ParserOptions opt;
  opt.thinking = data[0] & 1;
  if (data[0] & 2)
    opt.tools = nlohmann::ordered_json::parse(
        R"([{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"a":{"type":"string"},"n":{"type":"integer","maximum":5},"o":{"anyOf":[{"type":"array","items":{"type":"number"}},{"type":"null"}]}},"required":["a"],"additionalProperties":false}}}])");
  size_t chunk = 1 + data[1] % 16;
  std::string text(reinterpret_cast<const char*>(data + 2), size - 2);
  DsmlParser p(opt);
  auto check = [](const std::vector<Delta>& ds) {
    for (const auto& d : ds)
      if (!utf8_valid(d.text)) std::abort();
  };
  for (size_t i = 0; i < text.size(); i += chunk) check(p.feed(std::string_view(text).substr(i, chunk)));
  check(p.finish());
  const ParsedMessage& m = p.message();
  for (const std::string* s : {&m.content, &m.reasoning})
    for (const char* bad : {"｜DSML｜", "<think>", "</think>", "<｜end▁of▁sentence｜>"})
      if (s->find(bad) != std::string::npos) std::abort();
  for (const auto& tc : m.tool_calls)
    if (!tc.error && !nlohmann::ordered_json::accept(tc.arguments)) std::abort();
  return 0;
}
