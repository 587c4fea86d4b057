#include "server/chat_run.h"

#include <cstdio>

#include "core/error.h"
#include "server/api_error.h"
#include "server/chat_constraint.h"
#include "server/submit.h"
#include "server/token_mask.h"
#include "text/utf8.h"

namespace v4 {

using json = nlohmann::json;

namespace {
text::ParserOptions parser_options(const ChatParams& p) {
  text::ParserOptions o;
  o.thinking = p.reasoning.thinking;
  if (!p.tools.empty()) o.tools = p.tools;
  return o;
}
}  // namespace

ChatRun::ChatRun(ChatParams p, Scheduler& sched, const text::Tokenizer& tok, const TokenMasker* masker, int64_t ctx,
                 bool log_prompt, GrammarCache* grammars)
    : p_(std::move(p)), tok_(tok), parser_(parser_options(p_)), dec_(tok), stop_(p_.stop), in_reasoning_(p_.reasoning.thinking) {
  // Think Max wants a long context (model card: >= 384K); below that fall back to High.
  constexpr int64_t kMaxCtx = 393216;
  if (p_.reasoning.max && ctx < kMaxCtx) {
    p_.reasoning.max = false;
    p_.encode.reasoning_effort = nullptr;
    warning_ = "reasoning_effort max needs a context of at least 393216 tokens (this server: --ctx " +
               std::to_string(ctx) + "); served as high";
  }
  std::string prompt;
  try {
    prompt = text::encode_messages(p_.messages, p_.encode);
  } catch (const InputError& e) {
    throw ApiError(400, e.what(), "messages");
  }
  if (log_prompt) std::fprintf(stderr, "prompt: %s\n", prompt.c_str());
  GenRequest g;
  g.prompt = tok_.encode(prompt);
  prompt_tokens_ = static_cast<int>(g.prompt.size());
  if (prompt_tokens_ >= ctx)
    throw ApiError(400, "the prompt has " + std::to_string(prompt_tokens_) + " tokens; this server's context limit is " +
                            std::to_string(ctx), "messages", "context_length_exceeded");
  const int room = static_cast<int>(ctx - prompt_tokens_);
  g.max_tokens = p_.max_tokens < 0 ? room : std::min(p_.max_tokens, room);
  g.sampling = p_.sampling;
  g.top_logprobs = p_.logprobs ? p_.top_logprobs : -1;
  think_end_ = tok_.token_to_id("</think>").value_or(-1);

  // Constrained decoding.
  const bool tools_on = !p_.tools.empty() && p_.tool_choice != "none";
  const bool forced_tool = tools_on && (p_.tool_choice == "required" || p_.tool_choice == "function");
  const bool json_out = p_.response_format == "json_schema" || p_.response_format == "json_object";
  if (masker && (tools_on || json_out)) {
    ChatConstraintSpec spec;
    const bool dsml = forced_tool || (tools_on && !json_out);
    const std::string forced_name = p_.tool_choice == "function" ? p_.tool_choice_name : "";
    auto compile = [&]() -> GrammarPtr {
      if (dsml) return compile_dsml_tool_calls(p_.tools, forced_name, p_.parallel_tool_calls);
      return p_.response_format == "json_schema" ? compile_json_schema(p_.response_schema) : compile_json_object();
    };
    try {
      if (grammars) {
        const std::string key = dsml ? "dsml:" + forced_name + (p_.parallel_tool_calls ? "|p|" : "|1|") + p_.tools.dump()
                                : p_.response_format == "json_schema" ? "schema:" + p_.response_schema.dump()
                                                                      : std::string("json_object");
        spec.grammar = grammars->get_or_compile(key, compile);
      } else {
        spec.grammar = compile();
      }
    } catch (const InputError& e) {
      throw ApiError(400, e.what(), json_out && !forced_tool ? "response_format" : "tools");
    }
    spec.forced = forced_tool || (json_out && !forced_tool);
    spec.thinking = p_.reasoning.thinking;
    spec.max_tokens = g.max_tokens;
    spec.reasoning_budget = std::max(8, g.max_tokens / 2);
    g.constraint = std::make_shared<ChatConstraint>(*masker, tok_, spec);
  } else if (masker && !p_.tools.empty() && p_.tool_choice == "none") {
    ChatConstraintSpec spec;
    spec.ban_tool_calls = true;
    spec.thinking = p_.reasoning.thinking;
    spec.max_tokens = g.max_tokens;
    g.constraint = std::make_shared<ChatConstraint>(*masker, tok_, spec);
  }
  h_ = submit_or_throw(sched, std::move(g));
}

void ChatRun::route(std::vector<text::Delta>& in, std::vector<text::Delta>& out, bool final) {
  for (auto& d : in) {
    if (d.kind == text::Delta::Kind::Content) {
      if (stop_.stopped()) continue;
      d.text = stop_.feed(d.text);
      if (d.text.empty()) continue;
    }
    out.push_back(std::move(d));
  }
  if (final && !stop_.stopped()) {
    std::string rest = stop_.flush();
    if (!rest.empty()) {
      text::Delta d;
      d.kind = text::Delta::Kind::Content;
      d.text = rest;
      out.push_back(d);
    }
  }
}

std::vector<text::Delta> ChatRun::feed(const std::vector<TokenEvent>& ev, bool* stop) {
  std::vector<text::Delta> out;
  for (auto& e : ev) {
    if (in_reasoning_) {
      if (e.id == think_end_) in_reasoning_ = false;
      else ++reasoning_tokens_;
    }
    auto d = parser_.feed(dec_.push(e.id));
    route(d, out, false);
    if (stop_.stopped()) break;
  }
  *stop = stop_.stopped();
  return out;
}

std::vector<text::Delta> ChatRun::finish() {
  std::vector<text::Delta> out;
  auto d = parser_.feed(dec_.finish());
  route(d, out, false);
  auto f = parser_.finish();
  route(f, out, true);
  return out;
}

std::string ChatRun::finish_reason() const {
  // "tool_calls" only when a valid call was produced; invalid ones are reported, not returned.
  for (auto& c : parser_.message().tool_calls)
    if (!c.error) return "tool_calls";
  if (stop_.stopped()) return "stop";
  return h_->finish_reason() == FinishReason::Length ? "length" : "stop";
}

int ChatRun::tool_call_failures() const {
  int n = 0;
  for (auto& c : parser_.message().tool_calls) n += c.error.has_value();
  return n;
}

json ChatRun::logprobs_json(const std::vector<TokenEvent>& ev) const {
  auto entry = [&](int32_t id, float lp) {
    const std::string& b = tok_.token_bytes(id);
    json bytes = json::array();
    for (unsigned char c : b) bytes.push_back(c);
    std::string s = text::utf8_lossy(b);
    return json{{"token", s}, {"logprob", lp}, {"bytes", bytes}};
  };
  json content = json::array();
  for (auto& e : ev) {
    json t = entry(e.id, e.logprob);
    json top = json::array();
    for (auto& [id, lp] : e.top) top.push_back(entry(id, lp));
    t["top_logprobs"] = top;
    content.push_back(t);
  }
  return content;
}

}  // namespace v4
