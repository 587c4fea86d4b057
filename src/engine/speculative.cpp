#include "engine/speculative.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace v4 {

void sampling_distribution(const SamplingParams& sp, const float* logits, int vocab, std::vector<double>& p) {
  p.assign(static_cast<size_t>(vocab), 0.0);
  if (sp.temperature <= 0.0f) {
    p[static_cast<size_t>(argmax(logits, vocab))] = 1.0;
    return;
  }
  float mx = -INFINITY;
  for (int i = 0; i < vocab; ++i) mx = std::max(mx, logits[i]);
  thread_local std::vector<std::pair<float, int32_t>> cand;
  cand.clear();
  const float inv_t = 1.0f / sp.temperature;
  for (int i = 0; i < vocab; ++i) {
    const float w = std::exp((logits[i] - mx) * inv_t);
    if (w >= sp.min_p && w > 0.0f) cand.push_back({w, i});
  }
  if (cand.empty()) {
    p[static_cast<size_t>(argmax(logits, vocab))] = 1.0;
    return;
  }
  // The same candidate set as Sampler::sample (heaviest first, ties by lower id), selected the
  // same way in expected O(n): top-k by nth_element, the top-p nucleus by quickselect on mass.
  auto heavier = [](const std::pair<float, int32_t>& x, const std::pair<float, int32_t>& y) {
    return x.first > y.first || (x.first == y.first && x.second < y.second);
  };
  if (sp.top_k > 0 && static_cast<size_t>(sp.top_k) < cand.size()) {
    std::nth_element(cand.begin(), cand.begin() + sp.top_k, cand.end(), heavier);
    cand.resize(static_cast<size_t>(sp.top_k));
  }
  if (sp.top_p < 1.0f) {
    double total = 0;
    for (auto& c : cand) total += c.first;
    double target = sp.top_p * total;
    size_t lo = 0, hi = cand.size();
    while (hi - lo > 1) {
      const size_t mid = lo + (hi - lo) / 2;
      std::nth_element(cand.begin() + static_cast<long>(lo), cand.begin() + static_cast<long>(mid), cand.begin() + static_cast<long>(hi),
                       heavier);
      double mass = 0;
      for (size_t i = lo; i < mid; ++i) mass += cand[i].first;
      if (mass >= target) {
        hi = mid;
      } else {
        target -= mass;
        lo = mid;
      }
    }
    cand.resize(lo + 1);
  }
  double total = 0;
  for (auto& c : cand) total += c.first;
  for (auto& c : cand) p[static_cast<size_t>(c.second)] = c.first / total;
}

int32_t speculative_accept(const std::vector<double>& p, const std::vector<double>& q, int32_t d, double u, double r,
                           bool* accepted) {
  const size_t di = static_cast<size_t>(d);
  if (q[di] > 0 && u * q[di] < p[di]) {
    *accepted = true;
    return d;
  }
  *accepted = false;
  double total = 0;
  for (size_t i = 0; i < p.size(); ++i) total += std::max(0.0, p[i] - q[i]);
  if (total <= 0) {  // p == q: never rejects except by rounding; fall back to p itself
    double acc = 0;
    for (size_t i = 0; i < p.size(); ++i)
      if ((acc += p[i]) > r) return static_cast<int32_t>(i);
    return static_cast<int32_t>(std::max_element(p.begin(), p.end()) - p.begin());
  }
  const double target = r * total;
  double acc = 0;
  int32_t last = -1;
  for (size_t i = 0; i < p.size(); ++i) {
    const double w = std::max(0.0, p[i] - q[i]);
    if (w <= 0) continue;
    last = static_cast<int32_t>(i);
    if ((acc += w) > target) return last;
  }
  return last;
}

DrafterKind drafter_of(const Engine& eng) {
  if (eng.has_dspark()) return DrafterKind::DSpark;
  if (eng.has_mtp()) return DrafterKind::Mtp;
  return DrafterKind::None;
}

const char* drafter_name(DrafterKind k) {
  switch (k) {
    case DrafterKind::Mtp: return "mtp";
    case DrafterKind::DSpark: return "dspark";
    default: return "none";
  }
}

SpecSequence::SpecSequence(Engine& eng, SequenceState& main, const SamplingParams& sp, int max_drafts)
    : eng_(eng), st_(main), sp_(sp), kind_(drafter_of(eng)), V_(eng.config().vocab_size), row_(0), k_(1),
      rng_(sp.seed ^ 0x5bd1e995u), sampler_(sp) {
  const ModelConfig& c = eng.config();
  if (kind_ == DrafterKind::None)
    throw InputError("speculative decoding needs a drafter: the MTP head (mtp.0.*, preview checkpoints) or the DSpark drafter "
                     "(mtp.0..2, V4-Flash-0731 / V4-Pro-0813)");
  const int own = kind_ == DrafterKind::DSpark ? c.dspark.block_size : 1;
  k_ = max_drafts > 0 ? std::min(max_drafts, own) : own;
  if (kind_ == DrafterKind::DSpark) {
    row_ = static_cast<int>(c.dspark.target_layer_ids.size()) * c.dim;
    ds_ = eng.new_dspark_state();
  } else {
    row_ = c.hc_mult * c.dim;
    mtp_ = SequenceState::mtp_only(c);
  }
}

int32_t SpecSequence::draw(const std::vector<double>& p) {
  const double r = std::uniform_real_distribution<double>(0.0, 1.0)(rng_);
  double acc = 0;
  int32_t last = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] <= 0) continue;
    last = static_cast<int32_t>(i);
    if ((acc += p[i]) > r) return last;
  }
  return last;
}

void SpecSequence::set_prompt(const std::vector<int32_t>& prompt) {
  tokens_ = prompt;
  n_main_ = st_.pos;  // a prefix-cache hit starts the prefill further on
  rows_.clear();
  rows_first_ = n_main_;
}

void SpecSequence::keep_rows(const float* rows, int64_t first, int n) {
  int64_t end = rows_first_ + static_cast<int64_t>(rows_.size());
  if (first > end) {  // a gap: the drafter restarts from these rows
    rows_.clear();
    rows_first_ = end = first;
  }
  for (int64_t p = std::max(first, end); p < first + n; ++p)
    rows_.emplace_back(rows + static_cast<size_t>(p - first) * row_, rows + static_cast<size_t>(p - first + 1) * row_);
  // The drafters only look back one window.
  const size_t keep = static_cast<size_t>(eng_.config().window) + 1;
  while (rows_.size() > keep) {
    rows_.pop_front();
    ++rows_first_;
  }
}

void SpecSequence::prefill_chunk(Segment& s) {
  const int64_t len = static_cast<int64_t>(tokens_.size());
  const int64_t first = st_.pos, keep_from = len - 1 - eng_.config().window;
  prefill_first_ = -1;
  if (first + s.n <= keep_from) return;
  prefill_rows_.resize(static_cast<size_t>(s.n) * row_);
  prefill_first_ = first;
  (kind_ == DrafterKind::DSpark ? s.aux : s.hidden) = prefill_rows_.data();
}

void SpecSequence::prefill_done(const Segment& s) {
  if (prefill_first_ >= 0) keep_rows(prefill_rows_.data(), prefill_first_, s.n);
  prefill_first_ = -1;
  n_main_ = st_.pos;
}

int32_t SpecSequence::first_token(const float* logits) {
  const int32_t t = sampler_.sample(logits, V_);
  tokens_.push_back(t);
  ++stats_.tokens;
  return t;
}

bool SpecSequence::plan_mtp() {
  const int64_t T = static_cast<int64_t>(tokens_.size());
  const int64_t from = std::max(mtp_.mtp_pos, rows_first_);
  if (rows_first_ + static_cast<int64_t>(rows_.size()) < T - 1 || from >= T - 1) return false;
  mtp_.mtp_pos = from;  // pairs before the kept rows are skipped (only the window matters)
  // Pairs (H_i, t_{i+1}) for i in [from, T-1): the last one drafts position T.
  const int np = static_cast<int>(T - 1 - from);
  mtp_in_.resize(static_cast<size_t>(np) * row_);
  draft_logits_.resize(static_cast<size_t>(V_));
  for (int i = 0; i < np; ++i) {
    const auto& r = rows_[static_cast<size_t>(from + i - rows_first_)];
    std::copy(r.begin(), r.end(), mtp_in_.begin() + static_cast<long>(i) * row_);
  }
  while (rows_first_ < T - 1 && !rows_.empty()) {
    rows_.pop_front();
    ++rows_first_;
  }
  mtp_req_ = MtpSegment{};
  mtp_req_.state = &mtp_;
  mtp_req_.hidden = mtp_in_.data();
  mtp_req_.next_tokens = tokens_.data() + from + 1;
  mtp_req_.n = np;
  mtp_req_.all_logits = false;
  mtp_req_.logits = draft_logits_.data();
  return true;
}

bool SpecSequence::plan_dspark() {
  const int64_t T = static_cast<int64_t>(tokens_.size());
  const int64_t rows_end = rows_first_ + static_cast<int64_t>(rows_.size());
  if (rows_end < T - 1) return false;
  // Context rows of the positions before the anchor that the drafter has not seen yet.
  const int64_t from = std::max(ds_.end, rows_first_);
  if (from < T - 1) {
    const int n = static_cast<int>(T - 1 - from);
    std::vector<float> buf(static_cast<size_t>(n) * row_);
    for (int i = 0; i < n; ++i) {
      const auto& r = rows_[static_cast<size_t>(from + i - rows_first_)];
      std::copy(r.begin(), r.end(), buf.begin() + static_cast<long>(i) * row_);
    }
    eng_.dspark_context(ds_, buf.data(), from, n);
  }
  while (rows_first_ < T - 1 && !rows_.empty()) {
    rows_.pop_front();
    ++rows_first_;
  }
  draft_logits_.resize(static_cast<size_t>(eng_.config().dspark.block_size) * V_);
  ds_req_ = DSparkDraft{};
  ds_req_.state = &ds_;
  ds_req_.anchor = tokens_.back();
  ds_req_.pos = T - 1;
  ds_req_.logits = draft_logits_.data();
  return true;
}

bool SpecSequence::plan_step(bool draft) {
  const int64_t T = static_cast<int64_t>(tokens_.size());
  npend_ = static_cast<int>(T - n_main_);
  if (npend_ < 1) throw InputError("speculative step: nothing pending (no first token yet)");
  drafts_.clear();
  q_.clear();
  planned_ = false;
  // After rejections the accepted tokens stay pending; beyond k+1 of them they are consumed
  // without a draft (bounds a step's work).
  if (draft && npend_ <= k_ + 1) planned_ = kind_ == DrafterKind::Mtp ? plan_mtp() : plan_dspark();
  return planned_;
}

MtpSegment* SpecSequence::mtp_request() { return planned_ && kind_ == DrafterKind::Mtp ? &mtp_req_ : nullptr; }
DSparkDraft* SpecSequence::dspark_request() { return planned_ && kind_ == DrafterKind::DSpark ? &ds_req_ : nullptr; }

void SpecSequence::finish_step(Segment& s) {
  const int64_t T = static_cast<int64_t>(tokens_.size());
  if (planned_ && kind_ == DrafterKind::Mtp) {
    if (draft_override) draft_override(T, draft_logits_.data());
    q_.emplace_back();
    sampling_distribution(sp_, draft_logits_.data(), V_, q_.back());
    drafts_.push_back(draw(q_.back()));
  } else if (planned_) {
    // Semi-autoregressive: each position's logits get the Markov bias of the token drawn before it.
    std::vector<float> bias(static_cast<size_t>(V_));
    int32_t prev = ds_req_.anchor;
    for (int i = 0; i < k_; ++i) {
      float* row = draft_logits_.data() + static_cast<size_t>(i) * V_;
      eng_.dspark_markov_bias(prev, bias.data());
      for (int v = 0; v < V_; ++v) row[v] += bias[static_cast<size_t>(v)];
      if (draft_override) draft_override(T + i, row);
      q_.emplace_back();
      sampling_distribution(sp_, row, V_, q_.back());
      prev = draw(q_.back());
      drafts_.push_back(prev);
    }
  }
  planned_ = false;
  in_.assign(tokens_.begin() + n_main_, tokens_.end());
  in_.insert(in_.end(), drafts_.begin(), drafts_.end());
  const int m = static_cast<int>(in_.size());
  // Verifying needs the logits from the last pending token on (k + 1 rows).
  logits_.resize(static_cast<size_t>(drafts_.empty() ? 1 : m - npend_ + 1) * V_);
  rowbuf_.resize(static_cast<size_t>(m) * row_);
  s = Segment{};
  s.state = &st_;
  s.tokens = in_.data();
  s.n = m;
  s.all_logits = !drafts_.empty();
  s.logits_from = drafts_.empty() ? 0 : npend_ - 1;
  s.logits = logits_.data();
  (kind_ == DrafterKind::DSpark ? s.aux : s.hidden) = rowbuf_.data();
  if (!drafts_.empty()) mark_ = st_.mark(m, eng_.config().window, eng_.config().head_dim);
}

void SpecSequence::begin_step(Segment& s, bool draft) {
  if (plan_step(draft)) {
    if (MtpSegment* m = mtp_request()) eng_.forward_mtp(std::span<MtpSegment>(m, 1));
    if (DSparkDraft* d = dspark_request()) eng_.dspark_draft(std::span<DSparkDraft>(d, 1));
  }
  finish_step(s);
}

bool SpecSequence::end_step(const EmitFn& on_token) {
  const int m = static_cast<int>(in_.size());
  last_drafts_ = static_cast<int>(drafts_.size());
  last_accepted_ = 0;
  auto emit = [&](int32_t t, const float* row) {
    tokens_.push_back(t);
    ++stats_.tokens;
    return on_token(t, row);
  };
  if (drafts_.empty()) {
    keep_rows(rowbuf_.data(), n_main_, m);
    n_main_ += m;
    return emit(sampler_.sample(logits_.data(), V_), logits_.data());
  }
  ++stats_.steps;
  const int k = static_cast<int>(drafts_.size());
  stats_.drafts += k;
  std::vector<double> p;
  std::uniform_real_distribution<double> U(0.0, 1.0);
  int i = 0;
  int32_t replacement = -1;
  for (; i < k; ++i) {
    sampling_distribution(sp_, logits_.data() + static_cast<size_t>(i) * V_, V_, p);
    const double u = U(rng_), r = U(rng_);
    bool ok = false;
    const int32_t t = speculative_accept(p, q_[static_cast<size_t>(i)], drafts_[static_cast<size_t>(i)], u, r, &ok);
    if (!ok) {
      replacement = t;
      break;
    }
  }
  last_accepted_ = i;
  stats_.accepted += i;
  const std::vector<int32_t> drafts = drafts_;
  if (i == k) {
    keep_rows(rowbuf_.data(), n_main_, m);
    n_main_ += m;
    for (int j = 0; j < k; ++j)
      if (!emit(drafts[static_cast<size_t>(j)], logits_.data() + static_cast<size_t>(j) * V_)) return false;
    const float* row = logits_.data() + static_cast<size_t>(k) * V_;
    return emit(sampler_.sample(row, V_), row);  // the bonus token
  }
  // Drop the rejected part: the pending tokens and the accepted drafts stay pending.
  st_.rollback(mark_, eng_.config().window, eng_.config().head_dim);
  keep_rows(rowbuf_.data(), n_main_, npend_ + i);
  for (int j = 0; j < i; ++j)
    if (!emit(drafts[static_cast<size_t>(j)], logits_.data() + static_cast<size_t>(j) * V_)) return false;
  return emit(replacement, logits_.data() + static_cast<size_t>(i) * V_);
}

SpeculativeDecoder::SpeculativeDecoder(Engine& eng, SequenceState& state, const SamplingParams& sp, int max_drafts)
    : eng_(eng), st_(state), seq_(eng, state, sp, max_drafts) {}

void SpeculativeDecoder::start(const int32_t* prompt, int n) {
  if (n < 1) throw InputError("speculative decoding: empty prompt");
  seq_.draft_override = draft_override;
  seq_.set_prompt(std::vector<int32_t>(prompt, prompt + n));
  first_logits_.assign(static_cast<size_t>(eng_.config().vocab_size), 0.f);
  const int chunk = std::max(1, eng_.max_chunk);
  for (int b = 0; b < n; b += chunk) {
    Segment s;
    s.state = &st_;
    s.tokens = prompt + b;
    s.n = std::min(chunk, n - b);
    s.logits = first_logits_.data();
    seq_.prefill_chunk(s);
    eng_.forward(std::span<Segment>(&s, 1));
    seq_.prefill_done(s);
  }
  have_first_ = false;
}

void SpeculativeDecoder::generate(int n, const std::function<bool(int32_t)>& on_token) {
  if (n <= 0) return;
  int emitted = 0;
  auto emit = [&](int32_t t, const float*) {
    ++emitted;
    return on_token(t) && emitted < n;
  };
  if (!have_first_) {
    have_first_ = true;
    if (!emit(seq_.first_token(first_logits_.data()), first_logits_.data())) return;
  }
  for (;;) {
    Segment s;
    seq_.begin_step(s, true);
    eng_.forward(std::span<Segment>(&s, 1));
    if (!seq_.end_step(emit)) return;
  }
}

}  // namespace v4
