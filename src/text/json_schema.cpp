#include "text/json_schema.h"

#include <cmath>
#include <memory>
#include <optional>
#include <unordered_map>

#include "text/pretokenizer.h"
#include "text/py_json.h"
#include "text/utf8.h"

namespace v4::text {

namespace {

using J = nlohmann::ordered_json;

std::string type_name(const J& v) {
  switch (v.type()) {
    case J::value_t::null: return "null";
    case J::value_t::boolean: return "boolean";
    case J::value_t::number_integer:
    case J::value_t::number_unsigned: return "integer";
    case J::value_t::number_float: return "number";
    case J::value_t::string: return "string";
    case J::value_t::array: return "array";
    case J::value_t::object: return "object";
    case J::value_t::binary: return is_big_integer(v) ? "integer" : "unknown";
    default: return "unknown";
  }
}

bool is_type(const J& v, const std::string& t) {
  if (t == "null") return v.is_null();
  if (t == "boolean") return v.is_boolean();
  if (t == "string") return v.is_string();
  if (t == "array") return v.is_array();
  if (t == "object") return v.is_object();
  if (t == "number") return v.is_number() || is_big_integer(v);
  if (t == "integer") {
    if (v.is_number_integer() || v.is_number_unsigned() || is_big_integer(v)) return true;
    if (v.is_number_float()) {
      double d = v.get<double>();
      return std::isfinite(d) && d == std::floor(d);
    }
    return false;
  }
  return true;  // unknown type names do not constrain
}

std::string escape_pointer(const std::string& k) {
  std::string out;
  for (char c : k) {
    if (c == '~') out += "~0";
    else if (c == '/') out += "~1";
    else out += c;
  }
  return out;
}

const Regex* cached_regex(const std::string& pattern) {
  thread_local std::unordered_map<std::string, std::unique_ptr<Regex>> cache;
  auto it = cache.find(pattern);
  if (it != cache.end()) return it->second.get();
  std::unique_ptr<Regex> re;
  try {
    re = std::make_unique<Regex>(pattern);
  } catch (...) {
    re = nullptr;  // an invalid pattern in a schema does not constrain
  }
  return cache.emplace(pattern, std::move(re)).first->second.get();
}

bool regex_search(const std::string& pattern, const std::string& s) {
  const Regex* re = cached_regex(pattern);
  if (!re) return true;
  size_t b, e;
  return re->find(s, 0, b, e);
}

struct Validator {
  const J& root;
  std::vector<SchemaError>& errs;
  int depth = 0;

  void fail(const std::string& path, std::string msg) { errs.push_back({path, std::move(msg)}); }

  const J* resolve(const std::string& ref) {
    if (ref.empty() || ref[0] != '#') return nullptr;
    try {
      return &root.at(J::json_pointer(ref.substr(1)));
    } catch (...) {
      return nullptr;
    }
  }

  bool ok(const J& v, const J& s) {
    std::vector<SchemaError> tmp;
    Validator sub{root, tmp, depth};
    sub.check(v, s, "");
    return tmp.empty();
  }

  void check(const J& v, const J& s, const std::string& path) {
    if (s.is_boolean()) {
      if (!s.get<bool>()) fail(path, "no value is allowed here");
      return;
    }
    if (!s.is_object()) return;
    if (++depth > 64) {
      --depth;
      fail(path, "schema nesting too deep");
      return;
    }
    if (auto it = s.find("$ref"); it != s.end() && it->is_string()) {
      if (const J* target = resolve(it->get<std::string>())) check(v, *target, path);
    }
    if (auto it = s.find("type"); it != s.end()) {
      bool match = false;
      std::string expected;
      if (it->is_string()) {
        match = is_type(v, it->get<std::string>());
        expected = it->get<std::string>();
      } else if (it->is_array()) {
        for (const auto& t : *it) {
          if (!t.is_string()) continue;
          if (is_type(v, t.get<std::string>())) match = true;
          expected += (expected.empty() ? "" : " or ") + t.get<std::string>();
        }
      } else {
        match = true;
      }
      if (!match) {
        fail(path, "expected " + expected + ", got " + type_name(v));
        --depth;
        return;  // the other keywords would only repeat the problem
      }
    }
    if (auto it = s.find("enum"); it != s.end() && it->is_array()) {
      bool found = false;
      for (const auto& e : *it) found = found || e == v;
      if (!found) fail(path, "value " + py_json_dumps(v) + " is not one of " + py_json_dumps(*it));
    }
    if (auto it = s.find("const"); it != s.end() && *it != v) fail(path, "value must be " + py_json_dumps(*it));
    if (v.is_string()) check_string(v.get_ref<const std::string&>(), s, path);
    if (auto d = number_value(v)) check_number(*d, s, path);
    if (v.is_array()) check_array(v, s, path);
    if (v.is_object()) check_object(v, s, path);
    if (auto it = s.find("allOf"); it != s.end() && it->is_array())
      for (const auto& sub : *it) check(v, sub, path);
    if (auto it = s.find("anyOf"); it != s.end() && it->is_array()) {
      bool any = false;
      for (const auto& sub : *it) any = any || ok(v, sub);
      if (!any) fail(path, "value does not match any of the allowed schemas (anyOf)");
    }
    if (auto it = s.find("oneOf"); it != s.end() && it->is_array()) {
      int n = 0;
      for (const auto& sub : *it) n += ok(v, sub) ? 1 : 0;
      if (n != 1) fail(path, n == 0 ? "value does not match any schema of oneOf" : "value matches more than one schema of oneOf");
    }
    if (auto it = s.find("not"); it != s.end() && ok(v, *it)) fail(path, "value must not match the schema in \"not\"");
    if (auto it = s.find("if"); it != s.end()) {
      auto then_ = s.find("then"), else_ = s.find("else");
      if (ok(v, *it)) {
        if (then_ != s.end()) check(v, *then_, path);
      } else if (else_ != s.end()) {
        check(v, *else_, path);
      }
    }
    --depth;
  }

  void check_string(const std::string& str, const J& s, const std::string& path) {
    size_t len = utf8_length(str);
    if (auto it = s.find("minLength"); it != s.end() && it->is_number() && len < it->get<double>())
      fail(path, "string shorter than minLength " + py_json_dumps(*it));
    if (auto it = s.find("maxLength"); it != s.end() && it->is_number() && len > it->get<double>())
      fail(path, "string longer than maxLength " + py_json_dumps(*it));
    if (auto it = s.find("pattern"); it != s.end() && it->is_string() && !regex_search(it->get<std::string>(), str))
      fail(path, "string does not match pattern " + py_json_dumps(*it));
  }

  void check_number(double d, const J& s, const std::string& path) {
    // A numeric keyword (big integers included, as Python reads them); messages quote its text.
    struct Keyword {
      double v;
      const J* text;
    };
    auto num = [&](const char* k) -> std::optional<Keyword> {
      auto it = s.find(k);
      if (it == s.end()) return std::nullopt;
      if (auto v = number_value(*it)) return Keyword{*v, &*it};
      return std::nullopt;
    };
    bool excl_min_bool = s.contains("exclusiveMinimum") && s["exclusiveMinimum"].is_boolean() && s["exclusiveMinimum"].get<bool>();
    bool excl_max_bool = s.contains("exclusiveMaximum") && s["exclusiveMaximum"].is_boolean() && s["exclusiveMaximum"].get<bool>();
    if (auto m = num("minimum")) {
      if (excl_min_bool ? !(d > m->v) : d < m->v)
        fail(path, "value " + py_float_or_int(d) + " is below the minimum " + py_json_dumps(*m->text));
    }
    if (auto m = num("maximum")) {
      if (excl_max_bool ? !(d < m->v) : d > m->v)
        fail(path, "value " + py_float_or_int(d) + " is above the maximum " + py_json_dumps(*m->text));
    }
    if (auto m = num("exclusiveMinimum"); m && !(d > m->v)) fail(path, "value must be greater than " + py_json_dumps(*m->text));
    if (auto m = num("exclusiveMaximum"); m && !(d < m->v)) fail(path, "value must be less than " + py_json_dumps(*m->text));
    if (auto m = num("multipleOf"); m && m->v > 0) {
      double q = d / m->v;
      if (std::fabs(q - std::round(q)) > 1e-9) fail(path, "value is not a multiple of " + py_json_dumps(*m->text));
    }
  }
  static std::string py_float_or_int(double d) {
    if (d == std::floor(d) && std::fabs(d) < 1e15) return std::to_string(static_cast<long long>(d));
    return py_float_repr(d);
  }

  void check_array(const J& v, const J& s, const std::string& path) {
    size_t n = v.size();
    if (auto it = s.find("minItems"); it != s.end() && it->is_number() && n < it->get<double>())
      fail(path, "array has fewer than " + py_json_dumps(*it) + " items");
    if (auto it = s.find("maxItems"); it != s.end() && it->is_number() && n > it->get<double>())
      fail(path, "array has more than " + py_json_dumps(*it) + " items");
    if (auto it = s.find("uniqueItems"); it != s.end() && it->is_boolean() && it->get<bool>())
      for (size_t i = 0; i < n; ++i)
        for (size_t k = i + 1; k < n; ++k)
          if (v[i] == v[k]) fail(path, "array items " + std::to_string(i) + " and " + std::to_string(k) + " are equal");
    size_t first_rest = 0;
    const J* tuple = nullptr;
    if (auto it = s.find("prefixItems"); it != s.end() && it->is_array()) tuple = &*it;
    auto items = s.find("items");
    if (items != s.end() && items->is_array()) tuple = &*items;
    if (tuple) {
      for (size_t i = 0; i < n && i < tuple->size(); ++i) check(v[i], (*tuple)[i], path + "/" + std::to_string(i));
      first_rest = tuple->size();
      if (auto it = s.find("additionalItems"); it != s.end())
        for (size_t i = first_rest; i < n; ++i) check(v[i], *it, path + "/" + std::to_string(i));
    }
    if (items != s.end() && (items->is_object() || items->is_boolean()))
      for (size_t i = first_rest; i < n; ++i) check(v[i], *items, path + "/" + std::to_string(i));
    if (auto it = s.find("contains"); it != s.end()) {
      size_t matches = 0;
      for (size_t i = 0; i < n; ++i) matches += ok(v[i], *it) ? 1 : 0;
      double lo = 1, hi = -1;
      if (auto m = s.find("minContains"); m != s.end() && m->is_number()) lo = m->get<double>();
      if (auto m = s.find("maxContains"); m != s.end() && m->is_number()) hi = m->get<double>();
      if (matches < lo) fail(path, "array has fewer than " + py_float_or_int(lo) + " items matching \"contains\"");
      if (hi >= 0 && matches > hi) fail(path, "array has more than " + py_float_or_int(hi) + " items matching \"contains\"");
    }
  }

  void check_object(const J& v, const J& s, const std::string& path) {
    if (auto it = s.find("required"); it != s.end() && it->is_array())
      for (const auto& r : *it)
        if (r.is_string() && !v.contains(r.get<std::string>()))
          fail(path, "missing required property \"" + r.get<std::string>() + "\"");
    if (auto it = s.find("minProperties"); it != s.end() && it->is_number() && v.size() < it->get<double>())
      fail(path, "object has fewer than " + py_json_dumps(*it) + " properties");
    if (auto it = s.find("maxProperties"); it != s.end() && it->is_number() && v.size() > it->get<double>())
      fail(path, "object has more than " + py_json_dumps(*it) + " properties");
    const J* props = nullptr;
    if (auto it = s.find("properties"); it != s.end() && it->is_object()) props = &*it;
    const J* pprops = nullptr;
    if (auto it = s.find("patternProperties"); it != s.end() && it->is_object()) pprops = &*it;
    auto addl = s.find("additionalProperties");
    if (auto it = s.find("propertyNames"); it != s.end())
      for (auto kv = v.begin(); kv != v.end(); ++kv)
        if (!ok(J(kv.key()), *it)) fail(path + "/" + escape_pointer(kv.key()), "property name \"" + kv.key() + "\" does not match propertyNames");
    // dependentRequired / dependentSchemas, and draft-7 "dependencies" (either form).
    for (const char* key : {"dependentRequired", "dependentSchemas", "dependencies"})
      if (auto it = s.find(key); it != s.end() && it->is_object())
        for (auto d = it->begin(); d != it->end(); ++d) {
          if (!v.contains(d.key())) continue;
          if (d->is_array()) {
            for (const auto& r : *d)
              if (r.is_string() && !v.contains(r.get<std::string>()))
                fail(path, "property \"" + d.key() + "\" requires property \"" + r.get<std::string>() + "\"");
          } else {
            check(v, *d, path);
          }
        }
    for (auto kv = v.begin(); kv != v.end(); ++kv) {
      std::string sub = path + "/" + escape_pointer(kv.key());
      bool matched = false;
      if (props && props->contains(kv.key())) {
        matched = true;
        check(kv.value(), (*props)[kv.key()], sub);
      }
      if (pprops)
        for (auto p = pprops->begin(); p != pprops->end(); ++p)
          if (regex_search(p.key(), kv.key())) {
            matched = true;
            check(kv.value(), p.value(), sub);
          }
      if (!matched && addl != s.end()) {
        if (addl->is_boolean() && !addl->get<bool>()) fail(sub, "unexpected property \"" + kv.key() + "\"");
        else if (addl->is_object()) check(kv.value(), *addl, sub);
      }
    }
  }
};

}  // namespace

std::vector<SchemaError> validate_json_schema(const nlohmann::ordered_json& instance,
                                              const nlohmann::ordered_json& schema) {
  std::vector<SchemaError> errs;
  Validator v{schema, errs};
  v.check(instance, schema, "");
  return errs;
}

}  // namespace v4::text
