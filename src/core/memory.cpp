#include "core/memory.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <fstream>
#include <stdexcept>
#include <string>

namespace v4 {

std::optional<size_t> heap_in_use_bytes() {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
  const struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
#else
  return std::nullopt;
#endif
}

std::optional<size_t> usable_memory_bytes() {
  std::optional<size_t> total;
  std::ifstream mi("/proc/meminfo");
  std::string key;
  size_t kb = 0;
  while (mi >> key >> kb) {
    if (key == "MemTotal:") {
      total = kb * 1024;
      break;
    }
    mi.ignore(256, '\n');
  }
  // cgroup v2: "0::/path" in /proc/self/cgroup, the limit in /sys/fs/cgroup/path/memory.max
  // ("max" when unlimited).
  std::ifstream cg("/proc/self/cgroup");
  std::string line;
  while (std::getline(cg, line)) {
    if (line.rfind("0::", 0) != 0) continue;
    std::ifstream mx("/sys/fs/cgroup" + line.substr(3) + "/memory.max");
    std::string v;
    if (mx >> v && v != "max") {
      try {
        const size_t lim = std::stoull(v);
        if (!total || lim < *total) total = lim;
      } catch (const std::exception&) {
      }
    }
  }
  return total;
}

void release_free_memory() {
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
}

}  // namespace v4
