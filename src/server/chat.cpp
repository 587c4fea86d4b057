// POST /v1/chat/completions (OpenAI), streaming and not.
#include <chrono>

#include "server/api_error.h"
#include "server/chat_run.h"
#include "server/service.h"
#include "server/sse.h"
#include "server/submit.h"

namespace v4 {

using json = nlohmann::json;
using Kind = text::Delta::Kind;

namespace {

json usage_json(const ChatRun& run) {
  const int c = run.completion_tokens();
  return {{"prompt_tokens", run.prompt_tokens()},
          {"completion_tokens", c},
          {"total_tokens", run.prompt_tokens() + c},
          {"prompt_tokens_details", {{"cached_tokens", run.handle()->cached_tokens}}},
          {"completion_tokens_details", {{"reasoning_tokens", run.reasoning_tokens()}}}};
}

}  // namespace

void Service::handle_chat(const net::Request& req, net::Reply& res) {
  auto body = parse_body(req.body);
  ChatParams p = parse_chat_params(body, opt_.default_thinking);
  check_model(p.model);
  auto run = std::make_shared<ChatRun>(std::move(p), *sched_, tok_, masker_.get(), opt_.sched.ctx, opt_.log_prompts, grammars_.get());
  if (!run->warning().empty()) res.set_header("x-v4host-warning", run->warning());
  const std::string id = new_id("chatcmpl-", next_id_++);
  const int64_t created = static_cast<int64_t>(std::time(nullptr));

  if (!run->params().stream) {
    respond_when_done(res, run->handle(), [=, this](net::Reply& res, std::vector<TokenEvent>& ev) {
      if (run->handle()->finish_reason() == FinishReason::Error) throw ApiError(500, "generation failed: " + run->handle()->error());
      bool stop = false;
      run->feed(ev, &stop);
      run->finish();
      record_chat(*run);
      const text::ParsedMessage& m = run->message();
      json msg = {{"role", "assistant"}, {"content", nullptr}};
      if (!m.content.empty() || m.tool_calls.empty()) msg["content"] = m.content;
      if (run->params().reasoning.thinking) msg["reasoning_content"] = m.reasoning;
      json calls = json::array(), errors = json::array();
      for (auto& c : m.tool_calls) {
        if (c.error) {
          json e = json::parse(wire(c.error->to_json()));
          e["id"] = c.id;
          e["name"] = c.name;
          errors.push_back(e);
        } else {
          calls.push_back(json::parse(wire(c.to_openai())));
        }
      }
      if (!calls.empty()) msg["tool_calls"] = calls;
      if (!errors.empty()) msg["tool_call_errors"] = errors;
      json choice = {{"index", 0}, {"message", msg}, {"finish_reason", run->finish_reason()}, {"logprobs", nullptr}};
      if (run->params().logprobs) {
        // Logprobs of the tokens actually delivered (a stop string may cut the tail).
        choice["logprobs"] = {{"content", run->logprobs_json(ev)}};
      }
      json r = {{"id", id}, {"object", "chat.completion"}, {"created", created}, {"model", model_id_},
                {"system_fingerprint", "v4host-0.1.0"}, {"choices", json::array({choice})}, {"usage", usage_json(*run)}};
      res.set_content(wire(r), "application/json");
      log_request(res, run->prompt_tokens(),
                  run->completion_tokens(), run->finish_reason());
    });
    return;
  }

  auto chunk = [=, this](const json& delta, const json& finish, const json& logprobs) {
    json c = {{"index", 0}, {"delta", delta}, {"finish_reason", finish}, {"logprobs", logprobs}};
    return sse_data(wire(json{{"id", id}, {"object", "chat.completion.chunk"}, {"created", created}, {"model", model_id_},
                         {"system_fingerprint", "v4host-0.1.0"}, {"choices", json::array({c})}}));
  };
  auto to_events = [=](const std::vector<text::Delta>& ds, std::vector<std::string>& out) {
    for (auto& d : ds) {
      switch (d.kind) {
        case Kind::Reasoning:
          out.push_back(chunk({{"reasoning_content", d.text}}, nullptr, nullptr));
          break;
        case Kind::Content:
          out.push_back(chunk({{"content", d.text}}, nullptr, nullptr));
          break;
        case Kind::ToolCallBegin:
          out.push_back(chunk({{"tool_calls", json::array({{{"index", d.index}, {"id", d.id}, {"type", "function"},
                                                              {"function", {{"name", d.name}, {"arguments", ""}}}}})}},
                              nullptr, nullptr));
          break;
        case Kind::ToolCallArguments:
          out.push_back(chunk({{"tool_calls", json::array({{{"index", d.index}, {"function", {{"arguments", d.text}}}}})}},
                              nullptr, nullptr));
          break;
        case Kind::ToolCallEnd:
          if (d.error) {
            json e = json::parse(wire(d.error->to_json()));
            e["index"] = d.index;
            out.push_back(chunk({{"tool_call_errors", json::array({e})}}, nullptr, nullptr));
          }
          break;
      }
    }
  };
  SseCallbacks cb;
  auto first = std::make_shared<bool>(true);
  cb.on_tokens = [=, this](const std::vector<TokenEvent>& ev, bool* stop) {
    std::vector<std::string> out;
    if (*first) {
      out.push_back(chunk({{"role", "assistant"}, {"content", ""}}, nullptr, nullptr));
      *first = false;
    }
    to_events(run->feed(ev, stop), out);
    if (run->params().logprobs) out.push_back(chunk(json::object(), nullptr, {{"content", run->logprobs_json(ev)}}));
    (void)this;
    return out;
  };
  cb.on_finish = [=, this]() {
    std::vector<std::string> out;
    if (*first) {
      out.push_back(chunk({{"role", "assistant"}, {"content", ""}}, nullptr, nullptr));
      *first = false;
    }
    to_events(run->finish(), out);
    record_chat(*run);
    if (run->handle()->finish_reason() == FinishReason::Error)
      out.push_back(sse_data(ApiError(500, "generation failed: " + run->handle()->error()).body_for("")));
    out.push_back(chunk(json::object(), run->finish_reason(), nullptr));
    if (run->params().include_usage)
      out.push_back(sse_data(wire(json{{"id", id}, {"object", "chat.completion.chunk"}, {"created", created}, {"model", model_id_},
                                  {"choices", json::array()}, {"usage", usage_json(*run)}})));
    out.push_back("data: [DONE]\n\n");
    return out;
  };
  cb.on_close = stream_logger(res, run->handle());
  respond_sse(res, run->handle(), std::move(cb), opt_.keepalive_s);
}

}  // namespace v4
