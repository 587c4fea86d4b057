#include "text/py_json.h"

#include <charconv>
#include <cmath>
#include <cstdio>

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

void py_json_dumps_into(const ojson& v, std::string& out) {
  switch (v.type()) {
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
    case ojson::value_t::array: {
      out += '[';
      bool first = true;
      for (const auto& e : v) {
        if (!first) out += ", ";
        first = false;
        py_json_dumps_into(e, out);
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
        out += '"';
        py_json_escape_into(it.key(), out);
        out += "\": ";
        py_json_dumps_into(it.value(), out);
      }
      out += '}';
      break;
    }
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
    case ojson::value_t::number_float: return v.get<double>() != 0.0;
    case ojson::value_t::string: return !v.get_ref<const std::string&>().empty();
    case ojson::value_t::array:
    case ojson::value_t::object: return !v.empty();
    default: return true;
  }
}

ojson parse_ordered_json(std::string_view text, const std::string& what) {
  try {
    return ojson::parse(text.begin(), text.end());
  } catch (const ojson::exception& e) {
    throw InputError(what + " is not valid JSON: " + e.what());
  }
}

}  // namespace v4::text
