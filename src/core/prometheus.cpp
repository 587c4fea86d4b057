#include "core/prometheus.h"

namespace v4 {

std::string prometheus_labels(const std::vector<std::pair<std::string, std::string>>& l) {
  if (l.empty()) return "";
  // Appended by hand: this runs several times per request on the hot path.
  std::string s;
  size_t n = 2;
  for (auto& [k, v] : l) n += k.size() + v.size() + 4;
  s.reserve(n);
  s += '{';
  for (size_t i = 0; i < l.size(); ++i) {
    if (i) s += ',';
    s += l[i].first;
    s += "=\"";
    for (char c : l[i].second) {
      if (c == '"' || c == '\\') s += '\\';
      if (c == '\n') {
        s += "\\n";
        continue;
      }
      s += c;
    }
    s += '"';
  }
  s += '}';
  return s;
}

}  // namespace v4
