// Helpers for the eval tests: a scratch directory per test, writing files, running the CLI.
#pragma once
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "eval/subprocess.h"

namespace v4::test {

struct Scratch {
  std::string dir;
  Scratch() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "v4host-evaltest-XXXXXX").string();
    std::vector<char> b(tmpl.begin(), tmpl.end());
    b.push_back('\0');
    dir = ::mkdtemp(b.data());
  }
  ~Scratch() { std::filesystem::remove_all(dir); }
  std::string path(const std::string& name) const { return dir + "/" + name; }
  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream f(path(name), std::ios::binary);
    f << text;
    return path(name);
  }
};

inline std::string slurp(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// Runs the v4host binary with args; returns exit code, stdout, stderr.
inline eval::ProcResult v4host(const std::vector<std::string>& args, double wall_s = 120) {
  std::vector<std::string> argv = {V4_BINARY};
  argv.insert(argv.end(), args.begin(), args.end());
  eval::ProcLimits lim;
  lim.wall_s = wall_s;
  return eval::run_process(argv, "", "", {}, lim, 1 << 20);
}

}  // namespace v4::test
