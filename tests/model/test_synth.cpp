// Synthetic checkpoint writer: layout (against the golden checkpoints and the spec's counts and
// sizes), value scaling, tid2eid, determinism and option checking.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>

#include "core/cpu.h"
#include "core/error.h"
#include "core/float_formats.h"
#include "core/safetensors.h"
#include "core/shared_paths.h"
#include "model/synth.h"
#include "model/weights.h"
#include "../common/test_files.h"

using namespace v4;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

using test::read_json;
using test::slurp;
using test::TempDir;

SynthOptions tiny(const std::string& out, uint64_t seed = 1) {
  SynthOptions o;
  o.preset = "tiny";
  o.out_dir = out;
  o.vocab = 512;
  o.seed = seed;
  o.quiet = true;
  return o;
}

// Dequantised values of an FP8 (E8M0 or F32 block scales) or FP4 weight.
std::vector<float> dequant(const TensorStore& st, const std::string& base) {
  const TensorView& w = st.get(base + ".weight");
  const TensorView& s = st.get(base + ".scale");
  auto scale = [&](int64_t i) {
    return s.dtype == DType::F32 ? reinterpret_cast<const float*>(s.data)[i] : e8m0_to_f32(s.data[i]);
  };
  std::vector<float> out;
  if (w.dtype == DType::F8_E4M3) {
    const int64_t o = w.shape[0], in = w.shape[1], nbc = s.shape[1];
    for (int64_t r = 0; r < o; ++r)
      for (int64_t c = 0; c < in; ++c) out.push_back(e4m3_to_f32(w.data[r * in + c]) * scale((r / 128) * nbc + c / 128));
  } else {
    const int64_t o = w.shape[0], in = w.shape[1] * 2, ng = s.shape[1];
    for (int64_t r = 0; r < o; ++r)
      for (int64_t c = 0; c < in; ++c) {
        const uint8_t b = w.data[r * in / 2 + c / 2];
        out.push_back(e2m1_to_f32(c % 2 ? b >> 4 : b & 15) * scale(r * ng + c / 32));
      }
  }
  return out;
}

std::vector<float> as_floats(const TensorView& t) {
  std::vector<float> v(static_cast<size_t>(t.numel()));
  for (size_t i = 0; i < v.size(); ++i)
    v[i] = t.dtype == DType::BF16 ? bf16_to_f32(reinterpret_cast<const uint16_t*>(t.data)[i])
                                  : reinterpret_cast<const float*>(t.data)[i];
  return v;
}

void moments(const std::vector<float>& v, double* mean, double* sd) {
  double s = 0, s2 = 0;
  for (float x : v) s += x, s2 += double(x) * x;
  *mean = s / v.size();
  *sd = std::sqrt(std::max(0.0, s2 / v.size() - *mean * *mean));
}

void expect_same_layout(const TensorStore& ours, const TensorStore& ref, const std::string& what) {
  const auto a = ours.names(), b = ref.names();
  std::set<std::string> sa(a.begin(), a.end()), sb(b.begin(), b.end());
  for (auto& n : sb)
    if (!sa.count(n)) ADD_FAILURE() << what << ": missing " << n;
  for (auto& n : sa)
    if (!sb.count(n)) ADD_FAILURE() << what << ": extra " << n;
  for (auto& n : sa) {
    if (!sb.count(n)) continue;
    const TensorView &x = ours.get(n), &y = ref.get(n);
    EXPECT_EQ(dtype_name(x.dtype), std::string(dtype_name(y.dtype))) << what << ": " << n;
    EXPECT_EQ(x.shape, y.shape) << what << ": " << n << " " << x.shape_str() << " vs " << y.shape_str();
  }
}

}  // namespace

TEST(Synth, FastEncodersMatchFloatFormats) {
  std::vector<float> xs;
  for (int b = 0; b < 127; ++b) {  // every finite e4m3 magnitude, its neighbours and midpoints
    const float v = e4m3_to_f32(static_cast<uint8_t>(b));
    xs.insert(xs.end(), {v, std::nextafter(v, 0.0f), std::nextafter(v, 1e9f)});
    if (b < 126) xs.push_back(0.5f * (v + e4m3_to_f32(static_cast<uint8_t>(b + 1))));
  }
  uint64_t s = 12345;
  for (int i = 0; i < 200000; ++i) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    const float u = static_cast<float>(s >> 40) / 16777216.0f;
    xs.push_back(std::ldexp(u, static_cast<int>((s >> 8) % 24) - 15));
  }
  for (float x : xs) {
    if (x > 448.0f) continue;
    ASSERT_EQ(synth_e4m3(x), f32_to_e4m3(x)) << x;
    ASSERT_EQ(synth_e4m3(-x), f32_to_e4m3(-x)) << -x;
  }
  for (float x : xs) {
    if (x > 6.0f) continue;
    ASSERT_EQ(synth_e2m1(x), f32_to_e2m1(x)) << x;
    ASSERT_EQ(synth_e2m1(-x), f32_to_e2m1(-x)) << -x;
  }
  for (float x : {0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f, 6.0f})
    EXPECT_EQ(synth_e2m1(x), f32_to_e2m1(x)) << x;
}

TEST(Synth, PresetConfigsAndSchedules) {
  SynthOptions o;
  o.preset = "flash-shaped";
  json c = synth_config(o);
  EXPECT_EQ(c["hidden_size"], 4096);
  EXPECT_EQ(c["num_hidden_layers"], 43);
  EXPECT_EQ(c["n_routed_experts"], 8);
  EXPECT_EQ(c["expert_dtype"], "fp4");
  auto r = c["compress_ratios"].get<std::vector<int>>();
  ASSERT_EQ(r.size(), 44u);
  EXPECT_EQ(r[0], 0);
  EXPECT_EQ(r[1], 0);
  for (int l = 2; l < 43; ++l) EXPECT_EQ(r[l], l % 2 ? 128 : 4) << l;
  EXPECT_EQ(r[43], 0);

  o.preset = "pro-shaped";
  o.layers = 5;
  o.experts = 6;
  c = synth_config(o);
  EXPECT_EQ(c["hidden_size"], 7168);
  EXPECT_EQ(c["n_routed_experts"], 6);
  EXPECT_EQ(c["compress_ratios"].get<std::vector<int>>(), (std::vector<int>{128, 128, 4, 128, 4, 0}));
  EXPECT_EQ(c["routed_scaling_factor"], 2.5);

  o.preset = "tiny";
  o.layers = 2;
  o.experts = 0;
  c = synth_config(o);
  EXPECT_EQ(c["compress_ratios"].get<std::vector<int>>(), (std::vector<int>{0, 0, 0}));
  EXPECT_EQ(c["num_hash_layers"], 2);  // never more than the layers: MTP stays score-routed
  EXPECT_EQ(c["vocab_size"], 129280);

  o.expert_dtype = "fp8";
  EXPECT_FALSE(synth_config(o).contains("expert_dtype"));  // FP8 build drops the key
  o.scale_dtype = "f32";
  EXPECT_EQ(synth_config(o)["expert_dtype"], "fp8");  // Base
}

// The layout for the real configs reproduces the spec's tensor counts and byte sizes (§2.1, §2.6).
TEST(Synth, RealConfigsMatchSpecCountsAndSizes) {
  auto totals = [](const std::string& preset, const std::string& ed, const std::string& sd, size_t* count,
                   uint64_t* main_bytes, uint64_t* mtp_bytes) {
    SynthOptions o;
    o.preset = preset;
    o.experts = preset == "pro-shaped" ? 384 : 256;
    o.expert_dtype = ed;
    o.scale_dtype = sd;
    auto shards = synth_layout(synth_config(o), o);
    *count = 0, *main_bytes = 0, *mtp_bytes = 0;
    for (size_t k = 0; k < shards.size(); ++k)
      for (auto& t : shards[k].tensors) {
        uint64_t n = dtype_size(t.dtype);
        for (auto s : t.shape) n *= static_cast<uint64_t>(s);
        ++*count;
        (k + 1 == shards.size() ? *mtp_bytes : *main_bytes) += n;
      }
    return shards.size();
  };
  size_t count;
  uint64_t main, mtp;
  EXPECT_EQ(totals("flash-shaped", "fp4", "e8m0", &count, &main, &mtp), 46u);
  EXPECT_EQ(count, 69187u);
  EXPECT_EQ(main, 156015698140ull);
  EXPECT_EQ(mtp, 3593787756ull);
  totals("flash-shaped", "fp8", "f32", &count, &main, &mtp);
  EXPECT_EQ(main, 285940055644ull);
  EXPECT_EQ(mtp, 6615289836ull);
  totals("flash-shaped", "fp8", "e8m0", &count, &main, &mtp);
  EXPECT_EQ(main, 285888258268ull);
  EXPECT_EQ(mtp, 6614079852ull);
  EXPECT_EQ(totals("pro-shaped", "fp4", "e8m0", &count, &main, &mtp), 64u);
  EXPECT_EQ(count, 145116u);
  EXPECT_EQ(main, 850748205004ull);
  EXPECT_EQ(mtp, 13956587692ull);
}

TEST(Synth, TinyWritesAndLoadsBack) {
  TempDir dir("tiny");
  SynthOptions o = tiny(dir.str());
  write_synthetic_checkpoint(o);
  for (const char* f : {"config.json", "model.safetensors.index.json", "generation_config.json", "tokenizer_config.json"})
    EXPECT_TRUE(fs::exists(dir.path / f)) << f;
  EXPECT_FALSE(fs::exists(dir.path / "tokenizer.json"));
  EXPECT_EQ(read_json(dir.path / "config.json"), synth_config(o));
  const json idx = read_json(dir.path / "model.safetensors.index.json");
  EXPECT_EQ(idx["weight_map"]["embed.weight"], "model-00001-of-00010.safetensors");
  EXPECT_EQ(idx["weight_map"]["layers.0.attn.wq_a.weight"], "model-00002-of-00010.safetensors");
  EXPECT_EQ(idx["weight_map"]["layers.6.ffn.gate.bias"], "model-00008-of-00010.safetensors");
  EXPECT_EQ(idx["weight_map"]["head.weight"], "model-00009-of-00010.safetensors");
  EXPECT_EQ(idx["weight_map"]["hc_head_fn"], "model-00009-of-00010.safetensors");
  EXPECT_EQ(idx["weight_map"]["mtp.0.e_proj.weight"], "model-00010-of-00010.safetensors");

  TensorStore st(dir.str());
  const auto layout = synth_layout(synth_config(o), o);
  size_t n = 0, bytes = 0;
  for (auto& sh : layout)
    for (auto& t : sh.tensors) {
      const TensorView& v = st.get(t.name);
      EXPECT_EQ(v.dtype, t.dtype) << t.name;
      EXPECT_EQ(v.shape, t.shape) << t.name;
      ++n;
    }
  for (auto& nm : st.names()) bytes += st.get(nm).nbytes;
  EXPECT_EQ(st.names().size(), n);
  EXPECT_EQ(idx["metadata"]["total_size"].get<size_t>(), bytes);

  // A second write with a tokenizer and fewer layers replaces the old shards.
  o.layers = 3;
  o.tokenizer_json = "{\"model\": {}}";
  write_synthetic_checkpoint(o);
  EXPECT_EQ(slurp(dir.path / "tokenizer.json"), o.tokenizer_json);
  size_t shard_files = 0;
  for (auto& e : fs::directory_iterator(dir.path)) shard_files += e.path().extension() == ".safetensors";
  EXPECT_EQ(shard_files, 6u);
  TensorStore st3(dir.str());
  EXPECT_EQ(st3.find("layers.3.attn.wq_a.weight"), nullptr);
  EXPECT_NE(st3.find("mtp.0.ffn.gate.bias"), nullptr);
}

TEST(Synth, MatchesGoldenLayouts) {
  const std::string golden = golden_dir(V4_SHARED_DEFAULT);
  if (golden.empty())
    GTEST_SKIP() << "golden data not found: set V4HOST_GOLDEN (or V4HOST_SHARED) or place it at ../shared/golden";
  // tiny preset with the golden vocabulary is the golden tiny-all config.
  {
    const json gc = read_json(fs::path(golden) / "tiny-all/checkpoint/config.json");
    TempDir d("tinypreset");
    EXPECT_EQ(synth_config(tiny(d.str())), gc);
  }
  struct Case {
    const char* set;
    const char* expert_dtype;
  };
  for (Case c : {Case{"tiny-all", "fp4"}, Case{"tiny-fp8", "fp8"}, Case{"tiny-real-ratios", "fp4"}}) {
    const fs::path ck = fs::path(golden) / c.set / "checkpoint";
    if (!fs::exists(ck / "config.json")) {
      ADD_FAILURE() << "missing " << ck;
      continue;
    }
    TempDir d(std::string("golden_") + c.set);
    SynthOptions o = tiny(d.str(), 7);
    o.expert_dtype = c.expert_dtype;
    write_synthetic_checkpoint(read_json(ck / "config.json"), o);
    TensorStore ours(d.str()), ref(ck.string());
    expect_same_layout(ours, ref, c.set);
    EXPECT_EQ(read_json(d.path / "config.json"), read_json(ck / "config.json"));
  }
}

TEST(Synth, ValuesHaveTheIntendedScale) {
  TempDir dir("values");
  write_synthetic_checkpoint(tiny(dir.str(), 3));
  TensorStore st(dir.str());
  double m, sd;
  auto check_lin = [&](const std::string& base, double want) {
    moments(dequant(st, base), &m, &sd);
    EXPECT_NEAR(m, 0.0, 0.05 * want) << base;
    EXPECT_NEAR(sd, want, 0.04 * want) << base;
  };
  check_lin("layers.0.attn.wq_b", 1 / std::sqrt(128.0));
  check_lin("layers.3.attn.wo_a", 1 / std::sqrt(256.0));
  check_lin("layers.4.attn.indexer.wq_b", 1 / std::sqrt(128.0));
  check_lin("layers.3.ffn.shared_experts.w1", 1.5 / std::sqrt(256.0));
  check_lin("layers.3.ffn.shared_experts.w2", 1 / std::sqrt(128.0));
  check_lin("layers.3.ffn.experts.5.w1", 1.5 / std::sqrt(256.0));
  check_lin("layers.3.ffn.experts.5.w3", 1.5 / std::sqrt(256.0));
  check_lin("layers.3.ffn.experts.5.w2", 1 / std::sqrt(128.0));
  check_lin("mtp.0.h_proj", 1 / std::sqrt(256.0));

  // Block scales follow 2^ceil(log2(amax/448)) (FP8) and 2^ceil(log2(amax/6)) (FP4): the largest
  // code in each block lies in the top binade of the format.
  {
    const TensorView& w = st.get("layers.1.attn.wo_b.weight");
    float mx = 0;
    for (int64_t c = 0; c < 128; ++c)
      for (int64_t r = 0; r < 128; ++r) mx = std::max(mx, std::fabs(e4m3_to_f32(w.data[r * w.shape[1] + c])));
    EXPECT_GE(mx, 224.0f);
    const TensorView& e = st.get("layers.1.ffn.experts.0.w2.weight");
    for (int64_t g = 0; g < e.shape[1] / 16; ++g) {
      float gm = 0;
      for (int j = 0; j < 16; ++j) {
        const uint8_t b = e.data[g * 16 + j];
        gm = std::max({gm, std::fabs(e2m1_to_f32(b & 15)), std::fabs(e2m1_to_f32(b >> 4))});
      }
      EXPECT_GE(gm, 3.0f) << g;
    }
  }

  auto check_plain = [&](const std::string& n, double want_m, double want_sd, double tol) {
    moments(as_floats(st.get(n)), &m, &sd);
    EXPECT_NEAR(m, want_m, tol) << n;
    EXPECT_NEAR(sd, want_sd, tol) << n;
  };
  check_plain("embed.weight", 0.0, 1.0, 0.02);
  check_plain("head.weight", 0.0, 2.0 / 16, 0.005);
  check_plain("layers.2.ffn.gate.weight", 0.0, 1.0 / 16, 0.005);
  check_plain("layers.2.attn.compressor.wkv.weight", 0.0, 1.0 / 16, 0.005);
  check_plain("layers.3.attn.compressor.ape", 0.0, 0.5, 0.03);
  check_plain("layers.5.hc_ffn_fn", 0.0, 1.0 / 32, 0.002);
  check_plain("layers.6.attn_norm.weight", 1.0, 0.1, 0.02);

  // hc base: identity added to the comb block; scales in [0.3, 1).
  const auto base = as_floats(st.get("layers.4.hc_attn_base"));
  double diag = 0, off = 0;
  for (int i = 0; i < 16; ++i) (i / 4 == i % 4 ? diag : off) += base[8 + i];
  EXPECT_GT(diag / 4 - off / 12, 0.4);
  for (const char* n : {"layers.4.hc_attn_scale", "hc_head_scale", "mtp.0.hc_head_scale"})
    for (float x : as_floats(st.get(n))) {
      EXPECT_GE(x, 0.3f) << n;
      EXPECT_LT(x, 1.0f) << n;
    }
}

TEST(Synth, Tid2eidRowsAreDistinctAndRoutingVaries) {
  TempDir dir("routing");
  write_synthetic_checkpoint(tiny(dir.str(), 5));
  TensorStore st(dir.str());
  for (int l = 0; l < 3; ++l) {
    const TensorView& t = st.get("layers." + std::to_string(l) + ".ffn.gate.tid2eid");
    ASSERT_EQ(t.dtype, DType::I64);
    ASSERT_EQ(t.shape, (std::vector<int64_t>{512, 2}));
    const int64_t* v = reinterpret_cast<const int64_t*>(t.data);
    std::set<int64_t> used;
    for (int64_t r = 0; r < 512; ++r) {
      EXPECT_NE(v[2 * r], v[2 * r + 1]) << r;
      for (int j = 0; j < 2; ++j) {
        EXPECT_GE(v[2 * r + j], 0);
        EXPECT_LT(v[2 * r + j], 8);
        used.insert(v[2 * r + j]);
      }
    }
    EXPECT_EQ(used.size(), 8u);
  }
  EXPECT_EQ(st.find("layers.3.ffn.gate.tid2eid"), nullptr);
  EXPECT_EQ(st.find("mtp.0.ffn.gate.tid2eid"), nullptr);

  // Score routing of embeddings (unit RMS, like the normed FFN input) picks different experts
  // for different tokens.
  const auto emb = as_floats(st.get("embed.weight"));
  const auto gate = as_floats(st.get("layers.3.ffn.gate.weight"));
  const auto bias = as_floats(st.get("layers.3.ffn.gate.bias"));
  std::vector<int> top1_count(8, 0);
  for (int t = 0; t < 256; ++t) {
    int best = 0;
    float bv = -1e30f;
    for (int e = 0; e < 8; ++e) {
      double dot = 0;
      for (int k = 0; k < 256; ++k) dot += emb[t * 256 + k] * gate[e * 256 + k];
      const float s = std::sqrt(std::log1p(std::exp(static_cast<float>(dot)))) + bias[e];
      if (s > bv) bv = s, best = e;
    }
    ++top1_count[best];
  }
  for (int e = 0; e < 8; ++e) {
    EXPECT_GT(top1_count[e], 5) << "expert " << e;
    EXPECT_LT(top1_count[e], 100) << "expert " << e;
  }
}

TEST(Synth, DeterministicBySeed) {
  TempDir a("seed_a"), b("seed_b"), c("seed_c");
  SynthOptions o = tiny(a.str(), 42);
  o.layers = 3;
  write_synthetic_checkpoint(o);
  o.out_dir = b.str();
  write_synthetic_checkpoint(o);
  set_force_portable(true);  // the scalar random-number path must give the same bytes
  write_synthetic_checkpoint(o);
  set_force_portable(false);
  o.out_dir = c.str();
  o.seed = 43;
  write_synthetic_checkpoint(o);
  for (auto& e : fs::directory_iterator(a.path)) {
    const auto f = e.path().filename();
    EXPECT_EQ(slurp(a.path / f), slurp(b.path / f)) << f;
    if (f.extension() == ".safetensors") {
      EXPECT_NE(slurp(a.path / f), slurp(c.path / f)) << f;
    }
  }
}

TEST(Synth, FP8LayoutsWithBothScaleTypes) {
  for (const char* sdt : {"e8m0", "f32"}) {
    TempDir d(std::string("fp8_") + sdt);
    SynthOptions o = tiny(d.str(), 9);
    o.layers = 4;
    o.expert_dtype = "fp8";
    o.scale_dtype = sdt;
    write_synthetic_checkpoint(o);
    TensorStore st(d.str());
    const DType want = std::string(sdt) == "f32" ? DType::F32 : DType::F8_E8M0;
    EXPECT_EQ(st.get("layers.3.ffn.experts.2.w1.weight").dtype, DType::F8_E4M3);
    EXPECT_EQ(st.get("layers.3.ffn.experts.2.w1.weight").shape, (std::vector<int64_t>{128, 256}));
    EXPECT_EQ(st.get("layers.3.ffn.experts.2.w1.scale").dtype, want);
    EXPECT_EQ(st.get("layers.3.ffn.experts.2.w1.scale").shape, (std::vector<int64_t>{1, 2}));
    EXPECT_EQ(st.get("layers.0.attn.wq_a.scale").dtype, want);
    double m, sd;
    moments(dequant(st, "layers.3.ffn.experts.2.w2"), &m, &sd);
    EXPECT_NEAR(sd, 1 / std::sqrt(128.0), 0.04 / std::sqrt(128.0));
  }
}

TEST(Synth, BadOptionsAreRejected) {
  TempDir d("bad");
  auto rejects = [&](auto mutate, const char* what) {
    SynthOptions o = tiny(d.str());
    mutate(o);
    EXPECT_THROW(write_synthetic_checkpoint(o), InputError) << what;
  };
  rejects([](SynthOptions& o) { o.preset = "huge"; }, "preset");
  rejects([](SynthOptions& o) { o.expert_dtype = "fp16"; }, "expert dtype");
  rejects([](SynthOptions& o) { o.scale_dtype = "bf16"; }, "scale dtype");
  rejects([](SynthOptions& o) { o.scale_dtype = "f32"; }, "f32 scales with fp4 experts");
  rejects([](SynthOptions& o) { o.experts = 1; }, "fewer experts than top-k");
  rejects([](SynthOptions& o) { o.experts = -3; }, "negative experts");
  rejects([](SynthOptions& o) { o.layers = -1; }, "negative layers");
  rejects([](SynthOptions& o) { o.vocab = 1; }, "vocab 1");
  rejects([](SynthOptions& o) { o.out_dir.clear(); }, "no out dir");
  rejects([](SynthOptions& o) { o.out_dir = "/proc/v4synth/x"; }, "unwritable dir");
  EXPECT_FALSE(fs::exists(d.path / "config.json"));

  SynthOptions o = tiny(d.str());
  json c = synth_config(o);
  c.erase("hidden_size");
  EXPECT_THROW(write_synthetic_checkpoint(c, o), InputError);
  c = synth_config(o);
  c["compress_ratios"] = json::array({0, 0});
  EXPECT_THROW(write_synthetic_checkpoint(c, o), InputError);
  c = synth_config(o);
  o.expert_dtype = "fp8";  // config says fp4
  EXPECT_THROW(write_synthetic_checkpoint(c, o), InputError);
}

// What the writer produces passes the model loader's validation, in every layout.
TEST(Synth, LoadsWithTheModelLoader) {
  for (auto [ed, sdt] : {std::pair{"fp4", "e8m0"}, {"fp8", "e8m0"}, {"fp8", "f32"}}) {
    TempDir d(std::string("loader_") + ed + sdt);
    SynthOptions o = tiny(d.str(), 11);
    o.layers = 5;
    o.expert_dtype = ed;
    o.scale_dtype = sdt;
    write_synthetic_checkpoint(o);
    std::unique_ptr<ModelWeights> w;
    EXPECT_NO_THROW(w = ModelWeights::load(d.str(), true, true)) << ed << "/" << sdt;
    if (!w) continue;
    EXPECT_EQ(w->layers.size(), 5u);
    EXPECT_TRUE(w->mtp.has_value());
  }
}
