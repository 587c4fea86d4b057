#include "plan/fit.h"

#include <algorithm>
#include <cmath>
#include <fmt/format.h>

#include "plan/units.h"

namespace v4::plan {

Precision check_precision(const ModelConfig& m, const GpuSpec& gpu, const EngineSpec& engine) {
  Precision p;
  const bool fp4 = m.expert_format == ExpertFormat::FP4;
  const std::string fmt_name = fp4 ? "FP4 (MXFP4) routed experts with FP8 attention weights" : "FP8 weights";
  if (engine.name == "v4host") {
    p.status = "native";
    p.explanation = "v4host runs on the CPU and decodes " + fmt_name + " in software";
    if (gpu.platform == "cuda")
      p.explanation += " (it does not use the " + gpu.name + " GPUs; its fit is host RAM: describe the host with "
                       "--gpu-spec host:memory_gib=..,bandwidth_gbs=..,platform=cpu)";
    return p;
  }
  if (gpu.platform != "cuda") {
    p.status = "unsupported";
    p.explanation = engine.name + " needs NVIDIA CUDA GPUs; " + gpu.name + " is a " + gpu.platform +
                    " device. Use --engine v4host (CPU) there";
    return p;
  }
  if (fp4 && gpu.fp4) {
    p.status = "native";
    p.explanation = gpu.name + " has FP4 and FP8 tensor cores: the native FP4 checkpoint runs as published";
    return p;
  }
  if (!fp4 && gpu.fp8) {
    p.status = "native";
    p.explanation = gpu.name + " has FP8 tensor cores: " + fmt_name + " run natively";
    return p;
  }
  if (fp4 && gpu.fp8) {  // Hopper / Ada
    p.recommended_model = m.fp8_sibling;
    if (engine.fp4_on_hopper && gpu.arch == "hopper") {
      p.status = "weight-only";
      p.explanation = "FP4 experts need Blackwell FP4 tensor cores; " + gpu.name +
                      " has none. " + engine.name + " runs them on Hopper with weight-only (W4A16) kernels: it works, "
                      "but slower; the FP8 build" + (m.fp8_sibling.empty() ? "" : " (" + m.fp8_sibling + ")") +
                      " runs natively on FP8 tensor cores at about twice the weight memory";
    } else {
      p.status = "unsupported";
      p.explanation = "FP4 experts need Blackwell FP4 tensor cores; " + gpu.name + " (" + gpu.arch +
                      ") has only FP8. Use the FP8 build" +
                      (m.fp8_sibling.empty() ? "" : " (" + m.fp8_sibling + ")") + " on this GPU";
    }
    return p;
  }
  // No FP8 tensor cores (Ampere): FP8 and FP4 weights only run through weight-only kernels.
  p.status = "weight-only";
  p.recommended_model = fp4 ? m.fp8_sibling : "";
  p.explanation = gpu.name + " has neither FP8 nor FP4 tensor cores: " + fmt_name +
                  " can only run through weight-only (dequantise-on-load, W8A16/W4A16) kernels, which "
                  "is slower and not a documented DeepSeek V4 path in vLLM or SGLang";
  return p;
}

namespace {

struct Placement {
  int tp = 1, dp = 1;
};

double weights_per_gpu(const FitInput& in, int n, const Placement& pl, double* ex, double* sh, double* rep) {
  const int64_t per_gpu = (in.model.experts + n - 1) / n;
  const double layers_experts = static_cast<double>(in.model.layers + (in.mtp ? in.model.mtp_layers : 0));
  *ex = static_cast<double>(per_gpu) * in.weights.expert_bytes * layers_experts;
  // If the checkpoint's expert bytes are not uniform (custom checkpoints), scale to the total.
  double total_experts = in.weights.main.experts + (in.mtp ? in.weights.mtp.experts : 0);
  double uniform = in.weights.expert_bytes * static_cast<double>(in.model.experts) * layers_experts;
  if (uniform > 0 && std::fabs(uniform - total_experts) > 1e-6 * total_experts) *ex *= total_experts / uniform;
  *sh = (in.weights.main.sharded + (in.mtp ? in.weights.mtp.sharded : 0)) / pl.tp;
  *rep = in.weights.main.replicated + (in.mtp ? in.weights.mtp.replicated : 0);
  return *ex + *sh + *rep;
}

}  // namespace

double kv_engine_bytes(const FitInput& in, int64_t context) {
  double b = kv_bytes(in.model, in.kv, context).total();
  if (in.mtp)  // each speculative block (NextN head or DSpark stage) keeps a sliding window
    b += static_cast<double>(in.model.mtp_layers) * static_cast<double>(std::min<int64_t>(in.model.window, context)) *
         in.kv.entry_bytes;
  return b * in.engine.kv_factor;
}

namespace {

// The smallest count of the same GPU whose memory holds the weights with room for one short
// sequence, in words.
std::string min_gpus_text(const FitInput& in) {
  const double usable = in.gpus.gpu.memory_gib * kGiB * in.engine.mem_fraction - in.engine.overhead_gib * kGiB;
  for (int n = in.gpus.count + 1; n <= 256; ++n) {
    Placement pl{std::min(n, in.gpus.gpu.max_per_node), 1};
    double ex, sh, rep;
    if (usable - weights_per_gpu(in, n, pl, &ex, &sh, &rep) > kv_engine_bytes(in, 8192))
      return fmt::format("at least {} x {} would hold them", n, in.gpus.gpu.name);
  }
  return "no count of this GPU holds them (the replicated part alone is too large)";
}

FitResult fit_for(const FitInput& in, const Placement& pl, const std::string& mode) {
  FitResult r;
  r.parallel = mode;
  r.tp = pl.tp;
  r.dp = pl.dp;
  r.ep = in.gpus.count;
  r.experts_per_gpu = static_cast<int>((in.model.experts + in.gpus.count - 1) / in.gpus.count);
  r.weights_bytes_per_gpu = weights_per_gpu(in, in.gpus.count, pl, &r.weights_experts_per_gpu, &r.weights_sharded_per_gpu,
                                            &r.weights_replicated_per_gpu);
  r.memory_bytes_per_gpu = in.gpus.gpu.memory_gib * kGiB;
  r.usable_bytes_per_gpu = r.memory_bytes_per_gpu * in.engine.mem_fraction;
  r.headroom_bytes_per_gpu = r.memory_bytes_per_gpu - r.usable_bytes_per_gpu;
  r.overhead_bytes_per_gpu = in.engine.overhead_gib * kGiB;
  r.kv_budget_bytes_per_gpu = r.usable_bytes_per_gpu - r.weights_bytes_per_gpu - r.overhead_bytes_per_gpu;
  r.kv_floor_bytes_per_token = kv_bytes_per_token(in.model, in.kv);
  r.kv_bytes_per_token = r.kv_floor_bytes_per_token * in.engine.kv_factor;
  r.kv_breakdown = kv_bytes(in.model, in.kv, in.context);
  r.kv_bytes_per_sequence = kv_engine_bytes(in, in.context);
  r.kv_floor_bytes_per_sequence = r.kv_bytes_per_sequence / in.engine.kv_factor;
  r.weights_fit = r.kv_budget_bytes_per_gpu > 0;
  const double budget = std::max(0.0, r.kv_budget_bytes_per_gpu);
  auto max_ctx = [&](int64_t seqs) -> int64_t {
    if (seqs <= 0 || kv_engine_bytes(in, 1) * static_cast<double>(seqs) > budget) return 0;
    int64_t lo = 1, hi = in.model.max_context;
    if (kv_engine_bytes(in, hi) * static_cast<double>(seqs) <= budget) return hi;
    while (hi - lo > 1) {
      int64_t mid = lo + (hi - lo) / 2;
      if (kv_engine_bytes(in, mid) * static_cast<double>(seqs) <= budget) lo = mid;
      else hi = mid;
    }
    return lo;
  };
  const int64_t seqs_per_group = (in.concurrency + pl.dp - 1) / pl.dp;
  r.max_context = max_ctx(seqs_per_group);
  r.max_context_single = max_ctx(1);
  r.max_concurrency = r.weights_fit ? static_cast<int64_t>(std::floor(budget / r.kv_bytes_per_sequence)) * pl.dp : 0;
  r.fits = r.weights_fit && r.max_concurrency >= 1;
  r.meets_concurrency = r.fits && r.max_concurrency >= in.concurrency;

  // Plain-words notes.
  const std::string g = in.gpus.gpu.name;
  r.notes.push_back(fmt::format(
      "weights per GPU: {} ({} routed experts x {} layers = {}, TP-split part / {} = {}, replicated {})",
      fmt_gib(r.weights_bytes_per_gpu), r.experts_per_gpu, in.model.layers + (in.mtp ? in.model.mtp_layers : 0),
      fmt_gib(r.weights_experts_per_gpu), pl.tp, fmt_gib(r.weights_sharded_per_gpu),
      fmt_gib(r.weights_replicated_per_gpu)));
  r.notes.push_back(fmt::format("{} memory {} x {} usable ({} reserved as headroom) - {} runtime overhead - weights = {} for KV per GPU",
                                g, fmt_gib(r.memory_bytes_per_gpu), in.engine.mem_fraction,
                                fmt_gib(r.headroom_bytes_per_gpu), fmt_gib(r.overhead_bytes_per_gpu),
                                fmt_gib(r.kv_budget_bytes_per_gpu)));
  if (!r.weights_fit) {
    r.notes.push_back(fmt::format(
        "does not fit: the weights alone need {} per GPU but {} can give them at most {} after the runtime overhead; {}",
        fmt_gib(r.weights_bytes_per_gpu), g, fmt_gib(r.usable_bytes_per_gpu - r.overhead_bytes_per_gpu),
        min_gpus_text(in)));
  } else if (!r.fits) {
    r.notes.push_back(fmt::format("does not fit at {} context: one sequence needs {} of KV, only {} is left per GPU; "
                                  "the longest context that fits is {}",
                                  fmt_context(in.context), fmt_gib(r.kv_bytes_per_sequence),
                                  fmt_gib(r.kv_budget_bytes_per_gpu), fmt_context(r.max_context_single)));
  } else {
    r.notes.push_back(fmt::format("at {} context one sequence needs {} of KV ({} is the formula floor); {} sequences fit",
                                  fmt_context(in.context), fmt_gib(r.kv_bytes_per_sequence),
                                  fmt_gib(r.kv_floor_bytes_per_sequence), r.max_concurrency));
    if (!r.meets_concurrency)
      r.notes.push_back(fmt::format("{} concurrent sequences do not all fit at {}: either {} sequences at {}, or {} "
                                    "sequences at up to {} context",
                                    in.concurrency, fmt_context(in.context), r.max_concurrency,
                                    fmt_context(in.context), in.concurrency, fmt_context(r.max_context)));
  }
  if (mode == "tp" && pl.tp > 1)
    r.notes.push_back(fmt::format("tensor-parallel attention over {} GPUs: V4 has a single KV head, so each of "
                                  "them holds the full KV of every sequence it serves", pl.tp));
  return r;
}

}  // namespace

FitResult compute_fit(const FitInput& in) {
  const int n = in.gpus.count;
  Placement tp{std::max(1, in.gpus.per_node()), std::max(1, in.gpus.nodes)};
  Placement dp{1, n};
  if (in.parallel == "tp") return fit_for(in, tp, "tp");
  if (in.parallel == "dp" || n == 1) return fit_for(in, dp, n == 1 ? "single" : "dp");
  FitResult a = fit_for(in, tp, "tp"), b = fit_for(in, dp, "dp");
  // Prefer the placement that fits; then the one meeting the concurrency; then more sequences.
  auto score = [](const FitResult& r) {
    return std::make_tuple(r.weights_fit, r.fits, r.meets_concurrency, r.max_concurrency, r.max_context);
  };
  FitResult best = score(b) > score(a) ? b : a;
  best.notes.push_back(fmt::format("placement chosen automatically: {} (tensor-parallel attention: {} sequences at "
                                   "this context; data-parallel attention: {})",
                                   best.parallel == "tp" ? "tensor-parallel attention + expert parallel"
                                                         : "data-parallel attention + expert parallel",
                                   a.max_concurrency, b.max_concurrency));
  return best;
}

}  // namespace v4::plan
