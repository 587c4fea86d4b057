// Unicode-version compatibility for pre-tokenizer regexes.
//
// The production reference (Hugging Face `tokenizers`, Oniguruma) classifies code points with
// Unicode 16 tables; Debian 12's PCRE2 10.42 knows Unicode 14, so it sees the ~10,400 code points
// assigned in Unicode 15.0, 15.1 and 16.0 as unassigned (Cn). Left alone, text containing them
// (new CJK extension H/I ideographs, new emoji, Kaktovik numerals, Garay, Todhri, ...) would
// pre-tokenize differently from production. We rewrite a pattern's `\p{L|M|N|P|S}` classes to add
// those code points from our own table, and make `\s` exclude U+180E (PCRE2 still counts MONGOLIAN
// VOWEL SEPARATOR as space; Oniguruma does not). Code points first assigned in Unicode 17 are
// unassigned for the reference as well, so they need nothing.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace v4::text {

struct CodeRange {
  uint32_t lo, hi;  // inclusive
};

// Code points that are Cn for PCRE2 10.42 but belong to general category `cat` ('L','M','N','P','S')
// for the reference tokenizer. Empty span for other categories.
std::span<const CodeRange> unicode_added_ranges(char cat);

// Returns `pattern` with \p{X}/\pX (X in L,M,N,P,S; also inside [...]) widened by
// unicode_added_ranges(X), and \s / \S (outside [...]) adjusted for U+180E. Other constructs are
// copied unchanged.
std::string widen_unicode_classes(std::string_view pattern);

}  // namespace v4::text
