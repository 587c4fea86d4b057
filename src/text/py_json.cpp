#include "text/py_json.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "core/error.h"
#include "text/utf8.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

namespace v4::text {

void py_json_escape_into(std::string_view s, std::string& out) {
  for (char ch : s) {
    unsigned char c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += ch;
        }
    }
  }
}

std::string py_json_string(std::string_view s) {
  std::string out = "\"";
  py_json_escape_into(s, out);
  out += '"';
  return out;
}

std::string py_float_repr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  if (d == 0) return std::signbit(d) ? "-0.0" : "0.0";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  std::string sci(buf, res.ptr);
  // sci = [-]d[.ddd]e[+-]XX
  bool neg = sci[0] == '-';
  if (neg) sci.erase(0, 1);
  size_t epos = sci.find('e');
  int exp = std::stoi(sci.substr(epos + 1));
  std::string digits;
  for (size_t i = 0; i < epos; ++i)
    if (sci[i] != '.') digits += sci[i];
  std::string out = neg ? "-" : "";
  if (exp < -4 || exp >= 16) {
    out += digits[0];
    if (digits.size() > 1) out += "." + digits.substr(1);
    char eb[16];
    std::snprintf(eb, sizeof eb, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    out += eb;
  } else if (exp < 0) {
    out += "0." + std::string(static_cast<size_t>(-exp - 1), '0') + digits;
  } else {
    size_t intlen = static_cast<size_t>(exp) + 1;
    if (digits.size() <= intlen) {
      out += digits + std::string(intlen - digits.size(), '0') + ".0";
    } else {
      out += digits.substr(0, intlen) + "." + digits.substr(intlen);
    }
  }
  return out;
}

bool is_big_integer(const ojson& v) {
  return v.is_binary() && v.get_binary().has_subtype() && v.get_binary().subtype() == kBigIntegerSubtype;
}

std::string big_integer_text(const ojson& v) {
  if (!is_big_integer(v)) return "";
  const auto& b = v.get_binary();
  return std::string(b.begin(), b.end());
}

ojson make_big_integer(std::string_view d) {
  size_t i = !d.empty() && d[0] == '-' ? 1 : 0;
  bool ok = d.size() > i && d[i] >= '1' && d[i] <= '9';
  for (size_t k = i; ok && k < d.size(); ++k) ok = d[k] >= '0' && d[k] <= '9';
  if (!ok) throw InputError("not a decimal integer: '" + std::string(d) + "'");
  return ojson::binary(std::vector<std::uint8_t>(d.begin(), d.end()), kBigIntegerSubtype);
}

namespace {
// Arrays and objects are written alike by both writers below (Python json.dumps and the compact
// exact form); only the item separator, the key quoting and the writer used for members differ.
template <class WriteKey, class WriteValue>
void dump_container_into(const ojson& v, std::string& out, std::string_view sep, WriteKey write_key, WriteValue write_value) {
  const bool object = v.is_object();
  out += object ? '{' : '[';
  bool first = true;
  for (auto it = v.begin(); it != v.end(); ++it) {
    if (!first) out += sep;
    first = false;
    if (object) write_key(it.key(), out);
    write_value(it.value(), out);
  }
  out += object ? '}' : ']';
}
}  // namespace

void py_json_dumps_into(const ojson& v, std::string& out) {
  switch (v.type()) {
    case ojson::value_t::binary:
      if (!is_big_integer(v)) throw InputError("unsupported JSON value (binary)");
      out += big_integer_text(v);  // Python: str(int), exact
      break;
    case ojson::value_t::null: out += "null"; break;
    case ojson::value_t::boolean: out += v.get<bool>() ? "true" : "false"; break;
    case ojson::value_t::number_integer: out += std::to_string(v.get<int64_t>()); break;
    case ojson::value_t::number_unsigned: out += std::to_string(v.get<uint64_t>()); break;
    case ojson::value_t::number_float: {
      double d = v.get<double>();
      if (std::isnan(d)) out += "NaN";
      else if (std::isinf(d)) out += d > 0 ? "Infinity" : "-Infinity";
      else out += py_float_repr(d);
      break;
    }
    case ojson::value_t::string:
      out += '"';
      py_json_escape_into(v.get_ref<const std::string&>(), out);
      out += '"';
      break;
    case ojson::value_t::array:
    case ojson::value_t::object:
      dump_container_into(v, out, ", ", [](const std::string& key, std::string& o) {
        o += '"';
        py_json_escape_into(key, o);
        o += "\": ";
      }, py_json_dumps_into);
      break;
    default: throw InputError("unsupported JSON value (binary/discarded)");
  }
}

std::string py_json_dumps(const ojson& v) {
  std::string out;
  py_json_dumps_into(v, out);
  return out;
}

namespace {
// Python's str.isprintable() per character: false for categories Cc, Cf, Cs, Co, Cn, Zl, Zp and
// Zs other than the ASCII space. Uses PCRE2's Unicode tables.
bool py_printable(uint32_t cp) {
  if (cp == ' ') return true;
  if (cp < 0x7F) return cp >= 0x20;
  static pcre2_code* re = [] {
    int err;
    PCRE2_SIZE off;
    return pcre2_compile(reinterpret_cast<PCRE2_SPTR>("^[\\p{C}\\p{Z}]$"), PCRE2_ZERO_TERMINATED,
                         PCRE2_UTF | PCRE2_UCP, &err, &off, nullptr);
  }();
  thread_local pcre2_match_data* md = pcre2_match_data_create(1, nullptr);
  std::string s;
  utf8_append(s, cp);
  return pcre2_match(re, reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), 0, 0, md, nullptr) < 0;
}

void py_repr_str(std::string_view s, std::string& out) {
  bool has_sq = s.find('\'') != std::string_view::npos, has_dq = s.find('"') != std::string_view::npos;
  char q = (has_sq && !has_dq) ? '"' : '\'';
  out += q;
  for (size_t i = 0; i < s.size();) {
    size_t n = utf8_seq_len(s, i);
    if (n == 0) n = 1;  // cannot happen for parsed JSON strings
    uint32_t c = utf8_decode_at(s, i, n);
    char buf[16];
    if (c == static_cast<uint32_t>(q) || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\t') out += "\\t";
    else if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else if (!py_printable(c)) {
      if (c < 0x100) std::snprintf(buf, sizeof buf, "\\x%02x", c);
      else if (c < 0x10000) std::snprintf(buf, sizeof buf, "\\u%04x", c);
      else std::snprintf(buf, sizeof buf, "\\U%08x", c);
      out += buf;
    } else {
      out.append(s.substr(i, n));
    }
    i += n;
  }
  out += q;
}

void py_repr_into(const ojson& v, std::string& out) {
  switch (v.type()) {
    case ojson::value_t::null: out += "None"; break;
    case ojson::value_t::boolean: out += v.get<bool>() ? "True" : "False"; break;
    case ojson::value_t::string: py_repr_str(v.get_ref<const std::string&>(), out); break;
    case ojson::value_t::array: {
      out += '[';
      bool first = true;
      for (const auto& e : v) {
        if (!first) out += ", ";
        first = false;
        py_repr_into(e, out);
      }
      out += ']';
      break;
    }
    case ojson::value_t::object: {
      out += '{';
      bool first = true;
      for (auto it = v.begin(); it != v.end(); ++it) {
        if (!first) out += ", ";
        first = false;
        py_repr_str(it.key(), out);
        out += ": ";
        py_repr_into(it.value(), out);
      }
      out += '}';
      break;
    }
    case ojson::value_t::number_float: out += py_float_repr(v.get<double>()); break;
    default: py_json_dumps_into(v, out);  // integers
  }
}
}  // namespace

std::string py_str(const ojson& v) {
  if (v.is_string()) return v.get<std::string>();
  std::string out;
  py_repr_into(v, out);
  return out;
}

bool py_truthy(const ojson& v) {
  switch (v.type()) {
    case ojson::value_t::null: return false;
    case ojson::value_t::boolean: return v.get<bool>();
    case ojson::value_t::number_integer: return v.get<int64_t>() != 0;
    case ojson::value_t::number_unsigned: return v.get<uint64_t>() != 0;
    case ojson::value_t::binary: return !is_big_integer(v) || big_integer_text(v) != "0";
    case ojson::value_t::number_float: return v.get<double>() != 0.0;
    case ojson::value_t::string: return !v.get_ref<const std::string&>().empty();
    case ojson::value_t::array:
    case ojson::value_t::object: return !v.empty();
    default: return true;
  }
}

namespace {

// Builds the DOM like nlohmann's own parser (ordered keys, a repeated key overwrites in place,
// as a Python dict does), except for numbers: an integer literal outside 64 bits becomes a big
// integer, and a stand-in string for a number too large for a double (see parse_json_exact)
// becomes that number.
class ExactSax : public nlohmann::json_sax<ojson> {
 public:
  explicit ExactSax(const std::vector<std::string>* overflow) : overflow_(overflow) {}
  ojson root;
  std::string error;

  bool null() override { return put(ojson(nullptr)); }
  bool boolean(bool b) override { return put(ojson(b)); }
  bool number_integer(number_integer_t v) override { return put(ojson(v)); }
  bool number_unsigned(number_unsigned_t v) override { return put(ojson(v)); }
  bool number_float(number_float_t v, const string_t& text) override {
    if (text.find_first_of(".eE") == string_t::npos) return put(make_big_integer(text));
    return put(ojson(v));
  }
  bool string(string_t& s) override {
    // A stand-in exists only once a literal was swapped out; a client's own string that merely
    // starts like one (a NUL is writable as \u0000) stays a string and must never throw.
    if (overflow_ && !overflow_->empty() && s.size() > kMarker.size() && s.compare(0, kMarker.size(), kMarker) == 0) {
      size_t k = 0;
      const char* b = s.data() + kMarker.size();
      const char* e = s.data() + s.size();
      auto [end, ec] = std::from_chars(b, e, k);
      if (ec == std::errc() && end == e && k < overflow_->size()) {
        const std::string& t = (*overflow_)[k];
        if (t.find_first_of(".eE") == std::string::npos) return put(make_big_integer(t));
        return put(ojson(t[0] == '-' ? -HUGE_VAL : HUGE_VAL));  // Python: float('1e400') = inf
      }
    }
    return put(ojson(std::move(s)));
  }
  bool binary(binary_t& b) override { return put(ojson::binary(std::move(b))); }
  bool start_object(std::size_t) override { return open(ojson::object()); }
  bool key(string_t& k) override {
    key_ = std::move(k);
    return true;
  }
  bool end_object() override { return close(); }
  bool start_array(std::size_t) override { return open(ojson::array()); }
  bool end_array() override { return close(); }
  bool parse_error(std::size_t pos, const std::string& token, const nlohmann::detail::exception& e) override {
    error = e.what();
    error_id = e.id;
    error_pos = pos;
    error_token = token;
    return false;
  }
  int error_id = 0;
  size_t error_pos = 0;
  std::string error_token;

  static inline const std::string kMarker = std::string("\0v4num:", 7);

 private:
  bool put(ojson v) {
    insert(std::move(v));
    return true;
  }
  ojson* insert(ojson v) {
    if (stack_.empty()) {
      root = std::move(v);
      return &root;
    }
    ojson& top = *stack_.back();
    if (top.is_array()) {
      top.push_back(std::move(v));
      return &top.back();
    }
    ojson& slot = top[key_];
    slot = std::move(v);
    return &slot;
  }
  bool open(ojson v) {
    stack_.push_back(insert(std::move(v)));
    return true;
  }
  bool close() {
    stack_.pop_back();
    return true;
  }
  // Only the open containers along the current path are held: none of them grows while a
  // descendant is open, so the pointers stay valid.
  std::vector<ojson*> stack_;
  std::string key_;
  const std::vector<std::string>* overflow_;
};

}  // namespace

ojson parse_json_exact(std::string_view text, const std::string& what) {
  // nlohmann refuses a number literal that overflows a double ("number overflow", id 406), which
  // is how it sees integers of more than ~309 digits and floats like 1e400; Python reads both.
  // Such a literal is swapped for a stand-in string and the text parsed again (bounded).
  std::string work;
  std::string_view cur = text;
  std::vector<std::string> overflow;
  for (int attempt = 0;; ++attempt) {
    ExactSax sax(&overflow);
    bool ok = false;
    try {
      ok = ojson::sax_parse(cur.begin(), cur.end(), &sax);
    } catch (const ojson::exception& e) {
      throw InputError(what + " is not valid JSON: " + e.what());
    }
    if (ok) return std::move(sax.root);
    const std::string& tok = sax.error_token;
    size_t at = std::string_view::npos;
    // The stand-in is a string NUL + "v4num:k"; a NUL can only be written as \u0000 in JSON
    // text, so a text without that sequence cannot hold a string equal to a stand-in.
    if (sax.error_id == 406 && attempt < 64 && !tok.empty() && text.find("\\u0000v4num:") == std::string_view::npos) {
      // The lexer stopped just after the token (position counts the look-ahead character).
      for (size_t back : {tok.size(), tok.size() + 1})
        if (sax.error_pos >= back && cur.substr(sax.error_pos - back, tok.size()) == tok) {
          at = sax.error_pos - back;
          break;
        }
    }
    if (at == std::string_view::npos) throw InputError(what + " is not valid JSON: " + sax.error);
    std::string next(cur.substr(0, at));
    next += "\"\\u0000v4num:" + std::to_string(overflow.size()) + "\"";
    next += cur.substr(at + tok.size());
    overflow.push_back(tok);
    work = std::move(next);
    cur = work;
  }
}

ojson parse_ordered_json(std::string_view text, const std::string& what) { return parse_json_exact(text, what); }

bool contains_big_integer(const ojson& v) {
  switch (v.type()) {
    case ojson::value_t::binary: return is_big_integer(v);
    case ojson::value_t::array:
    case ojson::value_t::object:
      for (const auto& e : v)
        if (contains_big_integer(e)) return true;
      return false;
    default: return false;
  }
}

std::optional<double> number_value(const ojson& v) {
  if (v.is_number()) return v.get<double>();
  if (is_big_integer(v)) return std::strtod(big_integer_text(v).c_str(), nullptr);  // +-HUGE_VAL past range
  return std::nullopt;
}

namespace {
void dump_exact_into(const ojson& v, std::string& out) {
  // Subtrees without a big integer go to nlohmann's serialiser whole (the common case: one
  // check, then the library's dump); only the path down to a big integer is walked here.
  if (!contains_big_integer(v)) {
    out += v.dump(-1, ' ', false, ojson::error_handler_t::replace);
    return;
  }
  switch (v.type()) {
    case ojson::value_t::array:
    case ojson::value_t::object:
      dump_container_into(v, out, ",", [](const std::string& key, std::string& o) {
        o += ojson(key).dump();
        o += ':';
      }, dump_exact_into);
      break;
    case ojson::value_t::binary:
      if (is_big_integer(v)) {
        out += big_integer_text(v);
        break;
      }
      [[fallthrough]];
    default: out += v.dump(-1, ' ', false, ojson::error_handler_t::replace);
  }
}
}  // namespace

std::string json_dump_exact(const ojson& v) {
  std::string out;
  dump_exact_into(v, out);
  return out;
}

}  // namespace v4::text
