// Paired comparison of two results files (A = baseline, B = candidate) on the (id, sample)
// pairs both hold: the exact McNemar test on the items only one of them passed, a paired
// bootstrap for the difference in pass rate and in mean score, and a verdict for B against A.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "eval/item.h"

namespace v4::eval {

struct CompareOptions {
  double alpha = 0.05;
  int bootstrap = 10000;
  uint64_t seed = 1;
};

// Fields: n_pairs, a_pass_rate, b_pass_rate, both_passed, neither, a_only, b_only, diff (B - A),
// diff_ci95, p_value, score {a_mean, b_mean, diff, ci95}, verdict ("better" | "worse" |
// "no significant difference"), alpha, unpaired_a, unpaired_b, categories, a_only_ids, b_only_ids.
Json compare_results(const std::vector<Outcome>& a, const std::vector<Outcome>& b, const CompareOptions& opt = {});

std::string format_compare(const Json& c, const std::string& a_name, const std::string& b_name);

}  // namespace v4::eval
