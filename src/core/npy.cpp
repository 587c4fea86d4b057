#include "core/npy.h"

#include <cstring>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace v4 {

int64_t NpyArray::numel() const {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

namespace {

size_t dtype_size(const std::string& d) {
  if (d == "f4" || d == "i4" || d == "u4") return 4;
  if (d == "f8" || d == "i8" || d == "u8") return 8;
  if (d == "f2" || d == "i2" || d == "u2") return 2;
  if (d == "i1" || d == "u1" || d == "b1") return 1;
  return 0;
}

template <class T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

std::string dict_value(const std::string& h, const std::string& key) {
  auto k = h.find("'" + key + "'");
  if (k == std::string::npos) return {};
  auto c = h.find(':', k);
  auto s = h.find_first_not_of(' ', c + 1);
  if (h[s] == '\'') return h.substr(s + 1, h.find('\'', s + 1) - s - 1);
  if (h[s] == '(') return h.substr(s + 1, h.find(')', s) - s - 1);
  auto e = h.find_first_of(",}", s);
  return h.substr(s, e - s);
}

void write_npy(const std::string& path, const char* descr, const void* data, size_t elem,
               const std::vector<int64_t>& shape) {
  std::ostringstream sh;
  size_t n = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    sh << shape[i] << (shape.size() == 1 ? "," : (i + 1 < shape.size() ? ", " : ""));
    n *= static_cast<size_t>(shape[i]);
  }
  std::string header = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': (" +
                       sh.str() + "), }";
  size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header.push_back('\n');
  std::ofstream f(path, std::ios::binary);
  if (!f) throw InputError("cannot write " + path);
  const char magic[] = "\x93NUMPY\x01\x00";
  f.write(magic, 8);
  uint16_t hl = static_cast<uint16_t>(header.size());
  f.write(reinterpret_cast<const char*>(&hl), 2);
  f.write(header.data(), static_cast<std::streamsize>(header.size()));
  f.write(static_cast<const char*>(data), static_cast<std::streamsize>(n * elem));
  if (!f) throw InputError("short write to " + path);
}

}  // namespace

NpyArray read_npy(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw InputError("cannot open " + path);
  std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (all.size() < 10 || all.compare(0, 6, "\x93NUMPY") != 0) throw InputError(path + ": not a .npy file");
  const uint8_t major = static_cast<uint8_t>(all[6]);
  size_t hlen, off;
  if (major == 1) {
    hlen = load<uint16_t>(reinterpret_cast<const uint8_t*>(all.data() + 8));
    off = 10;
  } else {
    if (all.size() < 12) throw InputError(path + ": truncated .npy header");
    hlen = load<uint32_t>(reinterpret_cast<const uint8_t*>(all.data() + 8));
    off = 12;
  }
  if (off + hlen > all.size()) throw InputError(path + ": truncated .npy header");
  std::string h = all.substr(off, hlen);
  NpyArray a;
  std::string descr = dict_value(h, "descr");
  if (descr.size() < 2) throw InputError(path + ": bad descr in .npy header");
  if (descr[0] == '>') throw InputError(path + ": big-endian .npy is not supported");
  a.dtype = (descr[0] == '<' || descr[0] == '|' || descr[0] == '=') ? descr.substr(1) : descr;
  if (dict_value(h, "fortran_order").find("True") != std::string::npos)
    throw InputError(path + ": fortran-order .npy is not supported");
  std::string shp = dict_value(h, "shape");
  std::stringstream ss(shp);
  std::string tok;
  while (std::getline(ss, tok, ',')) {
    auto b = tok.find_first_not_of(" ");
    if (b == std::string::npos) continue;
    a.shape.push_back(std::stoll(tok.substr(b)));
  }
  size_t es = dtype_size(a.dtype);
  if (!es) throw InputError(path + ": unsupported dtype " + descr);
  size_t nbytes = static_cast<size_t>(a.numel()) * es;
  if (off + hlen + nbytes > all.size()) throw InputError(path + ": truncated .npy data");
  a.bytes.assign(all.begin() + static_cast<long>(off + hlen), all.begin() + static_cast<long>(off + hlen + nbytes));
  return a;
}

std::vector<float> NpyArray::as_f32() const {
  std::vector<float> out(static_cast<size_t>(numel()));
  const uint8_t* p = bytes.data();
  for (size_t i = 0; i < out.size(); ++i) {
    if (dtype == "f4") out[i] = load<float>(p + 4 * i);
    else if (dtype == "f8") out[i] = static_cast<float>(load<double>(p + 8 * i));
    else if (dtype == "i4") out[i] = static_cast<float>(load<int32_t>(p + 4 * i));
    else if (dtype == "i8") out[i] = static_cast<float>(load<int64_t>(p + 8 * i));
    else throw InputError("npy: cannot convert dtype " + dtype + " to float32");
  }
  return out;
}

std::vector<int64_t> NpyArray::as_i64() const {
  std::vector<int64_t> out(static_cast<size_t>(numel()));
  const uint8_t* p = bytes.data();
  for (size_t i = 0; i < out.size(); ++i) {
    if (dtype == "i4") out[i] = load<int32_t>(p + 4 * i);
    else if (dtype == "i8") out[i] = load<int64_t>(p + 8 * i);
    else if (dtype == "u4") out[i] = load<uint32_t>(p + 4 * i);
    else if (dtype == "i2") out[i] = load<int16_t>(p + 2 * i);
    else if (dtype == "u2") out[i] = load<uint16_t>(p + 2 * i);
    else if (dtype == "u1") out[i] = p[i];
    else if (dtype == "i1") out[i] = static_cast<int8_t>(p[i]);
    else throw InputError("npy: cannot convert dtype " + dtype + " to integers");
  }
  return out;
}

void write_npy_f32(const std::string& path, const float* data, const std::vector<int64_t>& shape) {
  write_npy(path, "<f4", data, 4, shape);
}
void write_npy_i32(const std::string& path, const int32_t* data, const std::vector<int64_t>& shape) {
  write_npy(path, "<i4", data, 4, shape);
}

}  // namespace v4
