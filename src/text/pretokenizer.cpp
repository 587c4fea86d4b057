#include "text/pretokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "core/error.h"
#include "text/unicode_compat.h"

namespace v4::text {

namespace {
pcre2_code* compile(const std::string& pattern, uint32_t extra) {
  int err = 0;
  PCRE2_SIZE off = 0;
  uint32_t flags = PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF | extra;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), flags,
                                   &err, &off, nullptr);
  if (!code) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    throw InputError("tokenizer regex does not compile at offset " + std::to_string(off) + ": " +
                     reinterpret_cast<const char*>(msg));
  }
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter if JIT is absent
  return code;
}

// Per-thread match data, grown on demand.
pcre2_match_data* match_data() {
  thread_local struct Holder {
    pcre2_match_data* md = pcre2_match_data_create(8, nullptr);
    ~Holder() { pcre2_match_data_free(md); }
  } h;
  return h.md;
}

// GPT-2's pre-tokenizer pattern, used by ByteLevel when use_regex is true.
const char* kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

std::string escape_literal(const std::string& s) {
  std::string out = "\\Q";
  for (size_t i = 0; i < s.size(); ++i) {
    if (s.compare(i, 2, "\\E") == 0) {
      out += "\\E\\\\E\\Q";
      ++i;
    } else {
      out += s[i];
    }
  }
  return out + "\\E";
}
}  // namespace

Regex::Regex(const std::string& pattern) : pattern_(widen_unicode_classes(pattern)) {
  code_ = compile(pattern_, 0);
}

Regex::~Regex() {
  pcre2_code_free(static_cast<pcre2_code*>(code_));
  if (full_code_) pcre2_code_free(static_cast<pcre2_code*>(full_code_));
}

bool Regex::find(std::string_view s, size_t start, size_t& b, size_t& e) const {
  pcre2_match_data* md = match_data();
  int rc = pcre2_match(static_cast<pcre2_code*>(code_), reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), start,
                       0, md, nullptr);
  if (rc < 0) return false;
  PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
  b = ov[0];
  e = ov[1];
  return true;
}

bool Regex::full_match(std::string_view s) const {
  if (!full_code_) {
    auto* self = const_cast<Regex*>(this);
    self->full_code_ = compile("(?:" + pattern_ + ")", PCRE2_ANCHORED | PCRE2_ENDANCHORED);
  }
  int rc = pcre2_match(static_cast<pcre2_code*>(full_code_), reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), 0,
                       0, match_data(), nullptr);
  return rc >= 0;
}

PreTokenizer::PreTokenizer(const nlohmann::json& config) {
  if (!config.is_null()) add(config);
}
PreTokenizer::~PreTokenizer() = default;

void PreTokenizer::add(const nlohmann::json& cfg) {
  std::string type = cfg.value("type", "");
  if (type == "Sequence") {
    for (const auto& c : cfg.at("pretokenizers")) add(c);
  } else if (type == "Split") {
    std::string pattern;
    const auto& pat = cfg.at("pattern");
    if (pat.contains("Regex")) pattern = pat.at("Regex").get<std::string>();
    else if (pat.contains("String")) pattern = escape_literal(pat.at("String").get<std::string>());
    else throw InputError("tokenizer.json: Split pattern must be Regex or String");
    if (cfg.value("invert", false)) throw InputError("tokenizer.json: Split with invert=true is not supported");
    std::string beh = cfg.value("behavior", "Isolated");
    Behavior b;
    if (beh == "Isolated") b = Behavior::Isolated;
    else if (beh == "Removed") b = Behavior::Removed;
    else if (beh == "MergedWithPrevious") b = Behavior::MergedWithPrevious;
    else if (beh == "MergedWithNext") b = Behavior::MergedWithNext;
    else throw InputError("tokenizer.json: Split behavior '" + beh + "' is not supported");
    steps_.push_back({std::make_unique<Regex>(pattern), b});
  } else if (type == "ByteLevel") {
    add_prefix_space_ = cfg.value("add_prefix_space", false);
    if (cfg.value("use_regex", true))
      steps_.push_back({std::make_unique<Regex>(kGpt2Pattern), Behavior::Isolated});
  } else {
    throw InputError("tokenizer.json: pre_tokenizer type '" + type + "' is not supported");
  }
}

void PreTokenizer::split(std::string_view text, std::vector<std::string_view>& words) const {
  words.clear();
  if (text.empty()) return;
  words.push_back(text);
  std::vector<std::string_view> next;
  for (const auto& step : steps_) {
    next.clear();
    next.reserve(words.size() * 2);
    for (std::string_view w : words) {
      size_t last = 0;
      const size_t first_of_word = next.size();
      size_t pending_start = std::string_view::npos;  // for MergedWithNext
      auto emit = [&](size_t b, size_t e, bool is_match) {
        if (b == e) return;
        switch (step.behavior) {
          case Behavior::Isolated: next.push_back(w.substr(b, e - b)); break;
          case Behavior::Removed:
            if (!is_match) next.push_back(w.substr(b, e - b));
            break;
          case Behavior::MergedWithPrevious:
            if (is_match && next.size() > first_of_word && next.back().data() + next.back().size() == w.data() + b)
              next.back() = std::string_view(next.back().data(), next.back().size() + (e - b));
            else next.push_back(w.substr(b, e - b));
            break;
          case Behavior::MergedWithNext:
            if (is_match) {
              if (pending_start == std::string_view::npos) pending_start = b;
            } else {
              size_t s = pending_start == std::string_view::npos ? b : pending_start;
              next.push_back(w.substr(s, e - s));
              pending_start = std::string_view::npos;
            }
            break;
        }
      };
      step.re->for_each_match(w, [&](size_t b, size_t e) {
        emit(last, b, false);
        emit(b, e, true);
        last = e;
      });
      emit(last, w.size(), false);
      if (pending_start != std::string_view::npos) next.push_back(w.substr(pending_start));
    }
    words.swap(next);
  }
}

}  // namespace v4::text
