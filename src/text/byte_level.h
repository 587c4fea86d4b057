// GPT-2 style byte-level alphabet used by byte-level BPE vocabularies (HF `ByteLevel`):
// every byte maps to one printable code point, so any byte string is representable.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace v4::text {

// The code point that stands for byte b in byte-level token strings.
uint32_t byte_to_char(uint8_t b);
// The byte that code point cp stands for, if cp is in the byte-level alphabet.
std::optional<uint8_t> char_to_byte(uint32_t cp);
// Raw bytes -> byte-level string (UTF-8).
std::string bytes_to_byte_level(std::string_view raw);
// Byte-level string -> raw bytes; nullopt if any character is outside the alphabet or the input
// is not valid UTF-8.
std::optional<std::string> byte_level_to_bytes(std::string_view s);

}  // namespace v4::text
