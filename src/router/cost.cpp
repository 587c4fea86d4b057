#include "router/cost.h"

#include <algorithm>

#include <fmt/format.h>

namespace v4::router {

std::string utc_day(std::time_t t) {
  std::tm tm{};
  gmtime_r(&t, &tm);
  return fmt::format("{:04}-{:02}-{:02}", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
}

std::string utc_month(std::time_t t) { return utc_day(t).substr(0, 7); }

Prices prices_at(const Cost& c, std::time_t t) {
  Prices p;
  if (c.tariff.empty()) return p;  // no tariff (a self-hosted tier): no date to format per request
  const std::string day = utc_day(t);
  const TariffEntry* e = nullptr;
  for (auto& te : c.tariff)
    if (te.from <= day) e = &te;  // sorted by date: the last one that started
  if (!e) return p;
  std::tm tm{};
  gmtime_r(&t, &tm);
  int m = tm.tm_hour * 60 + tm.tm_min;
  bool off = false;
  if (e->has_off_peak) {
    off = e->off_start_min < e->off_end_min ? (m >= e->off_start_min && m < e->off_end_min)
                                            : (m >= e->off_start_min || m < e->off_end_min);  // wraps midnight
  }
  if (off) {
    p.input = e->off_input;
    p.cached_input = e->off_cached_input;
    p.output = e->off_output;
    p.off_peak = true;
  } else {
    p.input = e->input;
    p.cached_input = e->cached_input;
    p.output = e->output;
  }
  return p;
}

double token_cost(const Prices& p, int64_t prompt, int64_t cached, int64_t completion) {
  cached = std::clamp<int64_t>(cached, 0, prompt);
  return (static_cast<double>(prompt - cached) * p.input + static_cast<double>(cached) * p.cached_input +
          static_cast<double>(completion) * p.output) / 1e6;
}

double worst_case_cost(const Prices& p, int64_t prompt, double cached_share, int64_t max_output) {
  cached_share = std::clamp(cached_share, 0.0, 1.0);
  double in = static_cast<double>(prompt);
  return (in * (1 - cached_share) * p.input + in * cached_share * p.cached_input + static_cast<double>(max_output) * p.output) / 1e6;
}

double amortised_cost(const Cost& c, double busy_s, int sharing) {
  if (c.amortised_per_hour <= 0 || busy_s <= 0) return 0;
  return c.amortised_per_hour / 3600.0 * busy_s / std::max(1, sharing);
}

}  // namespace v4::router
