// Fit arithmetic against hand-computed cases. Constants below are derived by hand from the
// spec's tensor shapes (§2.2-2.3), the §2.6 byte totals and the catalog's device memory.
#include <gtest/gtest.h>

#include "plan/catalog_file.h"
#include "plan/fit.h"
#include "plan/units.h"

using namespace v4::plan;

namespace {

// Spec §2.6 split by placement, by hand: routed experts = 256 x 43 x 13,369,344 B for Flash FP4;
// the rest (non-expert) = 156,015,698,140 - 147,169,738,752 = 8,845,959,388 B, of which the
// TP-split tensors (embed, head, wq_b, wo_a, wo_b, attn_sink, weights_proj) are 6,457,930,496 B.
constexpr double kFlashExpert = 13369344.0;      // 2·(2048·2048 + 2048·128) + (4096·1024 + 4096·64)
constexpr double kFlashFp8Expert = 25167360.0;   // 2·(2048·4096 + 16·32) + (4096·2048 + 32·16)
constexpr double kProExpert = 35094528.0;        // 2·(3072·3584 + 3072·224) + (7168·1536 + 7168·96)
constexpr double kFlashSharded = 6457930496.0;
constexpr double kFlashReplicated = 2388028892.0;
constexpr double kProSharded = 21133307392.0;
constexpr double kProReplicated = 7560673740.0;

FitInput make(const std::string& model, const std::string& gpus, int64_t context, int conc,
              const std::string& engine = "vllm", const std::string& parallel = "auto") {
  Catalog c = builtin_catalog();
  FitInput in;
  in.model = find_model(model);
  in.weights = weights_from_schema(in.model);
  in.gpus = parse_gpus(c.gpus, gpus);
  in.engine = find_engine(c.engines, engine);
  in.kv = find_kv_format(in.engine.default_kv_dtype);
  in.context = context;
  in.concurrency = conc;
  in.parallel = parallel;
  return in;
}

double budget(double mem_gib, double weights) { return mem_gib * kGiB * 0.90 - 6 * kGiB - weights; }

}  // namespace

TEST(PlanFit, PlacementPartsSumToSpecTotals) {
  WeightBytes f = weights_from_schema(find_model("v4-flash"));
  EXPECT_DOUBLE_EQ(f.main.experts, 256 * 43 * kFlashExpert);
  EXPECT_DOUBLE_EQ(f.main.sharded, kFlashSharded);
  EXPECT_DOUBLE_EQ(f.main.replicated, kFlashReplicated);
  EXPECT_DOUBLE_EQ(f.main.total(), 156015698140.0);
  WeightBytes p = weights_from_schema(find_model("v4-pro"));
  EXPECT_DOUBLE_EQ(p.main.experts, 384 * 61 * kProExpert);
  EXPECT_DOUBLE_EQ(p.main.sharded + p.main.replicated, kProSharded + kProReplicated);
}

// V4-Flash native on 2 x A100 80G: 128 experts x 43 layers x 13.37 MB + 6.46 GB / 2 + 2.39 GB
// = 79.20 GB = 73.76 GiB per GPU; vLLM may use 0.9 x 80 GiB = 72 GiB, minus 6 GiB runtime
// = 66 GiB < 73.76 GiB: does not fit. And A100 has no FP8/FP4 tensor cores.
TEST(PlanFit, FlashNativeOnTwoA100DoesNotFit) {
  FitInput in = make("v4-flash", "2xA100-80G", 131072, 1);
  FitResult r = compute_fit(in);
  const double w = 128 * 43 * kFlashExpert + kFlashSharded / 2 + kFlashReplicated;
  EXPECT_DOUBLE_EQ(w, 79201863516.0);
  EXPECT_EQ(r.parallel, "tp");  // the smaller per-GPU footprint
  EXPECT_DOUBLE_EQ(r.weights_bytes_per_gpu, w);
  EXPECT_NEAR(r.weights_bytes_per_gpu / kGiB, 73.76, 0.01);
  EXPECT_DOUBLE_EQ(r.kv_budget_bytes_per_gpu, budget(80, w));
  EXPECT_FALSE(r.weights_fit);
  EXPECT_FALSE(r.fits);
  EXPECT_EQ(r.max_concurrency, 0);
  EXPECT_EQ(r.max_context, 0);
  bool says_why = false;
  for (auto& n : r.notes)
    if (n.find("does not fit: the weights alone need 73.76 GiB per GPU") != std::string::npos) says_why = true;
  EXPECT_TRUE(says_why);
  Catalog c = builtin_catalog();
  Precision p = check_precision(in.model, in.gpus.gpu, in.engine);
  EXPECT_EQ(p.status, "weight-only");
  EXPECT_NE(p.explanation.find("neither FP8 nor FP4"), std::string::npos);
}

// FP8 build on 8 x H100: data-parallel attention, 32 experts per GPU:
// 32 x 43 x 25,167,360 + 8,845,959,388 = 43,476,246,748 B per GPU; KV budget
// 79.6 GiB x 0.9 - 6 GiB - weights = 27.00 GB; one 1M sequence = 4,052,700,160 B x 1.1 (vLLM)
// = 4.458 GB -> 6 per GPU, 48 in all. Asking for 64 at 1M: the context limit is stated.
TEST(PlanFit, Fp8BuildOnEightH100FitsWithContextLimit) {
  FitInput in = make("v4-flash-fp8", "8xH100", 1048576, 64);
  FitResult r = compute_fit(in);
  const double w = 32 * 43 * kFlashFp8Expert + kFlashSharded + kFlashReplicated;
  EXPECT_EQ(r.parallel, "dp");
  EXPECT_DOUBLE_EQ(r.weights_bytes_per_gpu, w);
  EXPECT_DOUBLE_EQ(r.weights_bytes_per_gpu, 43476246748.0);
  const double b = budget(79.6, w);
  EXPECT_NEAR(r.kv_budget_bytes_per_gpu, b, 1.0);
  EXPECT_DOUBLE_EQ(r.kv_floor_bytes_per_sequence, 4052700160.0);
  EXPECT_NEAR(r.kv_bytes_per_sequence, 4052700160.0 * 1.1, 1.0);
  EXPECT_TRUE(r.fits);
  EXPECT_EQ(r.max_concurrency, 8 * 6);
  EXPECT_FALSE(r.meets_concurrency);
  // 64 sequences over 8 GPUs = 8 per GPU: 8 x 1.1 x KV(L) <= budget. KV(L) is about
  // 3,214,336 + 12,206,080 + 3850.1875·L, so L is about (b/8.8 - 15,420,416) / 3850.1875.
  const double approx = (b / 8.8 - 15420416.0) / 3850.1875;
  EXPECT_NEAR(static_cast<double>(r.max_context), approx, 300);
  EXPECT_LT(r.max_context, 1048576);
  EXPECT_GT(r.max_context, 700000);
  // The same request tensor-parallel: one copy of the KV per GPU, so fewer sequences.
  FitResult t = compute_fit(make("v4-flash-fp8", "8xH100", 1048576, 64, "vllm", "tp"));
  EXPECT_DOUBLE_EQ(t.weights_bytes_per_gpu, 32 * 43 * kFlashFp8Expert + kFlashSharded / 8 + kFlashReplicated);
  EXPECT_LT(t.max_concurrency, r.max_concurrency);
  EXPECT_EQ(t.max_concurrency, static_cast<int64_t>(budget(79.6, t.weights_bytes_per_gpu) / (4052700160.0 * 1.1)));
  // Precision: FP8 on Hopper is native.
  EXPECT_EQ(check_precision(in.model, in.gpus.gpu, in.engine).status, "native");
}

// Native Flash on 4 x B200 at 1M: 64 experts per GPU: 64 x 43 x 13,369,344 + 8,845,959,388
// = 45,638,394,076 B; budget 179.1 GiB x 0.9 - 6 GiB - weights = 120.99 GB -> 27 sequences of
// 1M per GPU, 108 in all. FP4 runs natively on Blackwell.
TEST(PlanFit, FlashNativeOnFourB200AtOneMillion) {
  FitInput in = make("v4-flash", "4xB200", 1048576, 8);
  FitResult r = compute_fit(in);
  const double w = 64 * 43 * kFlashExpert + kFlashSharded + kFlashReplicated;
  EXPECT_DOUBLE_EQ(w, 45638394076.0);
  EXPECT_EQ(r.parallel, "dp");
  EXPECT_DOUBLE_EQ(r.weights_bytes_per_gpu, w);
  EXPECT_TRUE(r.fits);
  EXPECT_TRUE(r.meets_concurrency);
  EXPECT_EQ(r.max_context, 1048576);
  EXPECT_EQ(r.max_concurrency, 4 * static_cast<int64_t>(budget(179.1, w) / (4052700160.0 * 1.1)));
  EXPECT_EQ(r.max_concurrency, 108);
  EXPECT_EQ(check_precision(in.model, in.gpus.gpu, in.engine).status, "native");
}

// V4-Pro on 8 x B300: 48 experts per GPU: 48 x 61 x 35,094,528 = 102.76 GB; data-parallel
// attention adds the whole 28.69 GB non-expert part = 131.45 GB = 122.42 GiB per GPU; budget
// 268.2 GiB x 0.9 - 6 - 122.42 = 112.96 GiB. One 1M Pro sequence = 5.40 GiB formula (spec
// §4.2) x 1.1 -> 19 per GPU, 152 in all.
TEST(PlanFit, ProOnEightB300) {
  FitInput in = make("v4-pro", "8xB300", 1048576, 8);
  FitResult r = compute_fit(in);
  const double w = 48 * 61 * kProExpert + kProSharded + kProReplicated;
  EXPECT_DOUBLE_EQ(w, 131450759116.0);
  EXPECT_DOUBLE_EQ(r.weights_bytes_per_gpu, w);
  EXPECT_TRUE(r.fits);
  EXPECT_NEAR(r.kv_floor_bytes_per_sequence / kGiB, 5.40, 0.005);
  EXPECT_EQ(r.max_concurrency, 8 * static_cast<int64_t>(budget(268.2, w) / r.kv_bytes_per_sequence));
  EXPECT_EQ(r.max_concurrency, 152);
  EXPECT_EQ(r.max_context, 1048576);
  EXPECT_EQ(check_precision(in.model, in.gpus.gpu, in.engine).status, "native");
}

// V4-Pro on 2 nodes x 8 H200: 24 experts per GPU: 24 x 61 x 35,094,528 + 28.69 GB = 80.07 GB
// per GPU with data-parallel attention; budget 140.4 GiB x 0.9 - 6 GiB - weights = 49.16 GB ->
// 7 sequences of 1M per GPU, 112 in all. On 8 x H200 alone the DP placement does not fit
// (131.45 GB > 120.36 GiB usable), tensor-parallel attention does (112.96 GB).
TEST(PlanFit, ProOnTwoNodesOfEightH200) {
  FitInput in = make("v4-pro", "2x8xH200", 1048576, 8);
  EXPECT_EQ(in.gpus.count, 16);
  EXPECT_EQ(in.gpus.nodes, 2);
  FitResult r = compute_fit(in);
  const double w = 24 * 61 * kProExpert + kProSharded + kProReplicated;
  EXPECT_DOUBLE_EQ(w, 80072370124.0);
  EXPECT_DOUBLE_EQ(r.weights_bytes_per_gpu, w);
  EXPECT_TRUE(r.fits);
  EXPECT_EQ(r.max_concurrency, 16 * static_cast<int64_t>(budget(140.4, w) / r.kv_bytes_per_sequence));
  EXPECT_EQ(r.max_concurrency, 112);
  // 16xH200 means the same thing (two nodes of 8).
  FitInput same = make("v4-pro", "16xH200", 1048576, 8);
  EXPECT_EQ(same.gpus.nodes, 2);
  EXPECT_DOUBLE_EQ(compute_fit(same).weights_bytes_per_gpu, w);
  // Tensor-parallel placement across 2 nodes: TP 8 inside a node, 2 attention groups.
  FitResult t = compute_fit(make("v4-pro", "2x8xH200", 1048576, 8, "vllm", "tp"));
  EXPECT_EQ(t.tp, 8);
  EXPECT_EQ(t.dp, 2);
  EXPECT_DOUBLE_EQ(t.weights_bytes_per_gpu, 24 * 61 * kProExpert + kProSharded / 8 + kProReplicated);
  // One node of 8 H200.
  FitResult one = compute_fit(make("v4-pro", "8xH200", 131072, 8));
  EXPECT_EQ(one.parallel, "tp");
  EXPECT_DOUBLE_EQ(one.weights_bytes_per_gpu, 48 * 61 * kProExpert + kProSharded / 8 + kProReplicated);
  EXPECT_TRUE(one.fits);
  FitResult one_dp = compute_fit(make("v4-pro", "8xH200", 131072, 8, "vllm", "dp"));
  EXPECT_FALSE(one_dp.weights_fit);
  // FP4 experts on Hopper: weight-only; the FP8 build is recommended.
  Precision p = check_precision(in.model, in.gpus.gpu, in.engine);
  EXPECT_EQ(p.status, "weight-only");
  EXPECT_EQ(p.recommended_model, "v4-pro-fp8");
}

TEST(PlanFit, PrecisionRules) {
  Catalog c = builtin_catalog();
  const EngineSpec& vllm = find_engine(c.engines, "vllm");
  const EngineSpec& v4 = find_engine(c.engines, "v4host");
  // Ada has FP8 but no FP4 and no documented FP4 path: use the FP8 build.
  Precision ada = check_precision(find_model("v4-flash"), find_gpu(c.gpus, "L40S"), vllm);
  EXPECT_EQ(ada.status, "unsupported");
  EXPECT_EQ(ada.recommended_model, "v4-flash-fp8");
  EXPECT_EQ(check_precision(find_model("v4-flash-fp8"), find_gpu(c.gpus, "L40S"), vllm).status, "native");
  EXPECT_EQ(check_precision(find_model("v4-flash"), find_gpu(c.gpus, "RTX5090"), vllm).status, "native");
  // Apple silicon: no CUDA engines; v4host (CPU) runs anywhere.
  EXPECT_EQ(check_precision(find_model("v4-flash"), find_gpu(c.gpus, "M3-Ultra-512G"), vllm).status, "unsupported");
  EXPECT_EQ(check_precision(find_model("v4-flash"), find_gpu(c.gpus, "M3-Ultra-512G"), v4).status, "native");
}

TEST(PlanFit, KvFactorFloorIsTheFormula) {
  // v4host's factor is 1.0: its per-token bytes are the formula (the floor); the others are above.
  FitInput a = make("v4-flash", "4xB200", 131072, 1, "v4host");
  a.kv = find_kv_format("fp8");
  FitInput b = make("v4-flash", "4xB200", 131072, 1, "vllm");
  FitResult ra = compute_fit(a), rb = compute_fit(b);
  EXPECT_DOUBLE_EQ(ra.kv_bytes_per_token, ra.kv_floor_bytes_per_token);
  EXPECT_DOUBLE_EQ(rb.kv_floor_bytes_per_token, ra.kv_floor_bytes_per_token);
  EXPECT_GT(rb.kv_bytes_per_token, rb.kv_floor_bytes_per_token);
  for (auto& e : builtin_engines()) {
    EXPECT_GE(e.kv_factor, 1.0) << e.name;
    EXPECT_FALSE(e.kv_factor_source.empty()) << e.name;
  }
}

TEST(PlanFit, MaxContextIsTightAndMonotone) {
  FitInput in = make("v4-flash", "RTX-PRO-6000", 131072, 4, "vllm");
  in.model = find_model("v4-flash");
  FitResult r = compute_fit(in);
  // One RTX PRO 6000 (94.5 GiB) cannot hold 148.65 GiB of weights.
  EXPECT_FALSE(r.fits);
  FitInput big = make("v4-flash", "2xB200", 131072, 64, "vllm", "tp");
  FitResult b = compute_fit(big);
  ASSERT_TRUE(b.fits);
  ASSERT_LT(b.max_context, 1048576);
  EXPECT_LE(64 * kv_engine_bytes(big, b.max_context), b.kv_budget_bytes_per_gpu);
  EXPECT_GT(64 * kv_engine_bytes(big, b.max_context + 1), b.kv_budget_bytes_per_gpu);
}
