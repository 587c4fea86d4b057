// Self-contained HTML report pages: one file, inline CSS and (optional) inline script, no external
// assets or network access. Content is appended in order; text is HTML-escaped, raw fragments
// (SVG charts from report/svg_chart.h) are inserted as given.
//
// Machine-checkable numbers: table cells may carry a key (`data-key="..."`) and the page may embed
// JSON data blocks (<script type="application/json" id="...">), so tests and scripts can compare
// what the page shows with the result files.
#pragma once
#include <string>
#include <utility>
#include <vector>

namespace v4::report {

std::string html_escape(const std::string& s);

struct Cell {
  std::string text;
  std::string key;         // data-key attribute, empty for none
  bool numeric = false;    // right-aligned
  std::string css_class;   // e.g. "bad", "good", "muted"
  Cell(std::string t = {}) : text(std::move(t)) {}
  Cell(std::string t, std::string k, bool num = true, std::string cls = {})
      : text(std::move(t)), key(std::move(k)), numeric(num), css_class(std::move(cls)) {}
};

class HtmlPage {
 public:
  explicit HtmlPage(std::string title);
  void heading(const std::string& text, int level = 2, const std::string& id = {});
  void paragraph(const std::string& text, const std::string& css_class = {});
  void raw(const std::string& html);  // inserted verbatim (e.g. an SVG chart)
  void table(const std::vector<std::string>& header, const std::vector<std::vector<Cell>>& rows, const std::string& id = {},
             const std::string& caption = {});
  void definition_list(const std::vector<std::pair<std::string, std::string>>& items);
  // <script type="application/json" id=ID> with '<' escaped so it cannot end the script.
  void json_data(const std::string& id, const std::string& json);
  // A flexbox row of charts.
  void begin_grid();
  void end_grid();
  // Inline script run at the end of the page (added once per call).
  void script(const std::string& js);
  std::string render() const;
  void write(const std::string& path) const;  // throws v4::InputError if the file cannot be written

 private:
  std::string title_, body_, scripts_;
};

}  // namespace v4::report
