// The continuous-batching scheduler: one thread owns the engine and runs every active sequence
// through shared forward passes — all decoding sequences advance one token per step while
// prompts are prefilled in bounded chunks alongside them, so a long prompt never stalls other
// users. Admission is controlled by a KV-state byte budget (requests wait in a bounded queue or
// are refused), cancelled requests are freed at the next step, and prompts are looked up in
// the exact prefix cache.
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "engine/engine.h"
#include "engine/sampler.h"
#include "engine/speculative.h"
#include "core/prometheus.h"
#include "sched/prefix_cache.h"

namespace v4 {

// Follows the tokens of one request and restricts the next one (constrained decoding).
struct TokenConstraint {
  virtual ~TokenConstraint() = default;
  // Marks allowed tokens in `allowed` (sized to the vocabulary); false = no restriction now.
  virtual bool mask(std::vector<uint8_t>& allowed) = 0;
  virtual void accept(int32_t token) = 0;
};

struct GenRequest {
  std::vector<int32_t> prompt;
  int max_tokens = 256;
  SamplingParams sampling;
  std::vector<int32_t> stop_ids;   // finish (reason stop) when sampled; EOS is always one
  int top_logprobs = -1;           // -1: no logprobs; 0..20: chosen token (+ top N)
  std::shared_ptr<TokenConstraint> constraint;
  // The client's prompt_cache_key ("" = none): the prefix cache shares its budget fairly
  // between keys (sched/prefix_cache.h). Never changes what is computed.
  std::string cache_key;
};

struct TokenEvent {
  int32_t id = 0;
  float logprob = 0;
  std::vector<std::pair<int32_t, float>> top;
};

enum class FinishReason { None, Stop, Length, Cancelled, Error };
const char* finish_reason_name(FinishReason r);

class RequestHandle {
 public:
  // Waits up to `timeout` for new tokens and appends them to `out`. Returns true once the
  // request has finished and every token has been delivered.
  bool poll(std::vector<TokenEvent>& out, std::chrono::milliseconds timeout);
  void cancel();
  bool cancelled() const;
  // `fn` runs after each new token and when the request finishes — on the scheduler thread,
  // outside the handle's lock, so it must only hand the work elsewhere (post a task). If tokens
  // are already waiting or the request has finished, it also runs once at once. Lets a server
  // deliver tokens without a thread blocked in poll() per request. An empty `fn` removes it.
  void on_event(std::function<void()> fn);

  // Valid after poll() returned true.
  FinishReason finish_reason() const;
  std::string error() const;
  int prompt_tokens = 0;
  int cached_tokens = 0;
  int completion_tokens() const;

 private:
  friend class Scheduler;
  void push(const TokenEvent& e);
  void finish(FinishReason r, const std::string& err = "");
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<TokenEvent> events_;
  int emitted_ = 0;
  bool finished_ = false, cancelled_ = false;
  FinishReason reason_ = FinishReason::None;
  std::string error_;
  std::shared_ptr<std::function<void()>> notify_;
};

// Speculative decoding in the batches (per request; engine/speculative.h): off; on (every
// eligible request drafts every step); auto (a request drafts while its running acceptance
// makes it pay, probing now and then otherwise; new requests start from the server's rate).
enum class SpecMode { Off, On, Auto };
bool parse_spec_mode(const std::string& s, SpecMode* out);
const char* spec_mode_name(SpecMode m);

struct SchedulerOptions {
  int max_seqs = 16;                  // sequences decoded together
  size_t kv_budget = size_t(4) << 30; // bytes of per-sequence state across active sequences
  int64_t ctx = 65536;                // max tokens per sequence (prompt + completion)
  int prefill_chunk = 256;            // prompt tokens per step across all prefilling sequences
  int queue_limit = 64;               // requests waiting beyond the free batch slots at which submit() refuses
  size_t prefix_cache_bytes = size_t(1) << 30;
  int snapshot_every = 512;           // also cache long prompts at these boundaries
  SpecMode speculative = SpecMode::Off; // needs a drafter in the weights (else off)
  int spec_drafts = 0;                // drafts per step (0 = the drafter's own: MTP 1, DSpark its block)
  double spec_min_acceptance = 0.25;  // auto: a request drafts while its running acceptance is above this
  int spec_probe_every = 64;          // auto: plain steps between probing drafts
  // Tests: replaces a request's draft logits (its prompt, the drafted position, the logits row).
  std::function<void(const std::vector<int32_t>&, int64_t, float*)> spec_draft_override;
};

// Thrown by submit() when a request could never fit the --kv-budget (a 400 for the client).
struct KvBudgetExceeded : InputError {
  using InputError::InputError;
};

// Thrown by submit() when the queue is full: the HTTP layer answers 429 with Retry-After.
struct QueueFull : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Scheduler {
 public:
  Scheduler(Engine& engine, const SchedulerOptions& opt, Metrics* metrics);
  ~Scheduler();
  // Validates and enqueues; throws InputError (bad request) or QueueFull.
  std::shared_ptr<RequestHandle> submit(GenRequest req);
  void stop();

  const SchedulerOptions& options() const { return opt_; }
  // The drafter the batches speculate with (None when speculation is off or there is none).
  DrafterKind drafter() const { return drafter_; }
  const Engine& engine() const { return eng_; }
  size_t queued() const;
  size_t running() const;
  size_t kv_bytes_in_use() const;
  size_t projected_bytes(size_t tokens) const;

 private:
  struct Active;
  void loop();
  void step(std::vector<std::unique_ptr<Active>>& active);
  void emit_token(Active& a, const float* logits);
  // Delivers a chosen token (stop / length bookkeeping, metrics, logprobs from `logits`);
  // returns false once the request is finished.
  bool deliver(Active& a, int32_t tok, const float* logits);
  bool want_draft(Active& a);
  void spec_done(Active& a);
  void publish_gauges(const std::vector<std::unique_ptr<Active>>& active);
  void drop_cancelled_locked();  // finishes queued requests whose client has gone (mu_ held)

  Engine& eng_;
  SchedulerOptions opt_;
  Metrics* metrics_;
  PrefixCache cache_;
  DrafterKind drafter_ = DrafterKind::None;
  double spec_rate_ = 1.0;      // server-wide running acceptance (auto mode's start for new requests)
  int64_t spec_history_ = 0;    // drafting steps behind spec_rate_
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<GenRequest, std::shared_ptr<RequestHandle>>> queue_;
  size_t running_ = 0, kv_in_use_ = 0;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace v4
