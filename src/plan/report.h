// Rendering a CheckReport: readable terminal text (default), Markdown, or JSON.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "plan/check.h"

namespace v4::plan {

nlohmann::json report_json(const CheckReport& r);
std::string report_text(const CheckReport& r);
std::string report_markdown(const CheckReport& r);
// What `v4host check` prints after the built-in example.
std::string example_help();

}  // namespace v4::plan
