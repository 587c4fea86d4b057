#include "text/byte_level.h"

#include <array>

#include "text/utf8.h"

namespace v4::text {

namespace {
struct Tables {
  std::array<uint32_t, 256> to_char{};
  Tables() {
    // Printable bytes keep their own code point; the other 68 bytes map to 256, 257, ... in order.
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      to_char[b] = printable ? static_cast<uint32_t>(b) : next++;
    }
  }
};
const Tables& tables() {
  static const Tables t;
  return t;
}
}  // namespace

uint32_t byte_to_char(uint8_t b) { return tables().to_char[b]; }

std::optional<uint8_t> char_to_byte(uint32_t cp) {
  if (cp < 256) {
    bool printable = (cp >= 0x21 && cp <= 0x7E) || (cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE && cp <= 0xFF);
    if (printable) return static_cast<uint8_t>(cp);
    return std::nullopt;
  }
  if (cp < 256 + 68) {
    // Inverse of the sequential numbering of the non-printable bytes.
    uint32_t k = cp - 256;
    for (int b = 0; b < 256; ++b)
      if (tables().to_char[b] == 256 + k) return static_cast<uint8_t>(b);
  }
  return std::nullopt;
}

std::string bytes_to_byte_level(std::string_view raw) {
  std::string out;
  out.reserve(raw.size() * 2);
  for (unsigned char c : raw) utf8_append(out, byte_to_char(c));
  return out;
}

std::optional<std::string> byte_level_to_bytes(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    size_t n = utf8_seq_len(s, i);
    if (n == 0) return std::nullopt;
    auto b = char_to_byte(utf8_decode_at(s, i, n));
    if (!b) return std::nullopt;
    out += static_cast<char>(*b);
    i += n;
  }
  return out;
}

}  // namespace v4::text
