// Tokenizer fuzzer: any bytes encode, decode back exactly, and stream-decode to valid UTF-8.
// Uses the V4 tokenizer built from the npm V3 file (V4HOST_V3_TOKENIZER or tests/node), else a
// small synthetic byte-level tokenizer with a few merges and added tokens.
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "text/tokenizer.h"
#include "text/tokenizer_builder.h"
#include "text/byte_level.h"
#include "text/utf8.h"

using namespace v4::text;

namespace {
std::string synthetic_tokenizer() {
  std::string vocab, merges;
  int id = 0;
  auto q = [](const std::string& s) {
    std::string o = "\"";
    for (char c : s) {
      if (c == '"' || c == '\\') o += '\\';
      o += c;
    }
    return o + "\"";
  };
  for (int b = 0; b < 256; ++b) vocab += (b ? "," : "") + q(bytes_to_byte_level(std::string(1, char(b)))) + ":" + std::to_string(id++);
  const char* pairs[][2] = {{"a", "b"}, {"ab", "c"}, {"Ġ", "t"}, {"t", "h"}, {"Ġt", "h"}, {"e", "r"}};
  for (auto& p : pairs) {
    vocab += "," + q(std::string(p[0]) + p[1]) + ":" + std::to_string(id++);
    merges += std::string(merges.empty() ? "" : ",") + q(std::string(p[0]) + " " + p[1]);
  }
  std::string pre = R"({"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":"\\p{N}{1,3}"},"behavior":"Isolated","invert":false},{"type":"Split","pattern":{"Regex":"[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},"behavior":"Isolated","invert":false},{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":false}]})";
  return R"({"added_tokens":[{"id":300,"content":"<｜User｜>","special":true,"normalized":false},{"id":301,"content":"｜DSML｜","special":true,"normalized":false},{"id":302,"content":"<think>","special":false,"normalized":true}],"normalizer":null,"pre_tokenizer":)" +
         pre + R"(,"model":{"type":"BPE","vocab":{)" + vocab + R"(},"merges":[)" + merges + "]}}";
}

const Tokenizer& tok() {
  static std::unique_ptr<Tokenizer> t = [] {
    std::string v3 = find_v3_tokenizer_json();
    if (!v3.empty()) return Tokenizer::from_json(build_v4_tokenizer_json(v3));
    return Tokenizer::from_json(synthetic_tokenizer());
  }();
  return *t;
}
}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  (void)tok();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string s(reinterpret_cast<const char*>(data), size);
  const Tokenizer& t = tok();
  auto ids = t.encode(s);
  if (t.decode(ids) != s) std::abort();
  StreamDecoder sd(t);
  std::string acc;
  for (int32_t id : ids) {
    std::string piece = sd.push(id);
    if (!utf8_valid(piece)) std::abort();
    acc += piece;
  }
  acc += sd.finish();
  if (!utf8_valid(acc)) std::abort();
  if (utf8_valid(s) && acc != s) std::abort();
  return 0;
}
