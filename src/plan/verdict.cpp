#include "plan/verdict.h"

#include <fmt/format.h>

#include "plan/units.h"

namespace v4::plan {

Verdict decide(const VerdictInput& in) {
  Verdict v;
  bool nogo = false, cond = false;
  const FitInput& fi = *in.fit_in;
  const FitResult& f = *in.fit;
  const std::string where = fmt::format("{} x {}", fi.gpus.count, fi.gpus.gpu.name);
  const bool alt_fits = in.alt_fit && in.alt_fit->fits;

  // Fit.
  if (!f.weights_fit) {
    nogo = true;
    v.reasons.push_back(fmt::format("{} does not fit on {}: its weights need {} per GPU, more than the {} the engine "
                                    "can use after runtime overhead",
                                    fi.model.name, where, fmt_gib(f.weights_bytes_per_gpu),
                                    fmt_gib(f.usable_bytes_per_gpu - f.overhead_bytes_per_gpu)));
  } else if (!f.fits) {
    nogo = true;
    v.reasons.push_back(fmt::format("the weights fit on {}, but not even one sequence of {} context fits in the "
                                    "memory left ({} per GPU); the longest context that fits is {}",
                                    where, fmt_context(fi.context), fmt_gib(f.kv_budget_bytes_per_gpu),
                                    fmt_context(f.max_context_single)));
  } else {
    v.reasons.push_back(fmt::format("{} fits on {}: {} of weights per GPU, {} left for KV per GPU", fi.model.name, where,
                                    fmt_gib(f.weights_bytes_per_gpu), fmt_gib(f.kv_budget_bytes_per_gpu)));
    if (f.meets_concurrency) {
      v.reasons.push_back(fmt::format("{} concurrent sequences at {} context fit (up to {} at this context; one "
                                      "sequence alone could use up to {})",
                                      fi.concurrency, fmt_context(fi.context), f.max_concurrency,
                                      fmt_context(f.max_context_single)));
    } else {
      cond = true;
      v.reasons.push_back(fmt::format("only {} sequences fit at {} context, not the {} asked for", f.max_concurrency,
                                      fmt_context(fi.context), fi.concurrency));
      v.conditions.push_back(fmt::format("limit the server to {} sequences at {} context, or to {} context for {} "
                                         "sequences, or add GPUs",
                                         f.max_concurrency, fmt_context(fi.context), fmt_context(f.max_context),
                                         fi.concurrency));
    }
  }

  // Precision.
  const Precision& p = *in.precision;
  if (p.status == "unsupported") {
    if (!in.alt_model.empty() && alt_fits) {
      cond = true;
      v.reasons.push_back(p.explanation);
      v.conditions.push_back(fmt::format("serve {} instead of {}: it fits ({} of weights per GPU, up to {} sequences at "
                                         "{} context)",
                                         in.alt_model, fi.model.name, fmt_gib(in.alt_fit->weights_bytes_per_gpu),
                                         in.alt_fit->max_concurrency, fmt_context(fi.context)));
    } else {
      nogo = true;
      std::string extra;
      if (!in.alt_model.empty() && in.alt_fit)
        extra = fmt::format("; the alternative {} does not fit either ({} of weights per GPU)", in.alt_model,
                            fmt_gib(in.alt_fit->weights_bytes_per_gpu));
      v.reasons.push_back(p.explanation + extra);
    }
  } else if (p.status == "weight-only") {
    cond = true;
    v.reasons.push_back(p.explanation);
    if (!in.alt_model.empty() && in.alt_fit) {
      if (alt_fits)
        v.conditions.push_back(fmt::format("prefer {} ({} of weights per GPU, fits), or accept slower weight-only kernels",
                                           in.alt_model, fmt_gib(in.alt_fit->weights_bytes_per_gpu)));
      else
        v.conditions.push_back(fmt::format("accept weight-only kernels: the FP8 build {} would need {} per GPU and "
                                           "does not fit here",
                                           in.alt_model, fmt_gib(in.alt_fit->weights_bytes_per_gpu)));
    } else {
      v.conditions.push_back("accept slower weight-only kernels, and test your engine version on this GPU first");
    }
  } else {
    v.reasons.push_back(p.explanation);
  }
  if (fi.engine.name == "v4host" && fi.gpus.gpu.platform == "cuda") {
    cond = true;
    v.conditions.push_back("v4host is a CPU engine: check the fit against the host's RAM with --gpu-spec "
                           "host:memory_gib=..,bandwidth_gbs=..,platform=cpu, or choose --engine vllm|sglang");
  }

  // Throughput ceiling against the volume.
  const CostInput& ci = *in.cost_in;
  const CostResult& c = *in.cost;
  if (f.fits && in.speed && ci.tokens_per_month > 0) {
    const double out_tokens = ci.tokens_per_month * (1.0 - ci.input_share);
    if (out_tokens > in.speed->tokens_per_month_capacity) {
      nogo = true;
      v.reasons.push_back(fmt::format("{} output tokens a month exceed even the bandwidth ceiling of this deployment "
                                      "({} a month with {} sequences at {} context); more GPUs are needed",
                                      fmt_tokens(out_tokens), fmt_tokens(in.speed->tokens_per_month_capacity),
                                      in.speed->max_batch, fmt_context(fi.context)));
    }
  }

  // Cost.
  const NonCostReasons& nc = in.non_cost;
  if (c.self_hosted_usd_per_month || c.self_hosted_reserved_usd_per_month) {
    // The cheaper of the on-demand and reserved prices decides.
    const bool reserved = c.self_hosted_reserved_usd_per_month &&
                          (!c.self_hosted_usd_per_month || *c.self_hosted_reserved_usd_per_month < *c.self_hosted_usd_per_month);
    const double self = reserved ? *c.self_hosted_reserved_usd_per_month : *c.self_hosted_usd_per_month;
    const double hosted = c.hosted_usd_per_month;
    const auto& be_tokens = reserved ? c.breakeven_reserved_tokens_per_month : c.breakeven_tokens_per_month;
    std::string be = be_tokens ? fmt::format("break-even at {} tokens a month{}", fmt_tokens(*be_tokens),
                                             reserved ? " at the reserved price" : "")
                               : std::string("no break-even: the hosted price is zero");
    if (self > hosted) {
      std::string msg = fmt::format("self-hosting costs {} a month, the hosted API {} at {} tokens a month ({:.1f}x "
                                    "more; {})",
                                    fmt_usd(self), fmt_usd(hosted), fmt_tokens(ci.tokens_per_month),
                                    hosted > 0 ? self / hosted : 0.0, be);
      v.reasons.push_back(msg);
      if (nc.any_hosted_blocker()) {
        cond = true;
        v.conditions.push_back(fmt::format("budget {} a month more than the hosted API would cost, for the non-cost "
                                           "reasons declared",
                                           fmt_usd(self - hosted)));
      } else {
        nogo = true;
        v.reasons.push_back("with no declared reason that rules out the hosted API, stay on the hosted API");
      }
    } else {
      v.reasons.push_back(fmt::format("self-hosting costs {} a month against {} hosted at {} tokens a month ({})",
                                      fmt_usd(self), fmt_usd(hosted), fmt_tokens(ci.tokens_per_month), be));
    }
  } else {
    cond = true;
    v.reasons.push_back(fmt::format("cost not assessed: no GPU price given (hosted API at this volume: {} a month)",
                                    fmt_usd(c.hosted_usd_per_month)));
    v.conditions.push_back("pass --gpu-hourly USD (the whole deployment) to compare cost with the hosted API");
  }
  if (nc.data_must_stay_onsite) v.reasons.push_back("declared: data must stay on site, which rules out the hosted API");
  if (nc.air_gapped) v.reasons.push_back("declared: the deployment is air-gapped, which rules out the hosted API");
  if (nc.custom_weights)
    v.reasons.push_back("declared: you serve your own fine-tuned weights, which the hosted API cannot serve");
  if (nc.hardware_owned)
    v.reasons.push_back("declared: the GPUs are already owned, so --gpu-hourly should be their running cost "
                        "(power, hosting, staff), not a rental price");

  v.decision = nogo ? "no-go" : cond ? "conditional" : "go";
  return v;
}

}  // namespace v4::plan
