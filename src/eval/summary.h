// The summary of a results file: pass rate with its Wilson 95% interval, per category and per
// reasoning mode, pass@k (unbiased) when there are several samples per item, and the retrieval
// grid (length x depth cells) when the outcomes carry meta.length / meta.depth.
#pragma once
#include <string>
#include <vector>

#include "eval/item.h"

namespace v4::eval {

Json summarize(const std::string& suite, const std::vector<Outcome>& results);

// Terminal text for a summary (and its provenance, if present).
std::string format_summary(const Json& summary);

}  // namespace v4::eval
