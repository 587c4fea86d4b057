// Router configuration: upstreams, routes (fallback chains), ordered rules, API keys and teams,
// budgets, residency. Loaded from YAML; every problem is a ConfigError naming the field and the
// line (from yaml-cpp's marks), and the CLI exits 2 on it.
//
// Residency is checked at load: for every principal (API key or team) that declares the labels its
// data may go to, every route it can reach (its own route list, or every route a rule or alias can
// send it to, plus cost-cap "cheaper" routes) must contain only upstreams carrying one of those
// labels; likewise a route's own `residency` list. The offending chain is named in the error.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <regex>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "router/balance.h"

namespace v4::router {

struct ConfigError : InputError {
  using InputError::InputError;
};

enum class UpstreamKind { V4Host, Vllm, Sglang, OpenAI, Anthropic, DeepSeek };
// How an upstream switches V4's reasoning on and off.
enum class ReasoningDialect {
  Thinking,            // hosted DeepSeek: "thinking": {"type": "enabled"|"disabled"}
  ChatTemplateKwargs,  // vLLM / SGLang: "chat_template_kwargs": {"thinking": bool}
  ReasoningEffort,     // OpenAI style: "reasoning_effort": "high"|...; v4host serve understands it
  None,                // leave the request as the client sent it
};
// The wire API the upstream speaks.
enum class WireApi { OpenAIChat, AnthropicMessages };

const char* kind_name(UpstreamKind k);
const char* dialect_name(ReasoningDialect d);

// A price list valid from a date (UTC, inclusive). Prices in USD per million tokens.
struct TariffEntry {
  std::string from;  // YYYY-MM-DD
  double input = 0, cached_input = 0, output = 0;
  // Optional off-peak window (UTC minutes of day, may wrap midnight) with its own prices.
  bool has_off_peak = false;
  int off_start_min = 0, off_end_min = 0;
  double off_input = 0, off_cached_input = 0, off_output = 0;
};

struct Cost {
  std::vector<TariffEntry> tariff;  // sorted by `from`; empty = no per-token price
  double amortised_per_hour = 0;    // self-hosted: USD per hour of the machine, shared by busy time
  bool priced() const { return !tariff.empty(); }
};

struct Timeouts {
  double connect_s = 5, first_token_s = 60, total_s = 600;
};

struct HealthCheck {
  std::string path;        // "" = default for the kind (/health for v4host, /health for vLLM/SGLang)
  double interval_s = 5;   // 0 = no active checks
  std::string metrics_path;  // where queue depth is read from (default /metrics)
};

struct Upstream {
  std::string name;
  UpstreamKind kind = UpstreamKind::OpenAI;
  std::string base_url;       // e.g. http://127.0.0.1:8000/v1 or https://api.deepseek.com
  std::string api_key_env;    // environment variable holding the key ("" = none)
  std::string model;          // model name sent upstream ("" = the client's)
  ReasoningDialect dialect = ReasoningDialect::None;
  bool echo_reasoning_content = false;  // the upstream demands reasoning_content on tool turns
  WireApi api = WireApi::OpenAIChat;
  Timeouts timeouts;
  int concurrency = 256;      // in-flight requests at most; beyond: next hop ("concurrency" reason)
  std::string residency;      // label, e.g. "on-prem", "eu", "cn"
  Cost cost;
  int64_t max_output_tokens = 8192;  // assumed max output for the cost cap when a request sets none
  HealthCheck health;
  int line = 0;
};

// A verifier run on a finished answer; failure moves to the next hop of the chain.
struct Verifier {
  enum Kind { JsonSchema, ToolArgs, NonEmpty, Regex, Command } kind = NonEmpty;
  std::string pattern;               // Regex: PCRE2 pattern the answer text must match
  std::vector<std::string> command;  // Command: argv; request+answer JSON on stdin; exit 0 accepts
  double timeout_s = 10;
  std::string describe() const;
};

enum class StreamMode {
  Buffer,     // hold the whole answer until verified, then send it (as a stream if asked)
  FirstByte,  // stream through; fall back only before the first byte reached the client
};

struct Budget {
  double day_usd = 0, month_usd = 0;  // 0 = no limit
  bool any() const { return day_usd > 0 || month_usd > 0; }
};

struct Retry {
  int attempts = 1;          // tries per hop (1 = no retry)
  double backoff_s = 0.1;    // first backoff; doubles, with full jitter
  double max_backoff_s = 2;  // cap, also the cap on a Retry-After we are willing to honour
};

struct Route {
  std::string name;                 // the alias clients send as "model"
  std::vector<std::string> chain;   // upstream names in order
  // Replica groups in `chain` (written as nested lists): [begin, end) index ranges whose members
  // each request orders by `balance` (router/balance.h) before the hops are tried.
  std::vector<std::pair<size_t, size_t>> groups;
  Balance balance;
  StreamMode stream = StreamMode::Buffer;
  std::vector<Verifier> verify;
  std::vector<std::string> residency;  // allowed labels ("" list = any)
  double cost_cap_usd = 0;             // 0 = none
  std::string over_cap_route;          // "" = refuse (402-style 400), else route to this cheaper one
  Budget budget;
  Retry retry;
  int line = 0;
};

struct Match {
  std::optional<std::string> model;          // alias / model name the client sent
  std::optional<bool> tools;                 // request carries tools
  std::optional<bool> images;                // request carries image parts
  std::vector<std::string> reasoning_effort; // any of
  int64_t prompt_tokens_over = -1;           // V4-tokenizer count of the prompt text
  std::map<std::string, std::string> headers;  // header (lower case) -> exact value
  std::optional<std::string> tag;            // x-v4host-tag header or metadata.tag
  std::optional<std::string> key;            // API key name
  std::optional<std::string> team;
};

struct Classifier {
  std::vector<std::string> command;  // prints {"route": "..."} (or a bare route name) for the request on stdin
  std::string url;                   // or POST the request there, answer {"route": "..."}
  double timeout_s = 1;
};

struct Overflow {
  std::string upstream;          // the local upstream whose pressure is watched
  double queue_depth_over = -1;  // waiting requests
  double ttft_over_s = -1;       // predicted time to first token
};

struct Rule {
  Match match;
  std::optional<Classifier> classifier;
  std::optional<Overflow> overflow;
  std::string route;  // target (for a classifier: the default when it answers nothing usable)
  int line = 0;
  std::string describe() const;
};

struct Principal {  // an API key or a team
  std::string name;
  std::string team;                    // keys only
  std::string key_env;                 // keys: env var with the key's secret
  std::string key_sha256;              // keys: or its SHA-256 hex
  std::vector<std::string> residency;  // allowed labels (empty = any)
  std::vector<std::string> routes;     // allowed routes (empty = any)
  Budget budget;
  int line = 0;
};

struct Config {
  std::string host = "127.0.0.1";
  int port = 8080;
  std::string ledger = "v4host-ledger.db";
  std::string tokenizer;        // tokenizer.json for prompt-token counts ("" = bytes/4 estimate)
  std::string access_log;       // "" = stderr, "-" = off, else a file
  bool log_prompts = false;
  bool require_key = false;     // requests without a known key get 401
  std::string default_route;
  std::vector<Upstream> upstreams;
  std::vector<Route> routes;
  std::vector<Rule> rules;
  std::vector<Principal> keys, teams;

  const Upstream* upstream(const std::string& n) const;
  const Route* route(const std::string& n) const;
  const Principal* team(const std::string& n) const;
  const Principal* key(const std::string& n) const;
};

// Parses and validates; throws ConfigError("FILE:LINE: field: problem").
Config load_config_file(const std::string& path);
Config load_config_text(const std::string& yaml, const std::string& name = "<config>");

// Every resolved chain, human-readable (for --check-config).
std::string describe_config(const Config& c);

// Duration "500ms", "2s", "1.5m", "1h" or a number of seconds; -1 on a bad value.
double parse_duration(const std::string& s);

}  // namespace v4::router
