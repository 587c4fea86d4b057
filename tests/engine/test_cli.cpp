// The engine's command-line interface (a public interface scripts call): `v4host logits` in
// every mode against the golden data, `generate`, `synth`, and bad-input exit codes.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "golden_util.h"

using namespace v4;
using namespace v4::test;
namespace fs = std::filesystem;

namespace {

int run(const std::string& args) {
  int rc = std::system((std::string(V4_BINARY) + " " + args + " >/dev/null 2>&1").c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

std::string tmp(const std::string& name) {
  return (fs::temp_directory_path() / ("v4host-cli-" + std::to_string(::getpid()) + "-" + name)).string();
}

TEST(Cli, LogitsPrefillChunkedDecodeAndMtpMatchGolden) {
  V4_REQUIRE_GOLDEN("tiny-all");
  const std::string model = G + "/checkpoint", tokens = G + "/prompt_ids.npy";
  auto ref = f32(G + "/noaq/logits_prefill.npy");
  const int V = 512;
  struct Mode {
    std::string flags;
  };
  for (const std::string flags : {"", "--prefill 301", "--prefill 200 --chunk 37"}) {
    const std::string out = tmp("logits.npy");
    ASSERT_EQ(run("logits --model " + model + " --tokens " + tokens + " --out " + out + " -q " + flags), 0) << flags;
    NpyArray a = read_npy(out);
    ASSERT_EQ(a.shape, (std::vector<int64_t>{600, V})) << flags;
    Cmp c = compare_rows(a.as_f32(), iota_rows(600), ref, V);
    EXPECT_LE(c.maxabs, 1e-3) << flags;
    EXPECT_EQ(c.argmax_agree, 1.0) << flags;
    fs::remove(out);
  }
  const std::string out = tmp("mtp.npy");
  ASSERT_EQ(run("logits --model " + model + " --tokens " + tokens + " --out " + out + " -q --mtp"), 0);
  NpyArray a = read_npy(out);
  ASSERT_EQ(a.shape, (std::vector<int64_t>{599, V}));
  Cmp c = compare_rows(a.as_f32(), i64(G + "/noaq/mtp_positions.npy"), f32(G + "/noaq/mtp_logits.npy"), V);
  EXPECT_LE(c.maxabs, 1e-3);
  fs::remove(out);
}

TEST(Cli, GenerateGreedyMatchesGolden) {
  V4_REQUIRE_GOLDEN("tiny-all");
  // Plain and speculative (MTP drafts, exact acceptance) greedy decoding give the reference.
  for (const std::string flags : {"", " --speculative"}) {
    const std::string out = tmp("gen.txt");
    int rc = std::system((std::string(V4_BINARY) + " generate -q -n 32 --model " + G + "/checkpoint --tokens " + G +
                          "/prompt_ids.npy" + flags + " > " + out)
                             .c_str());
    ASSERT_EQ(rc, 0);
    std::ifstream f(out);
    std::vector<int64_t> got;
    for (int64_t t; f >> t;) got.push_back(t);
    EXPECT_EQ(got, i64(G + "/noaq/greedy_tokens.npy")) << flags;
    fs::remove(out);
  }
}

TEST(Cli, SynthCheckpointRunsInTheEngine) {
  const std::string dir = tmp("synth");
  ASSERT_EQ(run("synth --preset tiny --vocab 300 --layers 4 --out " + dir + " -q"), 0);
  const std::string toks = tmp("toks.npy");
  std::vector<int32_t> ids = {5, 17, 250, 3, 99, 120, 7, 8, 9};
  write_npy_i32(toks, ids.data(), {static_cast<int64_t>(ids.size())});
  const std::string out = tmp("synth-logits.npy");
  ASSERT_EQ(run("logits --model " + dir + " --tokens " + toks + " --out " + out + " -q --prefill 4"), 0);
  NpyArray a = read_npy(out);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{9, 300}));
  for (float v : a.as_f32()) ASSERT_TRUE(std::isfinite(v));
  // bench-engine --json: the documented fields, every figure with its roofline ratio.
  const std::string js = tmp("bench.json");
  EXPECT_EQ(std::system((std::string(V4_BINARY) + " bench-engine --model " + dir +
                         " --prompts 8,16 --batches 1,3 --decode 2 --context 40 --context-base 20 --speculative 6 -q --json > " + js + " 2>/dev/null").c_str()),
            0);
  std::ifstream jf(js);
  auto j = nlohmann::json::parse(jf);
  for (const char* k : {"prompt_tokens", "decode_tokens", "threads", "prefill_tok_s", "decode_tok_s", "weight_bytes_per_token",
                        "mem_bw_bytes_s", "bw_ratio", "fp32_peak_flop_s", "bf16_peak_flop_s", "peak_flop_s", "numerics"})
    EXPECT_TRUE(j.contains(k)) << k;
  EXPECT_EQ(j["prompt_tokens"], 8);
  EXPECT_GT(j["mem_bw_bytes_s"].get<double>(), 0);
  // A tiny checkpoint fits in memory: --populate auto mapped it before the figures.
  EXPECT_EQ(j["weights_populated"], true);
  EXPECT_GE(j["populate_s"].get<double>(), 0);
  EXPECT_NE(j["kernels"].get<std::string>().find("kernels:"), std::string::npos) << j["kernels"];
  // The ceiling is the best probe, and the original 4 KiB-page probe is reported beside it.
  ASSERT_TRUE(j["mem_bw_probes"].contains("anon-4k"));
  ASSERT_TRUE(j["mem_bw_probes"].contains(j["mem_bw_probe"].get<std::string>()));
  EXPECT_EQ(j["mem_bw_probes"][j["mem_bw_probe"].get<std::string>()], j["mem_bw_bytes_s"]);
  EXPECT_GE(j["mem_bw_bytes_s"].get<double>(), j["mem_bw_4k_bytes_s"].get<double>());
  for (const auto& [name, b] : j["mem_bw_probes"].items()) EXPECT_LE(b.get<double>(), j["mem_bw_bytes_s"].get<double>()) << name;
  EXPECT_FALSE(j["mem_bw_probes"].contains("weights")) << "a tiny model's weights fit in the cache";
  EXPECT_GT(j["fp32_peak_flop_s"].get<double>(), 0);
  ASSERT_EQ(j["decode"].size(), 2u);
  EXPECT_EQ(j["decode"][1]["batch"], 3);
  EXPECT_GT(j["decode"][1]["roofline_ratio"].get<double>(), 0);
  ASSERT_EQ(j["prefill"].size(), 2u);
  EXPECT_EQ(j["prefill"][1]["tokens"], 16);
  EXPECT_GT(j["prefill"][1]["peak_ratio"].get<double>(), 0);
  EXPECT_EQ(j["context"]["tokens"], 40);
  EXPECT_GT(j["context"]["decode_ratio"].get<double>(), 0);
  EXPECT_EQ(j["speculative"]["tokens"], 6);
  EXPECT_GE(j["speculative"]["tokens_per_step"].get<double>(), 1.0);
  EXPECT_EQ(run("bench-engine --model " + dir + " --batches 0 -q"), 2);
  fs::remove(js);
  fs::remove_all(dir);
  fs::remove(toks);
  fs::remove(out);
}

TEST(Cli, BadInputExitsWithCode2) {
  EXPECT_EQ(run("logits --model /nonexistent --tokens /nonexistent.npy --out /tmp/x.npy"), 2);
  EXPECT_EQ(run("logits"), 2);
  EXPECT_EQ(run("synth --preset huge --out " + tmp("bad")), 2);
  EXPECT_EQ(run("generate --model /nonexistent -n 3"), 2);
}

}  // namespace
