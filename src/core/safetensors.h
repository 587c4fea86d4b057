// Safetensors reading (memory-mapped, zero-copy) and writing, single files and sharded
// checkpoints with model.safetensors.index.json. Every structural problem is an error naming
// the tensor and the file.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/mmap_file.h"

namespace v4 {

enum class DType { F32, F16, BF16, F8_E4M3, F8_E8M0, I8, U8, I16, I32, I64, F64, BOOL };

const char* dtype_name(DType t);
size_t dtype_size(DType t);
bool parse_dtype(const std::string& s, DType* out);

struct TensorView {
  std::string name;
  std::string file;             // shard path (for error messages)
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;
  size_t nbytes = 0;
  int64_t numel() const;
  std::string shape_str() const;
};

// One .safetensors file, mapped.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);  // throws CheckpointError
  const std::map<std::string, TensorView>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& path() const { return file_.path(); }
  const MappedFile& mapping() const { return file_; }

 private:
  MappedFile file_;
  std::map<std::string, TensorView> tensors_;
  std::map<std::string, std::string> metadata_;
};

// A checkpoint directory: either model.safetensors.index.json + shards, or *.safetensors files.
class TensorStore {
 public:
  explicit TensorStore(const std::string& dir);  // throws CheckpointError
  const TensorView* find(const std::string& name) const;
  const TensorView& get(const std::string& name) const;  // throws CheckpointError if absent
  std::vector<std::string> names() const;
  size_t total_bytes() const;
  // Maps every file's pages into this process (MappedFile::populate), `chunk` bytes per call,
  // `progress(done, total)` after each; throws CheckpointError naming the file it could not map.
  // Returns the bytes populated (the files' whole size, headers included).
  size_t populate(const std::function<void(size_t, size_t)>& progress, size_t chunk = size_t{256} << 20) const;
  // Bytes of the files mapped into this process now (nullopt where unknown).
  std::optional<size_t> resident_bytes() const;
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorView*> index_;
};

// Streaming writer: add tensors, then write(). Data is copied at add() time.
class SafetensorsWriter {
 public:
  void add(const std::string& name, DType dtype, std::vector<int64_t> shape, const void* data,
           size_t nbytes);
  void write(const std::string& path, const std::map<std::string, std::string>& metadata = {}) const;
  std::vector<std::string> names() const;
  size_t bytes() const;
  void clear() { entries_.clear(); }

 private:
  struct Entry {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    std::vector<uint8_t> data;
  };
  std::vector<Entry> entries_;
};

}  // namespace v4
