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
  std::vector<std::pair<float, int32_t>> cand;
  const float inv_t = 1.0f / sp.temperature;
  for (int i = 0; i < vocab; ++i) {
    const float w = std::exp((logits[i] - mx) * inv_t);
    if (w >= sp.min_p && w > 0.0f) cand.push_back({w, i});
  }
  if (cand.empty()) {
    p[static_cast<size_t>(argmax(logits, vocab))] = 1.0;
    return;
  }
  // The same candidate set as Sampler::sample: heaviest first, ties by lower id.
  std::sort(cand.begin(), cand.end(), [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); });
  if (sp.top_k > 0 && static_cast<size_t>(sp.top_k) < cand.size()) cand.resize(static_cast<size_t>(sp.top_k));
  if (sp.top_p < 1.0f) {
    double total = 0;
    for (auto& c : cand) total += c.first;
    const double target = sp.top_p * total;
    double cum = 0;
    size_t keep = cand.size();
    for (size_t i = 0; i < cand.size(); ++i) {
      cum += cand[i].first;
      if (cum >= target) {
        keep = i + 1;
        break;
      }
    }
    cand.resize(keep);
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

SpeculativeDecoder::SpeculativeDecoder(Engine& eng, SequenceState& state, const SamplingParams& sp)
    : eng_(eng), st_(state), sp_(sp), rng_(sp.seed ^ 0x5bd1e995u), sampler_(sp), V_(eng.config().vocab_size),
      row_(eng.config().hc_mult * eng.config().dim) {
  if (!eng.has_mtp()) throw InputError("speculative decoding needs the checkpoint's MTP (mtp.0.*) weights");
  if (!state.has_mtp) throw InputError("speculative decoding: the sequence was created without MTP state");
}

int32_t SpeculativeDecoder::draw(const std::vector<double>& p) {
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

void SpeculativeDecoder::start(const int32_t* prompt, int n) {
  if (n < 1) throw InputError("speculative decoding: empty prompt");
  tokens_.assign(prompt, prompt + n);
  last_logits_.assign(static_cast<size_t>(V_), 0.f);
  // Prefill in chunks, keeping the final streams of the last window's positions for the MTP.
  const int win = eng_.config().window, chunk = std::max(1, eng_.max_chunk);
  std::vector<float> hid;
  hidden_.clear();
  const int64_t keep_from = std::max<int64_t>(0, n - 1 - win);
  for (int b = 0; b < n; b += chunk) {
    const int m = std::min(chunk, n - b);
    hid.resize(static_cast<size_t>(m) * row_);
    Segment s;
    s.state = &st_;
    s.tokens = prompt + b;
    s.n = m;
    s.logits = last_logits_.data();
    s.hidden = hid.data();
    eng_.forward(std::span<Segment>(&s, 1));
    for (int i = 0; i < m; ++i)
      if (b + i >= keep_from) hidden_.emplace_back(hid.begin() + static_cast<long>(i) * row_, hid.begin() + static_cast<long>(i + 1) * row_);
  }
  n_main_ = n;
  n_mtp_ = keep_from;
  st_.mtp_pos = keep_from;  // the MTP block is window-only: earlier pairs do not matter
}

void SpeculativeDecoder::generate(int n, const std::function<bool(int32_t)>& on_token) {
  int emitted = 0;
  auto emit = [&](int32_t t) {
    tokens_.push_back(t);
    ++stats_.tokens;
    ++emitted;
    return on_token(t) && emitted < n;
  };
  std::vector<double> p, q;
  std::vector<float> qlog(static_cast<size_t>(V_)), mh;
  auto hidden_at = [&](int64_t i) -> std::vector<float>& { return hidden_[static_cast<size_t>(i - n_mtp_)]; };
  if (n <= 0) return;
  if (static_cast<int64_t>(tokens_.size()) == n_main_) {  // nothing pending: sample from the prefill
    sampling_distribution(sp_, last_logits_.data(), V_, p);
    if (!emit(draw(p))) return;
  }
  for (;;) {
    const int64_t T = static_cast<int64_t>(tokens_.size());
    const int npend = static_cast<int>(T - n_main_);
    // After two rejections in a row the pending tokens are consumed without a draft (bounds
    // the work per step).
    const bool do_draft = npend <= 2;
    if (do_draft) {
      // MTP pairs (H_i, t_{i+1}) for i in [n_mtp_, T-1): the last one drafts position T.
      const int np = static_cast<int>(T - 1 - n_mtp_);
      mh.resize(static_cast<size_t>(np) * row_);
      for (int i = 0; i < np; ++i) std::copy(hidden_at(n_mtp_ + i).begin(), hidden_at(n_mtp_ + i).end(), mh.begin() + static_cast<long>(i) * row_);
      MtpSegment ms;
      ms.state = &st_;
      ms.hidden = mh.data();
      ms.next_tokens = tokens_.data() + n_mtp_ + 1;
      ms.n = np;
      ms.all_logits = false;
      ms.logits = qlog.data();
      eng_.forward_mtp(std::span<MtpSegment>(&ms, 1));
      hidden_.erase(hidden_.begin(), hidden_.begin() + np);
      n_mtp_ = T - 1;
      if (draft_override) draft_override(T, qlog.data());
      sampling_distribution(sp_, qlog.data(), V_, q);
    }
    const int32_t d = do_draft ? draw(q) : 0;
    const int m = npend + (do_draft ? 1 : 0);
    std::vector<int32_t> in(tokens_.begin() + n_main_, tokens_.end());
    if (do_draft) in.push_back(d);
    std::vector<float> logits(static_cast<size_t>(m) * V_), hid(static_cast<size_t>(m) * row_);
    SequenceState snapshot;
    if (do_draft) snapshot = st_;
    Segment s;
    s.state = &st_;
    s.tokens = in.data();
    s.n = m;
    s.all_logits = true;
    s.logits = logits.data();
    s.hidden = hid.data();
    eng_.forward(std::span<Segment>(&s, 1));
    ++stats_.steps;
    // Hidden rows of the pending positions are final (their tokens are accepted).
    // (after a rejection the earlier ones are already kept).
    for (int i = 0; i < npend; ++i)
      if (n_main_ + i >= n_mtp_ + static_cast<int64_t>(hidden_.size()))
        hidden_.emplace_back(hid.begin() + static_cast<long>(i) * row_, hid.begin() + static_cast<long>(i + 1) * row_);
    if (!do_draft) {
      n_main_ = T;
      sampling_distribution(sp_, logits.data() + static_cast<size_t>(m - 1) * V_, V_, p);
      if (!emit(draw(p))) return;
      continue;
    }
    ++stats_.drafts;
    sampling_distribution(sp_, logits.data() + static_cast<size_t>(npend - 1) * V_, V_, p);
    std::uniform_real_distribution<double> U(0.0, 1.0);
    const double u = U(rng_), r = U(rng_);
    bool ok = false;
    const int32_t t = speculative_accept(p, q, d, u, r, &ok);
    if (ok) {
      ++stats_.accepted;
      n_main_ = T + 1;
      hidden_.emplace_back(hid.begin() + static_cast<long>(npend) * row_, hid.end());
      if (!emit(d)) return;
      sampling_distribution(sp_, logits.data() + static_cast<size_t>(npend) * V_, V_, p);  // the bonus token
      if (!emit(draw(p))) return;
    } else {
      st_ = std::move(snapshot);  // drop the draft: the pending tokens stay pending
      if (!emit(t)) return;
    }
  }
}

}  // namespace v4
