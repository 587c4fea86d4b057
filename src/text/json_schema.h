// A small JSON Schema validator for tool-call arguments (the subset tool schemas use):
// type (string or list; "integer" accepts integral floats), properties, required,
// additionalProperties (bool or schema), patternProperties, enum, const, items (schema or tuple
// list), prefixItems, minItems/maxItems, uniqueItems, minLength/maxLength (code points), pattern
// (PCRE2), minimum/maximum/exclusiveMinimum/exclusiveMaximum (number or draft-4 bool), multipleOf,
// minProperties/maxProperties, anyOf/oneOf/allOf/not, if/then/else, contains/minContains/
// maxContains, propertyNames, dependentRequired/dependentSchemas/dependencies, and local
// "$ref": "#/..." pointers.
// Unknown keywords (description, default, title, $schema, format, ...) are ignored.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace v4::text {

struct SchemaError {
  std::string path;     // JSON pointer into the instance, e.g. "/open_list/0/id" ("" = root)
  std::string message;  // what is wrong, e.g. "expected integer, got string"
};

// Validates `instance` against `schema`; returns every violation found (empty = valid).
// "$ref" pointers resolve against `schema`.
std::vector<SchemaError> validate_json_schema(const nlohmann::ordered_json& instance,
                                              const nlohmann::ordered_json& schema);

}  // namespace v4::text
