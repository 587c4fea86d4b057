#include "core/progress.h"

#include <unistd.h>

#include <cstdio>

namespace v4 {

namespace {
bool g_quiet = false;
}

void Progress::set_global_quiet(bool q) { g_quiet = q; }
bool Progress::global_quiet() { return g_quiet; }

Progress::Progress(std::string label, size_t total, bool quiet)
    : label_(std::move(label)), total_(total), enabled_(!quiet && !g_quiet && isatty(2)),
      start_(std::chrono::steady_clock::now()) {}

Progress::~Progress() { finish(); }

void Progress::update(size_t done) {
  if (!enabled_ || total_ == 0) return;
  int pct = static_cast<int>(100.0 * static_cast<double>(done) / static_cast<double>(total_));
  if (pct == last_pct_) return;
  last_pct_ = pct;
  const int width = 30;
  int fill = pct * width / 100;
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  std::fprintf(stderr, "\r%-12s [%.*s%*s] %3d%% %zu/%zu %.1fs", label_.c_str(), fill,
               "##############################", width - fill, "", pct, done, total_, secs);
  std::fflush(stderr);
}

void Progress::finish() {
  if (!enabled_ || finished_) return;
  finished_ = true;
  update(total_);
  std::fprintf(stderr, "\n");
}

}  // namespace v4
