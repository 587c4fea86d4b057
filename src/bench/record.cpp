#include "bench/record.h"

namespace v4::bench {

int RequestRecord::output_tokens() const {
  if (completion_tokens >= 0) return completion_tokens;
  if (output_tokens_local >= 0) return output_tokens_local;
  return reasoning_pieces + answer_pieces;
}

int RequestRecord::reasoning_token_count() const {
  if (reasoning_tokens >= 0) return reasoning_tokens;
  if (reasoning_tokens_local >= 0) return reasoning_tokens_local;
  return reasoning_pieces;
}

double RequestRecord::reasoning_ms() const {
  if (reasoning_pieces == 0) return 0;
  if (std::isnan(first_answer_ms)) return end_ms - first_token_ms;
  return first_answer_ms - first_token_ms;
}

double RequestRecord::tpot() const {
  int n = output_tokens();
  if (n < 2 || std::isnan(first_token_ms)) return NAN;
  return (end_ms - first_token_ms) / (n - 1);
}

std::vector<double> RequestRecord::itl() const {
  std::vector<double> g;
  for (size_t i = 1; i < piece_ms.size(); ++i) g.push_back(piece_ms[i] - piece_ms[i - 1]);
  return g;
}

double RequestRecord::output_tps() const {
  int n = output_tokens();
  if (n < 1 || !(end_ms > 0)) return NAN;
  return n / (end_ms / 1000.0);
}

}  // namespace v4::bench
