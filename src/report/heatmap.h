// An SVG heatmap for a grid of rates in [0, 1] (rows x columns), e.g. retrieval pass rate by
// context length (rows) and needle depth (columns). Cells are coloured red (0) -> yellow -> green
// (1), print their value, and carry a <title> tooltip; a missing cell (NaN) is grey and says
// "no data". Standalone <svg> (no scripts, no external fonts).
//
// Every cell is <rect class="cell" data-row="R" data-col="C" data-value="V"> (V = "" when
// missing), so a test or a headless browser can check what was drawn.
#pragma once
#include <string>
#include <vector>

namespace v4::report {

struct Heatmap {
  std::string title;
  std::string row_label, col_label;
  std::vector<std::string> rows, cols;  // labels
  std::vector<std::vector<double>> values;  // [row][col], NaN = no data
  std::vector<std::vector<std::string>> notes;  // optional tooltip text per cell (e.g. "3/4 passed")
  std::string id;
};

std::string heatmap_svg(const Heatmap& h);
// The fill colour used for a value in [0, 1] ("#rrggbb"); grey for NaN.
std::string heat_color(double v);

}  // namespace v4::report
