// SVG chart primitives for self-contained reports: an XY chart with line and/or point series,
// linear or log10 axes with "nice" ticks, axis labels, a legend, and a <title> tooltip per point.
// Output is a standalone <svg> element (no scripts, no external fonts).
//
// Every series is drawn as <g class="series" data-series="NAME" data-points="N">, so a test (or a
// headless browser) can verify what was drawn.
#pragma once
#include <string>
#include <utility>
#include <vector>

namespace v4::report {

struct Series {
  std::string name;
  std::vector<std::pair<double, double>> points;  // (x, y); non-finite points are skipped
  bool line = true;     // polyline through the points (in the given order)
  bool markers = false; // circles at the points
  std::string color;    // empty: from the palette
  bool step = false;    // draw as a step function (for CDFs)
};

struct Axis {
  std::string label;
  bool log = false;               // log10 (non-positive values are skipped)
  double min = 0, max = 0;        // both 0: from the data
  bool include_zero = false;      // extend a linear axis to 0
};

struct ChartOptions {
  std::string title;
  Axis x, y;
  int width = 560, height = 340;
  std::string id;  // id attribute of the <svg>
};

// Empirical CDF of values as a step series: (x_(i), i/n).
Series cdf_series(const std::string& name, std::vector<double> values);

// "Nice" tick positions covering [lo, hi] (about `target` ticks), for linear axes.
std::vector<double> nice_ticks(double lo, double hi, int target = 6);
// Compact label for a tick value (1.5k, 0.25, 12).
std::string tick_label(double v);

std::string render_chart(const ChartOptions& opt, const std::vector<Series>& series);

}  // namespace v4::report
