#include "core/mmap_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace v4 {

MappedFile::MappedFile(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw InputError("cannot open " + path + ": " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    throw InputError("cannot stat " + path + ": " + std::strerror(e));
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int e = errno;
      ::close(fd);
      throw InputError("cannot mmap " + path + ": " + std::strerror(e));
    }
    data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);
}

MappedFile::~MappedFile() { release(); }

MappedFile::MappedFile(MappedFile&& o) noexcept { *this = std::move(o); }

MappedFile& MappedFile::operator=(MappedFile&& o) noexcept {
  if (this != &o) {
    release();
    data_ = o.data_;
    size_ = o.size_;
    path_ = std::move(o.path_);
    o.data_ = nullptr;
    o.size_ = 0;
  }
  return *this;
}

bool MappedFile::populate(size_t offset, size_t len, std::string* why) const {
  if (!data_ || offset >= size_) return true;
  len = std::min(len, size_ - offset);
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  // madvise wants a page-aligned start; the mapping itself is page-aligned.
  const size_t start = offset / page * page;
  uint8_t* p = const_cast<uint8_t*>(data_) + start;
  const size_t n = len + (offset - start);
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22  // Linux 5.14 (uapi/asm-generic/mman-common.h)
#endif
  if (::madvise(p, n, MADV_POPULATE_READ) == 0) return true;
  const int e = errno;
  if (e == EINVAL) {
    // An older kernel: fault each page in by reading one byte of it.
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < n; i += page) sink = sink + p[i];
    (void)sink;
    return true;
  }
  if (why) *why = path_ + ": cannot map its pages (" + std::strerror(e) + ")";
  return false;
}

std::optional<size_t> MappedFile::resident_bytes() const {
  if (!data_) return 0;
  std::ifstream f("/proc/self/smaps");
  if (!f) return std::nullopt;
  char head[32];
  std::snprintf(head, sizeof head, "%lx-", reinterpret_cast<unsigned long>(data_));
  std::string line;
  bool in = false;
  while (std::getline(f, line)) {
    if (line.rfind(head, 0) == 0) {
      in = true;
      continue;
    }
    if (!in) continue;
    if (line.rfind("Rss:", 0) == 0) {
      std::istringstream is(line.substr(4));
      size_t kb = 0;
      is >> kb;
      return kb * 1024;
    }
  }
  return std::nullopt;
}

void MappedFile::release() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
  data_ = nullptr;
  size_ = 0;
}

}  // namespace v4
