#include "report/svg_chart.h"

// GCC 12 false positive on chains of std::string operator+ (GCC bug 105329).
#pragma GCC diagnostic ignored "-Wrestrict"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "report/html.h"

namespace v4::report {

namespace {

const char* kPalette[] = {"#3366cc", "#dc3912", "#109618", "#ff9900", "#990099", "#0099c6", "#dd4477", "#66aa00"};

std::string fmt(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f", v);
  return b;
}

std::string fmt_val(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.6g", v);
  return b;
}

struct Scale {
  bool log = false;
  double lo = 0, hi = 1, a = 0, b = 1;  // pixel range
  double t(double v) const { return log ? std::log10(v) : v; }
  double px(double v) const {
    double tl = t(lo), th = t(hi);
    double f = th > tl ? (t(v) - tl) / (th - tl) : 0.5;
    return a + f * (b - a);
  }
};

bool usable(double v, bool log) { return std::isfinite(v) && (!log || v > 0); }

void range_of(const std::vector<Series>& ss, bool is_x, const Axis& ax, double& lo, double& hi) {
  lo = std::numeric_limits<double>::infinity();
  hi = -lo;
  for (const auto& s : ss)
    for (const auto& [x, y] : s.points) {
      double v = is_x ? x : y, other = is_x ? y : x;
      if (!usable(v, ax.log) || !std::isfinite(other)) continue;
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
  if (ax.min != 0 || ax.max != 0) {
    lo = ax.min;
    hi = ax.max;
  }
  if (!std::isfinite(lo)) {
    lo = ax.log ? 1 : 0;
    hi = ax.log ? 10 : 1;
  }
  if (ax.include_zero && !ax.log) {
    lo = std::min(lo, 0.0);
    hi = std::max(hi, 0.0);
  }
  if (hi <= lo) {
    double d = ax.log ? lo * 0.5 : (std::fabs(lo) > 0 ? std::fabs(lo) * 0.1 : 1);
    lo -= d;
    hi += d;
    if (ax.log && lo <= 0) lo = hi / 100;
  }
}

std::vector<double> log_ticks(double lo, double hi) {
  std::vector<double> t;
  int a = static_cast<int>(std::floor(std::log10(lo))), b = static_cast<int>(std::ceil(std::log10(hi)));
  for (int e = a; e <= b; ++e) {
    double v = std::pow(10.0, e);
    if (v >= lo * 0.999 && v <= hi * 1.001) t.push_back(v);
  }
  if (t.size() < 2) {  // narrow range: add 2x and 5x
    t.clear();
    for (int e = a; e <= b; ++e)
      for (double m : {1.0, 2.0, 5.0}) {
        double v = m * std::pow(10.0, e);
        if (v >= lo * 0.999 && v <= hi * 1.001) t.push_back(v);
      }
  }
  return t;
}

}  // namespace

Series cdf_series(const std::string& name, std::vector<double> v) {
  v.erase(std::remove_if(v.begin(), v.end(), [](double x) { return !std::isfinite(x); }), v.end());
  std::sort(v.begin(), v.end());
  Series s;
  s.name = name;
  s.step = true;
  const double n = static_cast<double>(v.size());
  // Thin very large samples to <= 2000 steps (the picture is the same, the file stays small).
  size_t stride = std::max<size_t>(1, v.size() / 2000);
  for (size_t i = 0; i < v.size(); i += stride) s.points.emplace_back(v[i], static_cast<double>(i + 1) / n);
  if (!v.empty() && (v.size() - 1) % stride != 0) s.points.emplace_back(v.back(), 1.0);
  return s;
}

std::vector<double> nice_ticks(double lo, double hi, int target) {
  std::vector<double> t;
  if (!(hi > lo) || !std::isfinite(lo) || !std::isfinite(hi)) return {lo};
  double raw = (hi - lo) / std::max(1, target - 1);
  double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0})
    if (m * mag >= raw) {
      step = m * mag;
      break;
    }
  double start = std::ceil(lo / step - 1e-9) * step;
  for (double v = start; v <= hi + step * 1e-9; v += step) t.push_back(std::fabs(v) < step * 1e-9 ? 0.0 : v);
  return t;
}

std::string tick_label(double v) {
  char b[32];
  double a = std::fabs(v);
  if (a >= 1e6) std::snprintf(b, sizeof b, "%gM", v / 1e6);
  else if (a >= 1e4) std::snprintf(b, sizeof b, "%gk", v / 1e3);
  else std::snprintf(b, sizeof b, "%g", std::round(v * 1e6) / 1e6);
  return b;
}

std::string render_chart(const ChartOptions& o, const std::vector<Series>& series) {
  const double W = o.width, H = o.height;
  const double ml = 64, mr = 16, mt = o.title.empty() ? 14 : 30, mb = 46;
  double xlo, xhi, ylo, yhi;
  range_of(series, true, o.x, xlo, xhi);
  range_of(series, false, o.y, ylo, yhi);
  std::vector<double> xt = o.x.log ? log_ticks(xlo, xhi) : nice_ticks(xlo, xhi);
  std::vector<double> yt = o.y.log ? log_ticks(ylo, yhi) : nice_ticks(ylo, yhi);
  if (!o.x.log && !xt.empty()) xlo = std::min(xlo, xt.front()), xhi = std::max(xhi, xt.back());
  if (!o.y.log && !yt.empty()) ylo = std::min(ylo, yt.front()), yhi = std::max(yhi, yt.back());
  Scale sx{o.x.log, xlo, xhi, ml, W - mr}, sy{o.y.log, ylo, yhi, H - mb, mt};

  std::string s = "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\"" + (o.id.empty() ? std::string() : " id=\"" + html_escape(o.id) + "\"") +
                  " width=\"" + fmt(W) + "\" height=\"" + fmt(H) + "\" viewBox=\"0 0 " + fmt(W) + " " + fmt(H) +
                  "\" font-family=\"sans-serif\" font-size=\"11\">\n";
  if (!o.title.empty()) s += "<text class=\"title\" x=\"" + fmt(W / 2) + "\" y=\"18\" text-anchor=\"middle\" font-size=\"13\" font-weight=\"600\">" + html_escape(o.title) + "</text>\n";
  // grid + ticks
  s += "<g class=\"axis x\">";
  for (double v : xt) {
    double px = sx.px(v);
    s += "<line x1=\"" + fmt(px) + "\" x2=\"" + fmt(px) + "\" y1=\"" + fmt(mt) + "\" y2=\"" + fmt(H - mb) + "\" stroke=\"#eceef3\"/>";
    s += "<text x=\"" + fmt(px) + "\" y=\"" + fmt(H - mb + 15) + "\" text-anchor=\"middle\" fill=\"#444\">" + tick_label(v) + "</text>";
  }
  s += "<text x=\"" + fmt((ml + W - mr) / 2) + "\" y=\"" + fmt(H - 8) + "\" text-anchor=\"middle\" fill=\"#222\">" + html_escape(o.x.label) + "</text></g>\n";
  s += "<g class=\"axis y\">";
  for (double v : yt) {
    double py = sy.px(v);
    s += "<line x1=\"" + fmt(ml) + "\" x2=\"" + fmt(W - mr) + "\" y1=\"" + fmt(py) + "\" y2=\"" + fmt(py) + "\" stroke=\"#eceef3\"/>";
    s += "<text x=\"" + fmt(ml - 6) + "\" y=\"" + fmt(py + 4) + "\" text-anchor=\"end\" fill=\"#444\">" + tick_label(v) + "</text>";
  }
  s += "<text transform=\"translate(14," + fmt((mt + H - mb) / 2) + ") rotate(-90)\" text-anchor=\"middle\" fill=\"#222\">" + html_escape(o.y.label) + "</text></g>\n";
  s += "<rect x=\"" + fmt(ml) + "\" y=\"" + fmt(mt) + "\" width=\"" + fmt(W - mr - ml) + "\" height=\"" + fmt(H - mb - mt) + "\" fill=\"none\" stroke=\"#99a\"/>\n";

  // series
  size_t k = 0;
  double legend_y = mt + 14;
  for (const auto& se : series) {
    std::string color = se.color.empty() ? kPalette[k % 8] : se.color;
    ++k;
    std::vector<std::pair<double, double>> pts;
    for (const auto& [x, y] : se.points)
      if (usable(x, o.x.log) && usable(y, o.y.log)) pts.emplace_back(sx.px(std::clamp(x, xlo, xhi)), sy.px(std::clamp(y, ylo, yhi)));
    s += "<g class=\"series\" data-series=\"" + html_escape(se.name) + "\" data-points=\"" + std::to_string(pts.size()) + "\">";
    if (se.line && pts.size() >= 2) {
      std::string d;
      for (size_t i = 0; i < pts.size(); ++i) {
        if (i == 0) d += "M" + fmt(pts[i].first) + "," + fmt(pts[i].second);
        else if (se.step) d += "H" + fmt(pts[i].first) + "V" + fmt(pts[i].second);
        else d += "L" + fmt(pts[i].first) + "," + fmt(pts[i].second);
      }
      s += "<path d=\"" + d + "\" fill=\"none\" stroke=\"" + color + "\" stroke-width=\"1.8\"/>";
    }
    if (se.markers || pts.size() == 1) {
      size_t i = 0;
      for (const auto& [x, y] : se.points) {
        if (!usable(x, o.x.log) || !usable(y, o.y.log)) continue;
        s += "<circle cx=\"" + fmt(pts[i].first) + "\" cy=\"" + fmt(pts[i].second) + "\" r=\"3\" fill=\"" + color + "\"><title>" +
             html_escape(se.name) + ": (" + fmt_val(x) + ", " + fmt_val(y) + ")</title></circle>";
        ++i;
      }
    }
    s += "</g>\n";
    if (!se.name.empty()) {
      s += "<g class=\"legend\"><rect x=\"" + fmt(W - mr - 150) + "\" y=\"" + fmt(legend_y - 8) + "\" width=\"10\" height=\"10\" fill=\"" + color +
           "\"/><text x=\"" + fmt(W - mr - 136) + "\" y=\"" + fmt(legend_y + 1) + "\">" + html_escape(se.name) + "</text></g>\n";
      legend_y += 14;
    }
  }
  s += "</svg>";
  return s;
}

}  // namespace v4::report
