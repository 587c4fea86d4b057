// Running untrusted code (a model's solution and its hidden tests) in a bubblewrap sandbox:
// new user, PID, network, IPC, UTS and cgroup namespaces (no network at all: only a private
// loopback), a read-only root and /usr, an empty private /tmp (size-capped tmpfs), the task's own scratch
// directory as the only writable host path (mounted at /work), no host environment, rlimits on
// CPU time, address space, processes and file size, and a wall-clock limit after which the whole
// process tree is killed. When the evaluator runs as root, each run also gets its own unprivileged
// host uid (so the process limit is per run and the code cannot touch root-owned files even
// through a kernel bug in the user-namespace mapping).
//
// Fail closed: Sandbox::check() runs a probe and throws SandboxUnavailable when bubblewrap is
// missing or namespaces are refused; a run whose sandbox could not be set up is an error, never a
// test result. `unsafe` (--unsafe-no-sandbox) runs the code directly under the same rlimits and
// wall-clock limit in a scratch directory — no isolation — and reports mode "none".
#pragma once
#include <map>
#include <string>
#include <vector>

#include "core/error.h"
#include "eval/subprocess.h"

namespace v4::eval {

struct SandboxUnavailable : InputError {
  using InputError::InputError;
};

struct SandboxOptions {
  bool unsafe = false;
  std::string bwrap = "bwrap";
  long memory_bytes = 1L << 30;  // RLIMIT_AS
  long processes = 64;           // RLIMIT_NPROC
  long file_bytes = 16L << 20;   // RLIMIT_FSIZE
  long tmp_bytes = 64L << 20;    // size of the private /tmp
  std::string scratch_root;      // where per-run directories are made ("" = $TMPDIR or /tmp)
};

struct SandboxResult {
  bool setup_failed = false;  // the sandbox could not be set up: not a test result
  std::string setup_error;
  ProcResult proc;
  bool passed() const { return !setup_failed && proc.started && !proc.timed_out && proc.signal == 0 && proc.exit_code == 0; }
  std::string why() const;  // "exit 1", "killed by SIGKILL (wall-clock limit 5 s)", ...
};

class Sandbox {
 public:
  explicit Sandbox(SandboxOptions opt = {});
  // Probes that a sandboxed /usr/bin/true runs; throws SandboxUnavailable (with bubblewrap's
  // message and the --unsafe-no-sandbox hint) if not. A no-op in unsafe mode.
  void check() const;
  // Writes `files` (name -> content) into a fresh scratch dir, runs `argv` there (cwd /work in
  // the sandbox) with a CPU limit of time_limit_s and a wall-clock limit of 2x + 2 s, removes the
  // dir.
  SandboxResult run(const std::map<std::string, std::string>& files, const std::vector<std::string>& argv,
                    double time_limit_s) const;
  std::string mode() const { return opt_.unsafe ? "none" : "bubblewrap"; }
  const SandboxOptions& options() const { return opt_; }

 private:
  std::vector<std::string> bwrap_argv(const std::string& dir, const std::vector<std::string>& argv) const;
  SandboxOptions opt_;
};

}  // namespace v4::eval
