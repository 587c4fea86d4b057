// Weight bytes computed from the config + tensor schema must equal the sizes of spec §2.6, and
// the KV formula must reproduce the table of spec §4.2.
#include <gtest/gtest.h>

#include "core/error.h"
#include "plan/kv.h"
#include "plan/units.h"
#include "plan/weights.h"

using namespace v4::plan;

TEST(PlanModelBytes, CatalogHasTheRequiredModels) {
  for (const char* n : {"v4-flash", "v4-flash-base", "v4-flash-fp8", "v4-pro", "v4-pro-base"})
    EXPECT_NO_THROW(find_model(n)) << n;
  EXPECT_THROW(find_model("v4-ultra"), v4::InputError);
}

TEST(PlanModelBytes, LayerScheduleMatchesSpec) {
  const ModelConfig& f = find_model("v4-flash");
  EXPECT_EQ(f.n_swa(), 2);
  EXPECT_EQ(f.n_csa(), 21);
  EXPECT_EQ(f.n_hca(), 20);
  const ModelConfig& p = find_model("v4-pro");
  EXPECT_EQ(p.n_swa(), 0);
  EXPECT_EQ(p.n_csa(), 30);
  EXPECT_EQ(p.n_hca(), 31);
}

// Spec §2.6, byte-exact.
TEST(PlanModelBytes, WeightBytesEqualSpecSizes) {
  struct Row { const char* model; double main, mtp; };
  const Row rows[] = {
      {"v4-flash", 156015698140.0, 3593787756.0},
      {"v4-flash-base", 285940055644.0, 6615289836.0},
      {"v4-flash-fp8", 285888258268.0, 6614079852.0},
      {"v4-pro", 850748205004.0, 13956587692.0},
      {"v4-pro-base", 1576472106124.0, 25853718508.0},
  };
  for (const Row& r : rows) {
    WeightBytes w = weights_from_schema(find_model(r.model));
    EXPECT_DOUBLE_EQ(w.main.total(), r.main) << r.model;
    EXPECT_DOUBLE_EQ(w.mtp.total(), r.mtp) << r.model;
  }
  // Parameter counts: 284.33 B / 290.94 B (Flash), 1,573.00 B / 1,598.84 B (Pro).
  WeightBytes f = weights_from_schema(find_model("v4-flash"));
  EXPECT_NEAR(f.main.params / 1e9, 284.33, 0.005);
  EXPECT_NEAR((f.main.params + f.mtp.params) / 1e9, 290.94, 0.005);
  WeightBytes p = weights_from_schema(find_model("v4-pro"));
  EXPECT_NEAR(p.main.params / 1e9, 1573.00, 0.005);
  EXPECT_NEAR((p.main.params + p.mtp.params) / 1e9, 1598.84, 0.005);
}

TEST(PlanModelBytes, ExpertBytesByHand) {
  // Flash FP4 expert: w1, w3 = I8 [2048, 2048] + E8M0 [2048, 128]; w2 = I8 [4096, 1024] + [4096, 64].
  EXPECT_DOUBLE_EQ(weights_from_schema(find_model("v4-flash")).expert_bytes,
                   2 * (2048.0 * 2048 + 2048 * 128) + (4096.0 * 1024 + 4096 * 64));
  // Flash FP8 expert (E8M0 block scales): w1, w3 = [2048, 4096] + [16, 32]; w2 = [4096, 2048] + [32, 16].
  EXPECT_DOUBLE_EQ(weights_from_schema(find_model("v4-flash-fp8")).expert_bytes,
                   2 * (2048.0 * 4096 + 16 * 32) + (4096.0 * 2048 + 32 * 16));
  // Pro FP4 expert: w1, w3 = I8 [3072, 3584] + [3072, 224]; w2 = I8 [7168, 1536] + [7168, 96].
  EXPECT_DOUBLE_EQ(weights_from_schema(find_model("v4-pro")).expert_bytes,
                   2 * (3072.0 * 3584 + 3072 * 224) + (7168.0 * 1536 + 7168 * 96));
}

// Spec §4.2 table (GiB, rounded as printed there).
TEST(PlanModelBytes, KvTableOfSpec) {
  struct Row { const char* model; const char* kv; double k4, k64, k128, m1; };
  const Row rows[] = {
      {"v4-flash", "bf16", 0.043, 0.437, 0.856, 6.74},   {"v4-flash", "fp8", 0.029, 0.249, 0.484, 3.77},
      {"v4-flash", "fp8-fp4idx", 0.028, 0.229, 0.443, 3.45}, {"v4-pro", "bf16", 0.062, 0.626, 1.227, 9.64},
      {"v4-pro", "fp8", 0.043, 0.358, 0.694, 5.40},      {"v4-pro", "fp8-fp4idx", 0.041, 0.329, 0.636, 4.94},
  };
  for (const Row& r : rows) {
    const ModelConfig& m = find_model(r.model);
    const KvFormat& f = find_kv_format(r.kv);
    EXPECT_NEAR(kv_bytes(m, f, 4096).total() / kGiB, r.k4, 0.0005) << r.model << " " << r.kv;
    EXPECT_NEAR(kv_bytes(m, f, 65536).total() / kGiB, r.k64, 0.0005) << r.model << " " << r.kv;
    EXPECT_NEAR(kv_bytes(m, f, 131072).total() / kGiB, r.k128, 0.0005) << r.model << " " << r.kv;
    EXPECT_NEAR(kv_bytes(m, f, 1048576).total() / kGiB, r.m1, 0.005) << r.model << " " << r.kv;
  }
}

TEST(PlanModelBytes, KvFormulaByHand) {
  const ModelConfig& m = find_model("v4-flash");
  const KvFormat& f = find_kv_format("fp8");
  KvBreakdown k = kv_bytes(m, f, 1048576);
  EXPECT_DOUBLE_EQ(k.window, 43.0 * 128 * 584);
  EXPECT_DOUBLE_EQ(k.c4, 21.0 * 262144 * 584);
  EXPECT_DOUBLE_EQ(k.indexer, 21.0 * 262144 * 132);
  EXPECT_DOUBLE_EQ(k.c128, 20.0 * 8192 * 584);
  EXPECT_DOUBLE_EQ(k.frontier, 21.0 * (65536 + 16384) + 20.0 * 524288);
  EXPECT_DOUBLE_EQ(k.total(), 4052700160.0);
  // Marginal bytes per token: 21·(584+132)/4 + 20·584/128.
  EXPECT_DOUBLE_EQ(kv_bytes_per_token(m, f), 21.0 * 716 / 4 + 20.0 * 584 / 128);
  // Short contexts: the window is partial, no compressed entries yet.
  KvBreakdown s = kv_bytes(m, f, 3);
  EXPECT_DOUBLE_EQ(s.window, 43.0 * 3 * 584);
  EXPECT_DOUBLE_EQ(s.c4 + s.c128 + s.indexer, 0.0);
  EXPECT_THROW(find_kv_format("fp2"), v4::InputError);
}
