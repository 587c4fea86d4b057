// Pre-tokenizer of HF tokenizer.json files: splits text into words before BPE.
// Supported: `Sequence` of `Split` (Regex or String pattern; behaviours Isolated, Removed,
// MergedWithPrevious, MergedWithNext; invert=false) and `ByteLevel` (add_prefix_space, use_regex
// with the GPT-2 pattern). Regexes run on PCRE2 (UTF + UCP + JIT) after widen_unicode_classes(), and
// with PCRE2_MATCH_INVALID_UTF so that arbitrary bytes are accepted: ill-formed UTF-8 never matches
// a class and ends up in its own pieces, which byte-level BPE then encodes byte by byte.
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace v4::text {

// A compiled PCRE2 regex (UTF, UCP, invalid-UTF tolerant, JIT when available).
class Regex {
 public:
  explicit Regex(const std::string& pattern);  // throws InputError with PCRE2's message
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
  // Calls f(begin, end) for each non-overlapping match in s, left to right.
  template <class F>
  void for_each_match(std::string_view s, F&& f) const;
  // True if the whole of s matches (anchored both ends).
  bool full_match(std::string_view s) const;
  // First match at or after `start`; returns false if none. Offsets are into s.
  bool find(std::string_view s, size_t start, size_t& mbegin, size_t& mend) const;

 private:
  void* code_ = nullptr;        // pcre2_code*
  void* full_code_ = nullptr;   // anchored variant for full_match, compiled lazily
  std::string pattern_;
};

template <class F>
void Regex::for_each_match(std::string_view s, F&& f) const {
  size_t pos = 0, b = 0, e = 0;
  while (pos <= s.size() && find(s, pos, b, e)) {
    if (e == b) {  // empty match: skip one byte (patterns we use never match empty)
      pos = b + 1;
      continue;
    }
    f(b, e);
    pos = e;
  }
}

class PreTokenizer {
 public:
  // Builds from the "pre_tokenizer" object of tokenizer.json (null = whole text is one word).
  explicit PreTokenizer(const nlohmann::json& config);
  ~PreTokenizer();
  // Splits `text` into words (views into `text`), in order; concatenation of the words equals
  // `text` minus anything a `Removed` split drops.
  void split(std::string_view text, std::vector<std::string_view>& words) const;
  // Whether the final ByteLevel step asks for a prefix space (add_prefix_space).
  bool add_prefix_space() const { return add_prefix_space_; }

 private:
  enum class Behavior { Isolated, Removed, MergedWithPrevious, MergedWithNext };
  struct Step {
    std::unique_ptr<Regex> re;
    Behavior behavior;
  };
  void add(const nlohmann::json& cfg);
  std::vector<Step> steps_;
  bool add_prefix_space_ = false;
};

}  // namespace v4::text
