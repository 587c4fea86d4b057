// HTML reports (one self-contained file): for a run, the pass rates with their intervals per
// category and reasoning mode, the retrieval heatmaps (length x depth) and pass@k; for a
// comparison, the A/B table (overall and per category) with the McNemar p-values, the paired
// difference and the items that flipped. The summary / comparison JSON is embedded
// (<script type="application/json" id="summary"> / id="compare") for scripts and tests.
#pragma once
#include <string>

#include "eval/item.h"

namespace v4::eval {

void write_run_html(const std::string& path, const Json& summary);
void write_compare_html(const std::string& path, const Json& compare, const std::string& a_name, const std::string& b_name);

}  // namespace v4::eval
