// UTF-8 helpers shared by the text layer: validation, lossy repair, incomplete-tail detection.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace v4::text {

// Length of the well-formed UTF-8 sequence starting at s[i] (1..4), or 0 if the bytes there do not
// start a complete, well-formed sequence (invalid or truncated).
size_t utf8_seq_len(std::string_view s, size_t i);

// True if s is entirely well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF).
bool utf8_valid(std::string_view s);

// Number of trailing bytes of s that form a proper prefix of a well-formed sequence (0..3), i.e.
// bytes that might still become valid when more input arrives.
size_t utf8_incomplete_tail(std::string_view s);

// Replaces every ill-formed subsequence with U+FFFD using the "maximal subpart" rule of the
// Unicode standard (the WHATWG/Node decoder does the same), so the output is valid UTF-8.
std::string utf8_lossy(std::string_view s);

// Appends the UTF-8 encoding of code point cp (must be a scalar value).
void utf8_append(std::string& out, uint32_t cp);

// Decodes the code point at s[i] (which must start a well-formed sequence of length n).
uint32_t utf8_decode_at(std::string_view s, size_t i, size_t n);

// Number of code points in a valid UTF-8 string (ill-formed bytes count one each).
size_t utf8_length(std::string_view s);

}  // namespace v4::text
