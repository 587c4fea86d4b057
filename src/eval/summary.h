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

// The summary's retrieval cells grouped into one grid per (category, reasoning), each with its
// distinct context lengths (rows) and needle depths (columns) in ascending order; shared by the
// terminal and the HTML report so both draw the same grids.
struct RetrievalGrid {
  std::string category, reasoning;
  std::vector<long> lengths;
  std::vector<double> depths;
  std::vector<Json> cells;
};
std::vector<RetrievalGrid> retrieval_grids(const Json& summary);

}  // namespace v4::eval
