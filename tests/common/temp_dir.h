// A fresh, empty directory under the system temp dir, named by the test's tag and the process id
// (so parallel test binaries do not collide), removed with everything in it at scope exit.
#pragma once
#include <unistd.h>

#include <filesystem>
#include <string>
#include <system_error>

namespace v4::test {

struct TempDir {
  std::filesystem::path path;
  explicit TempDir(const std::string& tag) {
    path = std::filesystem::temp_directory_path() / ("v4host-" + tag + "-" + std::to_string(::getpid()));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string str() const { return path.string(); }
};

}  // namespace v4::test
