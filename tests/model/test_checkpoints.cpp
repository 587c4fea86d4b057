// The current official checkpoint layouts (docs/checkpoints.md): V4-Flash-0731 and V4-Pro-0813
// carry a DSpark drafter (mtp.0..2, three full MoE blocks) instead of the preview's NextN head.
// Checked here: the config keys, the exact tensor census of the real releases, loading, every
// corruption of every drafter tensor named in the error, and that the drafter does not change
// the main model (the real `v4host logits` / `generate` on both layouts of the same weights).
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/npy.h"
#include "model/config.h"
#include "model/synth.h"
#include "model/weights.h"
#include "../common/test_files.h"

using namespace v4;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

using test::read_json;
using test::slurp;
using test::TempDir;

SynthOptions tiny(const std::string& out, const std::string& revision, uint64_t seed = 3) {
  SynthOptions o;
  o.preset = "tiny";
  o.revision = revision;
  o.out_dir = out;
  o.vocab = 300;
  o.layers = 4;
  o.seed = seed;
  o.quiet = true;
  return o;
}

std::string load_error(const std::string& dir, bool load_mtp = true) {
  try {
    ModelWeights::load(dir, load_mtp, true);
  } catch (const CheckpointError& e) {
    return e.what();
  } catch (const InputError& e) {
    return std::string("InputError: ") + e.what();
  }
  return "";
}

std::string config_error(const json& c) {
  try {
    ModelConfig::from_json(c);
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

// The mtp.* tensors of a layout, with their shard index.
std::map<std::string, size_t> mtp_tensors(const std::vector<SynthShardInfo>& shards) {
  std::map<std::string, size_t> m;
  for (size_t k = 0; k < shards.size(); ++k)
    for (auto& t : shards[k].tensors)
      if (t.name.rfind("mtp.", 0) == 0) m[t.name] = k;
  return m;
}

TEST(Checkpoints, RevisionConfigs) {
  SynthOptions o;
  o.preset = "flash-shaped";
  o.revision = "0731";
  json c = synth_config(o);
  EXPECT_EQ(c["dspark_block_size"], 5);
  EXPECT_EQ(c["dspark_noise_token_id"], 128799);
  EXPECT_EQ(c["dspark_target_layer_ids"], json::array({40, 41, 42}));
  EXPECT_EQ(c["dspark_markov_rank"], 256);
  EXPECT_EQ(c["num_nextn_predict_layers"], 1);  // the release keeps the stale key
  auto r = c["compress_ratios"].get<std::vector<int>>();
  ASSERT_EQ(r.size(), 46u);  // 43 layers + 3 draft stages
  EXPECT_EQ(r[42], 4);
  EXPECT_EQ(r[43] + r[44] + r[45], 0);

  ModelConfig mc = ModelConfig::from_json(c);
  EXPECT_TRUE(mc.dspark.present());
  EXPECT_EQ(mc.dspark.n_stages, 3);
  EXPECT_EQ(mc.n_mtp_layers, 0);  // no NextN head
  EXPECT_EQ(mc.dspark.target_layer_ids, (std::vector<int>{40, 41, 42}));

  o.preset = "pro-shaped";
  o.revision = "0813";
  c = synth_config(o);
  EXPECT_EQ(c["dspark_target_layer_ids"], json::array({58, 59, 60}));
  EXPECT_EQ(c["compress_ratios"].size(), 64u);

  o.revision = "preview";
  EXPECT_FALSE(synth_config(o).contains("dspark_block_size"));
  EXPECT_FALSE(ModelConfig::from_json(synth_config(o)).dspark.present());
  o.revision = "0732";
  EXPECT_THROW(synth_config(o), InputError);
}

TEST(Checkpoints, ConfigKeysValidated) {
  SynthOptions o = tiny("", "0731");
  const json good = synth_config(o);
  // The official inference/config.json spelling: n_mtp_layers = 3 stages.
  json inf = good;
  inf.erase("num_nextn_predict_layers");
  inf["n_mtp_layers"] = 3;
  EXPECT_EQ(ModelConfig::from_json(inf).dspark.n_stages, 3);

  auto with = [&](const std::string& key, const json& v) {
    json c = good;
    if (v.is_null()) c.erase(key);
    else c[key] = v;
    return config_error(c);
  };
  EXPECT_NE(with("dspark_markov_rank", nullptr).find("'dspark_markov_rank'"), std::string::npos);
  EXPECT_NE(with("dspark_noise_token_id", nullptr).find("'dspark_noise_token_id'"), std::string::npos);
  EXPECT_NE(with("dspark_target_layer_ids", json::array({1, 9})).find("dspark_target_layer_ids entry 9"), std::string::npos);
  EXPECT_NE(with("dspark_target_layer_ids", "x").find("'dspark_target_layer_ids' has the wrong type"), std::string::npos);
  EXPECT_NE(with("dspark_noise_token_id", 300).find("dspark_noise_token_id"), std::string::npos);
  EXPECT_NE(with("dspark_block_size", 0).find("dspark_block_size"), std::string::npos);
  EXPECT_NE(with("compress_ratios", json::array({0, 0, 4, 16, 0, 4, 0})).find("DSpark stage 1"), std::string::npos);
  EXPECT_NE(with("compress_ratios", json::array({0, 0, 4, 16})).find("no entries past"), std::string::npos);
  EXPECT_NE(with("n_mtp_layers", 5).find("need num_hidden_layers + 5 DSpark stages"), std::string::npos);
}

// The census of the real V4-Flash-0731 index (vllm-project/vllm PR #41834, comment of
// 2026-08-05): 48 shards, mtp.0 1568 / mtp.1 1565 / mtp.2 1572 = 4705 tensors, no enorm/hnorm/
// e_proj/h_proj, mtp.2.markov_head.markov_w1/w2. The main model is the preview layout's.
TEST(Checkpoints, LayoutMatchesTheReleaseCensus) {
  SynthOptions o;
  o.preset = "flash-shaped";
  o.experts = 256;
  o.revision = "0731";
  auto shards = synth_layout(synth_config(o), o);
  ASSERT_EQ(shards.size(), 48u);
  EXPECT_EQ(shards[45].file, "model-00046-of-00048.safetensors");
  std::array<size_t, 3> per_stage{};
  size_t main = 0;
  for (size_t k = 0; k < shards.size(); ++k)
    for (auto& t : shards[k].tensors) {
      if (t.name.rfind("mtp.", 0) == 0) {
        const size_t s = static_cast<size_t>(t.name[4] - '0');
        ASSERT_LT(s, 3u) << t.name;
        EXPECT_EQ(k, 45 + s) << t.name;  // one shard per stage, in order
        ++per_stage[s];
        EXPECT_EQ(t.name.find("enorm"), std::string::npos);
        EXPECT_EQ(t.name.find("e_proj"), std::string::npos);
        EXPECT_EQ(t.name.find("compressor"), std::string::npos);  // sliding-window only
        EXPECT_EQ(t.name.find("tid2eid"), std::string::npos);     // score-routed
      } else {
        ++main;
      }
    }
  EXPECT_EQ(per_stage, (std::array<size_t, 3>{1568, 1565, 1572}));
  EXPECT_EQ(main, 67612u);  // = the preview's main model (spec §2.1)

  const auto m = mtp_tensors(shards);
  for (const char* n : {"mtp.0.main_proj.weight", "mtp.0.main_proj.scale", "mtp.0.main_norm.weight", "mtp.2.norm.weight",
                        "mtp.2.hc_head_fn", "mtp.2.markov_head.markov_w1.weight", "mtp.2.markov_head.markov_w2.weight",
                        "mtp.2.confidence_head.proj.weight"})
    EXPECT_TRUE(m.count(n)) << n;
  std::map<std::string, std::vector<int64_t>> shape;
  for (auto& s : shards)
    for (auto& t : s.tensors) shape[t.name] = t.shape;
  EXPECT_EQ(shape["mtp.0.main_proj.weight"], (std::vector<int64_t>{4096, 3 * 4096}));
  EXPECT_EQ(shape["mtp.0.main_proj.scale"], (std::vector<int64_t>{32, 96}));
  EXPECT_EQ(shape["mtp.2.markov_head.markov_w1.weight"], (std::vector<int64_t>{129280, 256}));
  EXPECT_EQ(shape["mtp.2.markov_head.markov_w2.weight"], (std::vector<int64_t>{129280, 256}));
  EXPECT_EQ(shape["mtp.2.confidence_head.proj.weight"], (std::vector<int64_t>{1, 4096 + 256}));

  // V4-Pro-0813: 61 layers, 384 experts, the same drafter layout: 1 + 61 + 1 + 3 shards.
  o.preset = "pro-shaped";
  o.experts = 384;
  o.revision = "0813";
  shards = synth_layout(synth_config(o), o);
  EXPECT_EQ(shards.size(), 66u);
  size_t pro_mtp = mtp_tensors(shards).size();
  EXPECT_EQ(pro_mtp, 3 * (6 * 384 + 29) + 3 + 7);  // per block: 6 per expert + 29 others
}

TEST(Checkpoints, DrafterLoadsAndIsReported) {
  TempDir dir("load");
  write_synthetic_checkpoint(tiny(dir.str(), "0731"));
  auto w = ModelWeights::load(dir.str(), true, true);
  EXPECT_FALSE(w->mtp.has_value());
  ASSERT_TRUE(w->dspark.has_value());
  const DSparkWeights& d = *w->dspark;
  ASSERT_EQ(d.stages.size(), 3u);
  for (int s = 0; s < 3; ++s) {
    EXPECT_EQ(d.stages[static_cast<size_t>(s)].layer_id, 4 + s);
    EXPECT_EQ(d.stages[static_cast<size_t>(s)].ratio, 0);
    EXPECT_FALSE(d.stages[static_cast<size_t>(s)].ffn.hash);
    EXPECT_EQ(d.stages[static_cast<size_t>(s)].ffn.bias.size(), 8u);
  }
  EXPECT_EQ(d.main_proj.rows, 256);
  EXPECT_EQ(d.main_proj.cols, 3 * 256);
  EXPECT_EQ(d.main_proj.format, WFormat::FP8);
  EXPECT_EQ(d.markov_w1.rows, 300);
  EXPECT_EQ(d.markov_w1.cols, 64);
  EXPECT_EQ(d.confidence.cols, 256 + 64);
  EXPECT_TRUE(d.unrecognised.empty());
  const json idx = read_json(dir.path / "model.safetensors.index.json");
  size_t n = 0;
  for (auto& [k, v] : idx["weight_map"].items()) n += k.rfind("mtp.", 0) == 0;
  EXPECT_EQ(d.tensors, n);
  const std::string s = w->drafter_summary();
  EXPECT_NE(s.find("DSpark drafter: 3 stages (mtp.0-mtp.2), " + std::to_string(n) + " tensors"), std::string::npos) << s;
  EXPECT_NE(s.find("target layers [1, 2, 3]"), std::string::npos) << s;

  // load_mtp = false (serve, logits) still validates a drafter that is there.
  EXPECT_TRUE(ModelWeights::load(dir.str(), false, true)->dspark.has_value());
  // The preview layout has no drafter.
  TempDir prev("prev");
  write_synthetic_checkpoint(tiny(prev.str(), "preview"));
  auto p = ModelWeights::load(prev.str(), true, true);
  EXPECT_TRUE(p->mtp.has_value());
  EXPECT_FALSE(p->dspark.has_value());
  EXPECT_EQ(p->drafter_summary(), "");
}

// Rewrites the shard holding `victim` with `edit` applied to it, runs the loader, restores the
// shard and the index. Returns the loader's error ("" if it loaded).
class Corrupter {
 public:
  explicit Corrupter(const std::string& dir) : dir_(dir) {
    index_text_ = slurp(dir_ + "/model.safetensors.index.json");
    index_ = json::parse(index_text_);
  }
  using Edit = std::function<void(const TensorView&, SafetensorsWriter&)>;  // the victim only
  std::string run(const std::string& victim, const Edit& edit, bool drop_from_index = false) {
    const std::string file = index_["weight_map"][victim].get<std::string>();
    const std::string path = dir_ + "/" + file;
    const std::string saved = slurp(path);
    {
      SafetensorsWriter w;
      {
        SafetensorsFile f(path);
        for (auto& [name, t] : f.tensors()) {
          if (name == victim) edit(t, w);
          else w.add(t.name, t.dtype, t.shape, t.data, t.nbytes);
        }
      }
      w.write(path);
    }
    if (drop_from_index) {
      json j = index_;
      j["weight_map"].erase(victim);
      std::ofstream(dir_ + "/model.safetensors.index.json") << j.dump();
    }
    std::string e = load_error(dir_);
    std::ofstream(path, std::ios::binary | std::ios::trunc) << saved;
    std::ofstream(dir_ + "/model.safetensors.index.json", std::ios::binary | std::ios::trunc) << index_text_;
    return e;
  }

 private:
  std::string dir_, index_text_;
  json index_;
};

// A dtype of the same element size the loader must refuse for this tensor.
DType wrong_dtype(DType d) {
  switch (d) {
    case DType::BF16: return DType::F16;
    case DType::F32: return DType::I32;
    case DType::F8_E4M3: return DType::I8;   // FP8 relabelled as packed FP4: refused or wrong shape
    case DType::I8: return DType::F8_E4M3;   // packed FP4 relabelled as FP8: wrong shape
    case DType::F8_E8M0: return DType::U8;   // scale
    default: return DType::BOOL;
  }
}

// Every drafter tensor, removed, reshaped and relabelled: the loader refuses each with an error
// naming that tensor (and never loads a corrupt drafter).
TEST(Checkpoints, EveryDrafterCorruptionIsNamed) {
  TempDir dir("corrupt");
  write_synthetic_checkpoint(tiny(dir.str(), "0731"));
  ASSERT_EQ(load_error(dir.str()), "");
  const json idx = read_json(dir.path / "model.safetensors.index.json");
  std::vector<std::string> names;
  for (auto& [k, v] : idx["weight_map"].items())
    if (k.rfind("mtp.", 0) == 0) names.push_back(k);
  ASSERT_GT(names.size(), 200u);
  Corrupter c(dir.str());
  for (const auto& victim : names) {
    const std::string quoted = "'" + victim + "'";
    std::string e = c.run(victim, [](const TensorView&, SafetensorsWriter&) {}, true);
    EXPECT_NE(e.find("missing tensor " + quoted), std::string::npos) << victim << ": " << e;
    e = c.run(victim, [](const TensorView& t, SafetensorsWriter& w) {
      // Same bytes, another shape: 1-D becomes [1, n], 2-D is flattened.
      std::vector<int64_t> shape = t.shape.size() == 1 ? std::vector<int64_t>{1, t.shape[0]}
                                                       : std::vector<int64_t>{t.numel()};
      w.add(t.name, t.dtype, shape, t.data, t.nbytes);
    });
    EXPECT_NE(e.find(quoted), std::string::npos) << victim << " (shape): " << e;
    e = c.run(victim, [](const TensorView& t, SafetensorsWriter& w) {
      w.add(t.name, wrong_dtype(t.dtype), t.shape, t.data, t.nbytes);
    });
    EXPECT_NE(e.find(quoted), std::string::npos) << victim << " (dtype): " << e;
  }
  // Non-finite values in the small tensors the loader copies.
  for (const std::string victim : {"mtp.0.main_norm.weight", "mtp.2.norm.weight", "mtp.2.hc_head_base",
                                   "mtp.1.ffn.gate.bias", "mtp.2.attn.attn_sink", "mtp.0.hc_attn_scale"}) {
    std::string e = c.run(victim, [](const TensorView& t, SafetensorsWriter& w) {
      std::vector<uint8_t> b(t.data, t.data + t.nbytes);
      if (t.dtype == DType::F32) {
        const float nan = std::nanf("");
        std::memcpy(b.data(), &nan, 4);
      } else {
        b[0] = 0xc0, b[1] = 0x7f;  // BF16 NaN
      }
      w.add(t.name, t.dtype, t.shape, b.data(), b.size());
    });
    EXPECT_NE(e.find("'" + victim + "'"), std::string::npos) << e;
    EXPECT_NE(e.find("non-finite"), std::string::npos) << e;
  }
  EXPECT_EQ(load_error(dir.str()), "");  // restored
}

TEST(Checkpoints, StrippedDrafter) {
  TempDir dir("strip");
  write_synthetic_checkpoint(tiny(dir.str(), "0731"));
  // Delete the three drafter shards and their index entries.
  json idx = read_json(dir.path / "model.safetensors.index.json");
  std::set<std::string> files;
  json wm = json::object();
  for (auto& [k, v] : idx["weight_map"].items()) {
    if (k.rfind("mtp.", 0) == 0) files.insert(v.get<std::string>());
    else wm[k] = v;
  }
  ASSERT_EQ(files.size(), 3u);
  for (auto& f : files) fs::remove(dir.path / f);
  idx["weight_map"] = wm;
  std::ofstream(dir.path / "model.safetensors.index.json") << idx.dump();
  // Serving the main model does not need the drafter; asking for it names what is missing.
  auto w = ModelWeights::load(dir.str(), false, true);
  EXPECT_FALSE(w->dspark.has_value());
  EXPECT_NE(load_error(dir.str(), true).find("missing tensor 'mtp.0."), std::string::npos);
}

// --- the real binary ---------------------------------------------------------------------------

struct CmdResult {
  int status;
  std::string out;
};

CmdResult run(const std::string& args) {
  const std::string cmd = std::string(V4_BINARY) + " " + args + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return {-1, ""};
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int st = ::pclose(p);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

// The drafter must not change the main model: `v4host logits` (full prefill, and prefill +
// token-by-token decode) and `v4host generate` give bit-identical results on the 0731 layout and
// on the preview layout of the same weights (same seed: every main tensor has the same name,
// hence the same values).
TEST(Checkpoints, DrafterDoesNotChangeTheMainModel) {
  TempDir dir("cli");
  const std::string prev = (dir.path / "preview").string(), cur = (dir.path / "0731").string();
  for (auto [d, rev] : {std::pair{prev, "preview"}, {cur, "0731"}}) {
    CmdResult r = run("synth --preset tiny --layers 4 --vocab 512 --seed 11 --revision " + std::string(rev) +
                      " --quiet --out " + d);
    ASSERT_EQ(r.status, 0) << r.out;
  }
  EXPECT_TRUE(ModelConfig::load(cur).dspark.present());
  const std::vector<int32_t> toks = {0, 17, 301, 5, 88, 442, 9, 123, 64, 7, 250, 3};
  const std::string tfile = (dir.path / "t.npy").string();
  write_npy_i32(tfile, toks.data(), {static_cast<int64_t>(toks.size())});
  for (const std::string extra : {"", " --prefill 5 --chunk 2"}) {
    std::string outs[2];
    int i = 0;
    for (const auto& d : {prev, cur}) {
      const fs::path o = dir.path / ("l" + std::to_string(i) + ".npy");
      CmdResult r = run("logits --model " + d + " --tokens " + tfile + " --out " + o.string() + extra);
      ASSERT_EQ(r.status, 0) << r.out;
      if (d == cur) EXPECT_NE(r.out.find("DSpark drafter: 3 stages"), std::string::npos) << r.out;
      else EXPECT_EQ(r.out.find("DSpark"), std::string::npos) << r.out;
      outs[i++] = slurp(o);
    }
    ASSERT_GT(outs[0].size(), toks.size() * 512 * 4);
    EXPECT_TRUE(outs[0] == outs[1]) << "main-model logits differ between the layouts" << extra;
  }
  CmdResult g0 = run("generate --model " + prev + " --tokens " + tfile + " -n 6 --quiet");
  CmdResult g1 = run("generate --model " + cur + " --tokens " + tfile + " -n 6 --quiet");
  ASSERT_EQ(g0.status, 0) << g0.out;
  ASSERT_EQ(g1.status, 0) << g1.out;
  EXPECT_FALSE(g1.out.empty());
  EXPECT_EQ(g0.out, g1.out);
  // --mtp asks for the preview's NextN head, which the 0731 layout does not have.
  CmdResult mtp = run("logits --model " + cur + " --tokens " + tfile + " --out " + (dir.path / "m.npy").string() + " --mtp -q");
  EXPECT_EQ(mtp.status, 2) << mtp.out;
  EXPECT_NE(mtp.out.find("DSpark drafter, not an MTP head"), std::string::npos) << mtp.out;
  // Bad input: exit 2 naming the flag.
  CmdResult bad = run("synth --preset tiny --revision 0799 --quiet --out " + (dir.path / "bad").string());
  EXPECT_EQ(bad.status, 2) << bad.out;
  EXPECT_NE(bad.out.find("--revision"), std::string::npos) << bad.out;
}

}  // namespace
