#include "sched/scheduler.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/memory.h"

namespace v4 {

using Clock = std::chrono::steady_clock;

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::Stop: return "stop";
    case FinishReason::Length: return "length";
    case FinishReason::Cancelled: return "cancelled";
    case FinishReason::Error: return "error";
    default: return "";
  }
}

bool parse_spec_mode(const std::string& s, SpecMode* out) {
  if (s == "off") *out = SpecMode::Off;
  else if (s == "on") *out = SpecMode::On;
  else if (s == "auto") *out = SpecMode::Auto;
  else return false;
  return true;
}

const char* spec_mode_name(SpecMode m) {
  switch (m) {
    case SpecMode::On: return "on";
    case SpecMode::Auto: return "auto";
    default: return "off";
  }
}

bool RequestHandle::poll(std::vector<TokenEvent>& out, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lk(mu_);
  cv_.wait_for(lk, timeout, [&] { return !events_.empty() || finished_; });
  while (!events_.empty()) {
    out.push_back(std::move(events_.front()));
    events_.pop_front();
  }
  return finished_;
}

void RequestHandle::cancel() {
  std::lock_guard<std::mutex> lk(mu_);
  cancelled_ = true;
}

bool RequestHandle::cancelled() const {
  std::lock_guard<std::mutex> lk(mu_);
  return cancelled_;
}

FinishReason RequestHandle::finish_reason() const {
  std::lock_guard<std::mutex> lk(mu_);
  return reason_;
}

std::string RequestHandle::error() const {
  std::lock_guard<std::mutex> lk(mu_);
  return error_;
}

int RequestHandle::completion_tokens() const {
  std::lock_guard<std::mutex> lk(mu_);
  return emitted_;
}

void RequestHandle::on_event(std::function<void()> fn) {
  auto f = fn ? std::make_shared<std::function<void()>>(std::move(fn)) : nullptr;
  bool now = false;
  {
    std::lock_guard<std::mutex> lk(mu_);
    notify_ = f;
    now = !events_.empty() || finished_;
  }
  if (now && f) (*f)();
}

void RequestHandle::push(const TokenEvent& e) {
  std::shared_ptr<std::function<void()>> f;
  {
    std::lock_guard<std::mutex> lk(mu_);
    events_.push_back(e);
    ++emitted_;
    f = notify_;
  }
  cv_.notify_all();
  if (f) (*f)();
}

void RequestHandle::finish(FinishReason r, const std::string& err) {
  std::shared_ptr<std::function<void()>> f;
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (finished_) return;
    finished_ = true;
    reason_ = r;
    error_ = err;
    f = notify_;
  }
  cv_.notify_all();
  if (f) (*f)();
}

struct Scheduler::Active {
  GenRequest req;
  std::shared_ptr<RequestHandle> h;
  std::unique_ptr<SequenceState> st;
  size_t consumed = 0;        // prompt tokens consumed
  int32_t last = -1;          // last sampled token (decode input)
  int generated = 0;
  size_t projected = 0;
  Sampler sampler;
  Clock::time_point submitted, last_token;
  bool first_token = true;
  std::vector<float> logits;
  // Speculative decoding (requests without a grammar constraint when the server speculates).
  std::unique_ptr<SpecSequence> spec;
  double spec_rate = 1.0;  // running acceptance of this request's drafts (auto mode)
  int spec_plain = 0;      // plain steps since the last draft (auto mode's probing)
  Active(GenRequest r, std::shared_ptr<RequestHandle> hh)
      : req(std::move(r)), h(std::move(hh)), sampler(req.sampling), submitted(Clock::now()) {}
  bool prefilling() const { return consumed < req.prompt.size(); }
};

Scheduler::Scheduler(Engine& engine, const SchedulerOptions& opt, Metrics* metrics)
    : eng_(engine), opt_(opt), metrics_(metrics), cache_(opt.prefix_cache_bytes) {
  if (opt_.speculative != SpecMode::Off) drafter_ = drafter_of(engine);
  if (metrics_) {
    Metrics& m = *metrics_;
    m.describe("v4host_queue_depth_requests", "gauge", "Requests waiting for admission");
    m.describe("v4host_running_sequences", "gauge", "Sequences in the running batch");
    m.describe("v4host_prompt_tokens_total", "counter", "Prompt tokens received");
    m.describe("v4host_prefill_tokens_total", "counter", "Prompt tokens computed (not served from the prefix cache)");
    m.describe("v4host_generated_tokens_total", "counter", "Tokens generated");
    m.describe("v4host_prefix_cache_hit_tokens_total", "counter", "Prompt tokens restored from the prefix cache");
    m.describe("v4host_prefix_cache_lookups_total", "counter", "Prefix cache lookups by result");
    m.describe("v4host_prefix_cache_bytes", "gauge", "Bytes held by the prefix cache");
    m.describe("v4host_kv_bytes", "gauge", "Bytes of per-sequence state in use by cache family");
    m.describe("v4host_kv_budget_bytes", "gauge", "Admission budget for per-sequence state");
    m.describe("v4host_forward_steps_total", "counter", "Batched forward passes");
    m.describe_histogram("v4host_time_to_first_token_seconds", "Time from submission to the first generated token",
                         {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120});
    m.describe_histogram("v4host_inter_token_latency_seconds", "Time between consecutive generated tokens of a request",
                         {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5});
    m.describe_histogram("v4host_batch_size_sequences", "Sequences per forward pass", {1, 2, 4, 8, 16, 32, 64});
    m.describe("v4host_spec_draft_tokens_total", "counter", "Tokens drafted by the speculative drafter (MTP or DSpark)");
    m.describe("v4host_spec_accepted_tokens_total", "counter", "Drafted tokens accepted by verification (exact rejection sampling)");
    m.describe("v4host_spec_verify_steps_total", "counter", "Sequence steps that verified drafts (one batched forward covers all sequences)");
    m.describe("v4host_spec_emitted_tokens_total", "counter", "Tokens emitted by verifying steps (accepted drafts plus the corrected or bonus token)");
    m.describe("v4host_spec_acceptance_ratio", "gauge", "accepted / drafted tokens since start");
    m.describe("v4host_spec_tokens_per_step", "gauge", "emitted tokens / verifying steps since start");
    m.describe("v4host_spec_drafting_sequences", "gauge", "Sequences that drafted in the last step");
    m.set("v4host_kv_budget_bytes", static_cast<double>(opt_.kv_budget));
  }
  thread_ = std::thread([this] { loop(); });
}

Scheduler::~Scheduler() { stop(); }

void Scheduler::stop() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (stop_) return;
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  std::lock_guard<std::mutex> lk(mu_);
  for (auto& [r, h] : queue_) h->finish(FinishReason::Cancelled, "server shutting down");
  queue_.clear();
}

size_t Scheduler::projected_bytes(size_t tokens) const {
  return SequenceState::projected_bytes(eng_.config(), static_cast<int64_t>(tokens));
}

std::shared_ptr<RequestHandle> Scheduler::submit(GenRequest req) {
  const int V = eng_.config().vocab_size;
  if (req.prompt.empty()) throw InputError("the prompt is empty");
  for (int32_t t : req.prompt)
    if (t < 0 || t >= V) throw InputError("prompt token id " + std::to_string(t) + " is outside the vocabulary");
  if (req.max_tokens < 1) throw InputError("max_tokens must be at least 1");
  const size_t total = req.prompt.size() + static_cast<size_t>(req.max_tokens);
  if (static_cast<int64_t>(req.prompt.size()) >= opt_.ctx)
    throw InputError("the prompt has " + std::to_string(req.prompt.size()) + " tokens; this server's context limit (--ctx) is " +
                     std::to_string(opt_.ctx));
  if (static_cast<int64_t>(total) > opt_.ctx)
    req.max_tokens = static_cast<int>(opt_.ctx - static_cast<int64_t>(req.prompt.size()));
  if (projected_bytes(req.prompt.size() + static_cast<size_t>(req.max_tokens)) > opt_.kv_budget)
    throw KvBudgetExceeded("the request needs more KV-state memory (prompt + max_tokens) than the server's --kv-budget allows; "
                           "lower max_tokens or raise --kv-budget");
  if (std::find(req.stop_ids.begin(), req.stop_ids.end(), eng_.config().eos_id) == req.stop_ids.end())
    req.stop_ids.push_back(eng_.config().eos_id);
  auto h = std::make_shared<RequestHandle>();
  h->prompt_tokens = static_cast<int>(req.prompt.size());
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (stop_) throw QueueFull("server is shutting down");
    drop_cancelled_locked();  // clients that left while waiting do not hold queue places
    // The queue limit counts requests waiting beyond the free batch slots: a request that
    // arrives while the loop is mid-step, before it admits the queue into free slots, is not
    // waiting for capacity and must not be refused for it.
    const int free_slots = std::max(0, opt_.max_seqs - static_cast<int>(running_));
    if (static_cast<int>(queue_.size()) >= opt_.queue_limit + free_slots) throw QueueFull("the request queue is full");
    queue_.emplace_back(std::move(req), h);
  }
  if (metrics_) metrics_->inc("v4host_prompt_tokens_total", {}, static_cast<double>(h->prompt_tokens));
  cv_.notify_all();
  return h;
}

void Scheduler::drop_cancelled_locked() {
  for (auto it = queue_.begin(); it != queue_.end();) {
    if (it->second->cancelled()) {
      it->second->finish(FinishReason::Cancelled);
      it = queue_.erase(it);
    } else {
      ++it;
    }
  }
}

size_t Scheduler::queued() const {
  std::lock_guard<std::mutex> lk(mu_);
  return queue_.size();
}
size_t Scheduler::running() const {
  std::lock_guard<std::mutex> lk(mu_);
  return running_;
}
size_t Scheduler::kv_bytes_in_use() const {
  std::lock_guard<std::mutex> lk(mu_);
  return kv_in_use_;
}

void Scheduler::loop() {
  std::vector<std::unique_ptr<Active>> active;
  bool busy = false;
  for (;;) {
    {
      std::unique_lock<std::mutex> lk(mu_);
      const auto has_work = [&] { return stop_ || !queue_.empty() || !active.empty(); };
      if (busy && !has_work()) {
        // Going idle: once the server has stayed idle for a moment, hand freed memory back to
        // the OS, so a long-running server's resident size returns to its baseline between
        // bursts (glibc keeps freed blocks in per-thread arenas otherwise). The moment matters:
        // the last streams' SSE buffers, connections and request state are freed on the HTTP
        // threads just after their sequences finish here, so an immediate trim would miss them.
        busy = false;
        if (!cv_.wait_for(lk, std::chrono::milliseconds(300), has_work)) {
          lk.unlock();
          release_free_memory();
          lk.lock();
        }
      }
      cv_.wait(lk, has_work);
      busy = true;
      if (stop_) break;
      drop_cancelled_locked();
      // Admission: as many queued requests as the batch and the KV budget allow, in order.
      size_t reserved = 0;
      for (auto& a : active) reserved += a->projected;
      while (!queue_.empty() && static_cast<int>(active.size()) < opt_.max_seqs) {
        auto& [req, h] = queue_.front();
        if (h->cancelled()) {
          h->finish(FinishReason::Cancelled);
          queue_.pop_front();
          continue;
        }
        const size_t need = projected_bytes(req.prompt.size() + static_cast<size_t>(req.max_tokens));
        if (!active.empty() && reserved + need > opt_.kv_budget) break;
        auto a = std::make_unique<Active>(std::move(req), h);
        a->projected = need;
        reserved += need;
        queue_.pop_front();
        active.push_back(std::move(a));
      }
      running_ = active.size();  // submit() counts free slots from it
    }
    // Prefix-cache lookups for the newly admitted (outside the queue lock).
    for (auto& a : active) {
      if (a->st) continue;
      a->st = eng_.new_sequence();
      const size_t hit = cache_.lookup(a->req.prompt, a->req.prompt.size() - 1, a->st.get());
      a->consumed = hit;
      a->h->cached_tokens = static_cast<int>(hit);
      if (drafter_ != DrafterKind::None && !a->req.constraint) {
        // Drafting needs the drafter's rows of the prompt's last window, which the prefill
        // below captures; a prefix-cache hit past them only shortens the drafter's first window.
        a->spec = std::make_unique<SpecSequence>(eng_, *a->st, a->req.sampling, opt_.spec_drafts);
        a->spec->set_prompt(a->req.prompt);
        // Greedy requests start from the server's running rate (their output does not depend on
        // when they draft); sampled ones from their own history only, so that a seed gives the
        // same tokens whatever the server served before.
        a->spec_rate = a->req.sampling.temperature <= 0.0f && spec_history_ > 0 ? spec_rate_ : 1.0;
        if (opt_.spec_draft_override) {
          auto hook = opt_.spec_draft_override;
          const std::vector<int32_t>* p = &a->req.prompt;
          a->spec->draft_override = [hook, p](int64_t pos, float* q) { hook(*p, pos, q); };
        }
      }
      if (metrics_) {
        metrics_->inc("v4host_prefix_cache_lookups_total", {{"result", hit ? "hit" : "miss"}});
        metrics_->inc("v4host_prefix_cache_hit_tokens_total", {}, static_cast<double>(hit));
      }
    }
    try {
      step(active);
    } catch (const std::exception& e) {
      // An engine failure ends the affected requests, never the server.
      for (auto& a : active) a->h->finish(FinishReason::Error, e.what());
      active.clear();
    }
    publish_gauges(active);
  }
  for (auto& a : active) a->h->finish(FinishReason::Cancelled, "server shutting down");
}

void Scheduler::publish_gauges(const std::vector<std::unique_ptr<Active>>& active) {
  StateBytes b;
  for (auto& a : active) {
    if (!a->st) continue;
    StateBytes s = a->st->bytes();
    b.window += s.window;
    b.compressed_c4 += s.compressed_c4;
    b.indexer += s.indexer;
    b.compressed_hca += s.compressed_hca;
    b.frontier += s.frontier;
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    running_ = active.size();
    kv_in_use_ = b.total();
  }
  if (!metrics_) return;
  Metrics& m = *metrics_;
  m.set("v4host_running_sequences", static_cast<double>(active.size()));
  m.set("v4host_queue_depth_requests", static_cast<double>(queued()));
  m.set("v4host_kv_bytes", {{"family", "window"}}, static_cast<double>(b.window));
  m.set("v4host_kv_bytes", {{"family", "compressed_c4"}}, static_cast<double>(b.compressed_c4));
  m.set("v4host_kv_bytes", {{"family", "indexer"}}, static_cast<double>(b.indexer));
  m.set("v4host_kv_bytes", {{"family", "compressed_c128"}}, static_cast<double>(b.compressed_hca));
  m.set("v4host_kv_bytes", {{"family", "compressor_frontier"}}, static_cast<double>(b.frontier));
  m.set("v4host_prefix_cache_bytes", static_cast<double>(cache_.bytes()));
}

void Scheduler::step(std::vector<std::unique_ptr<Active>>& active) {
  // Drop cancelled sequences at once: their state is freed here.
  for (auto it = active.begin(); it != active.end();) {
    if ((*it)->h->cancelled()) {
      (*it)->h->finish(FinishReason::Cancelled);
      it = active.erase(it);
    } else {
      ++it;
    }
  }
  if (active.empty()) return;
  const int V = eng_.config().vocab_size;
  std::vector<Segment> segs;
  std::vector<Active*> owners;
  std::vector<char> decoding;
  int budget = std::max(1, opt_.prefill_chunk);
  int drafting = 0;
  // Every drafting sequence's drafter runs in one batched call (MTP head or DSpark blocks).
  {
    std::vector<MtpSegment> mreq;
    std::vector<DSparkDraft> dreq;
    for (auto& ap : active) {
      Active& a = *ap;
      if (a.prefilling() || !a.spec || !a.spec->plan_step(want_draft(a))) continue;
      if (MtpSegment* m = a.spec->mtp_request()) mreq.push_back(*m);
      if (DSparkDraft* d = a.spec->dspark_request()) dreq.push_back(*d);
    }
    if (!mreq.empty()) eng_.forward_mtp(mreq);
    if (!dreq.empty()) eng_.dspark_draft(dreq);
  }
  for (auto& ap : active) {
    Active& a = *ap;
    Segment s;
    s.state = a.st.get();
    if (!a.prefilling() && a.spec) {
      // Pending tokens plus this step's drafts (if any); verified by the shared forward below.
      a.spec->finish_step(s);
      drafting += a.spec->drafted();
      segs.push_back(s);
      owners.push_back(&a);
      decoding.push_back(1);
      continue;
    }
    if (!a.prefilling()) {
      s.tokens = &a.last;
      s.n = 1;
    } else {
      // Prefill up to len-1 first (that state is what the prefix cache stores), then the last
      // prompt token alone, which yields the first logits.
      const size_t len = a.req.prompt.size();
      size_t end = a.consumed < len - 1 ? len - 1 : len;
      if (opt_.snapshot_every > 0 && a.consumed < len - 1) {
        size_t next_snap = (a.consumed / static_cast<size_t>(opt_.snapshot_every) + 1) * static_cast<size_t>(opt_.snapshot_every);
        end = std::min(end, next_snap);
      }
      if (budget <= 0) continue;
      const int n = static_cast<int>(std::min<size_t>(end - a.consumed, static_cast<size_t>(budget)));
      budget -= n;
      s.tokens = a.req.prompt.data() + a.consumed;
      s.n = n;
    }
    const bool yields = !a.prefilling() || a.consumed + static_cast<size_t>(s.n) == a.req.prompt.size();
    if (yields) {
      a.logits.resize(static_cast<size_t>(V));
      s.logits = a.logits.data();
    }
    if (a.prefilling() && a.spec) a.spec->prefill_chunk(s);
    decoding.push_back(!a.prefilling());
    segs.push_back(s);
    owners.push_back(&a);
  }
  if (segs.empty()) return;
  if (metrics_ && drafter_ != DrafterKind::None) metrics_->set("v4host_spec_drafting_sequences", drafting);
  eng_.forward(segs);
  if (metrics_) {
    metrics_->inc("v4host_forward_steps_total");
    metrics_->observe("v4host_batch_size_sequences", static_cast<double>(segs.size()));
  }
  for (size_t i = 0; i < segs.size(); ++i) {
    Active& a = *owners[i];
    if (a.prefilling()) {
      a.consumed += static_cast<size_t>(segs[i].n);
      if (metrics_) metrics_->inc("v4host_prefill_tokens_total", {}, segs[i].n);
      const size_t len = a.req.prompt.size();
      const bool at_snap = opt_.snapshot_every > 0 && a.consumed % static_cast<size_t>(opt_.snapshot_every) == 0;
      if (a.consumed < len && (a.consumed == len - 1 || at_snap)) cache_.insert(a.req.prompt, a.consumed, *a.st, a.req.cache_key);
      if (a.spec) a.spec->prefill_done(segs[i]);
    }
    if (!segs[i].logits) continue;
    if (!a.spec) {
      emit_token(a, segs[i].logits);
    } else if (!decoding[i]) {
      deliver(a, a.spec->first_token(segs[i].logits), segs[i].logits);
    } else {
      int emitted = 0;
      a.spec->end_step([&](int32_t t, const float* row) {
        ++emitted;
        return deliver(a, t, row);
      });
      if (a.spec->last_drafts() > 0 && metrics_) {
        metrics_->inc("v4host_spec_verify_steps_total");
        metrics_->inc("v4host_spec_emitted_tokens_total", {}, emitted);
      }
      spec_done(a);
    }
  }
  // Retire finished sequences.
  for (auto it = active.begin(); it != active.end();) {
    Active& a = **it;
    bool done = false;
    if (!a.prefilling() && a.last >= 0) {
      if (std::find(a.req.stop_ids.begin(), a.req.stop_ids.end(), a.last) != a.req.stop_ids.end()) {
        a.h->finish(FinishReason::Stop);
        done = true;
      } else if (a.generated >= a.req.max_tokens) {
        a.h->finish(FinishReason::Length);
        done = true;
      }
    }
    it = done ? active.erase(it) : it + 1;
  }
}

bool Scheduler::want_draft(Active& a) {
  if (opt_.speculative == SpecMode::On) return true;
  if (a.spec_rate >= opt_.spec_min_acceptance) return true;
  // Auto, not paying lately: an occasional probe keeps the rate current (text gets predictable).
  if (++a.spec_plain >= std::max(1, opt_.spec_probe_every)) {
    a.spec_plain = 0;
    return true;
  }
  return false;
}

void Scheduler::spec_done(Active& a) {
  const int d = a.spec->last_drafts();
  if (d == 0) return;
  const double r = static_cast<double>(a.spec->last_accepted()) / d;
  a.spec_rate = 0.5 * a.spec_rate + 0.5 * r;
  spec_rate_ = spec_history_ > 0 ? 0.95 * spec_rate_ + 0.05 * r : r;
  ++spec_history_;
  if (!metrics_) return;
  Metrics& m = *metrics_;
  m.inc("v4host_spec_draft_tokens_total", {}, d);
  m.inc("v4host_spec_accepted_tokens_total", {}, a.spec->last_accepted());
  const double drafted = m.value("v4host_spec_draft_tokens_total"), steps = m.value("v4host_spec_verify_steps_total");
  m.set("v4host_spec_acceptance_ratio", drafted > 0 ? m.value("v4host_spec_accepted_tokens_total") / drafted : 0);
  m.set("v4host_spec_tokens_per_step", steps > 0 ? m.value("v4host_spec_emitted_tokens_total") / steps : 0);
}

void Scheduler::emit_token(Active& a, const float* logits) {
  const int V = eng_.config().vocab_size;
  std::vector<uint8_t> mask;
  bool masked = false;
  if (a.req.constraint) {
    mask.assign(static_cast<size_t>(V), 0);
    masked = a.req.constraint->mask(mask);
  }
  const int32_t tok = a.sampler.sample(logits, V, masked ? &mask : nullptr);
  if (a.req.constraint) a.req.constraint->accept(tok);
  deliver(a, tok, logits);
}

bool Scheduler::deliver(Active& a, int32_t tok, const float* logits) {
  const int V = eng_.config().vocab_size;
  a.last = tok;
  ++a.generated;
  const auto now = Clock::now();
  if (metrics_) {
    if (a.first_token) metrics_->observe("v4host_time_to_first_token_seconds", std::chrono::duration<double>(now - a.submitted).count());
    else metrics_->observe("v4host_inter_token_latency_seconds", std::chrono::duration<double>(now - a.last_token).count());
    metrics_->inc("v4host_generated_tokens_total");
  }
  a.first_token = false;
  a.last_token = now;
  // The stop token itself is not delivered as output.
  if (std::find(a.req.stop_ids.begin(), a.req.stop_ids.end(), tok) != a.req.stop_ids.end()) return false;
  TokenEvent e;
  e.id = tok;
  if (a.req.top_logprobs >= 0) {
    float mx = -INFINITY;
    for (int v = 0; v < V; ++v) mx = std::max(mx, logits[v]);
    double sum = 0;
    for (int v = 0; v < V; ++v) sum += std::exp(static_cast<double>(logits[v] - mx));
    const float lse = mx + static_cast<float>(std::log(sum));
    e.logprob = logits[tok] - lse;
    if (a.req.top_logprobs > 0) {
      std::vector<int32_t> idx(static_cast<size_t>(V));
      for (int v = 0; v < V; ++v) idx[static_cast<size_t>(v)] = v;
      const int k = std::min(a.req.top_logprobs, V);
      std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int32_t x, int32_t y) { return logits[x] > logits[y]; });
      for (int j = 0; j < k; ++j) e.top.push_back({idx[static_cast<size_t>(j)], logits[idx[static_cast<size_t>(j)]] - lse});
    }
  }
  a.h->push(e);
  return a.generated < a.req.max_tokens;
}

}  // namespace v4
