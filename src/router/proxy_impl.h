// Inside the router's HTTP front (router/proxy.h): the state of one request in flight and of the
// proxy, shared by the files that implement it. proxy.cpp: set-up, the HTTP routes, health checks;
// proxy_request.cpp: the way in (key, parse, rules, plan); proxy_hop.cpp: upstream attempts,
// timeouts and fallback; proxy_stream.cpp: upstream frames on their way to the client;
// proxy_finish.cpp: ledger, metrics and the response's end. Not a public header.
#pragma once

#include "router/proxy.h"

#include <openssl/sha.h>
#include <pthread.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <random>
#include <set>
#include <thread>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <fmt/format.h>

#include "core/thread_priority.h"
#include "net/http_server.h"
#include "protocol/protocol.h"
#include "router/balance.h"
#include "router/cost.h"
#include "router/fast_chat.h"
#include "router/ledger.h"
#include "core/prometheus.h"
#include "router/rules.h"
#include "router/upstream.h"
#include "router/upstream_client.h"
#include "router/verify.h"
#include "text/tokenizer.h"

namespace v4::router {

namespace asio = boost::asio;
using protocol::Dialect;
using protocol::ojson;
using SClock = std::chrono::steady_clock;

// Helpers shared by the proxy's files (defined in proxy.cpp).
namespace proxy_detail {
double since_ms(SClock::time_point t0);
std::string sha256_hex(const std::string& s);
std::string random_id();
// An error body in the client's dialect.
std::string error_body(Dialect d, int status, const std::string& msg, const std::string& code, const std::string& param = "");
// The message of an upstream's JSON error body (OpenAI or Anthropic shape), or the raw start.
std::string upstream_error_message(const std::string& body);
// Retry-After in seconds (delta-seconds form; an HTTP date is treated as unknown), -1 if absent.
double retry_after_s(const HeaderList& h);
}  // namespace proxy_detail
using namespace proxy_detail;

// One upstream I/O thread: its own io_context, HTTP client (and connection pool) and RNG. An
// exchange is pinned to one shard for its whole life, so its state needs no lock; exchanges are
// spread over the shards round-robin, so upstream I/O uses every core, not one thread.
struct Shard {
  asio::io_context io{1};
  asio::executor_work_guard<asio::io_context::executor_type> guard{io.get_executor()};
  std::unique_ptr<UpClient> client;
  std::mt19937_64 rng{std::random_device{}()};
  std::thread th;
  Shard() : client(std::make_unique<UpClient>(io)) {}
};

// One client request in flight. Touched only on its shard's thread.
struct Exchange {
  Shard* shard = nullptr;
  std::shared_ptr<net::Reply> reply;
  Dialect dialect = Dialect::ChatCompletions;
  std::string raw_body;  // as the client sent it: a plain Chat Completions body is edited, not re-emitted
  ojson body;
  protocol::Request req;
  std::string client_model;
  const Route* route = nullptr;
  std::string route_why;
  std::string session_header;  // `session_id` / `x-session-id`, read only when a route has replica groups
  double max_cost_usd = 0;     // the client's own cap per request (x-v4host-max-cost), 0 = none
  const Principal* key = nullptr;
  const Principal* team = nullptr;
  Features features;
  RequestRecord rec;
  SClock::time_point t0;
  std::vector<UpstreamState*> plan;
  size_t next = 0;
  int attempt = 0;
  // Current hop.
  UpstreamState* up = nullptr;
  std::shared_ptr<UpCancel> handle;
  std::unique_ptr<asio::steady_timer> idle_timer, total_timer, backoff_timer;
  SClock::time_point idle_deadline{};
  bool idle_armed = false;
  uint64_t hop_gen = 0;
  std::unique_ptr<protocol::StreamReader> reader;
  protocol::SseDecoder decoder;
  protocol::ResponseAccumulator acc;
  std::vector<protocol::StreamEvent> events;  // held until commit (buffer mode: until verified)
  int up_status = 0;
  std::string up_error_body;
  HeaderList up_headers;
  bool got_token = false, timed_out = false, garbage = false, cancelled_by_client = false;
  std::string garbage_msg, hop_note;
  SClock::time_point hop_t0;
  int hop_sharing = 1;
  // Passthrough (same dialect, first_byte, no verifiers, no tools): upstream frames go to the
  // client as they are; only the frames carrying the finish, usage or an error are parsed.
  bool passthrough = false, saw_done = false, pt_error = false;
  std::vector<std::string> held, tail;  // before the first token / the end, held until commit
  std::string outbuf;                   // frames of the current upstream read, written at once
  std::string pt_buf;                   // an incomplete event of the upstream stream (raw bytes)
  bool pt_raw = true;                   // events are split on raw bytes (false once a CR line end shows up)
  // Chat Completions upstream: plain delta frames are read with a SAX scan, the rest by `reader`.
  bool fast_chat = false, reader_started = false;
  fastchat::Delta delta;
  // Non-streaming client, Chat Completions upstream: the whole stream is read by the lean reader
  // (no JSON document at all) unless a frame it does not handle shows up; then the frames so far
  // are replayed into the protocol reader.
  bool lean_on = false;
  fastchat::LeanReader lean;
  std::vector<std::string> lean_frames;
  std::vector<protocol::StreamEvent> lean_events;
  protocol::Usage pt_usage;
  std::string pt_error_msg;
  // Client side.
  bool committed = false, finished = false, client_gone = false;
  std::shared_ptr<net::Stream> stream;
  std::unique_ptr<protocol::StreamWriter> writer;
  double ttft_ms = 0;
  bool ttft_unobserved = false;  // committed; the TTFT histogram not yet updated (observe_ttft)
  // Budget reservation: the worst case of the planned priced hops, held against each budgeted
  // scope (key, team, route) from planning until the ledger has the actual cost.
  double reserved_usd = 0;
  std::vector<std::string> reserved_in;
  // Last failure, for the answer when every hop failed.
  int fail_status = 502;
  std::string fail_msg = "no upstream answered", fail_code = "upstream_error";
  double fail_retry_after = -1;
};

struct Proxy::Impl : std::enable_shared_from_this<Proxy::Impl> {
  Config cfg;
  const text::Tokenizer* tok;
  ProxyOptions opt;
  Metrics metrics;
  std::unique_ptr<Ledger> ledger;
  std::vector<std::unique_ptr<Shard>> shards;
  std::atomic<size_t> next_shard{0};
  bool shared_loops = true;
  asio::thread_pool blocking{4};
  std::unique_ptr<net::HttpServer> server;
  std::vector<std::unique_ptr<UpstreamState>> states;
  std::vector<std::unique_ptr<asio::steady_timer>> health_timers;
  ReasoningMemo memo;
  std::map<std::string, const Principal*> key_by_secret;  // env keys
  std::map<std::string, const Principal*> key_by_hash;
  bool has_classifier = false;
  std::set<std::string> rule_headers;  // lower-case header names some rule matches on
  bool any_groups = false;             // some route's chain holds a replica group
  FILE* access = nullptr;
  std::mutex access_mu;
  std::atomic<bool> realtime_ok{true};  // every loop thread got SCHED_FIFO (io_realtime)
  std::atomic<bool> stopping{false};
  // In-flight budget reservations by scope ("k|name", "t|name", "r|name"): checked and taken under
  // one lock, so concurrent requests cannot together spend past a budget.
  std::mutex reserve_mu;
  std::map<std::string, double> reserved;

  Impl(Config c, const text::Tokenizer* t, ProxyOptions o) : cfg(std::move(c)), tok(t), opt(o) {}

  UpstreamState* state(const std::string& name);
  void init();
  void describe_metrics();
  // ---------------------------------------------------------------- HTTP front
  void register_routes();
  void health(net::Reply& res);
  void refresh_gauges();
  // The client's key: Authorization: Bearer / x-api-key. Returns false (and answers 401) when the
  // config requires a known key and this is not one.
  bool authorize(const net::Request& req, net::Reply& res, Dialect d, const Principal** out = nullptr);
  void bad_request(net::Reply& res, Dialect d, int status, const std::string& msg, const std::string& param = "",
                   const std::string& code = "invalid_request_error");
  void generate(Dialect d, const net::Request& hreq, net::Reply& res);
  void decide(Exchange& ex);
  // ---------------------------------------------------------------- planning
  void skip(Exchange& ex, const Upstream& u, const std::string& outcome, const std::string& detail);
  // Residency allowed for this request: the key's, its team's and the route's labels together.
  bool residency_ok(const Exchange& ex, const Upstream& u);
  static std::string scope_key(Ledger::Scope s, const std::string& name);
  bool has_budget(const Exchange& ex) const;
  // "" when every budget of this request can take `worst` more on top of what is spent and what
  // requests in flight have reserved, else why not. Called with reserve_mu held.
  std::string budget_block(const Exchange& ex, std::time_t now, double worst);
  // Called with reserve_mu held, once the plan is made.
  void reserve(Exchange& ex, double usd);
  // After the ledger has the request's actual cost (Ledger::record adds it to the sums at once).
  void release(Exchange& ex);
  void start(const std::shared_ptr<Exchange>& ex);
  // The route's chain with each replica group ordered for this request (router/balance.h).
  std::vector<std::string> order_chain(Exchange& ex);
  // ---------------------------------------------------------------- hops
  void try_next(const std::shared_ptr<Exchange>& ex);
  void launch(const std::shared_ptr<Exchange>& ex, UpstreamState* s);
  // A hop that sends nothing for first_token seconds (before the first token, or between pieces
  // after it) is cancelled as timed out: a hang is found without waiting for the total limit.
  // The deadline moves with every piece; the timer is re-armed only when it fires early (one
  // wait per silence, not a cancel and a new wait per piece).
  void arm_idle(const std::shared_ptr<Exchange>& ex, double seconds);
  void wait_idle(const std::shared_ptr<Exchange>& ex, uint64_t gen);
  void on_piece(const std::shared_ptr<Exchange>& ex, std::string_view piece);
  // One upstream frame into events: a plain Chat Completions delta by the SAX scan, anything else
  // (and the first frame, which starts the reader) by the protocol layer's reader.
  void read_frame(const std::shared_ptr<Exchange>& ex, const protocol::SseFrame& f);
  void flush_out(const std::shared_ptr<Exchange>& ex);
  void pt_piece(const std::shared_ptr<Exchange>& ex, std::string_view piece);
  // Splits the upstream's bytes into events without decoding them: a plain `data:` event is
  // forwarded as the bytes that came (byte-exact), the rest goes through the SSE decoder.
  void pt_frames(const std::shared_ptr<Exchange>& ex, std::string_view piece);
  void pt_decoded(const std::shared_ptr<Exchange>& ex, std::string_view bytes);
  // One event of a passed-through stream: `raw` its bytes, `data` its payload. Only the frames
  // that may carry the finish, the usage or an error are parsed.
  void pt_frame(const std::shared_ptr<Exchange>& ex, std::string_view raw, std::string_view data);
  void pt_token_frame(const std::shared_ptr<Exchange>& ex, std::string_view raw, std::string_view data);
  void pt_write(const std::shared_ptr<Exchange>& ex, std::string_view bytes);
  std::unique_ptr<protocol::StreamWriter> make_writer(const Exchange& ex);
  void observe_ttft(Exchange& ex);
  static bool is_token(const protocol::StreamEvent& e);
  void on_event(const std::shared_ptr<Exchange>& ex, protocol::StreamEvent ev);
  // Starts the client's stream (status and headers go out).
  void commit_stream(const std::shared_ptr<Exchange>& ex);
  // Appends the event's frames to the pending output (flush_out writes it).
  void write_event(const std::shared_ptr<Exchange>& ex, const protocol::StreamEvent& e);
  void on_hop_done(const std::shared_ptr<Exchange>& ex, UpResult&& resp);
  void after_verify(const std::shared_ptr<Exchange>& ex, HopRecord hop, const Verdict& v);
  void record_hop(const std::shared_ptr<Exchange>& ex, const HopRecord& hop, const std::string& outcome);
  void remember_failure(const std::shared_ptr<Exchange>& ex, const std::string& outcome, const std::string& detail, double retry_after);
  // ---------------------------------------------------------------- endings
  void fill_record(const std::shared_ptr<Exchange>& ex, int status, const std::string& outcome);
  // Metrics now; the access log line is returned for the ledger thread to write ("" = no log).
  std::string observe_end(const std::shared_ptr<Exchange>& ex);
  // Ledger first, then the final bytes (from the commit's completion). The access log line is
  // written there too, on the ledger's thread: still before the final bytes, but a log write
  // that blocks (a full pipe, a slow disk) no longer stalls the event loop and its streams.
  void commit_then(const std::shared_ptr<Exchange>& ex, std::function<void()> send);
  void refuse(const std::shared_ptr<Exchange>& ex, int status, const std::string& msg, const std::string& code, const std::string& outcome);
  void fail_all(const std::shared_ptr<Exchange>& ex);
  void finish_gone(const std::shared_ptr<Exchange>& ex);
  // A passed-through stream broke after its first byte: end it with the dialect's error event.
  void finish_broken(const std::shared_ptr<Exchange>& ex, const std::string& why);
  void finish_ok(const std::shared_ptr<Exchange>& ex);
  // ---------------------------------------------------------------- health checks
  void start_health_checks();
  void poll(UpstreamState* s, asio::steady_timer* timer);
};

}  // namespace v4::router
