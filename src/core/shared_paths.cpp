#include "core/shared_paths.h"

#include <cstdlib>
#include <filesystem>

namespace v4 {

std::string shared_dir(const std::string& fallback) {
  if (const char* e = std::getenv("V4HOST_SHARED"); e && *e && std::filesystem::is_directory(e)) return e;
  if (std::filesystem::is_directory(fallback)) return fallback;
  return {};
}

std::string golden_dir(const std::string& fallback_shared) {
  if (const char* e = std::getenv("V4HOST_GOLDEN"); e && *e && std::filesystem::is_directory(e)) return e;
  std::string s = shared_dir(fallback_shared);
  if (!s.empty() && std::filesystem::is_directory(s + "/golden")) return s + "/golden";
  return {};
}

}  // namespace v4
