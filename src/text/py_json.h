// Python-compatible serialisation of JSON values, as the official encoder (encoding_dsv4.py)
// produces them: json.dumps(v, ensure_ascii=False) with the default ", " / ": " separators, key
// order preserved (use nlohmann::ordered_json), Python float repr; and Python str()/repr() of
// JSON values for the places where the encoder formats a non-string into a template.
#pragma once
#include <cstdint>
#include <optional>
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
// first position, like Python dicts) with the numbers json.loads would give: integers of any
// size exactly (see big integers below), floats as doubles, and a float literal too large for
// a double (1e400) as +-inf where nlohmann would refuse it. Throws v4::InputError with the
// parser's message. Same as parse_json_exact.
ojson parse_ordered_json(std::string_view text, const std::string& what);
ojson parse_json_exact(std::string_view text, const std::string& what);

// Big integers. nlohmann keeps integers only within int64/uint64 and turns longer ones into
// doubles; Python keeps them exact. parse_json_exact stores an integer literal outside the
// 64-bit range as a binary value with subtype kBigIntegerSubtype holding its decimal text
// ("-123..."), which py_json_dumps, py_str and json_dump_exact write back digit for digit.
// (Parsed JSON never yields binary values, so the tag is unambiguous; nlohmann's own dump()
// would write it as a {"bytes": ...} object: use json_dump_exact to re-emit such values.)
inline constexpr uint64_t kBigIntegerSubtype = 0x7634'6269'6769'6e74ull;  // "v4bigint"
bool is_big_integer(const ojson& v);
std::string big_integer_text(const ojson& v);      // the decimal text; "" if not a big integer
ojson make_big_integer(std::string_view decimal);  // throws InputError unless -?[1-9][0-9]*

// Whether v holds a big integer anywhere (a walk; no allocation).
bool contains_big_integer(const ojson& v);
// A number's value as a double, a big integer's included (rounded, +-inf past the double range);
// nullopt for anything else. For reading numeric schema keywords and values the way Python does.
std::optional<double> number_value(const ojson& v);

// Compact JSON text (as nlohmann's dump(): "," ":" separators, \u-escapes only where JSON
// requires them) with big integers written exactly. For re-emitting parsed request values; a
// value without big integers is nlohmann's dump() itself.
std::string json_dump_exact(const ojson& v);

}  // namespace v4::text
