// Running a child process with input on stdin, bounded captured output, resource limits and a
// wall-clock limit: used by the command scorer and (wrapped in bubblewrap) by the code sandbox.
#pragma once
#include <string>
#include <sys/types.h>
#include <vector>

namespace v4::eval {

struct ProcLimits {
  long cpu_s = 0;          // RLIMIT_CPU seconds (0 = unchanged)
  long memory_bytes = 0;   // RLIMIT_AS (0 = unchanged)
  long processes = 0;      // RLIMIT_NPROC (0 = unchanged)
  long file_bytes = 0;     // RLIMIT_FSIZE (0 = unchanged)
  long open_files = 0;     // RLIMIT_NOFILE (0 = unchanged)
  double wall_s = 60;      // killed (whole process group) after this long
  uid_t uid = 0;           // when switch_user: setgroups({}), setgid(gid), setuid(uid) before exec
  gid_t gid = 0;
  bool switch_user = false;
};

struct ProcResult {
  bool started = false;    // exec succeeded
  int exit_code = -1;      // when exited normally
  int signal = 0;          // when killed by a signal
  bool timed_out = false;  // the wall-clock limit hit
  std::string out, err;    // captured, each truncated to `max_output` bytes
  std::string spawn_error; // why it could not start
  double wall_s = 0;
  // Extra pipe read back when the caller asked for one (bubblewrap's --json-status-fd).
  std::string status_fd_text;
};

// Runs argv[0] (a path, or a name looked up in PATH) with `input` on stdin in directory `cwd`
// ("" = inherit), environment `env` (empty = inherit). If `status_fd` >= 3, a pipe is opened at
// that descriptor number in the child and what the child writes to it is returned.
ProcResult run_process(const std::vector<std::string>& argv, const std::string& input, const std::string& cwd,
                       const std::vector<std::string>& env, const ProcLimits& lim, size_t max_output = 1 << 16,
                       int status_fd = -1);

}  // namespace v4::eval
