#include "plan/cost.h"

#include <algorithm>
#include <cmath>

namespace v4::plan {

double hosted_usd_per_million(const CostInput& c) {
  const double cached_price = c.price_cached_input >= 0 ? c.price_cached_input : c.price_input;
  const double in = c.input_share, out = 1.0 - c.input_share;
  const double blended = in * (1.0 - c.cached_share) * c.price_input + in * c.cached_share * cached_price +
                         out * c.price_output;
  return blended * (1.0 - c.offpeak_share * c.offpeak_discount);
}

double hosted_usd(const CostInput& c, double tokens) { return tokens / 1e6 * hosted_usd_per_million(c); }

std::vector<double> default_sweep_volumes() { return {10e6, 100e6, 200e6, 500e6, 1e9, 5e9, 10e9, 50e9}; }

CostResult compute_cost(const CostInput& c, const std::vector<double>& volumes) {
  CostResult r;
  r.hosted_usd_per_million = hosted_usd_per_million(c);
  r.hosted_usd_per_month = hosted_usd(c, c.tokens_per_month);
  if (c.gpu_hourly >= 0) {
    const double self = c.gpu_hourly * c.hours_per_month + c.ops_usd_per_month;
    r.self_hosted_usd_per_month = self;
    if (c.tokens_per_month > 0) r.self_hosted_usd_per_million = self / (c.tokens_per_month / 1e6);
    if (r.hosted_usd_per_million > 0) r.breakeven_tokens_per_month = self / r.hosted_usd_per_million * 1e6;
  }
  if (c.gpu_hourly_reserved >= 0) {
    const double self = c.gpu_hourly_reserved * c.hours_per_month + c.ops_usd_per_month;
    r.self_hosted_reserved_usd_per_month = self;
    if (r.hosted_usd_per_million > 0) r.breakeven_reserved_tokens_per_month = self / r.hosted_usd_per_million * 1e6;
  }
  std::vector<double> v = volumes;
  if (c.tokens_per_month > 0) v.push_back(c.tokens_per_month);
  if (r.breakeven_tokens_per_month) v.push_back(*r.breakeven_tokens_per_month);
  if (r.breakeven_reserved_tokens_per_month) v.push_back(*r.breakeven_reserved_tokens_per_month);
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end(), [](double a, double b) { return std::abs(a - b) <= 1e-9 * std::max(a, b); }),
          v.end());
  for (double t : v) {
    CostRow row{t, hosted_usd(c, t), r.self_hosted_usd_per_month, r.self_hosted_reserved_usd_per_month};
    r.sweep.push_back(row);
  }
  return r;
}

}  // namespace v4::plan
