// Internal to src/protocol: typed reads of request fields that throw ProtocolError naming the
// field, shared by the dialect parsers.
#pragma once
#include <string>

#include "protocol/types.h"

namespace v4::protocol::fields {

inline bool present(const ojson& o, const char* k) { return o.is_object() && o.contains(k) && !o[k].is_null(); }

inline std::string join(const std::string& where, const std::string& k) { return where.empty() ? k : where + "." + k; }

inline std::string at(const std::string& where, size_t i) { return where + "[" + std::to_string(i) + "]"; }

inline const std::string& str(const ojson& o, const char* k, const std::string& where = "") {
  const ojson& v = o[k];
  if (!v.is_string()) throw ProtocolError(join(where, k), "'" + join(where, k) + "' must be a string");
  return v.get_ref<const std::string&>();
}

inline std::string str_or(const ojson& o, const char* k, const std::string& dflt, const std::string& where = "") {
  return present(o, k) ? str(o, k, where) : dflt;
}

inline double number(const ojson& o, const char* k, double lo, double hi, const std::string& where = "") {
  const ojson& v = o[k];
  const std::string name = join(where, k);
  if (!v.is_number()) throw ProtocolError(name, "'" + name + "' must be a number");
  double d = v.get<double>();
  if (!(d >= lo && d <= hi))
    throw ProtocolError(name, "'" + name + "' must be between " + ojson(lo).dump() + " and " + ojson(hi).dump());
  return d;
}

inline int64_t integer(const ojson& o, const char* k, int64_t lo, int64_t hi, const std::string& where = "") {
  const ojson& v = o[k];
  const std::string name = join(where, k);
  if (!v.is_number_integer()) throw ProtocolError(name, "'" + name + "' must be an integer");
  if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
    throw ProtocolError(name, "'" + name + "' must be between " + std::to_string(lo) + " and " + std::to_string(hi));
  int64_t d = v.get<int64_t>();
  if (d < lo || d > hi)
    throw ProtocolError(name, "'" + name + "' must be between " + std::to_string(lo) + " and " + std::to_string(hi));
  return d;
}

inline bool boolean(const ojson& o, const char* k, const std::string& where = "") {
  const ojson& v = o[k];
  const std::string name = join(where, k);
  if (!v.is_boolean()) throw ProtocolError(name, "'" + name + "' must be a boolean");
  return v.get<bool>();
}

inline const ojson& object(const ojson& o, const char* k, const std::string& where = "") {
  const ojson& v = o[k];
  const std::string name = join(where, k);
  if (!v.is_object()) throw ProtocolError(name, "'" + name + "' must be an object");
  return v;
}

inline const ojson& array(const ojson& o, const char* k, const std::string& where = "") {
  const ojson& v = o[k];
  const std::string name = join(where, k);
  if (!v.is_array()) throw ProtocolError(name, "'" + name + "' must be an array");
  return v;
}

// `metadata`: an object of string values, as the OpenAI and Anthropic APIs require (OpenAI also
// caps it at 16 pairs, keys of 64 and values of 512 characters). Checked rather than copied
// as given, because it is echoed back and forwarded: a value such as a big integer would be
// re-emitted as nlohmann's binary form (see text/py_json.h) and 1e400 as null.
inline ojson metadata(const ojson& o, const char* k = "metadata") {
  const ojson& m = object(o, k);
  if (m.size() > 16) throw ProtocolError(k, std::string("'") + k + "' may hold at most 16 pairs");
  for (const auto& [key, v] : m.items()) {
    const std::string name = join(k, key);
    if (key.size() > 64) throw ProtocolError(name, "metadata keys may be at most 64 characters");
    if (!v.is_string() && !v.is_null()) throw ProtocolError(name, "'" + name + "' must be a string");
    if (v.is_string() && v.get_ref<const std::string&>().size() > 512)
      throw ProtocolError(name, "'" + name + "' may be at most 512 characters");
  }
  return m;
}

// An upstream's malformed answer (router side): 502.
[[noreturn]] inline void bad_upstream(const std::string& where, const std::string& what) {
  throw ProtocolError(where, "upstream response: " + what, 502, "bad_upstream_response");
}

// JSON text of a tool-call's arguments: a string as given, anything else serialised.
inline std::string arguments_text(const ojson& a) {
  if (a.is_null()) return "{}";
  return a.is_string() ? a.get<std::string>() : a.dump();
}

// Parses `text` as JSON, or null when it is not JSON.
inline ojson try_parse(const std::string& text) {
  try {
    return ojson::parse(text);
  } catch (const ojson::exception&) {
    return nullptr;
  }
}

}  // namespace v4::protocol::fields
