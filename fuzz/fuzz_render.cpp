// Renderer fuzzer: arbitrary request JSON either renders or is rejected with v4::InputError.
#include <cstdint>
#include <string>

#include "core/error.h"
#include "text/chat_encoding.h"
#include "text/utf8.h"

using namespace v4::text;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string s(reinterpret_cast<const char*>(data), size);
  try {
    ChatRequest r = ChatRequest::from_text(s);
    std::string prompt = r.render();
    (void)prompt;
  } catch (const v4::InputError&) {
  }
  // The messages list alone, in both modes and with max effort.
  try {
    ojson msgs = parse_ordered_json(s, "fuzz");
    for (const char* mode : {"chat", "thinking"}) {
      EncodeOptions o;
      o.thinking_mode = mode;
      o.reasoning_effort = "max";
      o.drop_thinking = size % 2 == 0;
      try {
        (void)encode_messages(msgs, o);
      } catch (const v4::InputError&) {
      }
    }
  } catch (const v4::InputError&) {
  }
  return 0;
}
