// A suite is a list of items and a way to run one of them against the endpoint: one chat turn
// and a scorer for most, several turns for tool conversations, a sandboxed test run for code.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "eval/endpoint.h"
#include "eval/item.h"

namespace v4::eval {

struct TurnSettings {
  std::string reasoning;  // none | high | max | "" (server default)
  int max_tokens = 256;
  double temperature = 0;
  long seed = -1;
};

class Suite {
 public:
  virtual ~Suite() = default;
  virtual std::string name() const = 0;
  virtual const std::vector<Item>& items() const = 0;
  // Runs item `it` (sample `sample`) and scores it. Never throws for the endpoint's or the
  // model's failures: those are the outcome's error.
  virtual Outcome run(const Item& it, int sample, const Endpoint& ep, const TurnSettings& ts) const;
  // Facts the summary records (sandbox mode, grid, ...).
  virtual Json describe() const { return Json::object(); }

 protected:
  // The default: one chat turn with the item's messages/tools, scored by the item's scorer.
  Outcome run_single(const Item& it, int sample, const Endpoint& ep, const TurnSettings& ts) const;
};

// A chat request from an item and the turn settings.
ChatRequest make_request(const Item& it, const TurnSettings& ts);
Outcome start_outcome(const Item& it, int sample);

// The user's JSONL file ({"id","messages","tools"?,"tool_choice"?,"expected","scorer","category"?,
// "command"?,"max_tokens"?}). Every line is checked up front: a malformed line, a missing field,
// an unknown scorer, a duplicate id -> v4::InputError naming PATH:LINE.
std::unique_ptr<Suite> load_user_suite(const std::string& path);

// Item fields common to every JSONL format (id, category, messages or prompt, tools, ...); throws
// InputError with `where` ("PATH:LINE") in front.
Item item_from_json(const Json& j, const std::string& where);

}  // namespace v4::eval
