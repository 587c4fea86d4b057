// `v4host eval` as users run it: bad input named with exit 2, a killed run resumed without
// redoing or losing items, compare's JSON and its --fail-if-worse gate, and the HTML reports
// opened in headless Chromium.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>

#include <map>
#include <thread>

#include "../common/chromium_check.h"
#include "answer_server.h"
#include "eval/report_html.h"
#include "eval/results.h"
#include "eval_test_util.h"

using namespace v4;
using test::AnswerServer;
using test::OJson;
using test::Reply;

namespace {

std::string items_jsonl(int n) {
  std::string s;
  for (int i = 0; i < n; ++i)
    s += OJson{{"id", "q" + std::to_string(i)}, {"category", i % 2 ? "odd" : "even"}, {"prompt", "echo " + std::to_string(i)},
               {"expected", std::to_string(i)}, {"scorer", "exact"}}
             .dump() +
         "\n";
  return s;
}

// Answers "echo N" with N, except every third item.
Reply echo(const OJson& b) {
  std::string u = test::last_user(b);
  int n = std::stoi(u.substr(5));
  Reply r;
  r.content = n % 3 == 0 ? "no idea" : std::to_string(n);
  return r;
}

}  // namespace

TEST(EvalCli, MalformedLineIsNamedWithItsNumber) {
  test::Scratch tmp;
  AnswerServer srv(echo);
  auto f = tmp.write("mine.jsonl", items_jsonl(2) + "{\"id\": \"x\", \"prompt\": oops}\n");
  auto r = test::v4host({"eval", "run", f, "--url", srv.url(), "--model", "m", "--out", tmp.path("o.jsonl"), "-q"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("mine.jsonl:3: malformed JSON"), std::string::npos) << r.err;
  EXPECT_EQ(srv.requests(), 0u);  // nothing was sent before the file was checked
}

TEST(EvalCli, UnknownScorerAndMissingFieldsAreNamed) {
  test::Scratch tmp;
  AnswerServer srv(echo);
  auto f = tmp.write("a.jsonl", "{\"id\":\"a\",\"prompt\":\"p\",\"expected\":\"x\",\"scorer\":\"fuzzy\"}\n");
  auto r = test::v4host({"eval", "run", f, "--url", srv.url(), "--model", "m", "--out", tmp.path("o.jsonl"), "-q"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("a.jsonl:1: unknown scorer 'fuzzy'"), std::string::npos) << r.err;
  auto g = tmp.write("b.jsonl", "{\"id\":\"a\",\"prompt\":\"p\",\"scorer\":\"exact\",\"expected\":\"x\"}\n{\"prompt\":\"p\",\"scorer\":\"exact\",\"expected\":\"x\"}\n");
  r = test::v4host({"eval", "run", g, "--url", srv.url(), "--model", "m", "--out", tmp.path("o.jsonl"), "-q"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("b.jsonl:2: missing field 'id'"), std::string::npos) << r.err;
  auto h = tmp.write("c.jsonl", "{\"id\":\"a\",\"prompt\":\"p\",\"scorer\":\"regex\",\"expected\":\"(unclosed\"}\n");
  r = test::v4host({"eval", "run", h, "--url", srv.url(), "--model", "m", "--out", tmp.path("o.jsonl"), "-q"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("c.jsonl:1: scorer regex: bad regex"), std::string::npos) << r.err;
  r = test::v4host({"eval", "run", "nosuchsuite", "--url", srv.url(), "--model", "m", "--out", tmp.path("o.jsonl"), "-q"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("unknown suite 'nosuchsuite'"), std::string::npos) << r.err;
  r = test::v4host({"eval", "run", "tools", "--url", srv.url(), "--model", "m", "--out", tmp.path("o.jsonl"), "--reasoning", "extreme", "-q"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--reasoning: unknown mode 'extreme'"), std::string::npos) << r.err;
  ::unsetenv("V4HOST_EVAL_TEST_NO_SUCH_KEY");
  r = test::v4host({"eval", "run", "tools", "--url", srv.url(), "--model", "m", "--out", tmp.path("o.jsonl"), "--api-key-env",
                    "V4HOST_EVAL_TEST_NO_SUCH_KEY", "-q"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("$V4HOST_EVAL_TEST_NO_SUCH_KEY is not set"), std::string::npos) << r.err;
  EXPECT_EQ(srv.requests(), 0u);
}

TEST(EvalCli, UnreachableEndpointIsExit2) {
  test::Scratch tmp;
  auto f = tmp.write("mine.jsonl", items_jsonl(2));
  auto r = test::v4host({"eval", "run", f, "--url", "http://127.0.0.1:9/v1", "--model", "m", "--out", tmp.path("o.jsonl"), "-q"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("cannot reach the endpoint http://127.0.0.1:9/v1"), std::string::npos) << r.err;
}

TEST(EvalCli, KilledRunResumesWithoutRedoingOrLosingItems) {
  test::Scratch tmp;
  std::mutex mu;
  std::map<std::string, int> asked;
  AnswerServer srv([&](const OJson& b) {
    {
      std::lock_guard<std::mutex> l(mu);
      ++asked[test::last_user(b)];
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(120));
    return echo(b);
  });
  const int N = 24;
  auto f = tmp.write("mine.jsonl", items_jsonl(N));
  const std::string out = tmp.path("out.jsonl");
  std::vector<std::string> args = {"eval", "run", f, "--url", srv.url(), "--model", "m", "--out", out, "--concurrency", "2", "-q"};
  // SIGKILL (no chance to clean up) part-way through: once a few lines are in the file.
  {
    const pid_t pid = test::spawn_v4host(args);
    ASSERT_GT(pid, 0);
    EXPECT_TRUE(test::wait_until([&] { return test::line_count(out) >= 5; }));
    ::kill(pid, SIGKILL);
    int st = 0;
    ::waitpid(pid, &st, 0);
    EXPECT_TRUE(WIFSIGNALED(st));
  }
  auto partial = eval::load_results(out);
  EXPECT_GT(partial.size(), 0u);
  EXPECT_LT(partial.size(), static_cast<size_t>(N));
  auto second = test::v4host(args);
  ASSERT_EQ(second.exit_code, 0) << second.err;
  EXPECT_NE(second.out.find(std::to_string(partial.size()) + " already in"), std::string::npos) << second.out;
  // Every item exactly once in the file; none redone except what was in flight at the kill.
  std::map<std::string, int> lines;
  for (const auto& o : eval::load_results(out)) ++lines[o.id];
  EXPECT_EQ(lines.size(), static_cast<size_t>(N));
  EXPECT_EQ(test::line_count(out), static_cast<size_t>(N)) << "an item was written twice";
  int redone = 0;
  for (const auto& [q, n] : asked) {
    EXPECT_LE(n, 2) << q;
    redone += n - 1;
  }
  EXPECT_LE(redone, 2);  // at most the two in flight
  // The summary counts are the script's: items 0, 3, 6, ... (8 of 24) wrong.
  auto third = test::v4host({"eval", "report", out, "--summary", tmp.path("s.json")});
  ASSERT_EQ(third.exit_code, 0) << third.err;
  auto s = OJson::parse(test::slurp(tmp.path("s.json")));
  EXPECT_EQ(s["n"], N);
  EXPECT_EQ(s["passed"], N - 8);
  // A third run with the same --out has nothing left to do and sends nothing.
  const size_t before = srv.requests();
  auto again = test::v4host(args);
  EXPECT_EQ(again.exit_code, 0);
  EXPECT_EQ(srv.requests(), before);
}

TEST(EvalCli, RunWritesLinesSummaryAndProvenance) {
  test::Scratch tmp;
  AnswerServer srv(echo, 8192);
  auto f = tmp.write("mine.jsonl", items_jsonl(6));
  auto r = test::v4host({"eval", "run", f, "--url", srv.url(), "--model", "scripted", "--out", tmp.path("o.jsonl"), "--summary",
                         tmp.path("s.json"), "--seed", "9", "--reasoning", "high", "-q"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto s = OJson::parse(test::slurp(tmp.path("s.json")));
  EXPECT_EQ(s["suite"], "mine");
  EXPECT_EQ(s["n"], 6);
  EXPECT_EQ(s["passed"], 4);
  EXPECT_DOUBLE_EQ(s["pass_rate"].get<double>(), 4.0 / 6);
  EXPECT_EQ(s["ci95"].size(), 2u);
  EXPECT_EQ(s["categories"]["even"]["passed"], 2);  // 0, 2, 4: 0 is wrong
  EXPECT_EQ(s["categories"]["odd"]["passed"], 2);   // 1, 3, 5: 3 is wrong
  const auto& p = s["provenance"];
  EXPECT_EQ(p["endpoint"], srv.url());
  EXPECT_EQ(p["model"], "scripted");
  EXPECT_EQ(p["server"]["model"]["owned_by"], "test");
  EXPECT_EQ(p["context"], 8192);
  EXPECT_EQ(p["seed"], 9);
  EXPECT_EQ(p["reasoning"], "high");
  EXPECT_TRUE(p["machine"].contains("cores"));
  for (const auto& b : srv.bodies()) EXPECT_EQ(b["reasoning_effort"], "high");
  for (const auto& line : eval::load_results(tmp.path("o.jsonl"))) {
    auto j = line.to_json();
    for (const char* k : {"id", "passed", "score", "answer", "tokens", "latency_s"}) EXPECT_TRUE(j.contains(k)) << k;
  }
}

TEST(EvalCli, CompareJsonAndFailIfWorse) {
  test::Scratch tmp;
  // A: 10 items, B = A with 7 new passes and 1 loss: McNemar p = 2 * 9 / 256.
  std::string a, b;
  for (int i = 0; i < 20; ++i) {
    bool pa = i < 9, pb = (i < 8) || (i >= 9 && i < 16);
    a += OJson{{"id", "i" + std::to_string(i)}, {"passed", pa}, {"score", pa ? 1 : 0}}.dump() + "\n";
    b += OJson{{"id", "i" + std::to_string(i)}, {"passed", pb}, {"score", pb ? 1 : 0}}.dump() + "\n";
  }
  auto fa = tmp.write("a.jsonl", a), fb = tmp.write("b.jsonl", b);
  auto r = test::v4host({"eval", "compare", fa, fb, "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = OJson::parse(r.out);
  EXPECT_DOUBLE_EQ(j["a_pass_rate"].get<double>(), 0.45);
  EXPECT_DOUBLE_EQ(j["b_pass_rate"].get<double>(), 0.75);
  EXPECT_EQ(j["a_only"], 1);
  EXPECT_EQ(j["b_only"], 7);
  EXPECT_DOUBLE_EQ(j["p_value"].get<double>(), 0.0703125);
  EXPECT_EQ(j["verdict"], "no significant difference");
  // B -> A is a loss of 7 with 1 gain: not significant at 0.05, significant at 0.1.
  r = test::v4host({"eval", "compare", fb, fa, "--fail-if-worse"});
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("only A passed 7"), std::string::npos) << r.out;
  r = test::v4host({"eval", "compare", fb, fa, "--fail-if-worse", "--alpha", "0.1"});
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_NE(r.err.find("significantly worse"), std::string::npos);
  // Nothing in common, or not a results file: exit 2.
  auto fc = tmp.write("c.jsonl", "{\"id\":\"zzz\",\"passed\":true}\n");
  EXPECT_EQ(test::v4host({"eval", "compare", fa, fc}).exit_code, 2);
  auto fd = tmp.write("d.jsonl", "{\"id\":\"zzz\",\"passed\":true}\nnot json\n{\"id\":\"y\",\"passed\":false}\n");
  r = test::v4host({"eval", "compare", fa, fd});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("d.jsonl:2"), std::string::npos) << r.err;
}

TEST(EvalCli, HtmlReportsRenderInChromium) {
  test::Scratch tmp;
  // A retrieval summary: 2 lengths x 3 depths, one cell missing.
  OJson cells = OJson::array();
  auto cell = [&](long L, double d, long n, long p) {
    cells.push_back({{"category", "single"}, {"length", L}, {"depth", d}, {"n", n}, {"passed", p}, {"pass_rate", double(p) / n}, {"ci95", {0, 1}}});
  };
  cell(4096, 0, 2, 2);
  cell(4096, 50, 2, 1);
  cell(4096, 100, 2, 2);
  cell(32768, 0, 2, 2);
  cell(32768, 50, 2, 0);
  OJson s = {{"suite", "niah"}, {"n", 10}, {"passed", 7}, {"pass_rate", 0.7}, {"ci95", {0.39, 0.89}},
             {"categories", {{"single", {{"n", 10}, {"passed", 7}, {"pass_rate", 0.7}, {"ci95", {0.39, 0.89}}}}}},
             {"cells", cells}, {"provenance", {{"endpoint", "http://x/v1"}, {"model", "m"}}}};
  const std::string html = tmp.path("run.html");
  eval::write_run_html(html, s);
  auto r = v4::testing::open_in_chromium(html);
  if (!r.available) GTEST_SKIP() << r.message;
  EXPECT_TRUE(r.script_errors.empty()) << r.script_errors;
  EXPECT_GE(r.svg_rendered, 2);  // heatmap + interval chart
  EXPECT_EQ(r.svg_rendered, r.svg_total);
  // Cells as drawn: values, and the missing one grey with no value.
  auto count = [&](const std::string& needle) {
    size_t n = 0, p = 0;
    while ((p = r.dom.find(needle, p)) != std::string::npos) ++n, ++p;
    return n;
  };
  EXPECT_EQ(count("class=\"cell\""), 6u);
  EXPECT_EQ(count("data-value=\"1\""), 3u);
  EXPECT_EQ(count("data-value=\"0.5\""), 1u);
  EXPECT_EQ(count("data-value=\"0\""), 1u);
  EXPECT_EQ(count("data-value=\"\""), 1u);
  EXPECT_NE(r.dom.find("32K"), std::string::npos);
  EXPECT_EQ(v4::testing::text_of_key(r.dom, "all.pass_rate"), "70.0%");
  EXPECT_EQ(v4::testing::text_of_key(r.dom, "category.single.passed"), "7");

  OJson c = {{"n_pairs", 20}, {"a_pass_rate", 0.45}, {"b_pass_rate", 0.75}, {"a_only", 1}, {"b_only", 7}, {"both_passed", 8}, {"neither", 4},
             {"p_value", 0.0703125}, {"diff", 0.3}, {"diff_ci95", {0.05, 0.55}}, {"verdict", "no significant difference"},
             {"score", {{"a_mean", 0.45}, {"b_mean", 0.75}, {"diff", 0.3}, {"ci95", {0.05, 0.55}}}},
             {"a_only_ids", {"i8#0"}}, {"b_only_ids", {"i9#0"}}};
  const std::string ch = tmp.path("cmp.html");
  eval::write_compare_html(ch, c, "a.jsonl", "b.jsonl");
  auto r2 = v4::testing::open_in_chromium(ch);
  ASSERT_TRUE(r2.available) << r2.message;
  EXPECT_TRUE(r2.script_errors.empty()) << r2.script_errors;
  EXPECT_EQ(v4::testing::text_of_key(r2.dom, "all.a_only"), "1");
  EXPECT_EQ(v4::testing::text_of_key(r2.dom, "all.b_only"), "7");
  EXPECT_EQ(v4::testing::text_of_key(r2.dom, "all.p_value"), "0.07031");
  EXPECT_NE(r2.dom.find("i8#0"), std::string::npos);
}

TEST(EvalCli, CtrlCFinishesInFlightItemsAndExits130) {
  test::Scratch tmp;
  AnswerServer srv([](const OJson& b) {
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    return echo(b);
  });
  auto f = tmp.write("mine.jsonl", items_jsonl(20));
  const std::string out = tmp.path("out.jsonl"), err = tmp.path("err.txt");
  const pid_t pid = test::spawn_v4host({"eval", "run", f, "--url", srv.url(), "--model", "m", "--out", out, "-q"}, err);
  ASSERT_GT(pid, 0);
  EXPECT_TRUE(test::wait_until([&] { return test::line_count(out) >= 2; }));
  const size_t asked_at_sigint = srv.requests();
  ::kill(pid, SIGINT);
  int st = 0;
  ::waitpid(pid, &st, 0);
  ASSERT_TRUE(WIFEXITED(st));
  EXPECT_EQ(WEXITSTATUS(st), 130);
  EXPECT_NE(test::slurp(err).find("interrupted; rerun the same command"), std::string::npos) << test::slurp(err);
  // The item in flight at Ctrl-C was finished and written; nothing after it was started.
  auto rs = eval::load_results(out);
  EXPECT_EQ(rs.size(), srv.requests());
  EXPECT_LE(srv.requests(), asked_at_sigint + 1);
  auto again = test::v4host({"eval", "run", f, "--url", srv.url(), "--model", "m", "--out", out, "-q"});
  EXPECT_EQ(again.exit_code, 0);
  EXPECT_EQ(eval::load_results(out).size(), 20u);
  EXPECT_EQ(srv.requests(), 20u);  // nothing asked twice
}
