// Go / no-go / conditional, with the reasons in plain words: the fit, the precision, the
// context, the cost, and the non-cost reasons the user declares.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "plan/cost.h"
#include "plan/fit.h"
#include "plan/speed.h"

namespace v4::plan {

struct NonCostReasons {
  bool data_must_stay_onsite = false;
  bool air_gapped = false;
  bool custom_weights = false;     // fine-tuned / own weights the hosted API cannot serve
  bool hardware_owned = false;     // GPUs already bought: hourly = running cost
  bool any_hosted_blocker() const { return data_must_stay_onsite || air_gapped || custom_weights; }
};

struct VerdictInput {
  const FitInput* fit_in = nullptr;
  const FitResult* fit = nullptr;
  const Precision* precision = nullptr;
  const FitResult* alt_fit = nullptr;   // the recommended checkpoint's fit, when one is recommended
  std::string alt_model;
  const SpeedBound* speed = nullptr;
  const CostInput* cost_in = nullptr;
  const CostResult* cost = nullptr;
  NonCostReasons non_cost;
};

struct Verdict {
  std::string decision;              // "go", "no-go", "conditional"
  std::vector<std::string> reasons;  // plain words, most important first
  std::vector<std::string> conditions;  // what must hold / be done for a conditional go
};

Verdict decide(const VerdictInput& in);

}  // namespace v4::plan
