#include "router/config.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "router/verify.h"

namespace v4::router {

const char* kind_name(UpstreamKind k) {
  switch (k) {
    case UpstreamKind::V4Host: return "v4host";
    case UpstreamKind::Vllm: return "vllm";
    case UpstreamKind::Sglang: return "sglang";
    case UpstreamKind::OpenAI: return "openai";
    case UpstreamKind::Anthropic: return "anthropic";
    case UpstreamKind::DeepSeek: return "deepseek";
  }
  return "?";
}

const char* dialect_name(ReasoningDialect d) {
  switch (d) {
    case ReasoningDialect::Thinking: return "thinking";
    case ReasoningDialect::ChatTemplateKwargs: return "chat_template_kwargs";
    case ReasoningDialect::ReasoningEffort: return "reasoning_effort";
    case ReasoningDialect::None: return "none";
  }
  return "?";
}

double parse_duration(const std::string& s) {
  if (s.empty()) return -1;
  size_t pos = 0;
  double x;
  try {
    x = std::stod(s, &pos);
  } catch (const std::exception&) {
    return -1;
  }
  std::string u = s.substr(pos);
  double mul = 1;
  if (u == "ms") mul = 1e-3;
  else if (u == "s" || u.empty()) mul = 1;
  else if (u == "m" || u == "min") mul = 60;
  else if (u == "h") mul = 3600;
  else return -1;
  if (!(x >= 0) || !std::isfinite(x)) return -1;
  return x * mul;
}

namespace {

struct Ctx {
  std::string file;
  [[noreturn]] void fail(const YAML::Node& n, const std::string& field, const std::string& msg) const {
    int line = n.IsDefined() && n.Mark().line >= 0 ? n.Mark().line + 1 : 0;
    if (line > 0) throw ConfigError(fmt::format("{}:{}: {}: {}", file, line, field, msg));
    throw ConfigError(fmt::format("{}: {}: {}", file, field, msg));
  }
  [[noreturn]] void fail_line(int line, const std::string& field, const std::string& msg) const {
    throw ConfigError(fmt::format("{}:{}: {}: {}", file, line, field, msg));
  }
  // Refuse unknown keys (a typo silently ignored is a routing bug waiting to happen).
  void only(const YAML::Node& m, const std::string& where, std::initializer_list<const char*> keys) const {
    if (!m.IsMap()) fail(m, where, "expected a mapping");
    for (auto it = m.begin(); it != m.end(); ++it) {
      std::string k = it->first.as<std::string>();
      bool ok = false;
      for (const char* a : keys) ok = ok || k == a;
      if (!ok) {
        std::string list;
        for (const char* a : keys) list += std::string(list.empty() ? "" : ", ") + a;
        fail(it->first, where + "." + k, "unknown field (expected one of: " + list + ")");
      }
    }
  }
  std::string str(const YAML::Node& n, const std::string& field) const {
    if (!n.IsScalar()) fail(n, field, "expected a string");
    return n.as<std::string>();
  }
  double num(const YAML::Node& n, const std::string& field, double lo = 0) const {
    if (!n.IsScalar()) fail(n, field, "expected a number");
    double v;
    try {
      v = n.as<double>();
    } catch (const YAML::Exception&) {
      fail(n, field, "expected a number, got '" + n.as<std::string>() + "'");
    }
    if (!std::isfinite(v) || v < lo) fail(n, field, fmt::format("must be a number >= {}", lo));
    return v;
  }
  int64_t integer(const YAML::Node& n, const std::string& field, int64_t lo) const {
    if (!n.IsScalar()) fail(n, field, "expected an integer");
    int64_t v;
    try {
      v = n.as<int64_t>();
    } catch (const YAML::Exception&) {
      fail(n, field, "expected an integer, got '" + n.as<std::string>() + "'");
    }
    if (v < lo) fail(n, field, fmt::format("must be >= {}", lo));
    return v;
  }
  bool boolean(const YAML::Node& n, const std::string& field) const {
    if (!n.IsScalar()) fail(n, field, "expected true or false");
    try {
      return n.as<bool>();
    } catch (const YAML::Exception&) {
      fail(n, field, "expected true or false, got '" + n.as<std::string>() + "'");
    }
  }
  double duration(const YAML::Node& n, const std::string& field) const {
    if (!n.IsScalar()) fail(n, field, "expected a duration such as 500ms, 2s, 1m");
    double d = parse_duration(n.as<std::string>());
    if (d < 0) fail(n, field, "expected a duration such as 500ms, 2s, 1m, got '" + n.as<std::string>() + "'");
    return d;
  }
  std::vector<std::string> strings(const YAML::Node& n, const std::string& field) const {
    std::vector<std::string> out;
    if (n.IsScalar()) {
      out.push_back(n.as<std::string>());
      return out;
    }
    if (!n.IsSequence()) fail(n, field, "expected a list of strings");
    for (size_t i = 0; i < n.size(); ++i) out.push_back(str(n[i], fmt::format("{}[{}]", field, i)));
    return out;
  }
};

int line_of(const YAML::Node& n) { return n.Mark().line >= 0 ? n.Mark().line + 1 : 0; }

bool valid_date(const std::string& d) {
  if (d.size() != 10 || d[4] != '-' || d[7] != '-') return false;
  for (int i : {0, 1, 2, 3, 5, 6, 8, 9})
    if (d[i] < '0' || d[i] > '9') return false;
  int m = std::stoi(d.substr(5, 2)), day = std::stoi(d.substr(8, 2));
  return m >= 1 && m <= 12 && day >= 1 && day <= 31;
}

// "16:30" -> minutes; -1 if bad.
int parse_hhmm(const std::string& s) {
  if (s.size() != 5 || s[2] != ':') return -1;
  for (int i : {0, 1, 3, 4})
    if (s[i] < '0' || s[i] > '9') return -1;
  int h = std::stoi(s.substr(0, 2)), m = std::stoi(s.substr(3, 2));
  if (h > 24 || m > 59 || (h == 24 && m != 0)) return -1;
  return h * 60 + m;
}

Budget parse_budget(const Ctx& c, const YAML::Node& n, const std::string& where) {
  c.only(n, where, {"day", "month"});
  Budget b;
  if (n["day"]) b.day_usd = c.num(n["day"], where + ".day");
  if (n["month"]) b.month_usd = c.num(n["month"], where + ".month");
  return b;
}

Cost parse_cost(const Ctx& c, const YAML::Node& n, const std::string& where) {
  c.only(n, where, {"tariff", "amortised_per_hour"});
  Cost cost;
  if (n["amortised_per_hour"]) cost.amortised_per_hour = c.num(n["amortised_per_hour"], where + ".amortised_per_hour");
  if (auto t = n["tariff"]) {
    if (!t.IsSequence() || t.size() == 0) c.fail(t, where + ".tariff", "expected a non-empty list of {from, input, cached_input, output}");
    for (size_t i = 0; i < t.size(); ++i) {
      std::string w = fmt::format("{}.tariff[{}]", where, i);
      const YAML::Node e = t[i];
      c.only(e, w, {"from", "input", "cached_input", "output", "off_peak"});
      TariffEntry te;
      if (!e["from"]) c.fail(e, w + ".from", "required (YYYY-MM-DD, the date the prices apply from)");
      te.from = c.str(e["from"], w + ".from");
      if (!valid_date(te.from)) c.fail(e["from"], w + ".from", "expected a date YYYY-MM-DD, got '" + te.from + "'");
      if (!e["input"] || !e["output"]) c.fail(e, w, "input and output prices (USD per million tokens) are required");
      te.input = c.num(e["input"], w + ".input");
      te.output = c.num(e["output"], w + ".output");
      te.cached_input = e["cached_input"] ? c.num(e["cached_input"], w + ".cached_input") : te.input;
      if (auto op = e["off_peak"]) {
        std::string ow = w + ".off_peak";
        c.only(op, ow, {"window", "input", "cached_input", "output"});
        if (!op["window"]) c.fail(op, ow + ".window", "required, e.g. \"16:30-00:30\" (UTC)");
        std::string win = c.str(op["window"], ow + ".window");
        auto dash = win.find('-');
        int a = dash == std::string::npos ? -1 : parse_hhmm(win.substr(0, dash));
        int b = dash == std::string::npos ? -1 : parse_hhmm(win.substr(dash + 1));
        if (a < 0 || b < 0 || a == b) c.fail(op["window"], ow + ".window", "expected HH:MM-HH:MM (UTC), got '" + win + "'");
        te.has_off_peak = true;
        te.off_start_min = a;
        te.off_end_min = b;
        te.off_input = op["input"] ? c.num(op["input"], ow + ".input") : te.input;
        te.off_output = op["output"] ? c.num(op["output"], ow + ".output") : te.output;
        te.off_cached_input = op["cached_input"] ? c.num(op["cached_input"], ow + ".cached_input") : te.cached_input;
      }
      if (!cost.tariff.empty() && te.from <= cost.tariff.back().from)
        c.fail(e["from"], w + ".from", "tariff entries must be in increasing date order");
      cost.tariff.push_back(te);
    }
  }
  return cost;
}

Upstream parse_upstream(const Ctx& c, const std::string& name, const YAML::Node& n) {
  std::string w = "upstreams." + name;
  c.only(n, w, {"kind", "base_url", "api_key_env", "model", "dialect", "echo_reasoning_content", "timeouts",
                "concurrency", "residency", "cost", "max_output_tokens", "health"});
  Upstream u;
  u.name = name;
  u.line = line_of(n);
  if (!n["kind"]) c.fail(n, w + ".kind", "required (v4host, vllm, sglang, openai, anthropic or deepseek)");
  std::string k = c.str(n["kind"], w + ".kind");
  if (k == "v4host") u.kind = UpstreamKind::V4Host;
  else if (k == "vllm") u.kind = UpstreamKind::Vllm;
  else if (k == "sglang") u.kind = UpstreamKind::Sglang;
  else if (k == "openai") u.kind = UpstreamKind::OpenAI;
  else if (k == "anthropic") u.kind = UpstreamKind::Anthropic;
  else if (k == "deepseek") u.kind = UpstreamKind::DeepSeek;
  else c.fail(n["kind"], w + ".kind", "unknown kind '" + k + "' (expected v4host, vllm, sglang, openai, anthropic or deepseek)");
  // Defaults per kind: how reasoning is switched, which API is spoken.
  switch (u.kind) {
    case UpstreamKind::V4Host: u.dialect = ReasoningDialect::ReasoningEffort; break;
    case UpstreamKind::Vllm:
    case UpstreamKind::Sglang: u.dialect = ReasoningDialect::ChatTemplateKwargs; break;
    case UpstreamKind::DeepSeek:
      u.dialect = ReasoningDialect::Thinking;
      u.echo_reasoning_content = true;
      break;
    case UpstreamKind::OpenAI: u.dialect = ReasoningDialect::ReasoningEffort; break;
    case UpstreamKind::Anthropic:
      u.dialect = ReasoningDialect::None;
      u.api = WireApi::AnthropicMessages;
      break;
  }
  if (!n["base_url"]) c.fail(n, w + ".base_url", "required, e.g. http://127.0.0.1:8000/v1");
  u.base_url = c.str(n["base_url"], w + ".base_url");
  if (u.base_url.rfind("http://", 0) != 0 && u.base_url.rfind("https://", 0) != 0)
    c.fail(n["base_url"], w + ".base_url", "must start with http:// or https://, got '" + u.base_url + "'");
  while (!u.base_url.empty() && u.base_url.back() == '/') u.base_url.pop_back();
  if (n["api_key"]) c.fail(n["api_key"], w + ".api_key", "keys are never stored in the config: use api_key_env");
  if (n["api_key_env"]) u.api_key_env = c.str(n["api_key_env"], w + ".api_key_env");
  if (n["model"]) u.model = c.str(n["model"], w + ".model");
  if (n["dialect"]) {
    std::string d = c.str(n["dialect"], w + ".dialect");
    if (d == "thinking") u.dialect = ReasoningDialect::Thinking;
    else if (d == "chat_template_kwargs") u.dialect = ReasoningDialect::ChatTemplateKwargs;
    else if (d == "reasoning_effort") u.dialect = ReasoningDialect::ReasoningEffort;
    else if (d == "none") u.dialect = ReasoningDialect::None;
    else c.fail(n["dialect"], w + ".dialect", "unknown dialect '" + d + "' (thinking, chat_template_kwargs, reasoning_effort or none)");
  }
  if (n["echo_reasoning_content"]) u.echo_reasoning_content = c.boolean(n["echo_reasoning_content"], w + ".echo_reasoning_content");
  if (auto t = n["timeouts"]) {
    c.only(t, w + ".timeouts", {"connect", "first_token", "total"});
    if (t["connect"]) u.timeouts.connect_s = c.duration(t["connect"], w + ".timeouts.connect");
    if (t["first_token"]) u.timeouts.first_token_s = c.duration(t["first_token"], w + ".timeouts.first_token");
    if (t["total"]) u.timeouts.total_s = c.duration(t["total"], w + ".timeouts.total");
    if (u.timeouts.connect_s <= 0 || u.timeouts.first_token_s <= 0 || u.timeouts.total_s <= 0)
      c.fail(t, w + ".timeouts", "timeouts must be positive");
  }
  if (n["concurrency"]) u.concurrency = static_cast<int>(c.integer(n["concurrency"], w + ".concurrency", 1));
  if (n["residency"]) u.residency = c.str(n["residency"], w + ".residency");
  if (n["cost"]) u.cost = parse_cost(c, n["cost"], w + ".cost");
  if (n["max_output_tokens"]) u.max_output_tokens = c.integer(n["max_output_tokens"], w + ".max_output_tokens", 1);
  if (auto h = n["health"]) {
    c.only(h, w + ".health", {"path", "interval", "metrics_path"});
    if (h["path"]) u.health.path = c.str(h["path"], w + ".health.path");
    if (h["interval"]) u.health.interval_s = c.duration(h["interval"], w + ".health.interval");
    if (h["metrics_path"]) u.health.metrics_path = c.str(h["metrics_path"], w + ".health.metrics_path");
  }
  if (u.health.path.empty()) {
    // Self-hosted engines answer /health at the root; hosted APIs are not polled by default.
    bool local = u.kind == UpstreamKind::V4Host || u.kind == UpstreamKind::Vllm || u.kind == UpstreamKind::Sglang;
    u.health.path = local ? "/health" : "";
  }
  if (u.health.metrics_path.empty()) u.health.metrics_path = "/metrics";
  return u;
}

Verifier parse_verifier(const Ctx& c, const YAML::Node& n, const std::string& w) {
  Verifier v;
  if (n.IsScalar()) {
    std::string s = n.as<std::string>();
    if (s == "json_schema") v.kind = Verifier::JsonSchema;
    else if (s == "tool_args") v.kind = Verifier::ToolArgs;
    else if (s == "non_empty") v.kind = Verifier::NonEmpty;
    else c.fail(n, w, "unknown verifier '" + s + "' (json_schema, tool_args, non_empty, {regex: ...}, {command: [...]})");
    return v;
  }
  c.only(n, w, {"regex", "command", "timeout"});
  if (n["regex"]) {
    v.kind = Verifier::Regex;
    v.pattern = c.str(n["regex"], w + ".regex");
    std::string err = regex_error(v.pattern);
    if (!err.empty()) c.fail(n["regex"], w + ".regex", "bad PCRE2 pattern: " + err);
  } else if (n["command"]) {
    v.kind = Verifier::Command;
    v.command = c.strings(n["command"], w + ".command");
    if (v.command.empty() || v.command[0].empty()) c.fail(n["command"], w + ".command", "expected a non-empty argv list");
  } else {
    c.fail(n, w, "expected regex or command");
  }
  if (n["timeout"]) v.timeout_s = c.duration(n["timeout"], w + ".timeout");
  return v;
}

Route parse_route(const Ctx& c, const std::string& name, const YAML::Node& n) {
  std::string w = "routes." + name;
  c.only(n, w, {"chain", "stream", "verify", "residency", "cost_cap", "budget", "retry", "balance"});
  Route r;
  r.name = name;
  r.line = line_of(n);
  if (!n["chain"]) c.fail(n, w + ".chain", "required: the upstreams to try, in order");
  const YAML::Node chain = n["chain"];
  if (chain.IsSequence()) {
    // An entry is an upstream name, or a nested list: a group of replicas (router/balance.h).
    for (size_t i = 0; i < chain.size(); ++i) {
      const std::string f = fmt::format("{}.chain[{}]", w, i);
      if (!chain[i].IsSequence()) {
        r.chain.push_back(c.str(chain[i], f));
        continue;
      }
      std::vector<std::string> members = c.strings(chain[i], f);
      if (members.size() < 2) c.fail(chain[i], f, "a replica group needs at least two upstreams (or write the one name)");
      r.groups.emplace_back(r.chain.size(), r.chain.size() + members.size());
      r.chain.insert(r.chain.end(), members.begin(), members.end());
    }
  } else {
    r.chain = c.strings(chain, w + ".chain");
  }
  if (r.chain.empty()) c.fail(n["chain"], w + ".chain", "must name at least one upstream");
  if (auto b = n["balance"]) {
    // `balance: session` or `balance: {by: least_loaded}` / `{by: session, bounded_load: 1.5}`.
    const YAML::Node by = b.IsMap() ? b["by"] : b;
    if (b.IsMap()) c.only(b, w + ".balance", {"by", "bounded_load"});
    if (by) {
      std::string s = c.str(by, w + ".balance.by");
      if (s == "session") r.balance.by = Balance::Session;
      else if (s == "least_loaded") r.balance.by = Balance::LeastLoaded;
      else c.fail(by, w + ".balance.by", "expected session or least_loaded, got '" + s + "'");
    }
    if (b.IsMap() && b["bounded_load"]) {
      r.balance.bounded_load = c.num(b["bounded_load"], w + ".balance.bounded_load");
      if (r.balance.bounded_load < 1) c.fail(b["bounded_load"], w + ".balance.bounded_load", "must be >= 1 (1 = strictly even shares)");
    }
    if (r.groups.empty()) c.fail(b, w + ".balance", "the chain has no replica group (write one as a nested list: [[a, b], c])");
  }
  if (n["stream"]) {
    std::string s = c.str(n["stream"], w + ".stream");
    if (s == "buffer") r.stream = StreamMode::Buffer;
    else if (s == "first_byte") r.stream = StreamMode::FirstByte;
    else c.fail(n["stream"], w + ".stream", "expected buffer or first_byte, got '" + s + "'");
  }
  if (auto v = n["verify"]) {
    if (!v.IsSequence()) c.fail(v, w + ".verify", "expected a list of verifiers");
    for (size_t i = 0; i < v.size(); ++i) r.verify.push_back(parse_verifier(c, v[i], fmt::format("{}.verify[{}]", w, i)));
  }
  if (n["residency"]) r.residency = c.strings(n["residency"], w + ".residency");
  if (auto cc = n["cost_cap"]) {
    c.only(cc, w + ".cost_cap", {"usd", "over"});
    if (!cc["usd"]) c.fail(cc, w + ".cost_cap.usd", "required (USD per request)");
    r.cost_cap_usd = c.num(cc["usd"], w + ".cost_cap.usd");
    if (cc["over"]) {
      std::string o = c.str(cc["over"], w + ".cost_cap.over");
      if (o != "refuse") r.over_cap_route = o;
    }
  }
  if (n["budget"]) r.budget = parse_budget(c, n["budget"], w + ".budget");
  if (auto rt = n["retry"]) {
    c.only(rt, w + ".retry", {"attempts", "backoff", "max_backoff"});
    if (rt["attempts"]) r.retry.attempts = static_cast<int>(c.integer(rt["attempts"], w + ".retry.attempts", 1));
    if (rt["backoff"]) r.retry.backoff_s = c.duration(rt["backoff"], w + ".retry.backoff");
    if (rt["max_backoff"]) r.retry.max_backoff_s = c.duration(rt["max_backoff"], w + ".retry.max_backoff");
  }
  return r;
}

Rule parse_rule(const Ctx& c, const YAML::Node& n, const std::string& w) {
  c.only(n, w, {"match", "classifier", "overflow", "route"});
  Rule r;
  r.line = line_of(n);
  if (!n["route"]) c.fail(n, w + ".route", "required: the route this rule sends to");
  r.route = c.str(n["route"], w + ".route");
  if (auto m = n["match"]) {
    std::string mw = w + ".match";
    c.only(m, mw, {"model", "tools", "images", "reasoning_effort", "prompt_tokens_over", "header", "tag", "key", "team"});
    if (m["model"]) r.match.model = c.str(m["model"], mw + ".model");
    if (m["tools"]) r.match.tools = c.boolean(m["tools"], mw + ".tools");
    if (m["images"]) r.match.images = c.boolean(m["images"], mw + ".images");
    if (m["reasoning_effort"]) r.match.reasoning_effort = c.strings(m["reasoning_effort"], mw + ".reasoning_effort");
    if (m["prompt_tokens_over"]) r.match.prompt_tokens_over = c.integer(m["prompt_tokens_over"], mw + ".prompt_tokens_over", 0);
    if (auto h = m["header"]) {
      if (!h.IsMap()) c.fail(h, mw + ".header", "expected a mapping of header name to value");
      for (auto it = h.begin(); it != h.end(); ++it) {
        std::string k = it->first.as<std::string>();
        std::transform(k.begin(), k.end(), k.begin(), [](unsigned char ch) { return std::tolower(ch); });
        r.match.headers[k] = c.str(it->second, mw + ".header." + k);
      }
    }
    if (m["tag"]) r.match.tag = c.str(m["tag"], mw + ".tag");
    if (m["key"]) r.match.key = c.str(m["key"], mw + ".key");
    if (m["team"]) r.match.team = c.str(m["team"], mw + ".team");
  }
  if (auto cl = n["classifier"]) {
    std::string cw = w + ".classifier";
    c.only(cl, cw, {"command", "url", "timeout"});
    Classifier k;
    if (cl["command"]) k.command = c.strings(cl["command"], cw + ".command");
    if (cl["url"]) k.url = c.str(cl["url"], cw + ".url");
    if (k.command.empty() == k.url.empty()) c.fail(cl, cw, "give exactly one of command or url");
    if (!k.url.empty() && k.url.rfind("http://", 0) != 0) c.fail(cl["url"], cw + ".url", "must be an http:// URL");
    if (cl["timeout"]) k.timeout_s = c.duration(cl["timeout"], cw + ".timeout");
    r.classifier = k;
  }
  if (auto o = n["overflow"]) {
    std::string ow = w + ".overflow";
    c.only(o, ow, {"upstream", "queue_depth_over", "ttft_over"});
    Overflow ov;
    if (!o["upstream"]) c.fail(o, ow + ".upstream", "required: the local upstream whose pressure is watched");
    ov.upstream = c.str(o["upstream"], ow + ".upstream");
    if (o["queue_depth_over"]) ov.queue_depth_over = c.num(o["queue_depth_over"], ow + ".queue_depth_over");
    if (o["ttft_over"]) ov.ttft_over_s = c.duration(o["ttft_over"], ow + ".ttft_over");
    if (ov.queue_depth_over < 0 && ov.ttft_over_s < 0) c.fail(o, ow, "give queue_depth_over or ttft_over");
    r.overflow = ov;
  }
  if (r.classifier && r.overflow) c.fail(n, w, "a rule has either a classifier or an overflow condition, not both");
  return r;
}

Principal parse_principal(const Ctx& c, const std::string& name, const YAML::Node& n, bool is_key, const std::string& w) {
  if (is_key) c.only(n, w, {"team", "key_env", "key_sha256", "residency", "routes", "budget"});
  else c.only(n, w, {"residency", "routes", "budget"});
  Principal p;
  p.name = name;
  p.line = line_of(n);
  if (is_key) {
    if (n["team"]) p.team = c.str(n["team"], w + ".team");
    if (n["key_env"]) p.key_env = c.str(n["key_env"], w + ".key_env");
    if (n["key_sha256"]) {
      p.key_sha256 = c.str(n["key_sha256"], w + ".key_sha256");
      std::transform(p.key_sha256.begin(), p.key_sha256.end(), p.key_sha256.begin(), [](unsigned char ch) { return std::tolower(ch); });
      if (p.key_sha256.size() != 64 || p.key_sha256.find_first_not_of("0123456789abcdef") != std::string::npos)
        c.fail(n["key_sha256"], w + ".key_sha256", "expected 64 hex digits (sha256 of the key)");
    }
    if (p.key_env.empty() == p.key_sha256.empty()) c.fail(n, w, "give exactly one of key_env or key_sha256 (the key itself is never stored)");
  }
  if (n["residency"]) p.residency = c.strings(n["residency"], w + ".residency");
  if (n["routes"]) p.routes = c.strings(n["routes"], w + ".routes");
  if (n["budget"]) p.budget = parse_budget(c, n["budget"], w + ".budget");
  return p;
}

bool allowed(const std::vector<std::string>& labels, const std::string& l) {
  return labels.empty() || std::find(labels.begin(), labels.end(), l) != labels.end();
}

std::string join(const std::vector<std::string>& v, const char* sep = ", ") {
  std::string s;
  for (auto& x : v) s += (s.empty() ? "" : sep) + x;
  return s;
}

// Routes a principal's traffic can end on: its own list, else every alias, the default, every
// rule target a rule that could match it sends to; closed over cost-cap "cheaper" routes.
std::set<std::string> reachable_routes(const Config& cfg, const Principal& p, bool is_key) {
  std::set<std::string> out;
  if (!p.routes.empty()) {
    // An allow-list: rules whose target is outside it are skipped for this principal at run time.
    out.insert(p.routes.begin(), p.routes.end());
  } else {
    for (auto& r : cfg.routes) out.insert(r.name);  // any alias can be asked for by name
    // Rules redirect regardless of the alias asked for (unless pinned to another key/team).
    std::string team = is_key ? p.team : p.name;
    for (auto& r : cfg.rules) {
      if (r.match.key && (!is_key || *r.match.key != p.name)) continue;
      if (r.match.team && *r.match.team != team) continue;
      out.insert(r.route);
    }
  }
  bool grew = true;
  while (grew) {
    grew = false;
    for (auto& name : std::vector<std::string>(out.begin(), out.end())) {
      const Route* r = cfg.route(name);
      if (r && !r->over_cap_route.empty() && out.insert(r->over_cap_route).second) grew = true;
    }
  }
  return out;
}

void validate(const Ctx& c, Config& cfg) {
  std::set<std::string> used_labels;
  for (auto& r : cfg.routes) {
    for (auto& h : r.chain) {
      if (!cfg.upstream(h))
        c.fail_line(r.line, "routes." + r.name + ".chain", "unknown upstream '" + h + "'");
    }
    std::set<std::string> seen;
    for (auto& h : r.chain)
      if (!seen.insert(h).second) c.fail_line(r.line, "routes." + r.name + ".chain", "upstream '" + h + "' appears twice");
    if (!r.over_cap_route.empty()) {
      if (!cfg.route(r.over_cap_route))
        c.fail_line(r.line, "routes." + r.name + ".cost_cap.over", "unknown route '" + r.over_cap_route + "' (or 'refuse')");
      if (r.over_cap_route == r.name) c.fail_line(r.line, "routes." + r.name + ".cost_cap.over", "cannot send to itself");
    }
    for (auto& h : r.chain) {
      const Upstream* u = cfg.upstream(h);
      if (!allowed(r.residency, u->residency))
        c.fail_line(r.line, "routes." + r.name + ".residency",
                    fmt::format("chain [{}] could send data to upstream '{}' (residency '{}'), outside [{}]", join(r.chain, " -> "), h,
                                u->residency.empty() ? "unlabelled" : u->residency, join(r.residency)));
    }
  }
  if (cfg.routes.empty()) c.fail_line(1, "routes", "at least one route is required");
  if (cfg.default_route.empty()) cfg.default_route = cfg.routes.front().name;
  if (!cfg.route(cfg.default_route)) c.fail_line(1, "default_route", "unknown route '" + cfg.default_route + "'");
  for (auto& r : cfg.rules) {
    if (!cfg.route(r.route)) c.fail_line(r.line, "rules.route", "unknown route '" + r.route + "'");
    if (r.overflow) {
      if (!cfg.upstream(r.overflow->upstream)) c.fail_line(r.line, "rules.overflow.upstream", "unknown upstream '" + r.overflow->upstream + "'");
      if (cfg.upstream(r.overflow->upstream)->health.interval_s <= 0 && cfg.upstream(r.overflow->upstream)->health.path.empty())
        c.fail_line(r.line, "rules.overflow.upstream", "upstream '" + r.overflow->upstream + "' is not polled (set health.interval)");
    }
    if (r.match.key && !cfg.key(*r.match.key)) c.fail_line(r.line, "rules.match.key", "unknown key '" + *r.match.key + "'");
    if (r.match.team && !cfg.team(*r.match.team)) c.fail_line(r.line, "rules.match.team", "unknown team '" + *r.match.team + "'");
  }
  for (auto* list : {&cfg.keys, &cfg.teams}) {
    bool is_key = list == &cfg.keys;
    for (auto& p : *list) {
      std::string w = (is_key ? "keys." : "teams.") + p.name;
      if (is_key && !p.team.empty() && !cfg.team(p.team)) c.fail_line(p.line, w + ".team", "unknown team '" + p.team + "'");
      for (auto& rn : p.routes)
        if (!cfg.route(rn)) c.fail_line(p.line, w + ".routes", "unknown route '" + rn + "'");
      // Effective residency: a key inherits its team's restriction too.
      std::vector<std::vector<std::string>> restrictions;
      if (!p.residency.empty()) restrictions.push_back(p.residency);
      if (is_key && !p.team.empty() && !cfg.team(p.team)->residency.empty()) restrictions.push_back(cfg.team(p.team)->residency);
      if (restrictions.empty()) continue;
      Principal eff = p;
      if (is_key && eff.routes.empty() && !p.team.empty()) eff.routes = cfg.team(p.team)->routes;
      for (auto& rn : reachable_routes(cfg, eff, is_key)) {
        const Route* r = cfg.route(rn);
        for (auto& h : r->chain) {
          const Upstream* u = cfg.upstream(h);
          for (auto& labels : restrictions)
            if (!allowed(labels, u->residency))
              c.fail_line(p.line, w + ".residency",
                          fmt::format("chain '{}' [{}] could send {}'s data to upstream '{}' (residency '{}'), outside [{}]; "
                                      "restrict the routes it may use (routes: [...]) or fix the chain",
                                      rn, join(r->chain, " -> "), p.name, h, u->residency.empty() ? "unlabelled" : u->residency,
                                      join(labels)));
        }
      }
    }
  }
  // Client keys must be resolvable now: a key_env that is unset is a startup error, not a 401 later.
  for (auto& k : cfg.keys)
    if (!k.key_env.empty() && !std::getenv(k.key_env.c_str()))
      c.fail_line(k.line, "keys." + k.name + ".key_env", "environment variable " + k.key_env + " is not set");
}

Config parse(const YAML::Node& root, const Ctx& c) {
  Config cfg;
  if (!root.IsMap()) c.fail(root, "config", "expected a mapping at the top level");
  c.only(root, "config", {"listen", "ledger", "tokenizer", "access_log", "log_prompts", "require_key", "default_route",
                          "upstreams", "routes", "rules", "keys", "teams"});
  if (auto l = root["listen"]) {
    c.only(l, "listen", {"host", "port"});
    if (l["host"]) cfg.host = c.str(l["host"], "listen.host");
    if (l["port"]) cfg.port = static_cast<int>(c.integer(l["port"], "listen.port", 0));
    if (cfg.port > 65535) c.fail(l["port"], "listen.port", "must be at most 65535");
  }
  if (root["ledger"]) cfg.ledger = c.str(root["ledger"], "ledger");
  if (root["tokenizer"]) cfg.tokenizer = c.str(root["tokenizer"], "tokenizer");
  if (root["access_log"]) cfg.access_log = c.str(root["access_log"], "access_log");
  if (root["log_prompts"]) cfg.log_prompts = c.boolean(root["log_prompts"], "log_prompts");
  if (root["require_key"]) cfg.require_key = c.boolean(root["require_key"], "require_key");
  if (root["default_route"]) cfg.default_route = c.str(root["default_route"], "default_route");
  auto ups = root["upstreams"];
  if (!ups || !ups.IsMap() || ups.size() == 0) c.fail(ups ? ups : root, "upstreams", "required: a mapping of upstream name to settings");
  for (auto it = ups.begin(); it != ups.end(); ++it) {
    std::string name = it->first.as<std::string>();
    if (cfg.upstream(name)) c.fail(it->first, "upstreams." + name, "defined twice");
    cfg.upstreams.push_back(parse_upstream(c, name, it->second));
  }
  auto routes = root["routes"];
  if (!routes || !routes.IsMap() || routes.size() == 0) c.fail(routes ? routes : root, "routes", "required: a mapping of route alias to {chain: [...]}");
  for (auto it = routes.begin(); it != routes.end(); ++it) {
    std::string name = it->first.as<std::string>();
    if (cfg.route(name)) c.fail(it->first, "routes." + name, "defined twice");
    cfg.routes.push_back(parse_route(c, name, it->second));
  }
  if (auto rules = root["rules"]) {
    if (!rules.IsSequence()) c.fail(rules, "rules", "expected a list (first match wins)");
    for (size_t i = 0; i < rules.size(); ++i) cfg.rules.push_back(parse_rule(c, rules[i], fmt::format("rules[{}]", i)));
  }
  if (auto teams = root["teams"]) {
    if (!teams.IsMap()) c.fail(teams, "teams", "expected a mapping of team name to settings");
    for (auto it = teams.begin(); it != teams.end(); ++it) {
      std::string name = it->first.as<std::string>();
      cfg.teams.push_back(parse_principal(c, name, it->second, false, "teams." + name));
    }
  }
  if (auto keys = root["keys"]) {
    if (!keys.IsMap()) c.fail(keys, "keys", "expected a mapping of key name to settings");
    for (auto it = keys.begin(); it != keys.end(); ++it) {
      std::string name = it->first.as<std::string>();
      cfg.keys.push_back(parse_principal(c, name, it->second, true, "keys." + name));
    }
  }
  validate(c, cfg);
  return cfg;
}

}  // namespace

const Upstream* Config::upstream(const std::string& n) const {
  for (auto& u : upstreams)
    if (u.name == n) return &u;
  return nullptr;
}
const Route* Config::route(const std::string& n) const {
  for (auto& r : routes)
    if (r.name == n) return &r;
  return nullptr;
}
const Principal* Config::team(const std::string& n) const {
  for (auto& t : teams)
    if (t.name == n) return &t;
  return nullptr;
}
const Principal* Config::key(const std::string& n) const {
  for (auto& k : keys)
    if (k.name == n) return &k;
  return nullptr;
}

Config load_config_text(const std::string& yaml, const std::string& name) {
  Ctx c{name};
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::Exception& e) {
    throw ConfigError(fmt::format("{}:{}: YAML syntax: {}", name, e.mark.line + 1, e.msg));
  }
  try {
    return parse(root, c);
  } catch (const YAML::Exception& e) {
    throw ConfigError(fmt::format("{}:{}: {}", name, e.mark.line + 1, e.msg));
  }
}

Config load_config_file(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw ConfigError("cannot read config file " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  return load_config_text(ss.str(), path);
}

std::string Verifier::describe() const {
  switch (kind) {
    case JsonSchema: return "json_schema (response_format)";
    case ToolArgs: return "tool_args (tool-call arguments vs tool schemas)";
    case NonEmpty: return "non_empty";
    case Regex: return "regex /" + pattern + "/";
    case Command: return fmt::format("command [{}] (limit {}s)", join(command, " "), timeout_s);
  }
  return "?";
}

std::string Rule::describe() const {
  std::vector<std::string> conds;
  if (match.model) conds.push_back("model=" + *match.model);
  if (match.tools) conds.push_back(std::string("tools=") + (*match.tools ? "yes" : "no"));
  if (match.images) conds.push_back(std::string("images=") + (*match.images ? "yes" : "no"));
  if (!match.reasoning_effort.empty()) conds.push_back("reasoning_effort in [" + join(match.reasoning_effort) + "]");
  if (match.prompt_tokens_over >= 0) conds.push_back(fmt::format("prompt_tokens > {}", match.prompt_tokens_over));
  for (auto& [k, v] : match.headers) conds.push_back("header " + k + "=" + v);
  if (match.tag) conds.push_back("tag=" + *match.tag);
  if (match.key) conds.push_back("key=" + *match.key);
  if (match.team) conds.push_back("team=" + *match.team);
  if (classifier) conds.push_back(classifier->url.empty() ? "classifier [" + join(classifier->command, " ") + "]" : "classifier " + classifier->url);
  if (overflow) {
    std::string s = "overflow of " + overflow->upstream + ":";
    if (overflow->queue_depth_over >= 0) s += fmt::format(" queue > {}", overflow->queue_depth_over);
    if (overflow->ttft_over_s >= 0) s += fmt::format(" ttft > {}s", overflow->ttft_over_s);
    conds.push_back(s);
  }
  return conds.empty() ? "always" : join(conds, " and ");
}

// "a -> {b | c} (by session) -> d": a replica group in braces, with its balance.
static std::string chain_text(const Route& r) {
  std::string s;
  size_t g = 0;
  for (size_t i = 0; i < r.chain.size();) {
    if (!s.empty()) s += " -> ";
    if (g < r.groups.size() && r.groups[g].first == i) {
      std::vector<std::string> m(r.chain.begin() + static_cast<std::ptrdiff_t>(i), r.chain.begin() + static_cast<std::ptrdiff_t>(r.groups[g].second));
      s += "{" + join(m, " | ") + "}" +
           (r.balance.by == Balance::Session ? fmt::format(" (by session, bounded load {})", r.balance.bounded_load) : std::string(" (least loaded)"));
      i = r.groups[g++].second;
    } else {
      s += r.chain[i++];
    }
  }
  return s;
}

static std::string budget_text(const Budget& b) {
  std::string s = " budget";
  if (b.day_usd > 0) s += fmt::format(" ${}/day", b.day_usd);
  if (b.month_usd > 0) s += fmt::format(" ${}/month", b.month_usd);
  return s;
}

std::string describe_config(const Config& c) {
  std::string s = fmt::format("listen {}:{}  ledger {}  default route {}\n", c.host, c.port, c.ledger, c.default_route);
  s += "upstreams:\n";
  for (auto& u : c.upstreams) {
    std::string cost = "no price";
    if (u.cost.priced()) {
      auto& t = u.cost.tariff.back();
      cost = fmt::format("${}/${}/${} per M in/cached/out from {}", t.input, t.cached_input, t.output, t.from);
      if (t.has_off_peak) cost += fmt::format(" (off-peak {:02}:{:02}-{:02}:{:02} UTC ${}/${}/${})", t.off_start_min / 60, t.off_start_min % 60,
                                              t.off_end_min / 60, t.off_end_min % 60, t.off_input, t.off_cached_input, t.off_output);
    }
    if (u.cost.amortised_per_hour > 0) cost += fmt::format("{}amortised ${}/h", u.cost.priced() ? ", " : "; ", u.cost.amortised_per_hour);
    s += fmt::format("  {:<14} {:<9} {}  model={} dialect={}{} residency={} concurrency={} timeouts {}s/{}s/{}s; {}\n", u.name, kind_name(u.kind),
                     u.base_url, u.model.empty() ? "(client's)" : u.model, dialect_name(u.dialect),
                     u.echo_reasoning_content ? " echo-reasoning" : "", u.residency.empty() ? "-" : u.residency, u.concurrency,
                     u.timeouts.connect_s, u.timeouts.first_token_s, u.timeouts.total_s, cost);
  }
  s += "routes (fallback chains):\n";
  for (auto& r : c.routes) {
    s += fmt::format("  {}: {}  [stream: {}]", r.name, chain_text(r), r.stream == StreamMode::Buffer ? "buffer until verified" : "fall back before first byte");
    if (!r.residency.empty()) s += " residency [" + join(r.residency) + "]";
    if (r.cost_cap_usd > 0) s += fmt::format(" cost cap ${} ({})", r.cost_cap_usd, r.over_cap_route.empty() ? "refuse" : "then " + r.over_cap_route);
    if (r.budget.any()) s += budget_text(r.budget);
    if (r.retry.attempts > 1) s += fmt::format(" retries {}", r.retry.attempts);
    s += "\n";
    for (auto& v : r.verify) s += "      verify: " + v.describe() + "\n";
  }
  s += "rules (first match wins; else the alias asked for, else " + c.default_route + "):\n";
  int i = 1;
  for (auto& r : c.rules) s += fmt::format("  {}. {} -> {}\n", i++, r.describe(), r.route);
  for (auto* list : {&c.teams, &c.keys}) {
    for (auto& p : *list) {
      s += fmt::format("  {} {}:", list == &c.keys ? "key" : "team", p.name);
      if (!p.team.empty()) s += " team " + p.team;
      if (!p.residency.empty()) s += " residency [" + join(p.residency) + "]";
      if (!p.routes.empty()) s += " routes [" + join(p.routes) + "]";
      if (p.budget.any()) s += budget_text(p.budget);
      s += "\n";
    }
  }
  return s;
}

}  // namespace v4::router
