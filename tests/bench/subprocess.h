// Runs the real v4host binary from tests: capture exit code, stdout and stderr; a background
// process handle (SIGINT / kill, read its stderr) for servers and interrupted runs.
#pragma once
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <vector>

namespace v4::testing {

struct ProcResult {
  int rc = -1;  // exit code; 128+N when killed by signal N
  std::string out, err;
};

class Proc {
 public:
  explicit Proc(const std::vector<std::string>& args) {
    int o[2], e[2];
    if (::pipe(o) != 0 || ::pipe(e) != 0) return;
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(o[1], 1);
      ::dup2(e[1], 2);
      ::close(o[0]);
      ::close(e[0]);
      ::close(o[1]);
      ::close(e[1]);
      std::vector<char*> argv;
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(o[1]);
    ::close(e[1]);
    out_fd_ = o[0];
    err_fd_ = e[0];
    ::fcntl(out_fd_, F_SETFL, O_NONBLOCK);
    ::fcntl(err_fd_, F_SETFL, O_NONBLOCK);
  }
  ~Proc() {
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGKILL);
      wait(std::chrono::seconds(10));
    }
    if (out_fd_ >= 0) ::close(out_fd_);
    if (err_fd_ >= 0) ::close(err_fd_);
  }
  void signal(int s) {
    if (pid_ > 0 && !reaped_) ::kill(pid_, s);
  }
  // Reads available output for up to `ms`; returns true when `needle` appeared in stderr.
  bool wait_stderr(const std::string& needle, int ms) {
    auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (std::chrono::steady_clock::now() < end) {
      pump(100);
      if (res_.err.find(needle) != std::string::npos) return true;
    }
    return false;
  }
  // Waits for exit (SIGKILL after the timeout).
  ProcResult wait(std::chrono::milliseconds timeout) {
    auto end = std::chrono::steady_clock::now() + timeout;
    while (!reaped_) {
      pump(50);
      int st = 0;
      pid_t r = ::waitpid(pid_, &st, WNOHANG);
      if (r == pid_) {
        reaped_ = true;
        res_.rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        break;
      }
      if (std::chrono::steady_clock::now() > end) ::kill(pid_, SIGKILL), end += std::chrono::seconds(5);
    }
    pump(0);
    return res_;
  }
  const ProcResult& so_far() const { return res_; }

 private:
  void pump(int ms) {
    pollfd p[2] = {{out_fd_, POLLIN, 0}, {err_fd_, POLLIN, 0}};
    ::poll(p, 2, ms);
    char buf[65536];
    ssize_t n;
    while ((n = ::read(out_fd_, buf, sizeof buf)) > 0) res_.out.append(buf, n);
    while ((n = ::read(err_fd_, buf, sizeof buf)) > 0) res_.err.append(buf, n);
  }
  pid_t pid_ = -1;
  int out_fd_ = -1, err_fd_ = -1;
  bool reaped_ = false;
  ProcResult res_;
};

inline ProcResult run_binary(std::vector<std::string> args, int timeout_s = 120) {
  args.insert(args.begin(), V4_BINARY);
  Proc p(args);
  return p.wait(std::chrono::seconds(timeout_s));
}

}  // namespace v4::testing
