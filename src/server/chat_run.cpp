#include "server/chat_run.h"

#include <algorithm>
#include <cstdio>

#include "core/error.h"
#include "server/api_error.h"
#include "server/chat_constraint.h"
#include "server/submit.h"
#include "grammar/token_mask.h"
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

std::string render_chat_prompt(ChatParams& p, int64_t ctx, std::string* warning) {
  // Think Max wants a long context (model card: >= 384K); below that fall back to High.
  constexpr int64_t kMaxCtx = 393216;
  if (p.reasoning.max && ctx < kMaxCtx) {
    p.reasoning.max = false;
    p.encode.reasoning_effort = nullptr;
    if (warning)
      *warning = "reasoning_effort max needs a context of at least 393216 tokens (this server: --ctx " + std::to_string(ctx) +
                 "); served as high";
  }
  try {
    return text::encode_messages(p.messages, p.encode);
  } catch (const InputError& e) {
    throw ApiError(400, e.what(), "messages");
  }
}

ChatRun::ChatRun(ChatParams p, Scheduler& sched, const text::Tokenizer& tok, const TokenMasker* masker, int64_t ctx,
                 bool log_prompt, GrammarCache* grammars)
    : p_(std::move(p)), tok_(tok), parser_(parser_options(p_)), dec_(tok), stop_(p_.stop), in_reasoning_(p_.reasoning.thinking) {
  const std::string prompt = render_chat_prompt(p_, ctx, &warning_);
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
  g.cache_key = p_.cache_key;
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
      if (dsml) {
        std::vector<FreeformGrammar> ff;
        for (const auto& f : p_.freeform) ff.push_back(f.spec);
        return compile_dsml_tool_calls(p_.tools, forced_name, p_.parallel_tool_calls, ff);
      }
      return p_.response_format == "json_schema" ? compile_json_schema(p_.response_schema) : compile_json_object();
    };
    try {
      if (grammars) {
        std::string enforced;  // the tools dump shows each grammar; this says which are enforced
        for (const auto& f : p_.freeform) enforced += f.spec.tool + "|";
        const std::string key = dsml ? "dsml:" + forced_name + (p_.parallel_tool_calls ? "|p|" : "|1|") + enforced + p_.tools.dump()
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
    spec.dsml = dsml;
    if (forced_tool) {
      // A forced call must fit: refuse a budget below the shortest complete call (in tokens,
      // as the closing mode writes it, plus </think> when thinking) rather than cut it.
      const int need = ChatConstraint::min_tokens(*masker, tok_, spec.grammar) + (spec.thinking ? 1 : 0);
      if (g.max_tokens < need)
        throw ApiError(400, "max_tokens " + std::to_string(g.max_tokens) + " cannot fit a complete forced tool call (it needs at least " +
                                std::to_string(need) + " tokens)", "max_tokens");
    }
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
    // Where text follows valid calls (Responses: a message item after them).
    if (d.kind == text::Delta::Kind::ToolCallEnd && !d.error && d.index >= 0 &&
        static_cast<size_t>(d.index) < parser_.message().tool_calls.size() && !call_error(static_cast<size_t>(d.index)))
      ++valid_calls_;
    if (d.kind == text::Delta::Kind::Content && !d.text.empty()) {
      const size_t before = text_breaks_.empty() ? 0 : text_breaks_.back().calls;
      if (valid_calls_ > before) text_breaks_.push_back({content_len_, valid_calls_});
      content_len_ += d.text.size();
    }
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
  for (size_t i = 0; i < parser_.message().tool_calls.size(); ++i)
    if (!call_error(i)) return "tool_calls";
  if (stop_.stopped()) return "stop";
  return h_->finish_reason() == FinishReason::Length ? "length" : "stop";
}

protocol::FinishReason ChatRun::finish_kind() const {
  using F = protocol::FinishReason;
  if (h_->finish_reason() == FinishReason::Error) return F::Error;
  for (size_t i = 0; i < parser_.message().tool_calls.size(); ++i)
    if (!call_error(i)) return F::ToolCalls;
  if (stop_.stopped()) return F::StopSequence;
  return h_->finish_reason() == FinishReason::Length ? F::Length : F::Stop;
}

protocol::Usage ChatRun::usage() const {
  protocol::Usage u;
  u.input_tokens = prompt_tokens_;
  u.cached_tokens = h_->cached_tokens;
  u.output_tokens = h_->completion_tokens();
  u.reasoning_tokens = reasoning_tokens_;
  return u;
}

bool ChatRun::is_custom(const std::string& name) const {
  return std::find(p_.custom_tools.begin(), p_.custom_tools.end(), name) != p_.custom_tools.end();
}

namespace {
// The raw input of a custom call from its {"input": ...} arguments.
std::string custom_input(const std::string& args) {
  try {
    auto j = nlohmann::ordered_json::parse(args);
    if (j.is_object() && j.contains("input") && j["input"].is_string()) return j["input"];
  } catch (const nlohmann::json::exception&) {
  }
  return args;
}
}  // namespace

const text::ToolCallError* ChatRun::call_error(size_t i) const {
  const auto& c = parser_.message().tool_calls[i];
  if (c.error) return &*c.error;
  // A custom tool with an enforced grammar: its finished input must be in the language (it is,
  // when the call was generated under the grammar; this catches a block the matcher did not
  // follow, e.g. one opened in a spelling the grammar does not take).
  auto it = grammar_errors_.find(i);
  if (it == grammar_errors_.end()) {
    std::optional<text::ToolCallError> err;
    for (const auto& f : p_.freeform) {
      if (f.spec.tool != c.name) continue;
      GrammarMatcher m(f.grammar);
      if (!m.accept(custom_input(c.arguments)) || !m.is_complete())
        err = text::ToolCallError{"grammar_violation", "input of " + c.name + " does not match its " + f.spec.syntax + " grammar", {}};
    }
    it = grammar_errors_.emplace(i, std::move(err)).first;
  }
  return it->second ? &*it->second : nullptr;
}

std::vector<protocol::StreamEvent> ChatRun::events(const std::vector<text::Delta>& ds) {
  using protocol::StreamEvent;
  std::vector<StreamEvent> out;
  for (auto& d : ds) {
    const bool custom = std::find(custom_calls_.begin(), custom_calls_.end(), d.index) != custom_calls_.end();
    switch (d.kind) {
      case text::Delta::Kind::Reasoning: out.push_back(StreamEvent::reasoning(d.text)); break;
      case text::Delta::Kind::Content: out.push_back(StreamEvent::content(d.text)); break;
      case text::Delta::Kind::ToolCallBegin:
        if (is_custom(d.name)) {
          custom_calls_.push_back(d.index);
          custom_args_.clear();
        }
        out.push_back(StreamEvent::tool_start(d.index, d.id, d.name, is_custom(d.name)));
        break;
      case text::Delta::Kind::ToolCallArguments:
        if (custom) custom_args_ += d.text;
        else out.push_back(StreamEvent::tool_delta(d.index, d.text));
        break;
      case text::Delta::Kind::ToolCallEnd: {
        const text::ToolCallError* err = d.error ? &*d.error : nullptr;
        if (!err && d.index >= 0 && static_cast<size_t>(d.index) < parser_.message().tool_calls.size())
          err = call_error(static_cast<size_t>(d.index));
        if (custom && !err) out.push_back(StreamEvent::tool_delta(d.index, custom_input(custom_args_)));
        out.push_back(StreamEvent::tool_end(d.index, err ? nlohmann::ordered_json::parse(wire(err->to_json())) : nullptr));
        break;
      }
    }
  }
  return out;
}

protocol::Response ChatRun::result() const {
  protocol::Response r;
  const text::ParsedMessage& m = parser_.message();
  if (p_.reasoning.thinking) r.reasoning = m.reasoning;
  r.content = m.content;
  for (const auto& b : text_breaks_)
    if (b.offset < r.content.size()) r.text_breaks.push_back(b);
  for (size_t i = 0; i < m.tool_calls.size(); ++i) {
    const auto& c = m.tool_calls[i];
    if (const text::ToolCallError* err = call_error(i)) {
      protocol::ToolCallFailure f;
      f.index = static_cast<int>(i);
      f.id = c.id;
      f.name = c.name;
      f.error = nlohmann::ordered_json::parse(wire(err->to_json()));
      r.failures.push_back(std::move(f));
      continue;
    }
    protocol::ToolCall t;
    t.id = c.id;
    t.name = c.name;
    t.custom = is_custom(c.name);
    t.arguments = t.custom ? custom_input(c.arguments) : c.arguments;
    r.tool_calls.push_back(std::move(t));
  }
  r.finish = finish_kind();
  if (r.finish == protocol::FinishReason::Error) {
    r.error_message = "generation failed: " + h_->error();
    r.error_code = "server_error";
  }
  r.usage = usage();
  r.notes = p_.notes;
  if (!warning_.empty()) r.notes.push_back(warning_);
  return r;
}

int ChatRun::tool_call_failures() const {
  int n = 0;
  for (size_t i = 0; i < parser_.message().tool_calls.size(); ++i) n += call_error(i) != nullptr;
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
