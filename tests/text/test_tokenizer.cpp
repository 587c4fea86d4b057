// Tokenizer tests: known V4 encodings (spec §5), the Hugging Face `tokenizers` reference on a large
// generated corpus, byte round trips, streaming detokenisation, speed.
#include <gtest/gtest.h>

#include <chrono>
#include <random>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "text/special_tokens.h"
#include "text/pretokenizer.h"
#include "text/unicode_compat.h"
#include "text/utf8.h"
#include "text_test_util.h"

using namespace v4::text;
using namespace v4::text::testing;
using nlohmann::json;

namespace {

std::string cp(uint32_t c) {
  std::string s;
  utf8_append(s, c);
  return s;
}

const char* kSnippets[] = {
    "#include <vector>\nint main(int argc, char** argv) {\n\tstd::vector<int> v{1, 2, 3};\n\treturn v.size() > 2 ? 0 : 1;\n}\n",
    "def fib(n: int) -> int:\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n\nprint(f\"{fib(30)=}\")\n",
    "fn main() {\n    let xs: Vec<u64> = (1..=10).map(|x| x * x).collect();\n    println!(\"{:?}\", xs);\n}\n",
    "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tch := make(chan int, 3)\n\tgo func() { ch <- 42 }()\n\tfmt.Println(<-ch)\n}\n",
    "const f = async (x) => { await new Promise(r => setTimeout(r, 10)); return x ?? 'default'; };\nexport default f;\n",
    "SELECT u.id, COUNT(*) AS n FROM users u JOIN orders o ON o.user_id = u.id WHERE o.total >= 100.50 GROUP BY u.id HAVING n > 3;\n",
    "main :: IO ()\nmain = mapM_ (putStrLn . show) [x^2 | x <- [1..10], even x]\n",
    "#!/bin/bash\nfor f in *.txt; do\n  wc -l \"$f\" | awk '{print $1}' >> /tmp/out.log 2>&1\ndone\n",
    "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Test &amp; more</title></head>\n<body><p class='x'>Hi</p></body></html>\n",
    "{\"name\": \"v4host\", \"version\": [0, 1, 0], \"nested\": {\"a\": null, \"b\": true, \"c\": -1.5e-10}}\n",
    "\\begin{equation}\n  \\int_0^\\infty e^{-x^2}\\,dx = \\frac{\\sqrt{\\pi}}{2}\n\\end{equation}\n",
    "public class Hello { public static void main(String[] args) { System.out.println(\"Hello, 世界\"); } }\n",
    "(defun square (x) (* x x))\n(mapcar #'square '(1 2 3))\n",
    "    mov rax, 60\n    xor rdi, rdi\n    syscall ; exit(0)\n",
};

const char* kProse[] = {
    "The quick brown fox jumps over the lazy dog. It's 3:45 p.m. — isn't it?",
    "你好，世界。今天天气很好，我们去公园散步吧！深度求索公司创造了DeepSeek。",
    "日本語のテキストです。カタカナとひらがな、そして漢字。東京は2024年に…",
    "한국어 문장입니다. 안녕하세요! 반갑습니다.",
    "Привет, мир! Как дела? Съешь же ещё этих мягких французских булок.",
    "Γειά σου Κόσμε· η γρήγορη καφέ αλεπού.",
    "مرحبا بالعالم! هذه جملة عربية. ١٢٣٤٥",
    "שלום עולם! זה משפט בעברית.",
    "नमस्ते दुनिया! यह हिंदी में एक वाक्य है। १२३",
    "สวัสดีชาวโลก นี่คือประโยคภาษาไทย",
    "Ṫ̈ḧë̈ q̃ũĩc̃k̃ — Zalgo: Z̷̢̛a̸͔͝l̵̰̈g̴̣̿o̶̧͑",
    "e\u0301 a\u0308 n\u0303 \u1100\u1161\u11A8 (decomposed)",
    "Emoji: 😀😃😄 👍🏽 👨‍👩‍👧‍👦 🇫🇷🇯🇵 ❤️‍🔥 🏳️‍🌈 1️⃣ 🫠🫨🩷",
    "Numbers: 1234567890 3.14159 -42 1e10 ０１２３ ½ ⅓ Ⅻ ²³",
    "Mixed: Hello! 毕老师！1 + 1 = 2 ĠÑĤÐ²ÑĬÑĢ",
};

const char* kSpecial[] = {"<｜User｜>", "<｜Assistant｜>", "<think>", "</think>", "｜DSML｜", "<｜DSML｜invoke name=\"f\">",
                          "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜latest_reminder｜>", "<｜Use", "<thi",
                          "<｜action｜>", "<｜place▁holder▁no▁1000｜>", "</｜DSML｜parameter>", "<dsml:x", "<<think>>"};

const char* kSpaces[] = {" ", "  ", "    ", "\t", "\t\t", "\n", "\n\n", "\r\n", " \n ", "\u00A0", "\u3000",
                         "\u2009", "\u200B", "\u0085", "\u180E", "   \n\n   ", "\v\f", "\u2028"};

// A random scalar value; biased towards interesting planes.
uint32_t random_cp(std::mt19937& rng) {
  std::uniform_int_distribution<int> which(0, 9);
  switch (which(rng)) {
    case 0: return std::uniform_int_distribution<uint32_t>(0x20, 0x7E)(rng);
    case 1: return std::uniform_int_distribution<uint32_t>(0xA0, 0x2FF)(rng);
    case 2: return std::uniform_int_distribution<uint32_t>(0x300, 0x36F)(rng);  // combining
    case 3: return std::uniform_int_distribution<uint32_t>(0x4E00, 0x9FFF)(rng);
    case 4: return std::uniform_int_distribution<uint32_t>(0x1F300, 0x1FAFF)(rng);
    case 5: {
      // Code points assigned after Unicode 14 (the PCRE2 gap).
      const char cats[] = "LMNPS";
      auto rs = unicode_added_ranges(cats[std::uniform_int_distribution<int>(0, 4)(rng)]);
      const auto& r = rs[std::uniform_int_distribution<size_t>(0, rs.size() - 1)(rng)];
      return std::uniform_int_distribution<uint32_t>(r.lo, r.hi)(rng);
    }
    case 6: return std::uniform_int_distribution<uint32_t>(0x0, 0x1F)(rng);
    default: {
      uint32_t c;
      do c = std::uniform_int_distribution<uint32_t>(0x80, 0x10FFFF)(rng);
      while (c >= 0xD800 && c <= 0xDFFF);
      return c;
    }
  }
}

std::vector<std::string> make_corpus(size_t count, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::string> out;
  auto pick = [&](auto& arr) { return std::string(arr[std::uniform_int_distribution<size_t>(0, std::size(arr) - 1)(rng)]); };
  for (size_t i = 0; i < count; ++i) {
    std::string s;
    int parts = std::uniform_int_distribution<int>(1, 12)(rng);
    for (int p = 0; p < parts; ++p) {
      switch (std::uniform_int_distribution<int>(0, 7)(rng)) {
        case 0: s += pick(kSnippets); break;
        case 1: case 2: s += pick(kProse); break;
        case 3: s += pick(kSpecial); break;
        case 4: {
          int n = std::uniform_int_distribution<int>(1, 4)(rng);
          for (int k = 0; k < n; ++k) s += pick(kSpaces);
          break;
        }
        case 5: {
          int n = std::uniform_int_distribution<int>(1, 30)(rng);
          for (int k = 0; k < n; ++k) s += cp(random_cp(rng));
          break;
        }
        case 6: {
          int n = std::uniform_int_distribution<int>(1, 25)(rng);
          for (int k = 0; k < n; ++k) s += char('0' + std::uniform_int_distribution<int>(0, 9)(rng));
          break;
        }
        default: {
          // A prose or code fragment cut at a random byte offset (may cut UTF-8 mid-sequence;
          // fixed up below for the valid-UTF-8 corpus).
          std::string t = pick(kProse) + pick(kSnippets);
          size_t a = std::uniform_int_distribution<size_t>(0, t.size() - 1)(rng);
          s += t.substr(a, std::uniform_int_distribution<size_t>(1, 60)(rng));
        }
      }
    }
    out.push_back(utf8_lossy(s));
  }
  return out;
}

// Runs the HF reference on texts (raw bytes) and decodes id lists; returns the parsed response.
json run_reference(const std::string& tokenizer_path, const std::vector<std::string>& texts,
                   const std::vector<std::vector<int32_t>>& decode = {}) {
  json req;
  req["tokenizer"] = tokenizer_path;
  req["texts_b64"] = json::array();
  for (const auto& t : texts) req["texts_b64"].push_back(b64encode(t));
  req["decode"] = decode;
  std::string dir = temp_dir();
  std::string in = dir + "/ref_in.json", out = dir + "/ref_out.json";
  write_file(in, req.dump());
  std::string cmd = "node '" + node_dir() + "/hf_reference.js' '" + in + "' '" + out + "'";
  int rc = std::system(cmd.c_str());
  EXPECT_EQ(rc, 0) << cmd;
  return json::parse(read_file(out));
}

}  // namespace

TEST(Tokenizer, KnownV4Encodings) {
  V4_REQUIRE_TOKENIZER();
  // Published V4 encodings (spec §5).
  EXPECT_EQ(tok->encode("ABCD"), (std::vector<int32_t>{51453}));
  EXPECT_EQ(tok->encode("Hello"), (std::vector<int32_t>{19923}));
  EXPECT_EQ(tok->encode("What is 2+2?"), (std::vector<int32_t>{3085, 344, 223, 20, 13, 20, 33}));
  EXPECT_EQ(tok->encode("The capital of France is"), (std::vector<int32_t>{671, 6102, 294, 8760, 344}));
  EXPECT_EQ(tok->encode("You are a helpful assistant"), (std::vector<int32_t>{3476, 477, 260, 11502, 22896}));
  EXPECT_EQ(tok->encode("你好"), (std::vector<int32_t>{30594}));
  EXPECT_EQ(tok->encode("推理"), (std::vector<int32_t>{36101}));
  EXPECT_EQ(tok->encode("答案"), (std::vector<int32_t>{7624}));
  EXPECT_EQ(tok->encode("Hello, DeepSeek V4."), (std::vector<int32_t>{19923, 14, 22651, 4374, 1465, 721, 22, 16}));
  EXPECT_EQ(tok->encode("你好，世界。"), (std::vector<int32_t>{30594, 303, 3427, 320}));
  EXPECT_EQ(tok->encode("Hello! 毕老师！1 + 1 = 2 ĠÑĤÐ²ÑĬÑĢ").size(), 26u);
  // Live V4-Flash /tokenize pin for user "ABCD" in chat mode.
  EXPECT_EQ(tok->encode("<｜begin▁of▁sentence｜><｜User｜>ABCD<｜Assistant｜></think>"),
            (std::vector<int32_t>{0, 128803, 51453, 128804, 128822}));
}

TEST(Tokenizer, SpecialTokenTable) {
  V4_REQUIRE_TOKENIZER();
  EXPECT_EQ(tok->vocab_size(), tokens::kVocabSize);
  EXPECT_EQ(tok->token_to_id(tokens::kThinkStart), tokens::kThinkStartId);
  EXPECT_EQ(tok->token_to_id(tokens::kThinkEnd), tokens::kThinkEndId);
  EXPECT_EQ(tok->token_to_id(tokens::kDsml), tokens::kDsmlId);
  EXPECT_EQ(tok->token_to_id(tokens::kLatestReminder), tokens::kLatestReminderId);
  EXPECT_EQ(tok->token_to_id(tokens::kUser), tokens::kUserId);
  EXPECT_EQ(tok->token_to_id(tokens::kAssistant), tokens::kAssistantId);
  EXPECT_EQ(tok->token_to_id(tokens::kBos), tokens::kBosId);
  EXPECT_EQ(tok->token_to_id(tokens::kEos), tokens::kEosId);
  EXPECT_EQ(tok->token_to_id(tokens::kTaskAction), 128829);
  EXPECT_EQ(tok->token_to_id(tokens::kTaskReadUrl), 128845);
  // ｜DSML｜ inside markup: "<" + 128825 + "invoke".
  auto ids = tok->encode("<｜DSML｜invoke");
  ASSERT_GE(ids.size(), 3u);
  EXPECT_EQ(ids[0], *tok->token_to_id("<"));
  EXPECT_EQ(ids[1], tokens::kDsmlId);
  EXPECT_EQ(tok->decode(ids), "<｜DSML｜invoke");
  // Every id decodes (no holes up to 129279).
  for (int32_t id = 128000; id < tokens::kVocabSize; ++id) EXPECT_FALSE(tok->token_bytes(id).empty()) << id;
  EXPECT_THROW(tok->decode({tokens::kVocabSize}), v4::InputError);
  EXPECT_THROW(tok->decode({-1}), v4::InputError);
}

TEST(Tokenizer, RoundTripsArbitraryBytes) {
  V4_REQUIRE_TOKENIZER();
  std::mt19937 rng(1234);
  for (int i = 0; i < 3000; ++i) {
    std::string s(std::uniform_int_distribution<size_t>(0, 200)(rng), '\0');
    int mode = i % 3;
    for (auto& c : s) {
      if (mode == 0) c = char(std::uniform_int_distribution<int>(0, 255)(rng));
      else if (mode == 1) c = char(std::uniform_int_distribution<int>(0x80, 0xFF)(rng));
      else c = "a <｜\xEF\xBC\x9C\xF0\x9F\x98\x80\n\t0"[std::uniform_int_distribution<int>(0, 17)(rng)];
    }
    auto ids = tok->encode(s);
    ASSERT_EQ(tok->decode(ids), s) << "case " << i;
    for (int32_t id : ids) ASSERT_TRUE(id >= 0 && id < tok->vocab_size());
  }
  for (const auto& s : make_corpus(300, 99)) ASSERT_EQ(tok->decode(tok->encode(s)), s);
  EXPECT_TRUE(tok->encode("").empty());
}

TEST(Tokenizer, MatchesHuggingFaceReferenceOnLargeCorpus) {
  V4_REQUIRE_TOKENIZER();
  if (!node_available()) GTEST_SKIP() << "node / npm package `tokenizers` not installed; " << kNodeHint;
  std::vector<std::string> corpus = make_corpus(4000, 42);
  // Long texts and pathological runs.
  corpus.push_back(std::string(5000, ' '));
  corpus.push_back(std::string(3000, 'a'));
  corpus.push_back(std::string(1000, '\n') + "x");
  std::string all;
  for (int i = 0; i < 200; ++i) all += corpus[i];
  corpus.push_back(all);
  // Every code point class the pre-tokenizer distinguishes, around letters and spaces.
  {
    std::string s;
    for (uint32_t c = 0x20; c < 0x3000; c += 7) {
      std::string ch = cp(c);
      s.append("a").append(ch).append(" ").append(ch).append("1").append(ch).append("\n");
    }
    corpus.push_back(s);
    std::string t;
    for (char cat : std::string("LMNPS"))
      for (const auto& r : unicode_added_ranges(cat))
        t.append("x").append(cp(r.lo)).append(cp(r.hi)).append(" ").append(cp(r.lo)).append("!");
    corpus.push_back(t);
  }
  size_t total = 0;
  for (auto& s : corpus) total += s.size();
  std::vector<std::vector<int32_t>> ours;
  for (const auto& s : corpus) ours.push_back(tok->encode(s));
  json ref = run_reference(v4_tokenizer_path(), corpus, {ours.begin(), ours.begin() + 200});
  ASSERT_EQ(ref["ids"].size(), corpus.size());
  size_t mismatches = 0;
  for (size_t i = 0; i < corpus.size(); ++i) {
    auto want = ref["ids"][i].get<std::vector<int32_t>>();
    if (want != ours[i]) {
      if (++mismatches <= 5) ADD_FAILURE() << "text " << i << " differs from HF tokenizers: " << json(corpus[i]).dump();
    }
  }
  EXPECT_EQ(mismatches, 0u) << "of " << corpus.size() << " texts, " << total << " bytes";
  for (size_t i = 0; i < 200; ++i)
    EXPECT_EQ(b64decode(ref["decoded_b64"][i].get<std::string>()), corpus[i]) << "decode " << i;
}

TEST(Tokenizer, InvalidUtf8MatchesReferenceAfterReplacement) {
  V4_REQUIRE_TOKENIZER();
  if (!node_available()) GTEST_SKIP() << "node / npm package `tokenizers` not installed; " << kNodeHint;
  // Raw input with ill-formed sequences: we encode it losslessly (bytes), and after the standard
  // U+FFFD replacement our encoding equals the reference's.
  std::mt19937 rng(7);
  std::vector<std::string> raw;
  const char* bad[] = {"\xFF", "\xC0\xAF", "\xE4\xBD", "\xF0\x9F\x98", "\xED\xA0\x80", "\x80\x80", "\xF5\x80\x80\x80"};
  for (int i = 0; i < 300; ++i) {
    std::string s;
    for (int k = 0; k < 8; ++k) {
      s += kProse[std::uniform_int_distribution<size_t>(0, std::size(kProse) - 1)(rng)];
      s += bad[std::uniform_int_distribution<size_t>(0, std::size(bad) - 1)(rng)];
    }
    raw.push_back(s);
  }
  json ref = run_reference(v4_tokenizer_path(), raw);
  for (size_t i = 0; i < raw.size(); ++i) {
    EXPECT_EQ(tok->decode(tok->encode(raw[i])), raw[i]);
    EXPECT_EQ(tok->encode(utf8_lossy(raw[i])), ref["ids"][i].get<std::vector<int32_t>>()) << i;
  }
}

TEST(Tokenizer, V3FileMatchesReferenceToo) {
  if (!node_available()) GTEST_SKIP() << "node / npm package `tokenizers` not installed; " << kNodeHint;
  std::string v3 = find_v3_tokenizer_json();
  ASSERT_FALSE(v3.empty());
  auto t3 = Tokenizer::from_file(v3);
  EXPECT_EQ(t3->vocab_size(), 128815);
  auto corpus = make_corpus(300, 5);
  json ref = run_reference(v3, corpus);
  for (size_t i = 0; i < corpus.size(); ++i) EXPECT_EQ(t3->encode(corpus[i]), ref["ids"][i].get<std::vector<int32_t>>()) << i;
}

TEST(Tokenizer, StreamingNeverEmitsBrokenUtf8) {
  V4_REQUIRE_TOKENIZER();
  for (const auto& s : make_corpus(300, 11)) {
    auto ids = tok->encode(s);
    StreamDecoder sd(*tok);
    std::string acc;
    for (int32_t id : ids) {
      std::string piece = sd.push(id);
      ASSERT_TRUE(utf8_valid(piece));
      acc += piece;
    }
    acc += sd.finish();
    EXPECT_EQ(acc, s);
  }
  // Ill-formed bytes become U+FFFD as soon as they are known to be ill-formed.
  StreamDecoder sd(*tok);
  EXPECT_EQ(sd.push_bytes("a\xE4"), "a");
  EXPECT_EQ(sd.push_bytes("\xBD"), "");
  EXPECT_EQ(sd.push_bytes("\xA0"), "你");
  EXPECT_EQ(sd.push_bytes("\xFF" "b"), "\xEF\xBF\xBD" "b");
  EXPECT_EQ(sd.push_bytes("\xF0\x9F"), "");
  EXPECT_EQ(sd.finish(), "\xEF\xBF\xBD");
  // skip_special drops special tokens.
  StreamDecoder ss(*tok, /*skip_special=*/true);
  EXPECT_EQ(ss.push(tokens::kBosId), "");
  EXPECT_EQ(tok->decode({0, 51453, 1}, true), "ABCD");
}

// Speed is a benchmark figure, printed, never asserted (a busy machine would fail a timed test):
// what this test checks is that a cold and a warm word cache encode 1 MiB identically.
TEST(Tokenizer, EncodesOneMegabyteColdAndWarmAlike) {
  V4_REQUIRE_TOKENIZER();
  std::string text;
  for (const auto& s : make_corpus(3000, 2024)) {
    text += s;
    if (text.size() > (1u << 20)) break;
  }
  text.resize(1u << 20);
  auto fresh = Tokenizer::from_file(v4_tokenizer_path());  // cold word cache
  auto t0 = std::chrono::steady_clock::now();
  auto ids = fresh->encode(text);
  double cold = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  t0 = std::chrono::steady_clock::now();
  auto ids2 = fresh->encode(text);
  double warm = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(ids, ids2);
  std::printf("[ speed    ] 1 MiB -> %zu tokens: cold %.3f s (%.1f MB/s), warm cache %.3f s\n", ids.size(), cold,
              1.048576 / cold, warm);
  EXPECT_GT(ids.size(), 100000u);  // ~4 bytes per token on this corpus
}

TEST(Tokenizer, RejectsBadFiles) {
  EXPECT_THROW(Tokenizer::from_json("{not json"), v4::InputError);
  EXPECT_THROW(Tokenizer::from_json("{}"), v4::InputError);
  EXPECT_THROW(Tokenizer::from_json(R"({"model":{"type":"Unigram"}})"), v4::InputError);
  EXPECT_THROW(Tokenizer::from_file("/nonexistent/tokenizer.json"), v4::InputError);
  EXPECT_THROW(build_v4_tokenizer_json("/nonexistent.json"), v4::InputError);
}

TEST(UnicodeCompat, WidensCategoriesAndSpace) {
  std::string w = widen_unicode_classes(R"([^\r\n\p{L}\p{P}]?\p{N}{1,3}\s+(?!\S)\pL)");
  EXPECT_NE(w.find("\\p{L}\\x{"), std::string::npos);
  EXPECT_NE(w.find("[\\p{N}\\x{"), std::string::npos);
  EXPECT_NE(w.find("[^\\S\\x{180E}]+"), std::string::npos);
  EXPECT_NE(w.find("(?![\\S\\x{180E}])"), std::string::npos);
  EXPECT_EQ(widen_unicode_classes(R"(\p{Lu}[a-z]\\s)"), R"(\p{Lu}[a-z]\\s)");
  // Table ranges are ordered and disjoint.
  for (char cat : std::string("LMNPS")) {
    uint32_t prev = 0;
    for (const auto& r : unicode_added_ranges(cat)) {
      EXPECT_LE(r.lo, r.hi);
      EXPECT_GT(r.lo, prev);
      prev = r.hi;
    }
  }
}

// Helper for tests/node/gen_unicode_table.js: writes PCRE2's class of every code point.
TEST(UnicodeCompat, DISABLED_DumpPcre2Classes) {
  const char* out = std::getenv("V4HOST_PCRE_CLASSES_OUT");
  if (!out) GTEST_SKIP() << "set V4HOST_PCRE_CLASSES_OUT";
  // Raw PCRE2 (no widening): compile through Regex on patterns without \p{..} widening targets is
  // not possible, so use the fine Unicode-14 classes via the Lu/Ll/... subcategories, which
  // widen_unicode_classes() leaves alone.
  Regex lm(R"(^[\p{Lu}\p{Ll}\p{Lt}\p{Lm}\p{Lo}\p{Mn}\p{Mc}\p{Me}]$)");
  Regex n(R"(^[\p{Nd}\p{Nl}\p{No}]$)");
  Regex ps(R"(^[\p{Pc}\p{Pd}\p{Ps}\p{Pe}\p{Pi}\p{Pf}\p{Po}\p{Sm}\p{Sc}\p{Sk}\p{So}]$)");
  Regex ws(R"(^[\s]$)");
  std::string s;
  for (uint32_t c = 0; c < 0x110000; ++c) {
    if (c >= 0xD800 && c < 0xE000) { s += '-'; continue; }
    std::string ch = cp(c);
    s += lm.full_match(ch) ? 'L' : n.full_match(ch) ? 'N' : ps.full_match(ch) ? 'P' : ws.full_match(ch) ? 'W' : 'O';
  }
  write_file(out, s);
}
