#include "report/html.h"

// GCC 12 false positive on chains of std::string operator+ (GCC bug 105329).
#pragma GCC diagnostic ignored "-Wrestrict"

#include <fstream>

#include "core/error.h"

namespace v4::report {

std::string html_escape(const std::string& s) {
  std::string o;
  o.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      case '\'': o += "&#39;"; break;
      default: o += c;
    }
  }
  return o;
}

HtmlPage::HtmlPage(std::string title) : title_(std::move(title)) {}

void HtmlPage::heading(const std::string& text, int level, const std::string& id) {
  level = level < 1 ? 1 : level > 4 ? 4 : level;
  body_ += "<h" + std::to_string(level) + (id.empty() ? "" : " id=\"" + html_escape(id) + "\"") + ">" + html_escape(text) + "</h" +
           std::to_string(level) + ">\n";
}

void HtmlPage::paragraph(const std::string& text, const std::string& cls) {
  body_ += "<p" + (cls.empty() ? std::string() : " class=\"" + html_escape(cls) + "\"") + ">" + html_escape(text) + "</p>\n";
}

void HtmlPage::raw(const std::string& html) { body_ += html + "\n"; }

void HtmlPage::table(const std::vector<std::string>& header, const std::vector<std::vector<Cell>>& rows, const std::string& id,
                     const std::string& caption) {
  body_ += "<table" + (id.empty() ? std::string() : " id=\"" + html_escape(id) + "\"") + ">";
  if (!caption.empty()) body_ += "<caption>" + html_escape(caption) + "</caption>";
  body_ += "<thead><tr>";
  for (const auto& h : header) body_ += "<th>" + html_escape(h) + "</th>";
  body_ += "</tr></thead><tbody>\n";
  for (const auto& r : rows) {
    body_ += "<tr>";
    for (const auto& c : r) {
      std::string cls = c.css_class;
      if (c.numeric) cls += cls.empty() ? "num" : " num";
      body_ += "<td";
      if (!cls.empty()) body_ += " class=\"" + html_escape(cls) + "\"";
      if (!c.key.empty()) body_ += " data-key=\"" + html_escape(c.key) + "\"";
      body_ += ">" + html_escape(c.text) + "</td>";
    }
    body_ += "</tr>\n";
  }
  body_ += "</tbody></table>\n";
}

void HtmlPage::definition_list(const std::vector<std::pair<std::string, std::string>>& items) {
  body_ += "<dl>";
  for (const auto& [k, v] : items) body_ += "<dt>" + html_escape(k) + "</dt><dd>" + html_escape(v) + "</dd>";
  body_ += "</dl>\n";
}

void HtmlPage::json_data(const std::string& id, const std::string& json) {
  std::string safe;
  safe.reserve(json.size());
  for (char c : json) {
    if (c == '<') safe += "\\u003c";
    else safe += c;
  }
  body_ += "<script type=\"application/json\" id=\"" + html_escape(id) + "\">" + safe + "</script>\n";
}

void HtmlPage::begin_grid() { body_ += "<div class=\"grid\">\n"; }
void HtmlPage::end_grid() { body_ += "</div>\n"; }
void HtmlPage::script(const std::string& js) { scripts_ += "<script>\n" + js + "\n</script>\n"; }

std::string HtmlPage::render() const {
  static const char* css = R"(body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1200px;color:#1d2330;padding:0 16px}
h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #dde;padding-bottom:4px}h3{font-size:15px}
table{border-collapse:collapse;margin:8px 0 16px;font-size:13px}th,td{border:1px solid #d8dce6;padding:3px 8px}
th{background:#f2f4f8;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.bad{background:#fde2e2}td.good{background:#e2f6e6}td.muted,p.muted{color:#778}caption{text-align:left;font-weight:600;padding:4px 0}
.grid{display:flex;flex-wrap:wrap;gap:12px}.chart{border:1px solid #e3e6ee;border-radius:6px;background:#fff}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 14px}dt{font-weight:600}dd{margin:0}
code{background:#f2f4f8;padding:0 3px;border-radius:3px})";
  std::string o = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width\">\n<title>" +
                  html_escape(title_) + "</title>\n<style>" + css + "</style></head>\n<body>\n<h1>" + html_escape(title_) + "</h1>\n";
  o += body_;
  o += scripts_;
  o += "</body></html>\n";
  return o;
}

void HtmlPage::write(const std::string& path) const {
  std::ofstream f(path, std::ios::binary);
  if (!f) throw InputError("cannot write HTML report '" + path + "'");
  f << render();
  if (!f) throw InputError("writing HTML report '" + path + "' failed");
}

}  // namespace v4::report
