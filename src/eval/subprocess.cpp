#include "eval/subprocess.h"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

namespace v4::eval {

namespace {

void set_limit(int res, long v) {
  if (v <= 0) return;
  struct rlimit rl;
  rl.rlim_cur = rl.rlim_max = static_cast<rlim_t>(v);
  // CPU: SIGXCPU at the soft limit (so the report can say why), SIGKILL a second later.
  if (res == RLIMIT_CPU) rl.rlim_max = rl.rlim_cur + 1;
  ::setrlimit(res, &rl);
}

}  // namespace

ProcResult run_process(const std::vector<std::string>& argv, const std::string& input, const std::string& cwd,
                       const std::vector<std::string>& env, const ProcLimits& lim, size_t max_output, int status_fd) {
  ProcResult r;
  if (argv.empty()) {
    r.spawn_error = "empty command";
    return r;
  }
  // Everything the child needs is prepared before fork: after it only async-signal-safe calls.
  std::vector<char*> cargv, cenv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  for (const auto& e : env) cenv.push_back(const_cast<char*>(e.c_str()));
  cenv.push_back(nullptr);
  int in_p[2], out_p[2], err_p[2], exec_p[2], st_p[2] = {-1, -1};
  if (::pipe2(in_p, O_CLOEXEC) || ::pipe2(out_p, O_CLOEXEC) || ::pipe2(err_p, O_CLOEXEC) || ::pipe2(exec_p, O_CLOEXEC) ||
      (status_fd >= 3 && ::pipe2(st_p, O_CLOEXEC))) {
    r.spawn_error = std::string("pipe: ") + std::strerror(errno);
    return r;
  }
  const auto t0 = std::chrono::steady_clock::now();
  pid_t pid = ::fork();
  if (pid < 0) {
    r.spawn_error = std::string("fork: ") + std::strerror(errno);
    for (int fd : {in_p[0], in_p[1], out_p[0], out_p[1], err_p[0], err_p[1], exec_p[0], exec_p[1], st_p[0], st_p[1]})
      if (fd >= 0) ::close(fd);
    return r;
  }
  if (pid == 0) {
    ::setpgid(0, 0);
    ::dup2(in_p[0], 0);
    ::dup2(out_p[1], 1);
    ::dup2(err_p[1], 2);
    if (status_fd >= 3) ::dup2(st_p[1], status_fd);  // dup2 clears FD_CLOEXEC on the copy
    ::signal(SIGPIPE, SIG_DFL);
    if (!cwd.empty() && ::chdir(cwd.c_str()) != 0) {
      int e = errno;
      (void)!::write(exec_p[1], &e, sizeof e);
      ::_exit(127);
    }
    set_limit(RLIMIT_CPU, lim.cpu_s);
    set_limit(RLIMIT_AS, lim.memory_bytes);
    set_limit(RLIMIT_FSIZE, lim.file_bytes);
    set_limit(RLIMIT_NOFILE, lim.open_files);
    if (lim.switch_user) {
      if (::setgroups(0, nullptr) != 0 || ::setgid(lim.gid) != 0 || ::setuid(lim.uid) != 0) {
        int e = errno;
        (void)!::write(exec_p[1], &e, sizeof e);
        ::_exit(127);
      }
    }
    set_limit(RLIMIT_NPROC, lim.processes);  // after the uid switch: counted for the new user
    if (env.empty()) ::execvp(cargv[0], cargv.data());
    else ::execvpe(cargv[0], cargv.data(), cenv.data());
    int e = errno;
    (void)!::write(exec_p[1], &e, sizeof e);
    ::_exit(127);
  }
  ::close(in_p[0]);
  ::close(out_p[1]);
  ::close(err_p[1]);
  ::close(exec_p[1]);
  if (st_p[1] >= 0) ::close(st_p[1]);
  int exec_errno = 0;
  if (::read(exec_p[0], &exec_errno, sizeof exec_errno) == static_cast<ssize_t>(sizeof exec_errno)) {
    r.spawn_error = std::string("cannot run ") + argv[0] + ": " + std::strerror(exec_errno);
  } else {
    r.started = true;
  }
  ::close(exec_p[0]);

  // Feed stdin and drain stdout/stderr/status together so neither side blocks on a full pipe.
  size_t in_off = 0;
  int in_fd = in_p[1];
  ::fcntl(in_fd, F_SETFL, O_NONBLOCK);
  if (input.empty()) {
    ::close(in_fd);
    in_fd = -1;
  }
  int fds[3] = {out_p[0], err_p[0], st_p[0]};
  std::string* sinks[3] = {&r.out, &r.err, &r.status_fd_text};
  const auto deadline = t0 + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                 std::chrono::duration<double>(lim.wall_s > 0 ? lim.wall_s : 1e9));
  bool killed = false;
  for (;;) {
    std::vector<pollfd> p;
    for (int i = 0; i < 3; ++i)
      if (fds[i] >= 0) p.push_back({fds[i], POLLIN, 0});
    if (in_fd >= 0) p.push_back({in_fd, POLLOUT, 0});
    if (p.empty()) break;
    auto now = std::chrono::steady_clock::now();
    if (now >= deadline && !killed) {
      ::kill(-pid, SIGKILL);
      ::kill(pid, SIGKILL);
      killed = true;
      r.timed_out = true;
    }
    int ms = killed ? 200 : static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count()) + 1;
    int n = ::poll(p.data(), p.size(), ms);
    if (n < 0 && errno == EINTR) continue;
    if (n == 0 && killed) break;  // killed and a grandchild still holds the pipes: stop reading
    for (const auto& q : p) {
      if (!q.revents) continue;
      if (q.fd == in_fd) {
        ssize_t w = ::write(in_fd, input.data() + in_off, input.size() - in_off);
        if (w > 0) in_off += static_cast<size_t>(w);
        if (w < 0 && errno != EAGAIN && errno != EINTR) in_off = input.size();
        if (in_off >= input.size()) {
          ::close(in_fd);
          in_fd = -1;
        }
        continue;
      }
      for (int i = 0; i < 3; ++i) {
        if (q.fd != fds[i]) continue;
        char buf[8192];
        ssize_t got = ::read(fds[i], buf, sizeof buf);
        if (got <= 0) {
          if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
          ::close(fds[i]);
          fds[i] = -1;
        } else if (sinks[i]->size() < max_output) {
          sinks[i]->append(buf, std::min(static_cast<size_t>(got), max_output - sinks[i]->size()));
        }
      }
    }
  }
  for (int fd : fds)
    if (fd >= 0) ::close(fd);
  if (in_fd >= 0) ::close(in_fd);
  int status = 0;
  for (;;) {
    pid_t w = ::waitpid(pid, &status, killed ? 0 : WNOHANG);
    if (w == pid) break;
    if (w < 0 && errno != EINTR) break;
    if (w == 0) {
      if (std::chrono::steady_clock::now() >= deadline) {
        ::kill(-pid, SIGKILL);
        ::kill(pid, SIGKILL);
        killed = true;
        r.timed_out = true;
      } else {
        ::usleep(2000);
      }
    }
  }
  // Whatever is left in the child's process group goes with it.
  ::kill(-pid, SIGKILL);
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  else if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
  r.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace v4::eval
