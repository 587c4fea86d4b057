// The current official releases in the catalog (docs/checkpoints.md): V4-Flash-0731 and
// V4-Pro-0813 have the preview's main model and a DSpark drafter (mtp.0..2) for MTP.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <sys/wait.h>

#include "plan/catalog_models.h"
#include "plan/weights.h"

using namespace v4::plan;

namespace {

TEST(PlanRevisions, CatalogKnowsTheCurrentReleases) {
  const ModelConfig& f = find_model("v4-flash-0731");
  EXPECT_EQ(f.hf_repo, "deepseek-ai/DeepSeek-V4-Flash-0731");
  EXPECT_TRUE(f.dspark);
  EXPECT_EQ(f.mtp_layers, 3);
  const ModelConfig& p = find_model("V4-Pro-0813");
  EXPECT_EQ(p.hf_repo, "deepseek-ai/DeepSeek-V4-Pro-0813");
  EXPECT_EQ(p.layers, 61);
  EXPECT_FALSE(find_model("v4-flash").dspark);

  // Same main model as the preview; the drafter's bytes equal the synthetic 0731 / 0813 layouts
  // (tests/model/test_checkpoints.cpp: the same tensors, counted from the writer's layout).
  WeightBytes w = weights_from_schema(f), prev = weights_from_schema(find_model("v4-flash"));
  EXPECT_DOUBLE_EQ(w.main.total(), prev.main.total());
  EXPECT_DOUBLE_EQ(w.mtp.total(), 10862847004.0);
  EXPECT_NEAR(w.total() / 1e9, 167.0, 0.5);  // the published size of the 0731 repository: 167 GB
  WeightBytes wp = weights_from_schema(p);
  EXPECT_DOUBLE_EQ(wp.main.total(), weights_from_schema(find_model("v4-pro")).main.total());
  EXPECT_DOUBLE_EQ(wp.mtp.total(), 41847007516.0);
}

TEST(PlanRevisions, ConfigFromACheckpointDirectory) {
  nlohmann::json c = {{"vocab_size", 129280}, {"hidden_size", 4096}, {"num_hidden_layers", 43},
                      {"num_attention_heads", 64}, {"q_lora_rank", 1024}, {"n_routed_experts", 256},
                      {"moe_intermediate_size", 2048}, {"num_nextn_predict_layers", 1},
                      {"dspark_block_size", 5}, {"dspark_noise_token_id", 128799},
                      {"dspark_target_layer_ids", {40, 41, 42}}, {"dspark_markov_rank", 256}};
  nlohmann::json r = nlohmann::json::array();
  for (int l = 0; l < 46; ++l) r.push_back(l < 2 || l >= 43 ? 0 : (l % 2 ? 128 : 4));
  c["compress_ratios"] = r;
  ModelConfig m = model_config_from_json_text(c.dump(), "0731/config.json");
  EXPECT_TRUE(m.dspark);
  EXPECT_EQ(m.mtp_layers, 3);  // the stale num_nextn_predict_layers is not the drafter
  EXPECT_EQ(m.compress_ratios.size(), 43u);
  EXPECT_DOUBLE_EQ(weights_from_schema(m).mtp.total(), 10862847004.0);
}

TEST(PlanRevisions, CheckRunsOnThem) {
  for (const char* model : {"v4-flash-0731", "v4-pro-0813"}) {
    std::string cmd = std::string("'") + V4_BINARY + "' check --model " + model + " --gpus 8xH200 --mtp --json 2>/dev/null";
    FILE* f = popen(cmd.c_str(), "r");
    ASSERT_NE(f, nullptr);
    std::string out;
    std::array<char, 4096> buf{};
    size_t n;
    while ((n = fread(buf.data(), 1, buf.size(), f)) > 0) out.append(buf.data(), n);
    int st = pclose(f);
    ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << model << "\n" << out;
    nlohmann::json j = nlohmann::json::parse(out);
    EXPECT_NE(j.dump().find(model), std::string::npos) << model;
    EXPECT_NE(j.dump().find("weights_bytes_mtp"), std::string::npos);
  }
}

}  // namespace
