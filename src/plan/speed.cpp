#include "plan/speed.h"

#include <algorithm>
#include <cmath>
#include <fmt/format.h>

#include "plan/units.h"

namespace v4::plan {

SpeedBound speed_bound(const FitInput& in, const FitResult& fit, double hours) {
  SpeedBound s;
  const ModelConfig& m = in.model;
  const double L = static_cast<double>(m.layers);
  const double k = static_cast<double>(m.experts_per_tok);
  // The dense part minus tables a step reads one row of (embedding, hash-routing tid2eid).
  const double tid2eid = static_cast<double>(m.hash_layers * m.vocab * m.experts_per_tok * 8);
  const double dense = std::max(0.0, in.weights.main.sharded + in.weights.main.replicated - in.weights.embed_bytes - tid2eid);
  const double dense_sharded = std::max(0.0, in.weights.main.sharded - in.weights.embed_bytes);
  const double dense_repl = dense - dense_sharded;
  s.active_weight_bytes_per_token = dense + k * L * in.weights.expert_bytes;
  s.kv_read_bytes_per_token = kv_read_bytes_per_step(m, in.kv, in.context) * in.engine.kv_factor;
  const double bw = in.gpus.gpu.bandwidth_gbs * 1e9;
  const int n = in.gpus.count;
  // Busiest GPU per step, with perfect spreading: its share of the TP-split part, all of the
  // replicated part, the KV of the sequences it serves, and its share of the experts touched.
  auto step_seconds = [&](int batch) {
    const double seqs_per_group = std::ceil(static_cast<double>(batch) / fit.dp);
    const double E = static_cast<double>(m.experts);
    const double touched = E * (1.0 - std::pow(1.0 - k / E, batch));  // distinct experts per layer
    const double experts_on_busiest = std::max(std::ceil(touched / n), std::ceil(std::min(touched, k * batch) / n));
    const double bytes = dense_sharded / fit.tp + dense_repl + seqs_per_group * s.kv_read_bytes_per_token +
                         experts_on_busiest * L * in.weights.expert_bytes;
    return bytes / bw;
  };
  s.per_sequence_tokens_per_s = 1.0 / step_seconds(1);
  s.batch = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(in.concurrency, std::max<int64_t>(1, fit.max_concurrency))));
  const double t = step_seconds(s.batch);
  s.per_sequence_at_batch_tokens_per_s = 1.0 / t;
  s.aggregate_tokens_per_s = s.batch / t;
  s.max_batch = static_cast<int>(std::max<int64_t>(s.batch, std::min<int64_t>(fit.max_concurrency, 4096)));
  s.max_aggregate_tokens_per_s = s.max_batch / step_seconds(s.max_batch);
  s.tokens_per_month_capacity = s.max_aggregate_tokens_per_s * 3600.0 * hours;
  s.explanation = fmt::format(
      "upper bound from memory bandwidth only ({} GB/s per {}): a decode step reads {} of active weights "
      "(dense part + {} of {} experts per layer) and {} of KV per sequence at {} context, spread perfectly over "
      "{} GPUs; compute, communication, prefill and kernel efficiency make real numbers lower",
      in.gpus.gpu.bandwidth_gbs, in.gpus.gpu.name, fmt_gib(s.active_weight_bytes_per_token), m.experts_per_tok,
      m.experts, fmt_gib(s.kv_read_bytes_per_token), fmt_context(in.context), n);
  return s;
}

}  // namespace v4::plan
