// Chat encoding: the official fixtures byte-exactly, spec examples, Python-isms, rejections, CLI.
#include <gtest/gtest.h>

#include <filesystem>

#include "core/error.h"
#include "text/chat_encoding.h"
#include "text/py_json.h"
#include "text_test_util.h"

using namespace v4::text;
using namespace v4::text::testing;

namespace {

std::string fixtures_dir() {
  std::string shared = v4::shared_dir(V4_SHARED_DEFAULT);
  if (shared.empty()) return "";
  std::string d = shared + "/encoding";
  return std::filesystem::exists(d + "/test_input_1.json") ? d : "";
}

// The official test's call for case n, as a render request.
ojson fixture_request(const std::string& dir, int n) {
  ojson in = parse_ordered_json(read_file(dir + "/test_input_" + std::to_string(n) + ".json"), "fixture");
  ojson req = ojson::object();
  if (n == 1) {
    req["messages"] = in["messages"];
    req["tools"] = in["tools"];
  } else {
    req["messages"] = in;
  }
  req["thinking_mode"] = n == 4 ? "chat" : "thinking";
  return req;
}

std::string render(const ojson& messages, const std::string& mode = "thinking", bool drop = true,
                   ojson effort = nullptr) {
  EncodeOptions o;
  o.thinking_mode = mode;
  o.drop_thinking = drop;
  o.reasoning_effort = effort;
  return encode_messages(messages, o);
}

ojson J(const char* s) { return ojson::parse(s); }

const std::string BOS = "<｜begin▁of▁sentence｜>", EOS = "<｜end▁of▁sentence｜>", U = "<｜User｜>", A = "<｜Assistant｜>";

int run_cli(const std::string& args, std::string* out) {
  std::string dir = temp_dir();
  std::string cmd = std::string(V4_BINARY) + " " + args + " > " + dir + "/cli_out 2> " + dir + "/cli_err";
  int rc = std::system(cmd.c_str());
  if (out) *out = read_file(dir + "/cli_out");
  return WEXITSTATUS(rc);
}

}  // namespace

TEST(ChatEncoding, OfficialFixturesByteExact) {
  std::string dir = fixtures_dir();
  if (dir.empty()) GTEST_SKIP() << "official fixtures not found in ../shared/encoding (set V4HOST_SHARED)";
  for (int n = 1; n <= 4; ++n) {
    std::string want = read_file(dir + "/test_output_" + std::to_string(n) + ".txt");
    EXPECT_EQ(ChatRequest::from_json(fixture_request(dir, n)).render(), want) << "fixture " << n;
  }
}

TEST(ChatEncoding, RenderCliMatchesFixtures) {
  std::string dir = fixtures_dir();
  if (dir.empty()) GTEST_SKIP() << "official fixtures not found in ../shared/encoding (set V4HOST_SHARED)";
  if (!std::filesystem::exists(V4_BINARY)) GTEST_SKIP() << "v4host binary not built";
  for (int n = 1; n <= 4; ++n) {
    std::string req = temp_dir() + "/req" + std::to_string(n) + ".json";
    write_file(req, fixture_request(dir, n).dump());
    std::string out;
    ASSERT_EQ(run_cli("render --request " + req, &out), 0);
    EXPECT_EQ(out, read_file(dir + "/test_output_" + std::to_string(n) + ".txt")) << n;
  }
}

TEST(ChatEncoding, SpecExamples) {
  EXPECT_EQ(render(J(R"([{"role":"user","content":"a"},{"role":"user","content":"b"}])"), "chat"),
            BOS + U + "a\n\nb" + A + "</think>");
  EXPECT_EQ(render(J(R"([{"role":"system","content":"S"},{"role":"user","content":"q"},
                         {"role":"assistant","content":"A","reasoning_content":"R"},{"role":"user","content":"q2"}])")),
            BOS + "S" + U + "q" + A + "</think>A" + EOS + U + "q2" + A + "<think>");
  std::string max = render(J(R"([{"role":"user","content":"hi"}])"), "thinking", true, "max");
  EXPECT_EQ(max.rfind(BOS + "Reasoning Effort: Absolute maximum with no shortcuts permitted.\n", 0), 0u);
  EXPECT_NE(max.find("left unchecked.\n\n" + U + "hi" + A + "<think>"), std::string::npos);
  // high and null render identically; max only in thinking mode.
  EXPECT_EQ(render(J(R"([{"role":"user","content":"hi"}])"), "thinking", true, "high"), BOS + U + "hi" + A + "<think>");
  EXPECT_EQ(render(J(R"([{"role":"user","content":"hi"}])"), "chat", true, "max"), BOS + U + "hi" + A + "</think>");
  // user then latest_reminder: assistant prefix before the reminder.
  EXPECT_EQ(render(J(R"([{"role":"user","content":"a"},{"role":"latest_reminder","content":"r"}])"), "chat"),
            BOS + U + "a" + A + "</think><｜latest_reminder｜>r");
  // Without dropping, earlier reasoning stays and every user turn opens <think>.
  EXPECT_EQ(render(J(R"([{"role":"user","content":"q"},{"role":"assistant","content":"A","reasoning_content":"R"},
                         {"role":"user","content":"q2"}])"), "thinking", false),
            BOS + U + "q" + A + "<think>R</think>A" + EOS + U + "q2" + A + "<think>");
}

TEST(ChatEncoding, ToolCallsResultsAndOrdering) {
  ojson msgs = J(R"([
    {"role":"user","content":"go"},
    {"role":"assistant","content":"","tool_calls":[
      {"id":"c1","type":"function","function":{"name":"f","arguments":"{\"x\": 1, \"s\": \"a\\nb\", \"o\": {\"k\": [1.5, true, null]}}"}},
      {"id":"c2","type":"function","function":{"name":"g","arguments":"{}"}},
      {"id":"c3","type":"function","function":{"name":"h","arguments":"not json"}}]},
    {"role":"tool","tool_call_id":"c3","content":"R3"},
    {"role":"tool","tool_call_id":"c1","content":[{"type":"text","text":"R1a"},{"type":"image"},{"type":"text","text":"R1b"}]},
    {"role":"tool","tool_call_id":"c2","content":{"k":"v"}},
    {"role":"user","content":"and?"}])");
  std::string got = render(msgs, "chat");
  std::string d = "｜DSML｜";
  std::string want = BOS + U + "go" + A + "</think>" + "\n\n<" + d + "tool_calls>\n" +
                     "<" + d + "invoke name=\"f\">\n" +
                     "<" + d + "parameter name=\"x\" string=\"false\">1</" + d + "parameter>\n" +
                     "<" + d + "parameter name=\"s\" string=\"true\">a\nb</" + d + "parameter>\n" +
                     "<" + d + "parameter name=\"o\" string=\"false\">{\"k\": [1.5, true, null]}</" + d + "parameter>\n" +
                     "</" + d + "invoke>\n" +
                     "<" + d + "invoke name=\"g\">\n\n</" + d + "invoke>\n" +
                     "<" + d + "invoke name=\"h\">\n<" + d + "parameter name=\"arguments\" string=\"true\">not json</" + d + "parameter>\n</" + d + "invoke>\n" +
                     "</" + d + "tool_calls>" + EOS + U +
                     "<tool_result>R1a\n\n[Unsupported image]\n\nR1b</tool_result>\n\n<tool_result>{'k': 'v'}</tool_result>\n\n"
                     "<tool_result>R3</tool_result>\n\nand?" + A + "</think>";
  EXPECT_EQ(got, want);
}

TEST(ChatEncoding, PythonJsonAndReprDetails) {
  EXPECT_EQ(py_json_dumps(J(R"({"b": 1, "a": [1.0, 1e16, 1e15, 0.0001, 1e-05, -0.0, 2.5e-7, 123456789012, "é\u0001\"\\/\n"]})")),
            "{\"b\": 1, \"a\": [1.0, 1e+16, 1000000000000000.0, 0.0001, 1e-05, -0.0, 2.5e-07, 123456789012, \"é\\u0001\\\"\\\\/\\n\"]}");
  EXPECT_EQ(py_str(J(R"({"a": "it's", "b": [true, null, 1.5], "c": "x\ty"})")), "{'a': \"it's\", 'b': [True, None, 1.5], 'c': 'x\\ty'}");
  EXPECT_EQ(py_str(J("\"plain\"")), "plain");
  EXPECT_EQ(py_float_repr(0.1), "0.1");
  EXPECT_EQ(py_float_repr(1.0 / 3), "0.3333333333333333");
  EXPECT_EQ(py_float_repr(1e22), "1e+22");
  // Tool schemas keep key order and Python separators.
  std::string out = render(J(R"([{"role":"system","content":"S","tools":[{"type":"function","function":
      {"name":"t","parameters":{"type":"object","properties":{"z":{"type":"number","minimum":0.5}},"required":["z"]}}}]},
      {"role":"user","content":"u"}])"));
  EXPECT_NE(out.find("{\"name\": \"t\", \"parameters\": {\"type\": \"object\", \"properties\": {\"z\": {\"type\": \"number\", \"minimum\": 0.5}}, \"required\": [\"z\"]}}"),
            std::string::npos);
  // str() of non-string contents, as the Python templates do.
  EXPECT_EQ(render(J(R"([{"role":"system","content":5},{"role":"latest_reminder"},{"role":"user","content":"q"}])"), "chat"),
            BOS + "5<｜latest_reminder｜>None" + U + "q" + A + "</think>");
  // response_format block.
  EXPECT_NE(render(J(R"([{"role":"system","content":"S","response_format":{"type":"json_object"}},{"role":"user","content":"u"}])"))
                .find("S\n\n## Response Format:\n\nYou MUST strictly adhere to the following schema to reply:\n{\"type\": \"json_object\"}"),
            std::string::npos);
}

TEST(ChatEncoding, TasksDeveloperAndDropRules) {
  EXPECT_EQ(render(J(R"([{"role":"user","content":"q","task":"query"}])"), "chat"), BOS + U + "q<｜query｜>");
  EXPECT_EQ(render(J(R"([{"role":"user","content":"q","task":"action"}])"), "thinking"), BOS + U + "q" + A + "<think><｜action｜>");
  // After a task turn the assistant has no thinking part.
  EXPECT_EQ(render(J(R"([{"role":"user","content":"q","task":"title"},{"role":"assistant","content":"T"}])"), "thinking"),
            BOS + U + "q<｜title｜>T" + EOS);
  // A developer turn before the last user turn is dropped in thinking mode with dropping.
  EXPECT_EQ(render(J(R"([{"role":"developer","content":"D"},{"role":"assistant","content":"x","reasoning_content":"r"},
                         {"role":"user","content":"u"}])")),
            BOS + "x" + EOS + U + "u" + A + "<think>");
  EXPECT_EQ(render(J(R"([{"role":"developer","content":"D"}])"), "chat"), BOS + U + "D" + A + "</think>");
  // wo_eos
  EXPECT_EQ(render(J(R"([{"role":"user","content":"q"},{"role":"assistant","content":"a","wo_eos":true}])"), "chat"),
            BOS + U + "q" + A + "</think>a");
  EXPECT_EQ(render(J("[]")), BOS);
}

TEST(ChatEncoding, RejectsWhatTheOfficialEncoderRejects) {
  auto bad = [](const char* msgs, const std::string& mode = "thinking", ojson effort = nullptr) {
    EXPECT_THROW(render(J(msgs), mode, true, effort), v4::InputError) << msgs;
  };
  bad(R"([{"role":"user","content":"q"}])", "fast");
  bad(R"([{"role":"user","content":"q"}])", "thinking", "low");
  bad(R"([{"role":"user","content":"q"}])", "thinking", 3);
  bad(R"([{"role":"wizard","content":"q"}])");
  bad(R"([{"content":"q"}])");
  bad(R"([{"role":"developer","content":""}])");
  bad(R"([{"role":"user","content":"q","task":"dance"}])");
  bad(R"([{"role":"user","content":["a"]}])");
  bad(R"([{"role":"user","content":null}])");
  bad(R"([{"role":"assistant","tool_calls":[{"function":{"name":"f"}}]}])");
  bad(R"([{"role":"assistant","tool_calls":[{"function":{"name":"f","arguments":"[1, 2]"}}]}])");
  bad(R"([{"role":"assistant","tool_calls":[{"type":"function"}]}])");
  bad(R"([{"role":"system","content":"s","tools":[{"type":"function"}]}])");
  bad(R"(["just a string"])");
  EXPECT_THROW(ChatRequest::from_text("{\"messages\": []}"), v4::InputError);  // no thinking_mode
  EXPECT_THROW(ChatRequest::from_text("{\"messages\": [], \"thinking_mode\": \"chat\", \"extra\": 1}"), v4::InputError);
  EXPECT_THROW(ChatRequest::from_text("{\"messages\": [], \"thinking_mode\": \"chat\", \"tools\": []}"), v4::InputError);
  EXPECT_THROW(ChatRequest::from_text("not json"), v4::InputError);
  // A developer turn that will be dropped is never rendered, so it is not checked (as in Python).
  EXPECT_NO_THROW(render(J(R"([{"role":"developer","content":""},{"role":"user","content":"u"}])")));
}

TEST(ChatEncoding, CliExitCodesAndIds) {
  if (!std::filesystem::exists(V4_BINARY)) GTEST_SKIP() << "v4host binary not built";
  std::string dir = temp_dir();
  write_file(dir + "/bad.json", R"({"messages":[{"role":"user","content":"q"}],"thinking_mode":"chat","reasoning_effort":"low"})");
  EXPECT_EQ(run_cli("render --request " + dir + "/bad.json", nullptr), 2);
  EXPECT_EQ(run_cli("render --request " + dir + "/missing.json", nullptr), 2);
  write_file(dir + "/ok.json", R"({"messages":[{"role":"user","content":"ABCD"}],"thinking_mode":"chat"})");
  std::string out;
  ASSERT_EQ(run_cli("render --request " + dir + "/ok.json", &out), 0);
  EXPECT_EQ(out, BOS + U + "ABCD" + A + "</think>");
  if (v4_tokenizer_path().empty()) GTEST_SKIP() << "V3 tokenizer not installed; " << kNodeHint;
  ASSERT_EQ(run_cli("render --ids --tokenizer " + v4_tokenizer_path() + " --request " + dir + "/ok.json", &out), 0);
  EXPECT_EQ(out, "[0, 128803, 51453, 128804, 128822]");
  // tokenize / detokenize round trip through the CLI.
  write_file(dir + "/text.txt", "Hello, DeepSeek V4.\n你好 <think>");
  ASSERT_EQ(run_cli("tokenize --tokenizer " + v4_tokenizer_path() + " < " + dir + "/text.txt", &out), 0);
  EXPECT_EQ(out.rfind("[19923, 14, 22651, 4374, 1465, 721, 22, 603, 30594, 223, 128821]", 0), 0u) << out;
  write_file(dir + "/ids.json", out);
  ASSERT_EQ(run_cli("detokenize --tokenizer " + v4_tokenizer_path() + " < " + dir + "/ids.json", &out), 0);
  EXPECT_EQ(out, "Hello, DeepSeek V4.\n你好 <think>");
  write_file(dir + "/badids.json", "[1, 999999]");
  EXPECT_EQ(run_cli("detokenize --tokenizer " + v4_tokenizer_path() + " < " + dir + "/badids.json", nullptr), 2);
  EXPECT_EQ(run_cli("tokenize --model /nonexistent < " + dir + "/text.txt", nullptr), 2);
}
