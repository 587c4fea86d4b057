// Runs the built v4host binary: exit codes, the JSON contract scripts rely on, the built-in
// example, --model-dir on a small checkpoint written here, and the catalog overrides.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <sys/wait.h>

#include "core/safetensors.h"

namespace {

struct CmdResult {
  int rc;
  std::string out;
};

// Runs `v4host check ARGS`, stdout captured (stderr merged when `merge`).
CmdResult check(const std::string& args, bool merge = false) {
  std::string cmd = std::string("'") + V4_BINARY + "' check " + args + (merge ? " 2>&1" : " 2>/dev/null");
  CmdResult r{-1, ""};
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  int st = pclose(p);
  r.rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

nlohmann::json check_json(const std::string& args) {
  CmdResult r = check(args + " --json");
  EXPECT_EQ(r.rc, 0) << args << "\n" << r.out;
  return nlohmann::json::parse(r.out);
}

}  // namespace

TEST(PlanCli, NoArgumentsRunsTheExampleAndExplains) {
  CmdResult r = check("");
  ASSERT_EQ(r.rc, 0);
  EXPECT_NE(r.out.find("built-in example"), std::string::npos);
  EXPECT_NE(r.out.find("Ask about your own setup"), std::string::npos);
  EXPECT_NE(r.out.find("$5,169.60"), std::string::npos);
  EXPECT_NE(r.out.find("Verdict:"), std::string::npos);
  EXPECT_NE(r.out.find("upper bound"), std::string::npos);
}

TEST(PlanCli, JsonHasTheRequiredKeys) {
  nlohmann::json j = check_json("--model v4-flash --gpus 2xH200 --gpu-hourly 7.18 --tokens-per-month 200M");
  EXPECT_TRUE(j["fit"]["fits"].is_boolean());
  for (const char* k : {"weights_bytes_per_gpu", "kv_bytes_per_token", "max_context", "max_concurrency"})
    EXPECT_TRUE(j["fit"][k].is_number()) << k;
  for (const char* k : {"self_hosted_usd_per_month", "hosted_usd_per_month", "breakeven_tokens_per_month"})
    EXPECT_TRUE(j["cost"][k].is_number()) << k;
  EXPECT_TRUE(j["verdict"]["decision"] == "go" || j["verdict"]["decision"] == "no-go" ||
              j["verdict"]["decision"] == "conditional");
  ASSERT_TRUE(j["verdict"]["reasons"].is_array());
  EXPECT_FALSE(j["verdict"]["reasons"].empty());
  EXPECT_TRUE(j["verdict"]["reasons"][0].is_string());
  EXPECT_DOUBLE_EQ(j["cost"]["self_hosted_usd_per_month"].get<double>(), 5169.60);
  EXPECT_NEAR(j["cost"]["hosted_usd_per_month"].get<double>(), 35.0, 1e-9);  // 75% input default
  // Cost alone, no declared reason: stay on the hosted API.
  EXPECT_EQ(j["verdict"]["decision"], "no-go");
  EXPECT_TRUE(j["speed"]["upper_bound"].get<bool>());
  for (const char* e : {"v4host", "vllm", "sglang"}) EXPECT_TRUE(j["launch"][e]["command"].is_string()) << e;
  EXPECT_FALSE(j["gpus"]["as_of"].get<std::string>().empty());
}

TEST(PlanCli, OnsiteDataTurnsCostIntoACondition) {
  nlohmann::json j = check_json("--model v4-flash --gpus 4xB200 --gpu-hourly 30 --data-must-stay-onsite");
  EXPECT_EQ(j["verdict"]["decision"], "conditional");
  bool mentions = false;
  for (auto& s : j["verdict"]["reasons"])
    if (s.get<std::string>().find("on site") != std::string::npos) mentions = true;
  EXPECT_TRUE(mentions);
}

TEST(PlanCli, GoWhenItFitsAndPays) {
  nlohmann::json j = check_json("--model v4-flash --gpus 4xB200 --context 128k --concurrency 16 --gpu-hourly 20 "
                                "--tokens-per-month 100B --input-share 0.5");
  EXPECT_TRUE(j["fit"]["fits"].get<bool>());
  EXPECT_EQ(j["verdict"]["decision"], "go") << j["verdict"].dump(2);
}

TEST(PlanCli, TwoA100NoGoSaysWhy) {
  nlohmann::json j = check_json("--model v4-flash --gpus 2xA100-80G");
  EXPECT_FALSE(j["fit"]["fits"].get<bool>());
  EXPECT_EQ(j["verdict"]["decision"], "no-go");
  EXPECT_NE(j["verdict"]["reasons"][0].get<std::string>().find("does not fit on 2 x A100-80G"), std::string::npos);
}

TEST(PlanCli, HopperGetsTheFp8Build) {
  // Native Flash on 8 x H100 fits, but FP4 experts have no Hopper tensor cores: the FP8 build fits
  // too and is recommended, with vLLM told that its experts are FP8.
  nlohmann::json j = check_json("--model v4-flash --gpus 8xH100 --context 1M --concurrency 4");
  EXPECT_EQ(j["precision"]["recommended_model"], "v4-flash-fp8");
  EXPECT_TRUE(j["recommended_fit"]["fits"].get<bool>());
  std::string vllm = j["launch"]["vllm"]["command"];
  EXPECT_NE(vllm.find("sgl-project/DeepSeek-V4-Flash-FP8"), std::string::npos);
  EXPECT_NE(vllm.find("expert_dtype"), std::string::npos);
  EXPECT_NE(vllm.find("--max-model-len 1048576"), std::string::npos);
}

TEST(PlanCli, BadInputExitsWithCodeTwo) {
  struct Case { const char* args; const char* message; };
  const Case cases[] = {
      {"--gpus 2xQ100", "unknown GPU 'Q100'"},
      {"--tokens-per-month=-5M", "cannot be negative"},
      {"--tokens-per-month -200M", "cannot be negative"},
      {"--context 2M", "impossible"},
      {"--context 0", "at least 1"},
      {"--context lots", "not a context length"},
      {"--model v4-ultra", "unknown model"},
      {"--concurrency 0", "at least 1"},
      {"--input-share 1.5", "between 0 and 1"},
      {"--gpus 0xH100", "bad GPU count"},
      {"--kv-dtype fp2", "unknown KV cache format"},
      {"--model-dir /nonexistent/dir", "not a directory"},
      {"--catalog /nonexistent/catalog.json", "cannot read"},
      {"--gpu-spec Broken:memory_gib=-3", "must be a positive number"},
      {"--engine tensorrt", "tensorrt"},
  };
  for (const Case& c : cases) {
    CmdResult r = check(c.args, true);
    EXPECT_EQ(r.rc, 2) << c.args << "\n" << r.out;
    EXPECT_NE(r.out.find(c.message), std::string::npos) << c.args << "\n" << r.out;
  }
}

TEST(PlanCli, MarkdownAndSweep) {
  CmdResult md = check("--model v4-flash-fp8 --gpus 8xH100 --markdown --sweep");
  ASSERT_EQ(md.rc, 0);
  EXPECT_EQ(md.out.rfind("# v4host check", 0), 0u);
  EXPECT_NE(md.out.find("## Fit sweep"), std::string::npos);
  EXPECT_NE(md.out.find("| context |"), std::string::npos);
  nlohmann::json j = check_json("--model v4-flash-fp8 --gpus 8xH100 --sweep");
  ASSERT_TRUE(j["fit_sweep"].is_array());
  EXPECT_EQ(j["fit_sweep"].size(), 6u * 8u);
}

TEST(PlanCli, CatalogFileAndCustomGpu) {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / ("v4plan-cat-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  {
    std::ofstream f(dir / "cat.json");
    f << R"({"as_of": "2026-12-01", "source": "test sheet",
             "gpus": {"H100": {"memory_gib": 94}, "X9": {"memory_gib": 200, "bandwidth_gbs": 5000, "fp8": true, "fp4": true}},
             "engines": {"vllm": {"kv_factor": 2.0}},
             "tariffs": {"v4-flash": {"input": 1.0, "output": 2.0}}})";
  }
  nlohmann::json j = check_json("--catalog '" + (dir / "cat.json").string() + "' --model v4-flash-fp8 --gpus 8xH100");
  EXPECT_DOUBLE_EQ(j["gpus"]["memory_gib"].get<double>(), 94);
  EXPECT_EQ(j["gpus"]["as_of"], "2026-12-01");
  EXPECT_DOUBLE_EQ(j["engine"]["kv_factor"].get<double>(), 2.0);
  EXPECT_DOUBLE_EQ(j["fit"]["kv_bytes_per_token"].get<double>(), 2.0 * j["fit"]["kv_floor_bytes_per_token"].get<double>());
  EXPECT_DOUBLE_EQ(j["cost"]["price_input"].get<double>(), 1.0);
  nlohmann::json x = check_json("--catalog '" + (dir / "cat.json").string() + "' --model v4-flash --gpus 2xX9");
  EXPECT_EQ(x["gpus"]["type"], "X9");
  EXPECT_EQ(x["precision"]["status"], "native");
  nlohmann::json c = check_json("--gpu-spec 'Host:memory_gib=768,bandwidth_gbs=460,platform=cpu' --gpus Host "
                                "--engine v4host --model v4-flash");
  EXPECT_TRUE(c["fit"]["fits"].get<bool>());
  EXPECT_EQ(c["precision"]["status"], "native");
  EXPECT_EQ(c["kv_dtype"], nullptr);
  EXPECT_EQ(c["input"]["kv_dtype"], "bf16");
  fs::remove_all(dir);
}

// --model-dir: config.json + one shard with a tiny V4-shaped model; bytes are read from the
// safetensors headers and classified by name.
TEST(PlanCli, ModelDirReadsExactBytes) {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / ("v4plan-ckpt-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  {
    std::ofstream f(dir / "config.json");
    f << R"({"vocab_size": 64, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
             "head_dim": 16, "qk_rope_head_dim": 8, "q_lora_rank": 16, "o_groups": 1, "o_lora_rank": 16,
             "n_routed_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 16,
             "num_hash_layers": 0, "compress_ratios": [0, 4, 0], "expert_dtype": "fp4",
             "max_position_embeddings": 4096})";
  }
  v4::SafetensorsWriter w;
  std::vector<uint8_t> zeros(64 * 32 * 2, 0);
  w.add("embed.weight", v4::DType::BF16, {64, 32}, zeros.data(), 64 * 32 * 2);
  w.add("head.weight", v4::DType::BF16, {64, 32}, zeros.data(), 64 * 32 * 2);
  w.add("norm.weight", v4::DType::BF16, {32}, zeros.data(), 64);
  for (int l = 0; l < 2; ++l) {
    std::string p = "layers." + std::to_string(l) + ".";
    w.add(p + "attn.wq_b.weight", v4::DType::F8_E4M3, {32, 16}, zeros.data(), 512);
    w.add(p + "attn.wkv.weight", v4::DType::F8_E4M3, {16, 32}, zeros.data(), 512);
    for (int e = 0; e < 4; ++e)
      w.add(p + "ffn.experts." + std::to_string(e) + ".w1.weight", v4::DType::I8, {16, 16}, zeros.data(), 256);
  }
  w.add("mtp.0.e_proj.weight", v4::DType::F8_E4M3, {32, 32}, zeros.data(), 1024);
  w.write((dir / "model.safetensors").string());
  nlohmann::json j = check_json("--model-dir '" + dir.string() + "' --gpus 1xH100 --context 4096 --concurrency 1 "
                                "--price-input 0.1 --price-output 0.2");
  EXPECT_DOUBLE_EQ(j["model"]["weights_bytes_main"].get<double>(),
                   2 * 4096.0 + 64 + 2 * (512 + 512 + 4 * 256));
  EXPECT_DOUBLE_EQ(j["model"]["weights_bytes_mtp"].get<double>(), 1024);
  EXPECT_EQ(j["model"]["expert_format"], "fp4");
  EXPECT_NE(j["model"]["weights_source"].get<std::string>().find("safetensors headers"), std::string::npos);
  EXPECT_EQ(j["model"]["layers"]["csa_c4"], 1);
  EXPECT_TRUE(j["fit"]["fits"].get<bool>());
  // Without shards, the schema is used and says so.
  fs::remove(dir / "model.safetensors");
  nlohmann::json s = check_json("--model-dir '" + dir.string() + "' --gpus 1xH100 --context 4096 --concurrency 1 "
                                "--price-input 0.1 --price-output 0.2");
  EXPECT_NE(s["model"]["weights_source"].get<std::string>().find("no .safetensors shards"), std::string::npos);
  // A model without a known tariff needs prices.
  // (No --context: the default 128K is lowered to the model's 4,096 maximum.)
  CmdResult r = check("--model-dir '" + dir.string() + "' --gpus 1xH100", true);
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.out.find("--price-input"), std::string::npos);
  fs::remove_all(dir);
}
