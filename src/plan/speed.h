// Decode speed upper bound from memory bandwidth: every decode step must at least read the
// active weights and the KV cache it attends to. Compute, communication and kernel efficiency
// only make real numbers lower, so these are ceilings, never predictions.
#pragma once
#include "plan/fit.h"

namespace v4::plan {

struct SpeedBound {
  double active_weight_bytes_per_token = 0;  // dense part + top-k routed experts, all layers
  double kv_read_bytes_per_token = 0;        // one sequence at the requested context
  int batch = 1;                             // sequences in the bound below
  double per_sequence_tokens_per_s = 0;      // one sequence alone
  double per_sequence_at_batch_tokens_per_s = 0;
  double aggregate_tokens_per_s = 0;         // all `batch` sequences together
  int max_batch = 1;                         // the most sequences that fit (capped at 4096)
  double max_aggregate_tokens_per_s = 0;     // all of them together
  double tokens_per_month_capacity = 0;      // max_aggregate × hours: the deployment's ceiling
  std::string explanation;
};

SpeedBound speed_bound(const FitInput& in, const FitResult& fit, double hours_per_month);

}  // namespace v4::plan
