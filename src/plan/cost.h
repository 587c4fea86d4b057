// Self-hosted monthly cost against the hosted API at a token volume, the break-even volume,
// and a sweep over volumes.
#pragma once
#include <optional>
#include <vector>

namespace v4::plan {

struct CostInput {
  double tokens_per_month = 0;
  double input_share = 0.75;       // fraction of all tokens that are input (prompt)
  double cached_share = 0;         // fraction of input served from the provider's prefix cache
  double price_input = 0;          // USD per million tokens
  double price_output = 0;
  double price_cached_input = -1;  // < 0: charged as fresh input
  double offpeak_share = 0;        // fraction of tokens sent in the provider's off-peak window
  double offpeak_discount = 0;     // discount there (0.5 = half price)
  double gpu_hourly = -1;          // USD per hour for the whole deployment; < 0: unknown
  double gpu_hourly_reserved = -1; // the same under a reserved / committed contract; < 0: not given
  double hours_per_month = 720;    // 720 = 30 days continuous
  double ops_usd_per_month = 0;    // people, power, colocation... added to self-hosting
};

struct CostRow {
  double tokens_per_month;
  double hosted_usd;
  std::optional<double> self_hosted_usd;
  std::optional<double> self_hosted_reserved_usd;
};

struct CostResult {
  double hosted_usd_per_month = 0;
  std::optional<double> self_hosted_usd_per_month;   // absent without --gpu-hourly
  double hosted_usd_per_million = 0;                 // blended hosted price
  std::optional<double> breakeven_tokens_per_month;  // absent when unknown or never
  std::optional<double> self_hosted_usd_per_million; // at the volume
  std::optional<double> self_hosted_reserved_usd_per_month;
  std::optional<double> breakeven_reserved_tokens_per_month;
  std::vector<CostRow> sweep;
};

// Blended hosted price per million tokens for the mix.
double hosted_usd_per_million(const CostInput& c);
double hosted_usd(const CostInput& c, double tokens);
// `volumes`: the sweep rows (the break-even volume is added when known).
CostResult compute_cost(const CostInput& c, const std::vector<double>& volumes);
std::vector<double> default_sweep_volumes();

}  // namespace v4::plan
