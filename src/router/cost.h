// Prices: the tariff entry in force at a moment (dated, with off-peak windows), the cost of a
// finished request, the worst-case estimate checked against a route's per-request cap, and the
// self-hosted tier's amortised share of its machine's hourly cost.
#pragma once
#include <cstdint>
#include <ctime>
#include <string>

#include "router/config.h"

namespace v4::router {

struct Prices {  // USD per million tokens
  double input = 0, cached_input = 0, output = 0;
  bool off_peak = false;
};

// The prices in force at `t` (UTC); all zero when the upstream has no tariff or `t` precedes it.
Prices prices_at(const Cost& c, std::time_t t);

// USD for the tokens of a request; `cached` is the part of `prompt` served from the provider's cache.
double token_cost(const Prices& p, int64_t prompt, int64_t cached, int64_t completion);

// Worst case before dispatch: prompt at the input price (a share `cached_share` at the cached
// price) plus `max_output` tokens at the output price.
double worst_case_cost(const Prices& p, int64_t prompt, double cached_share, int64_t max_output);

// Amortised machine cost of `busy_s` seconds shared with `sharing` requests in flight.
double amortised_cost(const Cost& c, double busy_s, int sharing);

// "2026-12-01" and "2026-12" for t (UTC).
std::string utc_day(std::time_t t);
std::string utc_month(std::time_t t);

}  // namespace v4::router
