#include "router/subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

extern char** environ;

namespace v4::router {

ProcessResult run_process(const std::vector<std::string>& argv, const std::string& input, double timeout_s) {
  ProcessResult r;
  int in[2], out[2], err[2];
  if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC)) {
    r.spawn_failed = true;
    r.err = "pipe failed";
    return r;
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err[1], 2);
  posix_spawnattr_t at;
  posix_spawnattr_init(&at);
  posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  posix_spawnattr_setpgroup(&at, 0);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&at, &none);
  posix_spawnattr_setsigdefault(&at, &all);
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, args[0], &fa, &at, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&at);
  close(in[0]);
  close(out[1]);
  close(err[1]);
  if (rc != 0) {
    close(in[1]);
    close(out[0]);
    close(err[0]);
    r.spawn_failed = true;
    r.err = std::string("cannot run ") + argv[0] + ": " + std::strerror(rc);
    return r;
  }
  fcntl(in[1], F_SETFL, O_NONBLOCK);
  size_t written = 0;
  if (input.empty()) {
    close(in[1]);
    in[1] = -1;
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  bool out_open = true, err_open = true;
  char buf[8192];
  while (out_open || err_open) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0) {
      r.timed_out = true;
      break;
    }
    pollfd fds[3];
    int n = 0;
    int io = -1, oo = -1, eo = -1;
    if (in[1] >= 0) { io = n; fds[n++] = {in[1], POLLOUT, 0}; }
    if (out_open) { oo = n; fds[n++] = {out[0], POLLIN, 0}; }
    if (err_open) { eo = n; fds[n++] = {err[0], POLLIN, 0}; }
    if (poll(fds, n, static_cast<int>(left)) < 0) continue;
    if (io >= 0 && fds[io].revents) {
      ssize_t w = write(in[1], input.data() + written, input.size() - written);
      if (w > 0) written += static_cast<size_t>(w);
      if (w < 0 && errno != EAGAIN) written = input.size();  // EPIPE: the command does not read stdin
      if (written >= input.size()) {
        close(in[1]);
        in[1] = -1;
      }
    }
    auto drain = [&](int idx, int fd, bool& open, std::string& dst) {
      if (idx < 0 || !fds[idx].revents) return;
      ssize_t k = read(fd, buf, sizeof buf);
      if (k <= 0) open = false;
      else if (dst.size() < 65536) dst.append(buf, static_cast<size_t>(std::min<ssize_t>(k, 65536 - static_cast<ssize_t>(dst.size()))));
    };
    drain(oo, out[0], out_open, r.out);
    drain(eo, err[0], err_open, r.err);
  }
  if (in[1] >= 0) close(in[1]);
  close(out[0]);
  close(err[0]);
  if (r.timed_out) kill(-pid, SIGKILL);
  int st = 0;
  // After the pipes closed the process is exiting; bound the wait by the deadline too.
  for (;;) {
    pid_t w = waitpid(pid, &st, r.timed_out ? 0 : WNOHANG);
    if (w == pid) break;
    if (w < 0) break;
    if (std::chrono::steady_clock::now() > deadline) {
      r.timed_out = true;
      kill(-pid, SIGKILL);
      waitpid(pid, &st, 0);
      break;
    }
    usleep(1000);
  }
  if (!r.timed_out && WIFEXITED(st)) r.exit_code = WEXITSTATUS(st);
  return r;
}

}  // namespace v4::router
