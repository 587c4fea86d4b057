// The code sandbox holds against hostile "solutions": network access, writing outside its
// directory, a fork bomb, a memory hog, an infinite loop and reading the host's secrets. Each
// attack asserts its own success (so a breach would be a passing test); each must come back as a
// failed test, and the host must show no trace of it.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <dirent.h>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <thread>

#include "eval/code_suite.h"
#include "eval/sandbox.h"
#include "eval_test_util.h"

using namespace v4;

namespace {

bool have_bwrap() { return ::access("/usr/bin/bwrap", X_OK) == 0; }

eval::Outcome run_attack(const eval::Sandbox& sb, const std::string& code, double time_limit = 3) {
  eval::Item task;
  task.id = "attack";
  task.expected = {{"tests", "print('attack succeeded')"}, {"language", "python"}, {"time_limit", time_limit}};
  eval::Outcome o;
  eval::score_code(task, "```python\n" + code + "\n```", sb, o);
  return o;
}

// Host processes named `name` (/proc/PID/comm). The fork bomb names itself, so its processes are
// told apart from everything else on a shared machine (other tests' sandboxes included).
int count_named(const std::string& name) {
  int n = 0;
  DIR* d = ::opendir("/proc");
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    std::ifstream f(std::string("/proc/") + e->d_name + "/comm");
    std::string comm;
    if (std::getline(f, comm) && comm == name) ++n;
  }
  ::closedir(d);
  return n;
}

class Sandboxed : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!have_bwrap()) GTEST_SKIP() << "bubblewrap not installed (scripts/setup.sh)";
    sb.check();
  }
  eval::Sandbox sb;
};

}  // namespace

TEST_F(Sandboxed, AWellBehavedSolutionPasses) {
  auto o = run_attack(sb, "import os\nassert os.getcwd() == '/work'\nopen('/work/scratch.txt', 'w').write('ok')\nopen('/tmp/t', 'w').write('ok')");
  EXPECT_TRUE(o.passed) << o.detail.dump();
}

TEST_F(Sandboxed, NoNetwork) {
  // A listener on the host's loopback: the sandbox has its own (empty) network namespace.
  int ls = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(ls, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(ls, 4), 0);
  socklen_t len = sizeof a;
  ::getsockname(ls, reinterpret_cast<sockaddr*>(&a), &len);
  const int port = ntohs(a.sin_port);
  auto o = run_attack(sb, "import socket\nok = False\nfor host, port in [('127.0.0.1', " + std::to_string(port) +
                              "), ('1.1.1.1', 53), ('8.8.8.8', 443)]:\n    try:\n        socket.create_connection((host, port), timeout=1).close()\n        ok = True\n"
                              "    except OSError as e:\n        print('blocked', host, e)\nassert ok, 'no connection'");
  EXPECT_FALSE(o.passed);
  EXPECT_NE(o.detail.value("stderr", "").find("no connection"), std::string::npos) << o.detail.dump();
  // Nothing reached the host's listener.
  ::fcntl(ls, F_SETFL, O_NONBLOCK);
  EXPECT_LT(::accept(ls, nullptr, nullptr), 0);
  ::close(ls);
}

TEST_F(Sandboxed, NoWritesOutsideItsDirectory) {
  test::Scratch host;  // a host directory the attack knows the path of
  const std::string target = host.path("pwned");
  auto o = run_attack(sb, "wrote = []\nfor p in ['" + target + "', '/usr/pwned', '/etc/pwned', '/pwned', '" + std::string(V4_SOURCE_DIR) +
                              "/pwned']:\n    try:\n        open(p, 'w').write('x')\n        wrote.append(p)\n    except OSError as e:\n        print('refused', p, e)\n"
                              "assert wrote, 'nothing written outside'");
  EXPECT_FALSE(o.passed);
  EXPECT_FALSE(std::filesystem::exists(target));
  EXPECT_FALSE(std::filesystem::exists("/usr/pwned"));
  EXPECT_FALSE(std::filesystem::exists("/etc/pwned"));
  EXPECT_FALSE(std::filesystem::exists("/pwned"));
  EXPECT_FALSE(std::filesystem::exists(std::string(V4_SOURCE_DIR) + "/pwned"));
}

TEST_F(Sandboxed, ForkBombIsContained) {
  const std::string name = "v4bomb" + std::to_string(::getpid());
  ASSERT_EQ(count_named(name), 0);
  // A watcher sees the bomb's processes while it runs (so the attack really forked).
  std::atomic<bool> done{false};
  std::atomic<int> most{0};
  std::thread watch([&] {
    while (!done) {
      most = std::max(most.load(), count_named(name));
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  struct Join {  // also when run_attack throws
    std::atomic<bool>& done;
    std::thread& t;
    ~Join() {
      done = true;
      if (t.joinable()) t.join();
    }
  } join{done, watch};
  const auto t0 = std::chrono::steady_clock::now();
  auto o = run_attack(sb,
                      "import ctypes, os\nctypes.CDLL(None).prctl(15, b'" + name +
                          "', 0, 0, 0)\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
                      2);
  const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  done = true;
  watch.join();
  EXPECT_FALSE(o.passed);
  EXPECT_GT(most.load(), 1) << "the bomb did not fork: " << o.detail.dump();
  EXPECT_LT(dt, 15.0);  // the wall-clock limit (2 x 2 + 2 s) ended it
  // Every process it made is gone (the PID namespace died with its init).
  EXPECT_TRUE(test::wait_until([&] { return count_named(name) == 0; }, 30)) << count_named(name) << " processes left behind";
}

TEST_F(Sandboxed, MemoryHogIsRefused) {
  auto o = run_attack(sb, "x = bytearray(8 << 30)\nx[-1] = 1\nprint(len(x))");
  EXPECT_FALSE(o.passed);
  EXPECT_NE(o.detail.value("stderr", "").find("MemoryError"), std::string::npos) << o.detail.dump();
  // And growing slowly instead of at once.
  auto o2 = run_attack(sb, "xs = []\nwhile True:\n    xs.append(bytearray(64 << 20))");
  EXPECT_FALSE(o2.passed);
}

TEST_F(Sandboxed, InfiniteLoopIsKilled) {
  const auto t0 = std::chrono::steady_clock::now();
  auto o = run_attack(sb, "while True:\n    pass", 1);
  EXPECT_FALSE(o.passed);
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 10.0);
  const std::string why = o.detail.value("result", "");
  EXPECT_TRUE(why.find("CPU time limit") != std::string::npos || why.find("wall-clock") != std::string::npos) << why;
  // Sleeping forever uses no CPU: the wall-clock limit ends it.
  auto o2 = run_attack(sb, "import time\ntime.sleep(3600)", 1);
  EXPECT_FALSE(o2.passed);
  EXPECT_NE(o2.detail.value("result", "").find("wall-clock"), std::string::npos) << o2.detail.dump();
}

TEST_F(Sandboxed, HostSecretsAreNotReadable) {
  test::Scratch host;
  const std::string secret = host.write("id_ed25519", "TOP-SECRET-KEY-MATERIAL");
  ::setenv("V4HOST_TEST_SECRET", "TOP-SECRET-ENV", 1);
  auto o = run_attack(sb, "import os, glob\nfound = []\nfor p in ['" + secret +
                              "', '/etc/shadow', '/root/.bash_history', '/etc/passwd'] + glob.glob('/home/*/.ssh/*') + glob.glob('/root/.ssh/*'):\n"
                              "    try:\n        found.append(open(p).read())\n    except OSError as e:\n        print('refused', p, e)\n"
                              "if os.environ.get('V4HOST_TEST_SECRET'):\n    found.append(os.environ['V4HOST_TEST_SECRET'])\n"
                              "for pid in os.listdir('/proc'):\n    try:\n        found.append(open('/proc/%s/environ' % pid).read())\n    except OSError:\n        pass\n"
                              "leak = [f for f in found if 'TOP-SECRET' in f]\nassert leak, 'nothing leaked'");
  ::unsetenv("V4HOST_TEST_SECRET");
  EXPECT_FALSE(o.passed);
  EXPECT_NE(o.detail.value("stderr", "").find("nothing leaked"), std::string::npos) << o.detail.dump();
}

TEST_F(Sandboxed, HugeFilesAndFullTmpAreRefused) {
  // 64 MiB into its own directory: over the 16 MiB file-size limit.
  auto o = run_attack(sb, "with open('/work/big', 'wb') as f:\n    for i in range(64):\n        f.write(b'x' * (1 << 20))");
  EXPECT_FALSE(o.passed);
  // Many small files in /tmp: the private tmpfs is capped (64 MiB).
  auto o2 = run_attack(sb, "for i in range(200):\n    open('/tmp/f%d' % i, 'wb').write(b'x' * (1 << 20))");
  EXPECT_FALSE(o2.passed);
  EXPECT_NE(o2.detail.value("stderr", "").find("No space left"), std::string::npos) << o2.detail.dump();
}

TEST(Sandbox, FailsClosedWhenItCannotBeSetUp) {
  eval::SandboxOptions so;
  so.bwrap = "/nonexistent/bwrap";
  eval::Sandbox sb(so);
  EXPECT_THROW(sb.check(), eval::SandboxUnavailable);
  // A run whose sandbox did not come up is an error, never a result.
  eval::Outcome o = run_attack(sb, "print('hi')");
  EXPECT_FALSE(o.passed);
  EXPECT_EQ(o.error_kind, "sandbox");
}

TEST(Sandbox, UnsafeModeSaysSo) {
  eval::SandboxOptions so;
  so.unsafe = true;
  eval::Sandbox sb(so);
  EXPECT_NO_THROW(sb.check());
  auto o = run_attack(sb, "assert 1 + 1 == 2");
  EXPECT_TRUE(o.passed) << o.detail.dump();
  EXPECT_EQ(o.detail.value("sandbox", ""), "none");
}
