// Read-only memory mapping of a whole file (checkpoint shards are read zero-copy through it).
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace v4 {

class MappedFile {
 public:
  MappedFile() = default;
  explicit MappedFile(const std::string& path);  // throws InputError naming the path
  ~MappedFile();
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

  // Maps [offset, offset + len) of the file into this process now, reading from disk what the
  // page cache lacks (MADV_POPULATE_READ; on kernels older than 5.14 one read per page). Pages a
  // process maps are not "cold unmapped file pages", which some hosts' memory monitors (DAMON
  // reclaim schemes) page out after a minute: a model whose layers are first touched minutes
  // into a long prefill would otherwise read part of itself back from disk. Returns false with
  // the reason in *why (e.g. the file shrank under us: SIGBUS is avoided by the kernel's EFAULT).
  bool populate(size_t offset, size_t len, std::string* why) const;
  // Bytes of the mapping that are mapped into this process now (its Rss in /proc/self/smaps);
  // nullopt where unknown.
  std::optional<size_t> resident_bytes() const;

 private:
  void release();
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::string path_;
};

}  // namespace v4
