#include "plan/report.h"

#include <cmath>
#include <fmt/format.h>
#include <sstream>

#include "plan/units.h"

namespace v4::plan {

using nlohmann::json;

namespace {

json opt(const std::optional<double>& v) { return v ? json(*v) : json(nullptr); }

json fit_json(const FitResult& f) {
  return json{{"fits", f.fits},
              {"weights_fit", f.weights_fit},
              {"meets_concurrency", f.meets_concurrency},
              {"parallel", f.parallel},
              {"tensor_parallel", f.tp},
              {"data_parallel_attention", f.dp},
              {"expert_parallel", f.ep},
              {"experts_per_gpu", f.experts_per_gpu},
              {"weights_bytes_per_gpu", f.weights_bytes_per_gpu},
              {"weights_experts_bytes_per_gpu", f.weights_experts_per_gpu},
              {"weights_tp_split_bytes_per_gpu", f.weights_sharded_per_gpu},
              {"weights_replicated_bytes_per_gpu", f.weights_replicated_per_gpu},
              {"memory_bytes_per_gpu", f.memory_bytes_per_gpu},
              {"usable_bytes_per_gpu", f.usable_bytes_per_gpu},
              {"headroom_bytes_per_gpu", f.headroom_bytes_per_gpu},
              {"runtime_overhead_bytes_per_gpu", f.overhead_bytes_per_gpu},
              {"kv_budget_bytes_per_gpu", f.kv_budget_bytes_per_gpu},
              {"kv_bytes_per_token", f.kv_bytes_per_token},
              {"kv_floor_bytes_per_token", f.kv_floor_bytes_per_token},
              {"kv_bytes_per_sequence", f.kv_bytes_per_sequence},
              {"kv_floor_bytes_per_sequence", f.kv_floor_bytes_per_sequence},
              {"kv_floor_breakdown_bytes",
               {{"window", f.kv_breakdown.window},
                {"c4_compressed", f.kv_breakdown.c4},
                {"indexer", f.kv_breakdown.indexer},
                {"c128_compressed", f.kv_breakdown.c128},
                {"compressor_frontier", f.kv_breakdown.frontier}}},
              {"max_context", f.max_context},
              {"max_context_single_sequence", f.max_context_single},
              {"max_concurrency", f.max_concurrency},
              {"notes", f.notes}};
}

}  // namespace

json report_json(const CheckReport& r) {
  json j;
  j["input"] = {{"model", r.model.name},
                {"model_dir", r.request.model_dir},
                {"gpus", r.request.gpus},
                {"context", r.request.context},
                {"concurrency", r.request.concurrency},
                {"engine", r.engine.name},
                {"kv_dtype", r.kv.name},
                {"tokens_per_month", r.cost_input.tokens_per_month},
                {"input_share", r.cost_input.input_share},
                {"cached_share", r.cost_input.cached_share},
                {"example", r.request.example}};
  j["model"] = {{"name", r.model.name},
                {"hf_repo", r.model.hf_repo},
                {"description", r.model.description},
                {"expert_format", r.model.expert_format == ExpertFormat::FP4 ? "fp4" : "fp8"},
                {"weights_bytes_total", r.weights.total()},
                {"weights_bytes_main", r.weights.main.total()},
                {"weights_bytes_mtp", r.weights.mtp.total()},
                {"params_main", r.weights.main.params},
                {"weights_source", r.weights.source},
                {"layers", {{"swa", r.model.n_swa()}, {"csa_c4", r.model.n_csa()}, {"hca_c128", r.model.n_hca()}}}};
  const GpuSpec& g = r.gpus.gpu;
  j["gpus"] = {{"type", g.name},        {"description", g.description}, {"count", r.gpus.count},
               {"nodes", r.gpus.nodes}, {"memory_gib", g.memory_gib},    {"bandwidth_gbs", g.bandwidth_gbs},
               {"fp8", g.fp8},          {"fp4", g.fp4},                  {"interconnect", g.interconnect},
               {"as_of", g.as_of},      {"source", g.source}};
  j["engine"] = {{"name", r.engine.name},
                 {"kv_factor", r.engine.kv_factor},
                 {"kv_factor_source", r.engine.kv_factor_source},
                 {"kv_floor_note", "kv_floor_* is the spec §4.2 formula: no engine can use less"},
                 {"runtime_overhead_gib", r.engine.overhead_gib},
                 {"mem_fraction", r.engine.mem_fraction},
                 {"as_of", r.engine.as_of}};
  j["fit"] = fit_json(r.fit);
  j["precision"] = {{"status", r.precision.status},
                    {"explanation", r.precision.explanation},
                    {"recommended_model", r.recommended_model}};
  if (r.alt_fit) j["recommended_fit"] = fit_json(*r.alt_fit);
  j["speed"] = {{"upper_bound", true},
                {"active_weight_bytes_per_token", r.speed.active_weight_bytes_per_token},
                {"kv_read_bytes_per_token", r.speed.kv_read_bytes_per_token},
                {"per_sequence_tokens_per_s", r.speed.per_sequence_tokens_per_s},
                {"batch", r.speed.batch},
                {"per_sequence_at_batch_tokens_per_s", r.speed.per_sequence_at_batch_tokens_per_s},
                {"aggregate_tokens_per_s", r.speed.aggregate_tokens_per_s},
                {"max_batch", r.speed.max_batch},
                {"max_aggregate_tokens_per_s", r.speed.max_aggregate_tokens_per_s},
                {"tokens_per_month_capacity", r.speed.tokens_per_month_capacity},
                {"explanation", r.speed.explanation}};
  json sweep = json::array();
  for (auto& row : r.cost.sweep)
    sweep.push_back({{"tokens_per_month", row.tokens_per_month},
                     {"hosted_usd_per_month", row.hosted_usd},
                     {"self_hosted_usd_per_month", opt(row.self_hosted_usd)},
                     {"self_hosted_reserved_usd_per_month", opt(row.self_hosted_reserved_usd)}});
  j["cost"] = {{"self_hosted_usd_per_month", opt(r.cost.self_hosted_usd_per_month)},
               {"hosted_usd_per_month", r.cost.hosted_usd_per_month},
               {"breakeven_tokens_per_month", opt(r.cost.breakeven_tokens_per_month)},
               {"hosted_usd_per_million_blended", r.cost.hosted_usd_per_million},
               {"self_hosted_usd_per_million", opt(r.cost.self_hosted_usd_per_million)},
               {"self_hosted_reserved_usd_per_month", opt(r.cost.self_hosted_reserved_usd_per_month)},
               {"breakeven_reserved_tokens_per_month", opt(r.cost.breakeven_reserved_tokens_per_month)},
               {"gpu_hourly_reserved",
                r.cost_input.gpu_hourly_reserved >= 0 ? json(r.cost_input.gpu_hourly_reserved) : json(nullptr)},
               {"price_input", r.cost_input.price_input},
               {"price_output", r.cost_input.price_output},
               {"price_cached_input", r.cost_input.price_cached_input >= 0 ? json(r.cost_input.price_cached_input)
                                                                           : json(nullptr)},
               {"gpu_hourly", r.cost_input.gpu_hourly >= 0 ? json(r.cost_input.gpu_hourly) : json(nullptr)},
               {"hours_per_month", r.cost_input.hours_per_month},
               {"tariff_note", r.tariff_note},
               {"sweep", sweep}};
  j["verdict"] = {{"decision", r.verdict.decision},
                  {"reasons", r.verdict.reasons},
                  {"conditions", r.verdict.conditions}};
  json launch = json::object();
  for (auto& l : r.launch) launch[l.engine] = {{"command", l.command}, {"notes", l.notes}};
  j["launch"] = launch;
  if (!r.sweep.empty()) {
    json s = json::array();
    for (auto& c : r.sweep) s.push_back({{"context", c.context}, {"concurrency", c.concurrency}, {"fits", c.fits}});
    j["fit_sweep"] = s;
  }
  return j;
}

namespace {

// Shared text / Markdown writer.
struct Writer {
  bool md;
  std::ostringstream o;
  void h(const std::string& t) { o << (md ? "\n## " + t + "\n\n" : "\n" + t + "\n" + std::string(t.size(), '-') + "\n"); }
  void line(const std::string& t) { o << (md ? "" : "  ") << t << (md ? "  \n" : "\n"); }
  void bullet(const std::string& t) { o << (md ? "- " : "  - ") << t << "\n"; }
  void table(const std::vector<std::string>& head, const std::vector<std::vector<std::string>>& rows) {
    if (md) {
      o << "\n|";
      for (auto& c : head) o << " " << c << " |";
      o << "\n|";
      for (size_t i = 0; i < head.size(); ++i) o << "---|";
      o << "\n";
      for (auto& r : rows) {
        o << "|";
        for (auto& c : r) o << " " << c << " |";
        o << "\n";
      }
      o << "\n";
      return;
    }
    std::vector<size_t> w(head.size());
    for (size_t i = 0; i < head.size(); ++i) w[i] = head[i].size();
    for (auto& r : rows)
      for (size_t i = 0; i < r.size() && i < w.size(); ++i) w[i] = std::max(w[i], r[i].size());
    auto row = [&](const std::vector<std::string>& r) {
      o << "  ";
      for (size_t i = 0; i < r.size(); ++i) o << fmt::format("{:>{}}", r[i], w[i]) << (i + 1 < r.size() ? "  " : "");
      o << "\n";
    };
    row(head);
    std::vector<std::string> sep;
    for (auto x : w) sep.push_back(std::string(x, '-'));
    row(sep);
    for (auto& r : rows) row(r);
  }
  void code(const std::string& t) { o << (md ? "```\n" + t + "\n```\n" : "    " + t + "\n"); }
};

std::string render(const CheckReport& r, bool md) {
  Writer w{md, {}};
  const FitResult& f = r.fit;
  const GpuSpec& g = r.gpus.gpu;
  if (md) w.o << "# v4host check: " << r.model.name << " on " << r.gpus.count << " x " << g.name << "\n";
  else w.o << "v4host check: " << r.model.name << " on " << r.gpus.count << " x " << g.name << "\n";
  if (r.request.example) w.line("(built-in example: the self-hosting checklist's setup; your own questions: see the end)");

  w.h("Verdict: " + std::string(r.verdict.decision == "go" ? "GO" : r.verdict.decision == "no-go" ? "NO-GO" : "GO WITH CONDITIONS"));
  for (auto& s : r.verdict.reasons) w.bullet(s);
  if (!r.verdict.conditions.empty()) {
    w.line("");
    w.line("Conditions:");
    for (auto& s : r.verdict.conditions) w.bullet(s);
  }

  w.h("Inputs");
  w.line(fmt::format("model: {} ({}); weights {} = {} ({}); {} {}", r.model.name, r.model.description,
                     fmt_gb(r.weights.total()), fmt_gib(r.weights.total()), r.weights.source,
                     r.model.dspark ? "DSpark drafter" : "MTP layer", fmt_gb(r.weights.mtp.total())));
  w.line(fmt::format("GPUs: {} x {} in {} node{}: {}, {:.1f} GiB, {:.0f} GB/s, FP8 {}, FP4 {}, {} (catalog as of {}; {})",
                     r.gpus.count, g.name, r.gpus.nodes, r.gpus.nodes > 1 ? "s" : "", g.description, g.memory_gib,
                     g.bandwidth_gbs, g.fp8 ? "yes" : "no", g.fp4 ? "yes" : "no", g.interconnect, g.as_of, g.source));
  w.line(fmt::format("engine: {}; KV cache: {} (E = {:.0f} B per 512-d entry, I = {:.0f} B per indexer key)", r.engine.name,
                     r.kv.name, r.kv.entry_bytes, r.kv.indexer_bytes));
  w.line(fmt::format("context {} x {} concurrent sequences; {} tokens a month, {:.0f}% input, {:.0f}% of input cached",
                     fmt_context(r.request.context), r.request.concurrency, fmt_tokens(r.cost_input.tokens_per_month),
                     r.cost_input.input_share * 100, r.cost_input.cached_share * 100));

  w.h("Fit");
  w.line(fmt::format("placement: {} (TP {} x DP {} attention, EP {} for the {} routed experts: {} per GPU)",
                     f.parallel, f.tp, f.dp, f.ep, r.model.experts, f.experts_per_gpu));
  std::vector<std::vector<std::string>> rows = {
      {"device memory", fmt_gib(f.memory_bytes_per_gpu)},
      {fmt::format("headroom left unused ({:.0f}%)", (1 - r.engine.mem_fraction) * 100), fmt_gib(f.headroom_bytes_per_gpu)},
      {"runtime overhead (" + r.engine.name + ", estimate)", fmt_gib(f.overhead_bytes_per_gpu)},
      {"weights: routed experts", fmt_gib(f.weights_experts_per_gpu)},
      {fmt::format("weights: TP-split part / {}", f.tp), fmt_gib(f.weights_sharded_per_gpu)},
      {"weights: replicated part", fmt_gib(f.weights_replicated_per_gpu)},
      {"weights total", fmt_gib(f.weights_bytes_per_gpu)},
      {"left for KV cache", fmt_gib(f.kv_budget_bytes_per_gpu)}};
  w.table({"per GPU", "bytes"}, rows);
  const auto& kb = f.kv_breakdown;
  w.line(fmt::format("KV per sequence at {} (formula, spec §4.2): window {} + c4 {} + indexer {} + c128 {} + frontier {} = {}",
                     fmt_context(r.request.context), fmt_gib(kb.window), fmt_gib(kb.c4), fmt_gib(kb.indexer),
                     fmt_gib(kb.c128), fmt_gib(kb.frontier), fmt_gib(kb.total())));
  w.line(fmt::format("KV per extra token: {:.0f} B floor (formula) x {:.2f} {} calibration = {:.0f} B; per sequence {} "
                     "(floor {})",
                     f.kv_floor_bytes_per_token, r.engine.kv_factor, r.engine.name, f.kv_bytes_per_token,
                     fmt_gib(f.kv_bytes_per_sequence), fmt_gib(f.kv_floor_bytes_per_sequence)));
  w.line("calibration source: " + r.engine.kv_factor_source);
  w.line(fmt::format("max context for {} sequences: {}; max sequences at {}: {}; one sequence alone: up to {}",
                     r.request.concurrency, f.max_context ? fmt_context(f.max_context) : "none",
                     fmt_context(r.request.context), f.max_concurrency,
                     f.max_context_single ? fmt_context(f.max_context_single) : "none"));
  for (auto& n : f.notes) w.bullet(n);
  w.line("precision: " + r.precision.status + ": " + r.precision.explanation);
  if (r.alt_fit) {
    const FitResult& a = *r.alt_fit;
    w.line(fmt::format("alternative {}: weights {} per GPU, {}; {} sequences at {}; one sequence up to {}",
                       r.precision.recommended_model, fmt_gib(a.weights_bytes_per_gpu), a.fits ? "fits" : "does not fit",
                       a.max_concurrency, fmt_context(r.request.context),
                       a.max_context_single ? fmt_context(a.max_context_single) : "none"));
  }

  if (!r.sweep.empty()) {
    w.h("Fit sweep: context x concurrent sequences (" + r.recommended_model + ")");
    std::vector<std::string> head = {"context"};
    for (int c : r.sweep_concurrency) head.push_back(std::to_string(c));
    head.push_back("max seqs");
    std::vector<std::vector<std::string>> srows;
    size_t k = 0, ci = 0;
    for (int64_t c : r.sweep_contexts) {
      if (k >= r.sweep.size() || r.sweep[k].context != c) continue;
      std::vector<std::string> row = {fmt_context(c)};
      for (size_t i = 0; i < r.sweep_concurrency.size(); ++i, ++k) row.push_back(r.sweep[k].fits ? "ok" : "--");
      row.push_back(std::to_string(r.sweep_max_concurrency[ci++]));
      srows.push_back(row);
    }
    w.table(head, srows);
  }

  w.h("Speed (upper bound, " + r.recommended_model + ")");
  w.line(fmt::format("one sequence: <= {:.0f} tokens/s; {} sequences: <= {:.0f} tokens/s each, <= {:.0f} tokens/s together",
                     r.speed.per_sequence_tokens_per_s, r.speed.batch, r.speed.per_sequence_at_batch_tokens_per_s,
                     r.speed.aggregate_tokens_per_s));
  w.line(fmt::format("deployment ceiling: {} sequences (all that fit at this context): <= {:.0f} tokens/s, <= {} output "
                     "tokens a month",
                     r.speed.max_batch, r.speed.max_aggregate_tokens_per_s, fmt_tokens(r.speed.tokens_per_month_capacity)));
  w.line(r.speed.explanation);

  w.h("Cost");
  w.line(fmt::format("hosted: ${:.4g}/M input, ${:.4g}/M output{} -> blended ${:.4g} per million tokens", r.cost_input.price_input,
                     r.cost_input.price_output,
                     r.cost_input.price_cached_input >= 0 ? fmt::format(", ${:.4g}/M cached input", r.cost_input.price_cached_input) : "",
                     r.cost.hosted_usd_per_million));
  w.line(r.tariff_note);
  const std::string ops =
      r.cost_input.ops_usd_per_month > 0 ? " + " + fmt_usd(r.cost_input.ops_usd_per_month) + " ops" : "";
  if (r.cost.self_hosted_usd_per_month)
    w.line(fmt::format("self-hosted (on-demand): ${:.2f}/h x {:.0f} h{} = {} a month", r.cost_input.gpu_hourly,
                       r.cost_input.hours_per_month, ops, fmt_usd(*r.cost.self_hosted_usd_per_month)));
  if (r.cost.self_hosted_reserved_usd_per_month)
    w.line(fmt::format("self-hosted (reserved): ${:.2f}/h x {:.0f} h{} = {} a month{}", r.cost_input.gpu_hourly_reserved,
                       r.cost_input.hours_per_month, ops, fmt_usd(*r.cost.self_hosted_reserved_usd_per_month),
                       r.cost.breakeven_reserved_tokens_per_month
                           ? ", break-even " + fmt_tokens(*r.cost.breakeven_reserved_tokens_per_month) + " tokens a month"
                           : ""));
  if (!r.cost.self_hosted_usd_per_month && !r.cost.self_hosted_reserved_usd_per_month)
    w.line("self-hosted: unknown (pass --gpu-hourly USD for the whole deployment)");
  w.line(fmt::format("at {} tokens a month: hosted {}{}", fmt_tokens(r.cost_input.tokens_per_month),
                     fmt_usd(r.cost.hosted_usd_per_month),
                     r.cost.self_hosted_usd_per_month ? ", self-hosted " + fmt_usd(*r.cost.self_hosted_usd_per_month) : ""));
  if (r.cost.breakeven_tokens_per_month)
    w.line(fmt::format("break-even: {} tokens a month ({} of them output; the bandwidth ceiling of this deployment is {} "
                       "output tokens a month)",
                       fmt_tokens(*r.cost.breakeven_tokens_per_month),
                       fmt_tokens(*r.cost.breakeven_tokens_per_month * (1 - r.cost_input.input_share)),
                       fmt_tokens(r.speed.tokens_per_month_capacity)));
  std::vector<std::vector<std::string>> crow;
  const bool with_reserved = r.cost.self_hosted_reserved_usd_per_month.has_value();
  for (auto& row : r.cost.sweep) {
    std::optional<double> self = row.self_hosted_usd;
    if (row.self_hosted_reserved_usd && (!self || *row.self_hosted_reserved_usd < *self)) self = row.self_hosted_reserved_usd;
    std::string cheaper = !self ? "?"
                          : std::fabs(*self - row.hosted_usd) <= 0.005 * row.hosted_usd ? "break-even"
                          : *self < row.hosted_usd ? "self-hosted" : "hosted";
    std::vector<std::string> cells = {fmt_tokens(row.tokens_per_month), fmt_usd(row.hosted_usd),
                                      row.self_hosted_usd ? fmt_usd(*row.self_hosted_usd) : "?"};
    if (with_reserved) cells.push_back(fmt_usd(*row.self_hosted_reserved_usd));
    cells.push_back(cheaper);
    crow.push_back(cells);
  }
  if (with_reserved)
    w.table({"tokens/month", "hosted", "self-hosted", "reserved", "cheaper"}, crow);
  else
    w.table({"tokens/month", "hosted", "self-hosted", "cheaper"}, crow);

  w.h("Launch (" + r.recommended_model + ")");
  for (auto& l : r.launch) {
    w.line(l.engine + ":");
    w.code(l.command);
    for (auto& n : l.notes) w.bullet(n);
  }
  if (r.request.example) w.o << "\n" << example_help();
  return w.o.str();
}

}  // namespace

std::string report_text(const CheckReport& r) { return render(r, false); }
std::string report_markdown(const CheckReport& r) { return render(r, true); }

std::string example_help() {
  return "Ask about your own setup, for example:\n"
         "  v4host check --model v4-flash-fp8 --gpus 8xH100 --context 1M --concurrency 4\n"
         "  v4host check --model v4-pro --gpus 2x8xH200 --tokens-per-month 1.5B --gpu-hourly 57.44\n"
         "  v4host check --model-dir /models/DeepSeek-V4-Flash --gpus 4xB200 --engine sglang --json\n"
         "Models: v4-flash, v4-flash-base, v4-flash-fp8, v4-pro, v4-pro-base, v4-pro-fp8 (or --model-dir DIR).\n"
         "GPUs: A100-80G, H100, H200, B200, B300, L40S, RTX4090, RTX5090, RTX-PRO-6000, DGX-Spark, M3-Ultra-512G,\n"
         "      M4-Max-128G, M2-Ultra-192G, or --gpu-spec NAME:memory_gib=..,bandwidth_gbs=..,fp8=1,fp4=0.\n"
         "Cost: --tokens-per-month, --input-share, --cached-share, --price-input/--price-output/--price-cached-input,\n"
         "      --gpu-hourly (whole deployment). Non-cost reasons: --data-must-stay-onsite, --air-gapped,\n"
         "      --custom-weights, --hardware-owned. Output: --json, --markdown, --sweep. All flags: v4host check --help\n";
}

}  // namespace v4::plan
