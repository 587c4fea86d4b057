// Checkpoint validation: every kind of corrupt or inconsistent checkpoint gives its own clear
// error naming the tensor and the file, never a crash.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "model/synth.h"
#include "model/weights.h"

using namespace v4;
namespace fs = std::filesystem;

namespace {

// Removes this process's scratch checkpoints at exit.
struct Scratch {
  std::vector<std::string> dirs;
  ~Scratch() {
    for (auto& d : dirs) fs::remove_all(d);
  }
};
Scratch& scratch() {
  static Scratch s;
  return s;
}

// A tiny synthetic checkpoint, written once per test binary run.
const std::string& base_ckpt() {
  static const std::string dir = [] {
    std::string d = (fs::temp_directory_path() / ("v4host-loader-" + std::to_string(::getpid()))).string();
    SynthOptions o;
    o.preset = "tiny";
    o.out_dir = d;
    o.vocab = 300;
    o.layers = 4;
    o.quiet = true;
    write_synthetic_checkpoint(o);
    scratch().dirs.push_back(d);
    return d;
  }();
  return dir;
}

std::string fresh_copy(const std::string& name) {
  std::string d = base_ckpt() + "-" + name;
  fs::remove_all(d);
  fs::copy(base_ckpt(), d);
  scratch().dirs.push_back(d);
  return d;
}

std::string shard_of(const std::string& dir, const std::string& tensor) {
  std::ifstream f(dir + "/model.safetensors.index.json");
  auto j = nlohmann::json::parse(f);
  return j["weight_map"][tensor].get<std::string>();
}

// Rewrites one shard through `edit(name, view, writer)`, which adds what should be kept.
void rewrite_shard(const std::string& dir, const std::string& file,
                   const std::function<void(const TensorView&, SafetensorsWriter&)>& edit) {
  SafetensorsWriter w;
  {
    SafetensorsFile f(dir + "/" + file);
    for (auto& [name, t] : f.tensors()) edit(t, w);
  }
  w.write(dir + "/" + file);
}

std::string load_error(const std::string& dir) {
  try {
    ModelWeights::load(dir, true, true);
  } catch (const CheckpointError& e) {
    return e.what();
  } catch (const InputError& e) {
    return std::string("InputError: ") + e.what();
  }
  return "";
}

void keep(const TensorView& t, SafetensorsWriter& w) { w.add(t.name, t.dtype, t.shape, t.data, t.nbytes); }

TEST(Loader, SyntheticCheckpointLoads) { EXPECT_EQ(load_error(base_ckpt()), ""); }

TEST(Loader, TruncatedShardNamesTensorAndFile) {
  std::string d = fresh_copy("trunc");
  std::string file = shard_of(d, "layers.1.attn.wq_a.weight");
  fs::resize_file(d + "/" + file, fs::file_size(d + "/" + file) - 100);
  std::string e = load_error(d);
  EXPECT_NE(e.find(file), std::string::npos) << e;
  EXPECT_NE(e.find("truncated"), std::string::npos) << e;
  EXPECT_NE(e.find("tensor '"), std::string::npos) << e;
}

TEST(Loader, BadHeaderLength) {
  std::string d = fresh_copy("hlen");
  std::string file = shard_of(d, "norm.weight");
  std::fstream f(d + "/" + file, std::ios::in | std::ios::out | std::ios::binary);
  uint64_t big = 1ull << 40;
  f.write(reinterpret_cast<const char*>(&big), 8);
  f.close();
  std::string e = load_error(d);
  EXPECT_NE(e.find("bad safetensors header length"), std::string::npos) << e;
  EXPECT_NE(e.find(file), std::string::npos) << e;
}

TEST(Loader, HeaderNotJson) {
  std::string d = fresh_copy("hjson");
  std::string file = shard_of(d, "norm.weight");
  std::fstream f(d + "/" + file, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(8);
  f.write("#garbage", 8);
  f.close();
  std::string e = load_error(d);
  EXPECT_NE(e.find("not valid JSON"), std::string::npos) << e;
}

TEST(Loader, MissingTensor) {
  std::string d = fresh_copy("missing");
  const std::string victim = "layers.2.attn.wkv.weight";
  std::string file = shard_of(d, victim);
  rewrite_shard(d, file, [&](const TensorView& t, SafetensorsWriter& w) {
    if (t.name != victim) keep(t, w);
  });
  {
    std::ifstream f(d + "/model.safetensors.index.json");
    auto j = nlohmann::json::parse(f);
    j["weight_map"].erase(victim);
    std::ofstream(d + "/model.safetensors.index.json") << j.dump();
  }
  std::string e = load_error(d);
  EXPECT_NE(e.find("missing tensor '" + victim + "'"), std::string::npos) << e;
}

TEST(Loader, WrongShape) {
  std::string d = fresh_copy("shape");
  const std::string victim = "layers.0.attn.q_norm.weight";
  rewrite_shard(d, shard_of(d, victim), [&](const TensorView& t, SafetensorsWriter& w) {
    if (t.name == victim) w.add(t.name, t.dtype, {t.shape[0] - 2}, t.data, t.nbytes - 4);
    else keep(t, w);
  });
  std::string e = load_error(d);
  EXPECT_NE(e.find("tensor '" + victim + "'"), std::string::npos) << e;
  EXPECT_NE(e.find("expected shape"), std::string::npos) << e;
}

TEST(Loader, WrongDtype) {
  std::string d = fresh_copy("dtype");
  const std::string victim = "layers.1.attn.wo_b.weight";
  rewrite_shard(d, shard_of(d, victim), [&](const TensorView& t, SafetensorsWriter& w) {
    if (t.name == victim) w.add(t.name, DType::I8, t.shape, t.data, t.nbytes);  // FP8 bytes relabelled
    else keep(t, w);
  });
  std::string e = load_error(d);
  EXPECT_NE(e.find("tensor '" + victim + "'"), std::string::npos) << e;
  EXPECT_NE(e.find("only valid for routed experts"), std::string::npos) << e;
}

TEST(Loader, SizeDisagreesWithDtypeAndShape) {
  std::string d = fresh_copy("nbytes");
  const std::string victim = "layers.0.ffn_norm.weight";
  rewrite_shard(d, shard_of(d, victim), [&](const TensorView& t, SafetensorsWriter& w) {
    if (t.name == victim) w.add(t.name, DType::F32, t.shape, t.data, t.nbytes);  // BF16 bytes as F32
    else keep(t, w);
  });
  std::string e = load_error(d);
  EXPECT_NE(e.find("tensor '" + victim + "'"), std::string::npos) << e;
  EXPECT_NE(e.find("needs"), std::string::npos) << e;
}

TEST(Loader, IndexListsMissingShard) {
  std::string d = fresh_copy("noshard");
  std::string file = shard_of(d, "embed.weight");
  fs::remove(d + "/" + file);
  std::string e = load_error(d);
  EXPECT_NE(e.find(file), std::string::npos) << e;
  EXPECT_NE(e.find("does not exist"), std::string::npos) << e;
}

TEST(Loader, IndexInconsistentWithShards) {
  std::string d = fresh_copy("index");
  std::ifstream f(d + "/model.safetensors.index.json");
  auto j = nlohmann::json::parse(f);
  f.close();
  std::string other = j["weight_map"]["embed.weight"].get<std::string>();
  j["weight_map"]["norm.weight"] = other;  // wrong shard
  std::ofstream(d + "/model.safetensors.index.json") << j.dump();
  std::string e = load_error(d);
  EXPECT_NE(e.find("'norm.weight'"), std::string::npos) << e;
  EXPECT_NE(e.find("listed in the index"), std::string::npos) << e;
}

TEST(Loader, BadConfig) {
  std::string d = fresh_copy("config");
  std::ofstream(d + "/config.json") << "{\"hidden_size\": 64";
  EXPECT_NE(load_error(d).find("config.json"), std::string::npos);
  std::ofstream(d + "/config.json") << "{\"hidden_size\": 64}";
  EXPECT_NE(load_error(d).find("compress_ratios"), std::string::npos);
}

TEST(Loader, HashTableOutOfRange) {
  std::string d = fresh_copy("tid2eid");
  const std::string victim = "layers.0.ffn.gate.tid2eid";
  rewrite_shard(d, shard_of(d, victim), [&](const TensorView& t, SafetensorsWriter& w) {
    if (t.name == victim) {
      std::vector<int64_t> v(static_cast<size_t>(t.numel()), 0);
      v[5] = 9999;
      w.add(t.name, t.dtype, t.shape, v.data(), v.size() * 8);
    } else {
      keep(t, w);
    }
  });
  std::string e = load_error(d);
  EXPECT_NE(e.find(victim), std::string::npos) << e;
  EXPECT_NE(e.find("outside"), std::string::npos) << e;
}

}  // namespace
