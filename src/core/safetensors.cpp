#include "core/safetensors.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace v4 {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {
struct DTypeInfo {
  DType t;
  const char* name;
  size_t size;
};
constexpr DTypeInfo kDTypes[] = {
    {DType::F32, "F32", 4},       {DType::F16, "F16", 2},         {DType::BF16, "BF16", 2},
    {DType::F8_E4M3, "F8_E4M3", 1}, {DType::F8_E8M0, "F8_E8M0", 1}, {DType::I8, "I8", 1},
    {DType::U8, "U8", 1},         {DType::I16, "I16", 2},         {DType::I32, "I32", 4},
    {DType::I64, "I64", 8},       {DType::F64, "F64", 8},         {DType::BOOL, "BOOL", 1},
};
}  // namespace

const char* dtype_name(DType t) {
  for (auto& d : kDTypes)
    if (d.t == t) return d.name;
  return "?";
}
size_t dtype_size(DType t) {
  for (auto& d : kDTypes)
    if (d.t == t) return d.size;
  return 0;
}
bool parse_dtype(const std::string& s, DType* out) {
  for (auto& d : kDTypes)
    if (s == d.name) {
      *out = d.t;
      return true;
    }
  return false;
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

std::string TensorView::shape_str() const {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

SafetensorsFile::SafetensorsFile(const std::string& path) {
  try {
    file_ = MappedFile(path);
  } catch (const InputError& e) {
    throw CheckpointError(e.what());
  }
  const size_t size = file_.size();
  if (size < 8) throw CheckpointError(path + ": truncated safetensors file (" + std::to_string(size) + " bytes, no header)");
  uint64_t hlen;
  std::memcpy(&hlen, file_.data(), 8);
  if (hlen > size - 8 || hlen > (100u << 20))
    throw CheckpointError(path + ": bad safetensors header length " + std::to_string(hlen) +
                          " (file has " + std::to_string(size) + " bytes)");
  json h;
  try {
    h = json::parse(file_.data() + 8, file_.data() + 8 + hlen);
  } catch (const std::exception& e) {
    throw CheckpointError(path + ": safetensors header is not valid JSON: " + e.what());
  }
  if (!h.is_object()) throw CheckpointError(path + ": safetensors header is not a JSON object");
  const uint8_t* base = file_.data() + 8 + hlen;
  const size_t data_size = size - 8 - hlen;
  std::vector<std::pair<size_t, size_t>> ranges;
  for (auto& [name, v] : h.items()) {
    if (name == "__metadata__") {
      if (v.is_object())
        for (auto& [k, mv] : v.items())
          if (mv.is_string()) metadata_[k] = mv.get<std::string>();
      continue;
    }
    auto bad = [&](const std::string& why) {
      return CheckpointError("tensor '" + name + "' in " + path + ": " + why);
    };
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets"))
      throw bad("header entry lacks dtype/shape/data_offsets");
    TensorView t;
    t.name = name;
    t.file = path;
    if (!v["dtype"].is_string() || !parse_dtype(v["dtype"].get<std::string>(), &t.dtype))
      throw bad("unknown dtype " + v["dtype"].dump());
    if (!v["shape"].is_array()) throw bad("shape is not an array");
    for (auto& d : v["shape"]) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0) throw bad("bad shape " + v["shape"].dump());
      t.shape.push_back(d.get<int64_t>());
    }
    auto& off = v["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      throw bad("bad data_offsets " + off.dump());
    size_t b = off[0].get<size_t>(), e = off[1].get<size_t>();
    if (e < b || e > data_size)
      throw bad("data_offsets [" + std::to_string(b) + ", " + std::to_string(e) + ") exceed the " +
                std::to_string(data_size) + " data bytes of the file (truncated shard?)");
    size_t expect = static_cast<size_t>(t.numel()) * dtype_size(t.dtype);
    if (e - b != expect)
      throw bad("has " + std::to_string(e - b) + " bytes but dtype " + dtype_name(t.dtype) + " shape " +
                t.shape_str() + " needs " + std::to_string(expect));
    t.data = base + b;
    t.nbytes = e - b;
    ranges.push_back({b, e});
    tensors_.emplace(name, std::move(t));
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i)
    if (ranges[i].first < ranges[i - 1].second)
      throw CheckpointError(path + ": overlapping tensor data ranges in safetensors header");
}

TensorStore::TensorStore(const std::string& dir) : dir_(dir) {
  if (!fs::is_directory(dir)) throw CheckpointError("model directory not found: " + dir);
  fs::path idx = fs::path(dir) / "model.safetensors.index.json";
  std::map<std::string, std::string> weight_map;
  std::vector<std::string> shard_names;
  if (fs::exists(idx)) {
    json j;
    try {
      std::ifstream f(idx);
      j = json::parse(f);
    } catch (const std::exception& e) {
      throw CheckpointError(idx.string() + ": not valid JSON: " + e.what());
    }
    if (!j.contains("weight_map") || !j["weight_map"].is_object())
      throw CheckpointError(idx.string() + ": no weight_map object");
    for (auto& [k, v] : j["weight_map"].items()) {
      if (!v.is_string()) throw CheckpointError(idx.string() + ": weight_map entry for '" + k + "' is not a file name");
      weight_map[k] = v.get<std::string>();
      if (std::find(shard_names.begin(), shard_names.end(), weight_map[k]) == shard_names.end())
        shard_names.push_back(weight_map[k]);
    }
  } else {
    for (auto& e : fs::directory_iterator(dir))
      if (e.path().extension() == ".safetensors") shard_names.push_back(e.path().filename().string());
    std::sort(shard_names.begin(), shard_names.end());
    if (shard_names.empty()) throw CheckpointError(dir + ": no model.safetensors.index.json and no .safetensors files");
  }
  for (auto& s : shard_names) {
    fs::path p = fs::path(dir) / s;
    if (!fs::exists(p)) {
      std::string example;
      for (auto& [k, v] : weight_map)
        if (v == s) {
          example = k;
          break;
        }
      throw CheckpointError("shard " + p.string() + " listed in the index (e.g. for tensor '" + example + "') does not exist");
    }
    files_.push_back(std::make_unique<SafetensorsFile>(p.string()));
  }
  for (auto& f : files_)
    for (auto& [name, t] : f->tensors()) {
      auto [it, fresh] = index_.emplace(name, &t);
      if (!fresh) throw CheckpointError("tensor '" + name + "' appears in both " + it->second->file + " and " + t.file);
    }
  for (auto& [name, shard] : weight_map) {
    auto it = index_.find(name);
    if (it == index_.end())
      throw CheckpointError("tensor '" + name + "' is listed in the index under " + shard + " but is not in that file");
    if (fs::path(it->second->file).filename() != shard)
      throw CheckpointError("tensor '" + name + "' is listed in the index under " + shard + " but found in " + it->second->file);
  }
  if (!weight_map.empty())
    for (auto& [name, t] : index_)
      if (!weight_map.count(name))
        throw CheckpointError("tensor '" + name + "' in " + t->file + " is missing from model.safetensors.index.json");
}

const TensorView* TensorStore::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second;
}

const TensorView& TensorStore::get(const std::string& name) const {
  auto* t = find(name);
  if (!t) throw CheckpointError("missing tensor '" + name + "' in checkpoint " + dir_);
  return *t;
}

std::vector<std::string> TensorStore::names() const {
  std::vector<std::string> n;
  for (auto& [k, v] : index_) n.push_back(k);
  return n;
}

size_t TensorStore::total_bytes() const {
  size_t b = 0;
  for (auto& [k, v] : index_) b += v->nbytes;
  return b;
}

size_t TensorStore::populate(const std::function<void(size_t, size_t)>& progress, size_t chunk) const {
  size_t total = 0, done = 0;
  for (const auto& f : files_) total += f->mapping().size();
  chunk = std::max<size_t>(chunk, 1);
  for (const auto& f : files_) {
    const MappedFile& m = f->mapping();
    for (size_t off = 0; off < m.size(); off += chunk) {
      std::string why;
      if (!m.populate(off, chunk, &why)) throw CheckpointError(why);
      done += std::min(chunk, m.size() - off);
      if (progress) progress(done, total);
    }
  }
  return total;
}

std::optional<size_t> TensorStore::resident_bytes() const {
  size_t b = 0;
  for (const auto& f : files_) {
    auto r = f->mapping().resident_bytes();
    if (!r) return std::nullopt;
    b += *r;
  }
  return b;
}

void SafetensorsWriter::add(const std::string& name, DType dtype, std::vector<int64_t> shape, const void* data,
                            size_t nbytes) {
  Entry e{name, dtype, std::move(shape), {}};
  e.data.assign(static_cast<const uint8_t*>(data), static_cast<const uint8_t*>(data) + nbytes);
  entries_.push_back(std::move(e));
}

std::vector<std::string> SafetensorsWriter::names() const {
  std::vector<std::string> n;
  for (auto& e : entries_) n.push_back(e.name);
  return n;
}

size_t SafetensorsWriter::bytes() const {
  size_t b = 0;
  for (auto& e : entries_) b += e.data.size();
  return b;
}

void SafetensorsWriter::write(const std::string& path, const std::map<std::string, std::string>& metadata) const {
  json h = json::object();
  if (!metadata.empty()) h["__metadata__"] = metadata;
  size_t off = 0;
  for (auto& e : entries_) {
    h[e.name] = {{"dtype", dtype_name(e.dtype)}, {"shape", e.shape}, {"data_offsets", {off, off + e.data.size()}}};
    off += e.data.size();
  }
  std::string hs = h.dump();
  hs.append((8 - hs.size() % 8) % 8, ' ');
  std::ofstream f(path, std::ios::binary);
  if (!f) throw InputError("cannot write " + path);
  uint64_t hl = hs.size();
  f.write(reinterpret_cast<const char*>(&hl), 8);
  f.write(hs.data(), static_cast<std::streamsize>(hs.size()));
  for (auto& e : entries_) f.write(reinterpret_cast<const char*>(e.data.data()), static_cast<std::streamsize>(e.data.size()));
  if (!f) throw InputError("short write to " + path);
}

}  // namespace v4
