#include "report/heatmap.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "report/html.h"

namespace v4::report {

namespace {

std::string num(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.4g", v);
  return b;
}

}  // namespace

std::string heat_color(double v) {
  if (!std::isfinite(v)) return "#d0d0d0";
  v = std::clamp(v, 0.0, 1.0);
  // red (215,48,39) -> yellow (254,224,139) -> green (26,152,80)
  auto lerp = [](double a, double b, double t) { return static_cast<int>(std::lround(a + (b - a) * t)); };
  int r, g, b;
  if (v < 0.5) {
    double t = v / 0.5;
    r = lerp(215, 254, t), g = lerp(48, 224, t), b = lerp(39, 139, t);
  } else {
    double t = (v - 0.5) / 0.5;
    r = lerp(254, 26, t), g = lerp(224, 152, t), b = lerp(139, 80, t);
  }
  char buf[8];
  std::snprintf(buf, sizeof buf, "#%02x%02x%02x", r, g, b);
  return buf;
}

std::string heatmap_svg(const Heatmap& h) {
  const int cw = 64, ch = 30, left = 90, top = 44, bottom = 40;
  const int ncol = static_cast<int>(h.cols.size()), nrow = static_cast<int>(h.rows.size());
  const int width = left + std::max(1, ncol) * cw + 20, height = top + std::max(1, nrow) * ch + bottom;
  std::string s = "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"heatmap\" width=\"" + std::to_string(width) + "\" height=\"" +
                  std::to_string(height) + "\" viewBox=\"0 0 " + std::to_string(width) + " " + std::to_string(height) + "\"" +
                  (h.id.empty() ? "" : " id=\"" + html_escape(h.id) + "\"") + " font-family=\"sans-serif\" font-size=\"12\">\n";
  s += "<text x=\"" + std::to_string(left) + "\" y=\"16\" font-size=\"14\" font-weight=\"bold\">" + html_escape(h.title) + "</text>\n";
  s += "<text x=\"" + std::to_string(left + ncol * cw / 2) + "\" y=\"34\" text-anchor=\"middle\">" + html_escape(h.col_label) + "</text>\n";
  s += "<text x=\"14\" y=\"" + std::to_string(top + nrow * ch / 2) + "\" transform=\"rotate(-90 14 " + std::to_string(top + nrow * ch / 2) +
       ")\" text-anchor=\"middle\">" + html_escape(h.row_label) + "</text>\n";
  for (int c = 0; c < ncol; ++c)
    s += "<text x=\"" + std::to_string(left + c * cw + cw / 2) + "\" y=\"" + std::to_string(top + nrow * ch + 16) +
         "\" text-anchor=\"middle\">" + html_escape(h.cols[static_cast<size_t>(c)]) + "</text>\n";
  for (int r = 0; r < nrow; ++r) {
    s += "<text x=\"" + std::to_string(left - 6) + "\" y=\"" + std::to_string(top + r * ch + ch / 2 + 4) + "\" text-anchor=\"end\">" +
         html_escape(h.rows[static_cast<size_t>(r)]) + "</text>\n";
    for (int c = 0; c < ncol; ++c) {
      double v = std::nan("");
      if (static_cast<size_t>(r) < h.values.size() && static_cast<size_t>(c) < h.values[static_cast<size_t>(r)].size())
        v = h.values[static_cast<size_t>(r)][static_cast<size_t>(c)];
      std::string note;
      if (static_cast<size_t>(r) < h.notes.size() && static_cast<size_t>(c) < h.notes[static_cast<size_t>(r)].size())
        note = h.notes[static_cast<size_t>(r)][static_cast<size_t>(c)];
      const bool has = std::isfinite(v);
      const int x = left + c * cw, y = top + r * ch;
      s += "<rect class=\"cell\" data-row=\"" + std::to_string(r) + "\" data-col=\"" + std::to_string(c) + "\" data-value=\"" +
           (has ? num(v) : "") + "\" x=\"" + std::to_string(x) + "\" y=\"" + std::to_string(y) + "\" width=\"" + std::to_string(cw - 2) +
           "\" height=\"" + std::to_string(ch - 2) + "\" fill=\"" + heat_color(v) + "\"><title>" +
           html_escape(h.rows[static_cast<size_t>(r)] + " / " + h.cols[static_cast<size_t>(c)] + ": " +
               (has ? num(100 * v) + "%" : std::string("no data")) + (note.empty() ? "" : " (" + note + ")")) +
           "</title></rect>\n";
      s += "<text x=\"" + std::to_string(x + cw / 2 - 1) + "\" y=\"" + std::to_string(y + ch / 2 + 3) + "\" text-anchor=\"middle\" fill=\"" +
           (has && v > 0.2 && v < 0.8 ? "#000" : has ? "#fff" : "#555") + "\">" + (has ? num(std::round(100 * v)) + "%" : "–") + "</text>\n";
    }
  }
  s += "</svg>\n";
  return s;
}

}  // namespace v4::report
