#include "eval/tools_suite.h"

#include <set>

#include "core/error.h"
#include "eval/jsonl.h"
#include "eval/scorers.h"
#include "text/json_schema.h"

namespace v4::eval {

namespace {

const Json* find_tool(const Json& tools, const std::string& name) {
  if (!tools.is_array()) return nullptr;
  for (const auto& t : tools) {
    const Json& f = t.contains("function") ? t["function"] : t;
    if (f.value("name", "") == name) return &f;
  }
  return nullptr;
}

// Does actual call `c` match expected call `e`? (schema validity is checked separately)
bool call_matches(const Json& c, const Json& e, std::string* why) {
  if (c.value("name", "") != e.value("name", "")) {
    *why = "called " + c.value("name", "") + " where " + e.value("name", "") + " was expected";
    return false;
  }
  const Json& args = c["arguments"];
  if (!e.contains("arguments")) return true;
  for (auto it = e["arguments"].begin(); it != e["arguments"].end(); ++it) {
    const Json& ok = it.value();
    Json accepted = ok.is_array() ? ok : Json::array({ok});
    const bool present = args.contains(it.key());
    if (!present) {
      bool optional = false;
      for (const auto& v : accepted) optional |= v.is_string() && v.get<std::string>().empty();
      if (!optional) {
        *why = e.value("name", "") + ": argument '" + it.key() + "' missing";
        return false;
      }
      continue;
    }
    bool any = false;
    for (const auto& v : accepted) any |= json_equal(args[it.key()], v);
    if (!any) {
      *why = e.value("name", "") + ": argument '" + it.key() + "' = " + args[it.key()].dump() + ", expected one of " + accepted.dump();
      return false;
    }
  }
  return true;
}

bool assign(const Json& calls, const Json& exp, std::vector<bool>& used, size_t i, std::string* why) {
  if (i == calls.size()) return true;
  for (size_t k = 0; k < exp.size(); ++k) {
    if (used[k]) continue;
    std::string w;
    if (!call_matches(calls[i], exp[k], &w)) {
      if (why->empty()) *why = w;
      continue;
    }
    used[k] = true;
    if (assign(calls, exp, used, i + 1, why)) return true;
    used[k] = false;
  }
  return false;
}

class ToolsSuite : public Suite {
 public:
  explicit ToolsSuite(std::vector<Item> items) : items_(std::move(items)) {}
  std::string name() const override { return "tools"; }
  const std::vector<Item>& items() const override { return items_; }

  Outcome run(const Item& it, int sample, const Endpoint& ep, const TurnSettings& ts) const override {
    Outcome o = start_outcome(it, sample);
    ChatRequest req = make_request(it, ts);
    const Json turns = it.raw.contains("turns") ? it.raw["turns"] : Json::array();
    const size_t nturns = 1 + turns.size();
    size_t ok_turns = 0;
    Json log = Json::array();
    Json expected = it.expected;
    for (size_t t = 0; t < nturns; ++t) {
      Answer a = ep.chat(req);
      take_answer(o, a);
      if (!a.error.empty()) return o;
      std::string why = check_tool_turn(it.tools, expected, a);
      log.push_back(why.empty() ? Json("ok") : Json(why));
      if (!why.empty()) break;
      ++ok_turns;
      if (t + 1 == nturns) break;
      // Continue the conversation: the model's turn as it came (reasoning included), then one
      // tool message per call with the scripted result for that function.
      const Json& next = turns[t];
      Json asst = {{"role", "assistant"}, {"content", a.text}};
      if (!a.reasoning.empty()) {
        asst["reasoning_content"] = a.reasoning;
        o.detail["reasoning_sent_back"] = true;
      }
      Json tcs = Json::array();
      for (size_t k = 0; k < a.tool_calls.size(); ++k) {
        const Json& c = a.tool_calls[k];
        std::string id = c.value("id", "");
        if (id.empty()) id = "call_" + std::to_string(t) + "_" + std::to_string(k);
        tcs.push_back({{"id", id}, {"type", "function"},
                       {"function", {{"name", c.value("name", "")}, {"arguments", c["arguments"].is_string() ? c["arguments"].get<std::string>() : c["arguments"].dump()}}}});
      }
      if (!tcs.empty()) asst["tool_calls"] = tcs;
      req.messages.push_back(asst);
      std::vector<bool> used(next.contains("tool_results") ? next["tool_results"].size() : 0, false);
      for (const auto& tc : tcs) {
        std::string content = "{}";
        const std::string fname = tc["function"].value("name", "");
        for (size_t r = 0; r < used.size(); ++r) {
          const Json& res = next["tool_results"][r];
          if (!used[r] && res.value("name", "") == fname) {
            used[r] = true;
            content = res["content"].is_string() ? res["content"].get<std::string>() : res["content"].dump();
            break;
          }
        }
        req.messages.push_back({{"role", "tool"}, {"tool_call_id", tc["id"]}, {"content", content}});
      }
      if (next.contains("tool_choice")) req.tool_choice = next["tool_choice"];
      expected = next.value("expected", Json::object());
    }
    o.passed = ok_turns == nturns;
    o.score = static_cast<double>(ok_turns) / static_cast<double>(nturns);
    o.detail["turns"] = log;
    return o;
  }

 private:
  std::vector<Item> items_;
};

Json fn(const char* name, const char* desc, Json params) {
  return {{"type", "function"}, {"function", {{"name", name}, {"description", desc}, {"parameters", std::move(params)}}}};
}

Json builtin_tools() {
  return Json::array({
      fn("get_weather", "Current weather for a city.",
         {{"type", "object"},
          {"properties", {{"city", {{"type", "string"}}}, {"unit", {{"type", "string"}, {"enum", {"celsius", "fahrenheit"}}}}}},
          {"required", {"city"}},
          {"additionalProperties", false}}),
      fn("convert_currency", "Convert an amount between currencies.",
         {{"type", "object"},
          {"properties", {{"amount", {{"type", "number"}}}, {"from", {{"type", "string"}, {"enum", {"EUR", "USD", "GBP", "JPY"}}}},
                          {"to", {{"type", "string"}, {"enum", {"EUR", "USD", "GBP", "JPY"}}}}}},
          {"required", {"amount", "from", "to"}},
          {"additionalProperties", false}}),
      fn("create_ticket", "Open an issue in the tracker.",
         {{"type", "object"},
          {"properties", {{"title", {{"type", "string"}}}, {"priority", {{"type", "string"}, {"enum", {"low", "medium", "high"}}}},
                          {"assignees", {{"type", "array"}, {"items", {{"type", "string"}}}}}}},
          {"required", {"title", "priority"}},
          {"additionalProperties", false}}),
      fn("run_query", "Run a read-only SQL query on the analytics database.",
         {{"type", "object"}, {"properties", {{"sql", {{"type", "string"}}}, {"limit", {{"type", "integer"}, {"minimum", 1}}}}}, {"required", {"sql"}}, {"additionalProperties", false}}),
  });
}

Item builtin(const std::string& id, const std::string& cat, const std::string& user, Json expected, Json tool_choice = Json(),
             Json turns = Json()) {
  Item it;
  it.id = id;
  it.category = cat;
  it.messages = Json::array({{{"role", "system"}, {"content", "You are an assistant with tools. Call a tool when one is needed; otherwise answer directly."}},
                             {{"role", "user"}, {"content", user}}});
  it.tools = builtin_tools();
  it.tool_choice = tool_choice;
  it.expected = std::move(expected);
  it.scorer = "tools";
  it.raw = Json::object();
  if (!turns.is_null()) it.raw["turns"] = turns;
  return it;
}

Json call(const char* name, Json args) { return {{"name", name}, {"arguments", std::move(args)}}; }

std::vector<Item> builtin_items() {
  std::vector<Item> v;
  v.push_back(builtin("tools/simple-weather", "simple", "What's the weather in Paris right now? Use celsius.",
                      {{"calls", {call("get_weather", {{"city", {"Paris", "Paris, France"}}, {"unit", {"celsius"}}})}}}));
  v.push_back(builtin("tools/simple-currency", "simple", "Convert 250 euros to US dollars.",
                      {{"calls", {call("convert_currency", {{"amount", {250, 250.0}}, {"from", {"EUR"}}, {"to", {"USD"}}})}}}));
  v.push_back(builtin("tools/multiple-ticket", "multiple", "File a high-priority ticket titled 'Login page times out' and assign it to dana.",
                      {{"calls", {call("create_ticket", {{"title", {"Login page times out"}}, {"priority", {"high"}}, {"assignees", {Json::array({"dana"})}}})}}}));
  v.push_back(builtin("tools/multiple-query", "multiple", "How many orders were placed yesterday? The table is orders(created_at date). Query the database.",
                      {{"calls", {{{"name", "run_query"}}}}}));
  v.push_back(builtin("tools/parallel-weather", "parallel", "What's the weather in Tokyo and in Oslo? Check both at once.",
                      {{"calls", {call("get_weather", {{"city", {"Tokyo"}}, {"unit", {"", "celsius", "fahrenheit"}}}),
                                  call("get_weather", {{"city", {"Oslo"}}, {"unit", {"", "celsius", "fahrenheit"}}})}}}));
  v.push_back(builtin("tools/irrelevance-poem", "irrelevance", "Write a two-line poem about autumn.", {{"calls", Json::array()}}));
  v.push_back(builtin("tools/choice-required", "tool_choice", "I need the weather for Lima.",
                      {{"calls", {call("get_weather", {{"city", {"Lima"}}, {"unit", {"", "celsius", "fahrenheit"}}})}}}, "required"));
  v.push_back(builtin("tools/choice-none", "tool_choice", "What's the weather in Rome? Do not look it up, just say you won't check.",
                      {{"calls", Json::array()}}, "none"));
  v.push_back(builtin("tools/choice-named", "tool_choice", "Convert 10 pounds to yen.",
                      {{"calls", {call("convert_currency", {{"amount", {10, 10.0}}, {"from", {"GBP"}}, {"to", {"JPY"}}})}}},
                      {{"type", "function"}, {"function", {{"name", "convert_currency"}}}}));
  v.push_back(builtin("tools/multi-turn-weather", "multi_turn", "Is it warmer in Madrid than 20 degrees celsius right now?",
                      {{"calls", {call("get_weather", {{"city", {"Madrid"}}, {"unit", {"", "celsius"}}})}}}, Json(),
                      Json::array({{{"tool_results", {{{"name", "get_weather"}, {"content", "{\"city\":\"Madrid\",\"temperature\":27,\"unit\":\"celsius\"}"}}}},
                                    {"expected", {{"calls", Json::array()}, {"text_contains", {"27"}}}}}})));
  v.push_back(builtin("tools/multi-turn-chain", "multi_turn", "Convert 100 USD to EUR, then open a low-priority ticket titled with the converted amount in the form 'Budget: N EUR'.",
                      {{"calls", {call("convert_currency", {{"amount", {100, 100.0}}, {"from", {"USD"}}, {"to", {"EUR"}}})}}}, Json(),
                      Json::array({{{"tool_results", {{{"name", "convert_currency"}, {"content", "{\"amount\":92}"}}}},
                                    {"expected", {{"calls", {call("create_ticket", {{"title", {"Budget: 92 EUR"}}, {"priority", {"low"}}})}}}}}})));
  return v;
}

}  // namespace

std::string check_tool_turn(const Json& tools, const Json& expected, const Answer& a) {
  const Json exp_calls = expected.value("calls", Json::array());
  const Json& calls = a.tool_calls;
  for (const auto& c : calls) {
    const std::string name = c.value("name", "");
    const Json* f = find_tool(tools, name);
    if (!f) return "hallucinated function '" + name + "' (not among the declared tools)";
    if (!c["arguments"].is_object()) return name + ": arguments are not a JSON object: " + c["arguments"].dump();
    auto errs = text::validate_json_schema(c["arguments"], f->value("parameters", Json::object()));
    if (!errs.empty()) return name + ": arguments do not match the schema: " + (errs[0].path.empty() ? "" : errs[0].path + ": ") + errs[0].message;
  }
  if (calls.size() != exp_calls.size()) {
    if (exp_calls.empty()) return "called " + std::to_string(calls.size()) + " tool(s) where no call was expected";
    return std::to_string(calls.size()) + " call(s) where " + std::to_string(exp_calls.size()) + " were expected";
  }
  std::string why;
  if (expected.value("order", std::string("any")) == "strict") {
    for (size_t i = 0; i < calls.size(); ++i)
      if (!call_matches(calls[i], exp_calls[i], &why)) return why;
  } else {
    std::vector<bool> used(exp_calls.size(), false);
    if (!assign(calls, exp_calls, used, 0, &why)) return why.empty() ? "calls do not match" : why;
  }
  if (expected.contains("text_contains"))
    for (const auto& s : expected["text_contains"])
      if (a.text.find(s.get<std::string>()) == std::string::npos) return "answer does not contain '" + s.get<std::string>() + "'";
  return "";
}

std::unique_ptr<Suite> make_tools_suite(const std::string& path, bool with_builtin) {
  std::vector<Item> items;
  if (path.empty() || with_builtin) items = builtin_items();
  std::set<std::string> ids;
  for (const auto& it : items) ids.insert(it.id);
  if (!path.empty()) {
    for (const auto& line : read_jsonl(path)) {
      const std::string where = path + ":" + std::to_string(line.line_no);
      Item it = item_from_json(line.value, where);
      if (!it.tools.is_array() || it.tools.empty()) throw InputError(where + ": missing field 'tools' (a non-empty list)");
      const Json& e = line.value.contains("expected") ? line.value["expected"] : Json();
      if (!e.is_object() || !e.contains("calls") || !e["calls"].is_array())
        throw InputError(where + ": 'expected' must be {\"calls\": [{\"name\": ..., \"arguments\": {...}}, ...]}");
      for (const auto& c : e["calls"])
        if (!c.is_object() || !c.contains("name") || !c["name"].is_string()) throw InputError(where + ": every expected call needs a 'name'");
      if (line.value.contains("turns") && !line.value["turns"].is_array()) throw InputError(where + ": 'turns' must be a list");
      it.scorer = "tools";
      if (!ids.insert(it.id).second) throw InputError(where + ": duplicate id '" + it.id + "'");
      items.push_back(std::move(it));
    }
  }
  if (items.empty()) throw InputError(path + ": no items");
  return std::make_unique<ToolsSuite>(std::move(items));
}

}  // namespace v4::eval
