// `v4host check`: does V4 fit these GPUs at this context, how fast can it be at best, and does
// self-hosting pay against the hosted API. The arithmetic lives in src/plan; this file maps
// flags to a CheckRequest and prints the report.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "core/error.h"
#include "plan/check.h"
#include "plan/report.h"
#include "plan/units.h"

namespace v4::cli {

namespace {

struct CheckFlags {
  std::string model, model_dir, gpus, context, concurrency, engine = "vllm", kv_dtype, parallel = "auto";
  std::string tokens, input_share, cached_share, price_in, price_out, price_cached, gpu_hourly, gpu_hourly_reserved;
  std::string hours, ops;
  std::string offpeak_share, offpeak_discount, catalog;
  std::vector<std::string> gpu_specs;
  bool json = false, markdown = false, sweep = false, mtp = false;
  bool onsite = false, air_gapped = false, custom_weights = false, owned = false;
};

void run(const CheckFlags& f, bool example) {
  using namespace v4::plan;
  CheckRequest req = example ? example_request() : CheckRequest{};
  if (!example) {
    req.cost.tokens_per_month = 200e6;
    req.cost.gpu_hourly = -1;
  }
  req.cost.price_input = req.cost.price_output = req.cost.price_cached_input = -1;
  if (!f.model.empty() && !f.model_dir.empty()) throw InputError("give either --model or --model-dir, not both");
  if (!f.model.empty()) req.model = f.model;
  req.model_dir = f.model_dir;
  if (!f.gpus.empty()) req.gpus = f.gpus;
  if (!f.context.empty()) req.context = parse_context(f.context, "--context");
  req.context_given = !f.context.empty() || example;
  if (!f.concurrency.empty()) {
    double c = parse_nonneg(f.concurrency, "--concurrency");
    if (c < 1 || c != static_cast<double>(static_cast<int>(c)))
      throw InputError("--concurrency must be a whole number of at least 1, got '" + f.concurrency + "'");
    req.concurrency = static_cast<int>(c);
  }
  req.engine = f.engine;
  req.kv_dtype = f.kv_dtype;
  req.parallel = f.parallel;
  req.mtp = f.mtp;
  req.gpu_specs = f.gpu_specs;
  req.catalog_file = f.catalog;
  if (!f.tokens.empty()) req.cost.tokens_per_month = parse_volume(f.tokens, "--tokens-per-month");
  if (!f.input_share.empty()) req.cost.input_share = parse_fraction(f.input_share, "--input-share");
  if (!f.cached_share.empty()) req.cost.cached_share = parse_fraction(f.cached_share, "--cached-share");
  if (!f.price_in.empty()) req.cost.price_input = parse_nonneg(f.price_in, "--price-input");
  if (!f.price_out.empty()) req.cost.price_output = parse_nonneg(f.price_out, "--price-output");
  if (!f.price_cached.empty()) req.cost.price_cached_input = parse_nonneg(f.price_cached, "--price-cached-input");
  if (!f.gpu_hourly.empty()) req.cost.gpu_hourly = parse_nonneg(f.gpu_hourly, "--gpu-hourly");
  if (!f.gpu_hourly_reserved.empty())
    req.cost.gpu_hourly_reserved = parse_nonneg(f.gpu_hourly_reserved, "--gpu-hourly-reserved");
  if (!f.hours.empty()) req.cost.hours_per_month = parse_nonneg(f.hours, "--hours-per-month");
  if (!f.ops.empty()) req.cost.ops_usd_per_month = parse_nonneg(f.ops, "--ops-usd-per-month");
  if (!f.offpeak_share.empty()) req.cost.offpeak_share = parse_fraction(f.offpeak_share, "--offpeak-share");
  if (!f.offpeak_discount.empty()) req.cost.offpeak_discount = parse_fraction(f.offpeak_discount, "--offpeak-discount");
  req.non_cost.data_must_stay_onsite = f.onsite;
  req.non_cost.air_gapped = f.air_gapped;
  req.non_cost.custom_weights = f.custom_weights;
  req.non_cost.hardware_owned = f.owned;
  req.sweep = f.sweep;
  if (f.json && f.markdown) throw InputError("give either --json or --markdown, not both");

  CheckReport r = run_check(req);
  std::string out = f.json ? report_json(r).dump(2) + "\n" : f.markdown ? report_markdown(r) : report_text(r);
  std::fwrite(out.data(), 1, out.size(), stdout);
  std::fflush(stdout);
}

}  // namespace

void add_check_command(CLI::App& app) {
  auto flags = std::make_shared<CheckFlags>();
  CLI::App* sub = app.add_subcommand(
      "check",
      "Does DeepSeek V4 fit your GPUs at your context, how fast can it be at best, and does self-hosting pay? "
      "With no arguments: a built-in example.");
  auto& f = *flags;
  sub->add_option("--model", f.model, "catalog model: v4-flash, v4-flash-base, v4-flash-fp8, v4-pro, v4-pro-base, v4-pro-fp8");
  sub->add_option("--model-dir", f.model_dir, "checkpoint directory (config.json + safetensors) for exact bytes");
  sub->add_option("--gpus", f.gpus, "GPUs as NxTYPE or NODESxNxTYPE, e.g. 2xA100-80G, 8xH100, 16xH200, 2x8xH200 (default 2xH200)");
  sub->add_option("--gpu-spec", f.gpu_specs,
                  "describe a GPU: NAME:memory_gib=96,bandwidth_gbs=1800,fp8=1,fp4=1[,interconnect_gbs=..,max_per_node=..,platform=cuda|metal|cpu]");
  sub->add_option("--catalog", f.catalog, "JSON file overriding/adding GPUs, engine calibration and tariffs");
  sub->add_option("--context", f.context, "context per sequence: tokens, 128k, 1M (default 128k)");
  sub->add_option("--concurrency", f.concurrency, "concurrent sequences (default 8)");
  sub->add_option("--engine", f.engine, "v4host, vllm or sglang (default vllm)")->check(CLI::IsMember({"v4host", "vllm", "sglang"}));
  sub->add_option("--kv-dtype", f.kv_dtype, "KV cache format: bf16, fp8, fp8-fp4idx (default: the engine's)");
  sub->add_option("--parallel", f.parallel, "attention placement: auto, tp, dp (default auto)");
  sub->add_flag("--mtp", f.mtp, "also load the MTP layer or DSpark drafter (speculative decoding)");
  sub->add_option("--tokens-per-month", f.tokens, "total tokens a month, e.g. 200M, 1.5B (default 200M)");
  sub->add_option("--input-share", f.input_share, "fraction of tokens that are input (default 0.75)");
  sub->add_option("--cached-share", f.cached_share, "fraction of input served from the provider's cache (default 0)");
  sub->add_option("--price-input", f.price_in, "hosted USD per million input tokens (default: catalog)");
  sub->add_option("--price-output", f.price_out, "hosted USD per million output tokens (default: catalog)");
  sub->add_option("--price-cached-input", f.price_cached, "hosted USD per million cached input tokens");
  sub->add_option("--offpeak-share", f.offpeak_share, "fraction of tokens sent in the provider's off-peak window");
  sub->add_option("--offpeak-discount", f.offpeak_discount, "off-peak discount, e.g. 0.5 for half price");
  sub->add_option("--gpu-hourly", f.gpu_hourly, "USD per hour for the whole deployment (on-demand, or whatever you pay)");
  sub->add_option("--gpu-hourly-reserved", f.gpu_hourly_reserved,
                  "USD per hour for the whole deployment under a reserved/committed contract (compared too)");
  sub->add_option("--hours-per-month", f.hours, "hours the deployment is paid for a month (default 720)");
  sub->add_option("--ops-usd-per-month", f.ops, "other monthly self-hosting cost: staff, power, colocation");
  sub->add_flag("--data-must-stay-onsite", f.onsite, "data may not leave your premises (rules out the hosted API)");
  sub->add_flag("--air-gapped", f.air_gapped, "the deployment has no internet access");
  sub->add_flag("--custom-weights", f.custom_weights, "you serve your own fine-tuned weights");
  sub->add_flag("--hardware-owned", f.owned, "the GPUs are already owned (--gpu-hourly = running cost)");
  sub->add_flag("--json", f.json, "print JSON");
  sub->add_flag("--markdown", f.markdown, "print Markdown");
  sub->add_flag("--sweep", f.sweep, "add a context x concurrency fit table");
  sub->callback([sub, flags]() {
    // With nothing but output flags, run the built-in example.
    bool any = false;
    for (const CLI::Option* o : sub->get_options()) {
      const std::string n = o->get_name();
      if (n == "--help" || n == "--json" || n == "--markdown" || n == "--sweep") continue;
      if (o->count() > 0) any = true;
    }
    run(*flags, !any);
  });
}

}  // namespace v4::cli
