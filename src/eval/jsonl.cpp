#include "eval/jsonl.h"

#include <fstream>

#include "core/error.h"

namespace v4::eval {

std::vector<JsonlLine> read_jsonl(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError("cannot read " + path);
  std::vector<JsonlLine> out;
  std::string line;
  long no = 0;
  while (std::getline(in, line)) {
    ++no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    try {
      out.push_back({no, Json::parse(line)});
    } catch (const Json::parse_error& e) {
      std::string why = e.what();
      if (auto p = why.find("parse error"); p != std::string::npos) why = why.substr(p);
      throw InputError(path + ":" + std::to_string(no) + ": malformed JSON (" + why + ")");
    }
  }
  return out;
}

}  // namespace v4::eval
