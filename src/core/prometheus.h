// Prometheus text exposition helpers shared by the server's and the router's metric registries.
#pragma once
#include <string>
#include <utility>
#include <vector>

namespace v4 {

// Renders a label set as `{k="v",...}` ("" for no labels), escaping `"`, `\` and newlines in the
// values as the text format requires. The result doubles as the registries' per-series map key.
std::string prometheus_labels(const std::vector<std::pair<std::string, std::string>>& labels);

}  // namespace v4
