#include "bench/workload.h"

#include <cmath>
#include <fstream>

#include "core/error.h"
#include "stats/bootstrap.h"
#include "text/tokenizer.h"

namespace v4::bench {

namespace {

uint64_t mix(uint64_t a, uint64_t b) { return stats::SplitMix64(a * 0x9E3779B97F4A7C15ull ^ (b + 0x632BE59BD9B4E019ull)).next(); }
double uni(uint64_t& s) {
  stats::SplitMix64 g(s);
  s = g.next();
  return static_cast<double>(s >> 11) * 0x1.0p-53;
}

const char* kWords[] = {
    "the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with", "be", "by", "on", "not", "he", "this", "are", "or",
    "his", "from", "at", "which", "but", "have", "an", "had", "they", "you", "were", "their", "one", "all", "we", "can", "her", "has",
    "there", "been", "if", "more", "when", "will", "would", "who", "so", "no", "time", "people", "system", "model", "data", "value",
    "number", "water", "river", "city", "house", "light", "music", "paper", "market", "table", "window", "garden", "mountain", "story",
    "energy", "signal", "memory", "engine", "kernel", "server", "request", "token", "cache", "prefix", "stream", "window", "north",
    "south", "green", "small", "large", "quick", "quiet", "bright", "early", "later", "simple", "common", "useful", "careful", "open"};
constexpr int kNumWords = sizeof(kWords) / sizeof(kWords[0]);

const json kTool = json::parse(R"({"type":"function","function":{"name":"run_shell","description":"Run a shell command in the workspace and return its output.",
 "parameters":{"type":"object","properties":{"cmd":{"type":"string","description":"the command"}},"required":["cmd"]}}})");

}  // namespace

LengthDist LengthDist::parse(const std::string& flag, const std::string& s) {
  LengthDist d;
  auto bad = [&] { return InputError(flag + ": expected N, fixed:N, uniform:MIN,MAX or normal:MEAN,SD (got '" + s + "')"); };
  std::string kind = "fixed", args = s;
  if (auto c = s.find(':'); c != std::string::npos) {
    kind = s.substr(0, c);
    args = s.substr(c + 1);
  }
  double a = 0, b = 0;
  size_t pos = 0;
  try {
    a = std::stod(args, &pos);
    if (pos < args.size()) {
      if (args[pos] != ',') throw bad();
      std::string rest = args.substr(pos + 1);
      size_t p2 = 0;
      b = std::stod(rest, &p2);
      if (p2 != rest.size()) throw bad();
      pos = std::string::npos;
    }
  } catch (const InputError&) {
    throw;
  } catch (const std::exception&) {
    throw bad();
  }
  bool two = pos == std::string::npos;
  if (kind == "fixed" && !two) d = {fixed, a, 0};
  else if (kind == "uniform" && two) d = {uniform, a, b};
  else if (kind == "normal" && two) d = {normal, a, b};
  else throw bad();
  if (d.a < 1 || (d.kind == uniform && d.b < d.a) || (d.kind == normal && d.b < 0) || d.a > 10'000'000 || d.b > 10'000'000)
    throw InputError(flag + ": lengths must be >= 1 (and MIN <= MAX, SD >= 0), got '" + s + "'");
  return d;
}

int LengthDist::sample(uint64_t& st) const {
  switch (kind) {
    case fixed: return static_cast<int>(a);
    case uniform: return static_cast<int>(std::floor(a + uni(st) * (b - a + 1 - 1e-9)));
    case normal: {
      double u1 = std::max(uni(st), 1e-300), u2 = uni(st);
      double z = std::sqrt(-2 * std::log(u1)) * std::cos(2 * M_PI * u2);
      return std::max(1, static_cast<int>(std::lround(a + b * z)));
    }
  }
  return 1;
}

std::string LengthDist::str() const {
  auto n = [](double v) { return std::to_string(static_cast<long long>(v)); };
  switch (kind) {
    case fixed: return "fixed:" + n(a);
    case uniform: return "uniform:" + n(a) + "," + n(b);
    case normal: return "normal:" + n(a) + "," + n(b);
  }
  return "";
}

json WorkloadSpec::to_json() const {
  json j = {{"kind", kind}, {"input", input.str()}, {"output", output.str()}, {"force_output", force_output},
            {"reasoning", reasoning_name(reasoning)}, {"seed", seed}};
  if (kind == "shared-prefix") j.update({{"prefixes", prefixes}, {"prefix_tokens", prefix_tokens}, {"suffixes", suffixes}});
  if (kind == "agent") j.update({{"turns", turns}, {"tool_result_tokens", tool_result_tokens}});
  if (kind == "jsonl") j["file"] = jsonl;
  if (!extra_body.is_null()) j["extra_body"] = extra_body;
  return j;
}

Workload::Workload(WorkloadSpec spec, const text::Tokenizer* tok) : spec_(std::move(spec)), tok_(tok) {
  const std::string& k = spec_.kind;
  if (k != "synthetic" && k != "shared-prefix" && k != "agent" && k != "jsonl")
    throw InputError("--workload must be synthetic, shared-prefix, agent or jsonl (got '" + k + "')");
  if (k == "jsonl") {
    if (spec_.jsonl.empty()) throw InputError("--workload jsonl needs --file PATH");
    std::ifstream f(spec_.jsonl);
    if (!f) throw InputError("--file: cannot open '" + spec_.jsonl + "'");
    std::string line;
    int n = 0;
    double t0 = -1;
    while (std::getline(f, line)) {
      ++n;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      json j = json::parse(line, nullptr, false);
      auto where = spec_.jsonl + ":" + std::to_string(n);
      if (j.is_discarded() || !j.is_object()) throw InputError(where + ": not a JSON object");
      WorkItem w;
      w.unit = static_cast<int>(lines_.size());
      if (j.contains("messages")) {
        if (!j["messages"].is_array() || j["messages"].empty()) throw InputError(where + ": 'messages' must be a non-empty array");
        for (const auto& m : j["messages"])
          if (!m.is_object() || !m.contains("role") || !m["role"].is_string()) throw InputError(where + ": every message needs a string 'role'");
        w.req.messages = j["messages"];
      } else if (j.contains("prompt")) {
        if (!j["prompt"].is_string()) throw InputError(where + ": 'prompt' must be a string");
        w.req.prompt = j["prompt"];
        w.req.messages = json::array({{{"role", "user"}, {"content", w.req.prompt}}});
      } else {
        throw InputError(where + ": needs 'messages' (chat messages) or 'prompt' (a string)");
      }
      w.req.max_tokens = 128;
      for (const char* key : {"max_tokens", "max_completion_tokens", "max_output_tokens"})
        if (j.contains(key)) {
          if (!j[key].is_number_integer() || j[key].get<long>() < 1) throw InputError(where + ": '" + key + "' must be a positive integer");
          w.req.max_tokens = j[key].get<int>();
        }
      if (j.contains("timestamp")) {
        if (!j["timestamp"].is_number()) throw InputError(where + ": 'timestamp' must be a number (seconds)");
        double t = j["timestamp"].get<double>();
        if (t0 < 0) t0 = t;
        w.timestamp = t - t0;
        if (w.timestamp < 0) throw InputError(where + ": timestamps must not decrease");
        t0 = std::min(t0, t);
      }
      if (j.contains("tools")) w.req.tools = j["tools"];
      w.req.force_length = spec_.force_output && j.contains("max_tokens");
      w.req.reasoning = spec_.reasoning;
      w.req.extra = spec_.extra_body;
      lines_.push_back(std::move(w));
    }
    if (lines_.empty()) throw InputError("--file '" + spec_.jsonl + "' has no requests");
  }
  if (k == "shared-prefix") {
    if (spec_.prefixes < 1 || spec_.suffixes < 1 || spec_.prefix_tokens < 1) throw InputError("--prefixes, --suffixes and --prefix-tokens must be >= 1");
    for (int i = 0; i < spec_.prefixes; ++i) {
      uint64_t st = mix(spec_.seed, 1'000'000 + i);
      prefixes_.push_back("You are assistant #" + std::to_string(i) + ". " + text_of_tokens(spec_.prefix_tokens, st));
    }
  }
  if (k == "agent" && spec_.turns < 1) throw InputError("--turns must be >= 1");
}

Workload::~Workload() = default;

long Workload::size() const { return spec_.kind == "jsonl" ? static_cast<long>(lines_.size()) : -1; }

int Workload::count_tokens(const std::string& s) const { return tok_ ? static_cast<int>(tok_->encode(s).size()) : -1; }

std::string Workload::text_of_tokens(int n, uint64_t& rng) {
  std::string s;
  if (n <= 0) return s;
  if (!tok_) {  // approximate: one common word ~ one token
    for (int i = 0; i < n; ++i) s += std::string(i ? " " : "") + kWords[static_cast<int>(uni(rng) * kNumWords) % kNumWords];
    return s;
  }
  // Words until at least n tokens, then cut the ids to n and decode; re-check (a cut may merge).
  std::vector<int32_t> ids;
  while (true) {
    s += std::string(s.empty() ? "" : " ") + kWords[static_cast<int>(uni(rng) * kNumWords) % kNumWords];
    if (static_cast<int>(s.size()) >= n) {  // cheap bound: a token is at least one byte
      ids = tok_->encode(s);
      if (static_cast<int>(ids.size()) >= n) break;
    }
  }
  for (int attempt = 0; attempt < 8; ++attempt) {
    ids.resize(n);
    std::string t = tok_->decode(ids);
    auto again = tok_->encode(t);
    if (static_cast<int>(again.size()) == n) return t;
    ids = again;
    if (static_cast<int>(ids.size()) < n) {  // cut merged: add a word and retry
      t += std::string(" ") + kWords[static_cast<int>(uni(rng) * kNumWords) % kNumWords];
      ids = tok_->encode(t);
    }
  }
  return tok_->decode(std::vector<int32_t>(ids.begin(), ids.begin() + std::min<size_t>(ids.size(), n)));
}

WorkItem Workload::first(int unit) {
  if (spec_.kind == "jsonl") {
    WorkItem w = lines_[static_cast<size_t>(unit) % lines_.size()];
    w.unit = unit;
    if (unit >= static_cast<int>(lines_.size())) w.timestamp = -1;  // timing replays once
    return w;
  }
  uint64_t st = mix(spec_.seed, static_cast<uint64_t>(unit));
  WorkItem w;
  w.unit = unit;
  w.req.max_tokens = spec_.output.sample(st);
  w.req.force_length = spec_.force_output;
  w.req.reasoning = spec_.reasoning;
  w.req.extra = spec_.extra_body;
  int in = spec_.input.sample(st);
  if (spec_.kind == "shared-prefix") {
    // Round-robin over prefixes so each prefix recurs at a steady rate.
    const std::string& sys = prefixes_[static_cast<size_t>(unit) % prefixes_.size()];
    std::string q = text_of_tokens(in, st);
    w.req.messages = json::array({{{"role", "system"}, {"content", sys}}, {{"role", "user"}, {"content", q}}});
    w.req.prompt = sys + "\n" + q;
    w.input_tokens = tok_ ? count_tokens(w.req.prompt) : -1;
  } else {
    std::string q = text_of_tokens(in, st);
    if (spec_.kind == "agent") {
      w.req.tools = json::array({kTool});
      w.req.messages = json::array({{{"role", "system"}, {"content", "You are a coding agent. Use run_shell to inspect the workspace."}},
                                    {{"role", "user"}, {"content", q}}});
    } else {
      w.req.messages = json::array({{{"role", "user"}, {"content", q}}});
    }
    w.req.prompt = q;
    w.input_tokens = tok_ ? in : -1;
  }
  return w;
}

bool Workload::next_turn(const WorkItem& prev, const std::string& answer, WorkItem& out) {
  if (spec_.kind != "agent" || prev.turn + 1 >= spec_.turns) return false;
  uint64_t st = mix(spec_.seed ^ 0xA5A5, static_cast<uint64_t>(prev.unit) * 1000 + prev.turn);
  out = prev;
  out.turn = prev.turn + 1;
  std::string id = "call_" + std::to_string(prev.unit) + "_" + std::to_string(prev.turn);
  std::string cmd = std::string("grep -rn ") + kWords[prev.turn % kNumWords] + " src/";
  out.req.messages.push_back({{"role", "assistant"}, {"content", answer},
                              {"tool_calls", json::array({{{"id", id}, {"type", "function"},
                                                           {"function", {{"name", "run_shell"}, {"arguments", json{{"cmd", cmd}}.dump()}}}}})}});
  out.req.messages.push_back({{"role", "tool"}, {"tool_call_id", id}, {"content", text_of_tokens(spec_.tool_result_tokens, st)}});
  out.req.max_tokens = spec_.output.sample(st);
  std::string all;
  for (const auto& m : out.req.messages) all += m.value("content", json("")).is_string() ? m.value("content", "") + "\n" : "\n";
  out.req.prompt = all;
  out.input_tokens = tok_ ? count_tokens(all) : -1;
  return true;
}

}  // namespace v4::bench
