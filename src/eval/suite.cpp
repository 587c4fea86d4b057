#include "eval/suite.h"

#include <filesystem>
#include <set>

#include "core/error.h"
#include "eval/jsonl.h"
#include "eval/scorers.h"

namespace v4::eval {

ChatRequest make_request(const Item& it, const TurnSettings& ts) {
  ChatRequest r;
  r.messages = it.messages;
  r.tools = it.tools;
  r.tool_choice = it.tool_choice;
  r.reasoning = ts.reasoning;
  r.max_tokens = it.max_tokens > 0 ? it.max_tokens : ts.max_tokens;
  r.temperature = ts.temperature;
  r.seed = ts.seed;
  return r;
}

Outcome start_outcome(const Item& it, int sample) {
  Outcome o;
  o.id = it.id;
  o.sample = sample;
  o.category = it.category;
  o.meta = it.meta;
  return o;
}

Outcome Suite::run(const Item& it, int sample, const Endpoint& ep, const TurnSettings& ts) const {
  return run_single(it, sample, ep, ts);
}

Outcome Suite::run_single(const Item& it, int sample, const Endpoint& ep, const TurnSettings& ts) const {
  Outcome o = start_outcome(it, sample);
  Answer a = ep.chat(make_request(it, ts));
  take_answer(o, a);
  if (!a.error.empty()) return o;
  Score s = score_answer(it, a);
  o.passed = s.passed;
  o.score = s.score;
  o.detail = s.detail;
  if (!s.error.empty()) {
    o.error = s.error;
    o.error_kind = "scorer";
    o.passed = false;
  }
  return o;
}

Item item_from_json(const Json& j, const std::string& where) {
  if (!j.is_object()) throw InputError(where + ": expected a JSON object");
  Item it;
  it.raw = j;
  if (!j.contains("id") || !(j["id"].is_string() || j["id"].is_number_integer()))
    throw InputError(where + ": missing field 'id' (a string)");
  it.id = j["id"].is_string() ? j["id"].get<std::string>() : std::to_string(j["id"].get<long>());
  if (it.id.empty()) throw InputError(where + ": 'id' is empty");
  if (j.contains("category")) {
    if (!j["category"].is_string()) throw InputError(where + ": 'category' must be a string");
    it.category = j["category"].get<std::string>();
  }
  if (j.contains("messages")) {
    if (!j["messages"].is_array() || j["messages"].empty()) throw InputError(where + ": 'messages' must be a non-empty list");
    for (const auto& m : j["messages"])
      if (!m.is_object() || !m.contains("role") || !m["role"].is_string())
        throw InputError(where + ": every message needs a 'role' (system, user, assistant or tool)");
    it.messages = j["messages"];
  } else if (j.contains("prompt") && j["prompt"].is_string()) {
    it.messages = Json::array({{{"role", "user"}, {"content", j["prompt"]}}});
  } else {
    throw InputError(where + ": missing field 'messages' (or 'prompt')");
  }
  if (j.contains("tools")) {
    if (!j["tools"].is_array()) throw InputError(where + ": 'tools' must be a list");
    it.tools = j["tools"];
  }
  if (j.contains("tool_choice")) it.tool_choice = j["tool_choice"];
  if (j.contains("expected")) it.expected = j["expected"];
  if (j.contains("max_tokens")) {
    if (!j["max_tokens"].is_number_integer() || j["max_tokens"].get<long>() < 1) throw InputError(where + ": 'max_tokens' must be a positive integer");
    it.max_tokens = j["max_tokens"].get<int>();
  }
  return it;
}

namespace {

class UserSuite : public Suite {
 public:
  UserSuite(std::string name, std::vector<Item> items) : name_(std::move(name)), items_(std::move(items)) {}
  std::string name() const override { return name_; }
  const std::vector<Item>& items() const override { return items_; }

 private:
  std::string name_;
  std::vector<Item> items_;
};

}  // namespace

std::unique_ptr<Suite> load_user_suite(const std::string& path) {
  std::vector<Item> items;
  std::set<std::string> ids;
  const std::string dir = std::filesystem::absolute(path).parent_path().string();
  for (const auto& line : read_jsonl(path)) {
    const std::string where = path + ":" + std::to_string(line.line_no);
    Item it = item_from_json(line.value, where);
    const Json& s = line.value.contains("scorer") ? line.value["scorer"] : Json();
    if (s.is_string()) {
      it.scorer = s.get<std::string>();
    } else if (s.is_object() && s.contains("command") && s["command"].is_string()) {
      it.scorer = "command";
      it.command = s["command"].get<std::string>();
    } else if (!s.is_null()) {
      throw InputError(where + ": 'scorer' must be a name (exact, contains, regex, json_schema, tool_call, command)");
    }
    if (line.value.contains("command") && line.value["command"].is_string()) it.command = line.value["command"].get<std::string>();
    if (!line.value.contains("expected") && it.scorer != "command") throw InputError(where + ": missing field 'expected'");
    it.base_dir = dir;
    std::string why = check_scorer_config(it);
    if (!why.empty()) throw InputError(where + ": " + why);
    if (!ids.insert(it.id).second) throw InputError(where + ": duplicate id '" + it.id + "'");
    items.push_back(std::move(it));
  }
  if (items.empty()) throw InputError(path + ": no items");
  std::string stem = std::filesystem::path(path).stem().string();
  return std::make_unique<UserSuite>(stem, std::move(items));
}

}  // namespace v4::eval
