#include "eval/sandbox.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

namespace v4::eval {

namespace fs = std::filesystem;

namespace {

// Host uids handed to concurrent sandboxed runs when we are root: one per run, never a real
// account's, so runs cannot signal each other and each has its own process limit.
uid_t next_sandbox_uid() {
  static std::atomic<unsigned> n{0};
  return static_cast<uid_t>(3800000 + (static_cast<unsigned>(::getpid()) % 1000) * 1000 + (n++ % 1000));
}

std::string make_scratch(const std::string& root_in) {
  std::string root = root_in;
  if (root.empty()) {
    const char* t = std::getenv("TMPDIR");
    root = t && *t ? t : "/tmp";
  }
  std::string tmpl = root + "/v4host-sandbox-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (!::mkdtemp(buf.data())) throw SandboxUnavailable("cannot create a scratch directory under " + root + ": " + std::strerror(errno));
  return buf.data();
}

}  // namespace

std::string SandboxResult::why() const {
  if (setup_failed) return "sandbox setup failed: " + setup_error;
  if (!proc.started) return "could not start: " + proc.spawn_error;
  if (proc.timed_out) return "killed at the wall-clock limit";
  if (proc.signal) {
    std::string s = std::string("killed by signal ") + (::strsignal(proc.signal) ? ::strsignal(proc.signal) : "?");
    if (proc.signal == SIGXCPU) s += " (CPU time limit)";
    return s;
  }
  return "exit " + std::to_string(proc.exit_code);
}

Sandbox::Sandbox(SandboxOptions opt) : opt_(std::move(opt)) {}

std::vector<std::string> Sandbox::bwrap_argv(const std::string& dir, const std::vector<std::string>& argv) const {
  std::vector<std::string> a = {opt_.bwrap, "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session",
                                "--clearenv", "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/work",
                                "--setenv", "TMPDIR", "/tmp", "--setenv", "LANG", "C.UTF-8",
                                "--hostname", "sandbox", "--ro-bind", "/usr", "/usr"};
  // The usual merged-/usr links; whatever else a system has at the root is not visible.
  for (const char* l : {"bin", "sbin", "lib", "lib32", "lib64", "libx32"}) {
    std::error_code ec;
    if (fs::is_symlink(std::string("/") + l, ec)) {
      a.insert(a.end(), {"--symlink", fs::read_symlink(std::string("/") + l, ec).string(), std::string("/") + l});
    } else if (fs::is_directory(std::string("/") + l, ec)) {
      a.insert(a.end(), {"--ro-bind", std::string("/") + l, std::string("/") + l});
    }
  }
  // Only what programs need from /etc: the dynamic linker cache and alternatives links.
  a.insert(a.end(), {"--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache", "--ro-bind-try", "/etc/alternatives", "/etc/alternatives",
                     "--proc", "/proc", "--dev", "/dev", "--size", std::to_string(opt_.tmp_bytes), "--tmpfs", "/tmp",
                     "--bind", dir, "/work", "--remount-ro", "/", "--chdir", "/work", "--json-status-fd", "3", "--"});
  a.insert(a.end(), argv.begin(), argv.end());
  return a;
}

SandboxResult Sandbox::run(const std::map<std::string, std::string>& files, const std::vector<std::string>& argv,
                           double time_limit_s) const {
  SandboxResult r;
  std::string dir;
  try {
    dir = make_scratch(opt_.scratch_root);
  } catch (const std::exception& e) {
    r.setup_failed = true;
    r.setup_error = e.what();
    return r;
  }
  ProcLimits lim;
  lim.cpu_s = std::max(1L, static_cast<long>(std::ceil(time_limit_s)));
  lim.wall_s = 2 * time_limit_s + 2;
  lim.memory_bytes = opt_.memory_bytes;
  lim.processes = opt_.processes;
  lim.file_bytes = opt_.file_bytes;
  lim.open_files = 256;
  const bool root = ::geteuid() == 0;
  if (root) {
    lim.switch_user = true;
    lim.uid = next_sandbox_uid();
    lim.gid = lim.uid;
  }
  for (const auto& [name, content] : files) {
    std::ofstream f(dir + "/" + name, std::ios::binary);
    f << content;
  }
  if (root) {
    std::error_code ec;
    for (const auto& e : fs::recursive_directory_iterator(dir, ec)) (void)!::chown(e.path().c_str(), lim.uid, lim.gid);
    (void)!::chown(dir.c_str(), lim.uid, lim.gid);
  }
  if (opt_.unsafe) {
    std::vector<std::string> env = {"PATH=/usr/bin:/bin", "HOME=" + dir, "TMPDIR=" + dir, "LANG=C.UTF-8"};
    r.proc = run_process(argv, "", dir, env, lim);
  } else {
    // The runtime needs more address space than the program: bwrap itself is small, and the
    // limit applies to each process separately.
    r.proc = run_process(bwrap_argv(dir, argv), "", "", {"PATH=/usr/bin:/bin"}, lim, 1 << 16, 3);
    const bool child_started = r.proc.status_fd_text.find("child-pid") != std::string::npos;
    if (!child_started && !r.proc.timed_out) {
      r.setup_failed = true;
      r.setup_error = r.proc.err.empty() ? (r.proc.spawn_error.empty() ? "bubblewrap did not start the program" : r.proc.spawn_error) : r.proc.err;
      while (!r.setup_error.empty() && (r.setup_error.back() == '\n')) r.setup_error.pop_back();
    } else {
      // bwrap reports the program's own status on the status fd; its exit code mirrors it.
      size_t p = r.proc.status_fd_text.find("\"exit-code\"");
      if (p != std::string::npos) {
        size_t c = r.proc.status_fd_text.find(':', p);
        if (c != std::string::npos) {
          int code = std::atoi(r.proc.status_fd_text.c_str() + c + 1);
          // 128+N: bwrap's way of saying the program died of signal N.
          if (code > 128 && code < 160 && r.proc.signal == 0) {
            r.proc.signal = code - 128;
            r.proc.exit_code = -1;
          } else {
            r.proc.exit_code = code;
          }
        }
      }
    }
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
  return r;
}

void Sandbox::check() const {
  if (opt_.unsafe) return;
  SandboxResult r = run({}, {"/usr/bin/true"}, 5);
  if (r.setup_failed || !r.passed())
    throw SandboxUnavailable("the code sandbox cannot be set up (" + (r.setup_failed ? r.setup_error : r.why()) +
                             "): install bubblewrap (apt-get install bubblewrap) and allow unprivileged user namespaces, "
                             "or pass --unsafe-no-sandbox to run untrusted code WITHOUT isolation");
}

}  // namespace v4::eval
