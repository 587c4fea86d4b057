// Minimal .npy (format 1.0/2.0/3.0) reader and writer for numeric little-endian C-order arrays.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace v4 {

struct NpyArray {
  std::string dtype;            // numpy descr without byte-order char: "f4", "i4", "i8", "f8", "u1"...
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;   // raw little-endian data

  int64_t numel() const;
  std::vector<float> as_f32() const;     // converts f4/f8/i4/i8
  std::vector<int64_t> as_i64() const;   // converts i4/i8/u1/i1
};

NpyArray read_npy(const std::string& path);  // throws InputError
void write_npy_f32(const std::string& path, const float* data, const std::vector<int64_t>& shape);
void write_npy_i32(const std::string& path, const int32_t* data, const std::vector<int64_t>& shape);

}  // namespace v4
