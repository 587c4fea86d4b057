#include "eval/code_suite.h"

#include <set>

#include "core/error.h"
#include "eval/jsonl.h"
#include "eval/scorers.h"

namespace v4::eval {

namespace {

const char* kSystem =
    "You are an expert programmer. Answer with the complete solution in a single fenced code block "
    "(```python ... ``` or ```bash ... ```), with no tests and no example usage.";

struct Builtin {
  const char* id;
  const char* category;
  const char* prompt;
  const char* tests;
};

// Small tasks in the HumanEval style, written for v4host: a function to implement and asserts
// that exercise the edge cases.
const Builtin kBuiltins[] = {
    {"code/fizzbuzz", "basics", "Write a Python function `fizzbuzz(n: int) -> list[str]` returning the FizzBuzz sequence for 1..n: \"Fizz\" for multiples of 3, \"Buzz\" for multiples of 5, \"FizzBuzz\" for both, otherwise the number as a string.",
     "assert fizzbuzz(0) == []\nassert fizzbuzz(5) == ['1','2','Fizz','4','Buzz']\nassert fizzbuzz(15)[-1] == 'FizzBuzz'\nassert len(fizzbuzz(100)) == 100\n"},
    {"code/is_palindrome", "strings", "Write a Python function `is_palindrome(s: str) -> bool` that ignores case and every character that is not a letter or a digit.",
     "assert is_palindrome('A man, a plan, a canal: Panama')\nassert not is_palindrome('race a car')\nassert is_palindrome('')\nassert is_palindrome('0P0')\nassert not is_palindrome('0P')\n"},
    {"code/merge_intervals", "algorithms", "Write a Python function `merge_intervals(xs: list[tuple[int, int]]) -> list[tuple[int, int]]` that merges overlapping or touching closed intervals and returns them sorted by start.",
     "assert merge_intervals([]) == []\nassert merge_intervals([(1,3),(2,6),(8,10),(15,18)]) == [(1,6),(8,10),(15,18)]\nassert merge_intervals([(1,4),(4,5)]) == [(1,5)]\nassert merge_intervals([(5,6),(1,2)]) == [(1,2),(5,6)]\nassert merge_intervals([(1,10),(2,3)]) == [(1,10)]\n"},
    {"code/roman", "basics", "Write a Python function `to_roman(n: int) -> str` converting 1 <= n <= 3999 to a Roman numeral (subtractive notation: IV, IX, XL, XC, CD, CM).",
     "assert to_roman(1) == 'I'\nassert to_roman(4) == 'IV'\nassert to_roman(9) == 'IX'\nassert to_roman(58) == 'LVIII'\nassert to_roman(1994) == 'MCMXCIV'\nassert to_roman(3999) == 'MMMCMXCIX'\n"},
    {"code/word_freq", "strings", "Write a Python function `top_words(text: str, k: int) -> list[tuple[str, int]]` returning the k most frequent words (lower-cased, split on anything that is not a letter) with their counts, most frequent first, ties broken alphabetically.",
     "assert top_words('', 3) == []\nassert top_words('a b a c b a', 2) == [('a',3),('b',2)]\nassert top_words('The the THE cat. Cat!', 5) == [('the',3),('cat',2)]\nassert top_words('b a', 2) == [('a',1),('b',1)]\n"},
    {"code/lru_cache", "data-structures", "Write a Python class `LRU` with `__init__(self, capacity: int)`, `get(self, key) -> int` (returns -1 when absent) and `put(self, key, value)`, evicting the least recently used key when full.",
     "c = LRU(2)\nc.put(1, 1); c.put(2, 2)\nassert c.get(1) == 1\nc.put(3, 3)\nassert c.get(2) == -1\nc.put(4, 4)\nassert c.get(1) == -1\nassert c.get(3) == 3 and c.get(4) == 4\nc.put(3, 30)\nassert c.get(3) == 30\n"},
    {"code/parse_duration", "parsing", "Write a Python function `parse_duration(s: str) -> int` that turns strings like \"1h30m\", \"45s\", \"2h\", \"1h2m3s\" into seconds and raises ValueError for anything else (including the empty string and repeated or misordered units).",
     "assert parse_duration('45s') == 45\nassert parse_duration('2h') == 7200\nassert parse_duration('1h30m') == 5400\nassert parse_duration('1h2m3s') == 3723\nfor bad in ['', 'h', '1x', '3m1h', '1h1h', '1.5h']:\n    try:\n        parse_duration(bad)\n        raise AssertionError(bad)\n    except ValueError:\n        pass\n"},
    {"code/topo_sort", "algorithms", "Write a Python function `topo_order(deps: dict[str, list[str]]) -> list[str]` returning an order in which every key comes after all of its dependencies (dependencies that are not keys count as nodes too), choosing the alphabetically smallest available node at each step; raise ValueError on a cycle.",
     "assert topo_order({}) == []\nassert topo_order({'b': ['a'], 'c': ['b']}) == ['a','b','c']\nassert topo_order({'x': [], 'a': []}) == ['a','x']\nassert topo_order({'app': ['lib', 'core'], 'lib': ['core']}) == ['core','lib','app']\ntry:\n    topo_order({'a': ['b'], 'b': ['a']})\n    raise AssertionError('cycle')\nexcept ValueError:\n    pass\n"},
};

class CodeSuite : public Suite {
 public:
  CodeSuite(std::vector<Item> items, const Sandbox& sb) : items_(std::move(items)), sb_(sb) {}
  std::string name() const override { return "code"; }
  const std::vector<Item>& items() const override { return items_; }
  Json describe() const override { return {{"sandbox", sb_.mode()}}; }
  Outcome run(const Item& it, int sample, const Endpoint& ep, const TurnSettings& ts) const override {
    Outcome o = start_outcome(it, sample);
    Answer a = ep.chat(make_request(it, ts));
    take_answer(o, a);
    if (!a.error.empty()) return o;
    score_code(it, a.text, sb_, o);
    return o;
  }

 private:
  std::vector<Item> items_;
  const Sandbox& sb_;
};

Item make_task(const std::string& id, const std::string& category, const std::string& prompt, const std::string& tests,
               const std::string& language, double time_limit) {
  Item it;
  it.id = id;
  it.category = category;
  it.messages = Json::array({{{"role", "system"}, {"content", kSystem}}, {{"role", "user"}, {"content", prompt}}});
  it.scorer = "code";
  it.expected = {{"tests", tests}, {"language", language}, {"time_limit", time_limit}};
  it.meta["language"] = language;
  return it;
}

}  // namespace

std::string extract_code(const std::string& answer, const std::string& language) {
  std::string first;
  size_t pos = 0;
  while ((pos = answer.find("```", pos)) != std::string::npos) {
    size_t eol = answer.find('\n', pos);
    if (eol == std::string::npos) break;
    std::string tag = strip(answer.substr(pos + 3, eol - pos - 3));
    size_t end = answer.find("```", eol + 1);
    std::string body = answer.substr(eol + 1, end == std::string::npos ? std::string::npos : end - eol - 1);
    const bool match = tag == language || (language == "python" && (tag == "py" || tag == "python3")) ||
                       (language == "bash" && (tag == "sh" || tag == "shell"));
    if (match) return body;
    if (first.empty()) first = body;
    if (end == std::string::npos) break;
    pos = end + 3;
  }
  return first.empty() ? answer : first;
}

void score_code(const Item& task, const std::string& answer, const Sandbox& sb, Outcome& o) {
  const std::string lang = task.expected.value("language", std::string("python"));
  const double tl = task.expected.value("time_limit", 10.0);
  const std::string code = extract_code(answer, lang) + "\n\n" + task.expected.value("tests", std::string()) + "\n";
  SandboxResult r;
  if (lang == "python") r = sb.run({{"main.py", code}}, {"/usr/bin/python3", "-I", "-B", "main.py"}, tl);
  else r = sb.run({{"main.sh", code}}, {"/bin/bash", "main.sh"}, tl);
  if (r.setup_failed) {
    o.passed = false;
    o.error = r.why();
    o.error_kind = "sandbox";
    return;
  }
  o.passed = r.passed();
  o.score = o.passed ? 1 : 0;
  o.detail["result"] = r.why();
  o.detail["sandbox"] = sb.mode();
  if (!o.passed) {
    std::string err = r.proc.err;
    if (err.size() > 1500) err = "..." + err.substr(err.size() - 1500);
    if (!err.empty()) o.detail["stderr"] = err;
  }
}

std::unique_ptr<Suite> make_code_suite(const std::string& path, bool with_builtin, const Sandbox& sb) {
  std::vector<Item> items;
  if (path.empty() || with_builtin)
    for (const auto& b : kBuiltins) items.push_back(make_task(b.id, b.category, b.prompt, b.tests, "python", 10));
  std::set<std::string> ids;
  for (const auto& it : items) ids.insert(it.id);
  if (!path.empty()) {
    for (const auto& line : read_jsonl(path)) {
      const std::string where = path + ":" + std::to_string(line.line_no);
      const Json& j = line.value;
      if (!j.is_object()) throw InputError(where + ": expected a JSON object");
      Item base = item_from_json(j, where);
      if (!j.contains("tests") || !j["tests"].is_string()) throw InputError(where + ": missing field 'tests' (the test code, a string)");
      const std::string lang = j.value("language", std::string("python"));
      if (lang != "python" && lang != "bash") throw InputError(where + ": unsupported language '" + lang + "' (python or bash)");
      double tl = 10;
      if (j.contains("time_limit")) {
        if (!j["time_limit"].is_number() || j["time_limit"].get<double>() <= 0 || j["time_limit"].get<double>() > 600)
          throw InputError(where + ": 'time_limit' must be seconds in (0, 600]");
        tl = j["time_limit"].get<double>();
      }
      Item it = base;
      it.messages = Json::array({{{"role", "system"}, {"content", kSystem}}});
      for (const auto& m : base.messages) it.messages.push_back(m);
      it.scorer = "code";
      it.expected = {{"tests", j["tests"]}, {"language", lang}, {"time_limit", tl}};
      it.meta["language"] = lang;
      if (!ids.insert(it.id).second) throw InputError(where + ": duplicate id '" + it.id + "'");
      items.push_back(std::move(it));
    }
  }
  if (items.empty()) throw InputError(path + ": no tasks");
  return std::make_unique<CodeSuite>(std::move(items), sb);
}

}  // namespace v4::eval
