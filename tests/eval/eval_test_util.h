// Helpers for the eval tests: a scratch directory per test, writing files, running the CLI.
#pragma once
#include <gtest/gtest.h>
#include <fcntl.h>
#include <spawn.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "eval/subprocess.h"

extern char** environ;

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

// Polls cond every 20 ms until it holds or timeout_s have passed; returns whether it held. The
// timeout is generous on purpose: tests wait for a condition, never for a fixed time, so a loaded
// machine makes them slower, not flaky.
template <class Cond>
bool wait_until(Cond cond, double timeout_s = 120) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  while (!cond()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

inline size_t line_count(const std::string& p) {
  const std::string t = slurp(p);
  return static_cast<size_t>(std::count(t.begin(), t.end(), '\n'));
}

// Starts the v4host binary with args without waiting for it (stdout to /dev/null, stderr to
// err_path); returns its pid, or -1 if it could not be started. The caller reaps it.
inline pid_t spawn_v4host(const std::vector<std::string>& args, const std::string& err_path = "/dev/null") {
  std::vector<std::string> full = {V4_BINARY};
  full.insert(full.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& x : full) argv.push_back(x.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, V4_BINARY, &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  return rc == 0 ? pid : -1;
}

}  // namespace v4::test
