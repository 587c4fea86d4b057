// Python-compatible serialisation of JSON values, as the official encoder (encoding_dsv4.py)
// produces them: json.dumps(v, ensure_ascii=False) with the default ", " / ": " separators, key
// order preserved (use nlohmann::ordered_json), Python float repr; and Python str()/repr() of
// JSON values for the places where the encoder formats a non-string into a template.
#pragma once
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace v4::text {

using ojson = nlohmann::ordered_json;

// json.dumps(v, ensure_ascii=False).
std::string py_json_dumps(const ojson& v);
void py_json_dumps_into(const ojson& v, std::string& out);
// JSON string literal of s as json.dumps(s, ensure_ascii=False) writes it (with quotes).
std::string py_json_string(std::string_view s);
void py_json_escape_into(std::string_view s, std::string& out);  // without quotes
// Python repr() of a float (shortest round trip; "1.0", "1e-05", "1.5e+300", "inf", "nan").
std::string py_float_repr(double d);
// Python str(v) of the value json.loads would produce: strings as-is, None/True/False, ints,
// float repr, and repr() of lists/dicts ({'k': 'v'}).
std::string py_str(const ojson& v);
// Python truthiness: null, false, 0, 0.0, "", [] and {} are false.
bool py_truthy(const ojson& v);

// Parses JSON text into ordered_json (key order kept, duplicate keys: last value wins at the
// first position, like Python dicts). Throws v4::InputError with the parser's message.
ojson parse_ordered_json(std::string_view text, const std::string& what);

}  // namespace v4::text
