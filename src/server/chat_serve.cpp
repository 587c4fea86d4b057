#include "server/chat_serve.h"

#include <ctime>

#include "protocol/protocol.h"
#include "server/api_error.h"
#include "server/chat_params.h"
#include "server/chat_run.h"
#include "server/service.h"
#include "server/sse.h"

namespace v4 {

using protocol::ojson;
using protocol::StreamEvent;

struct ChatHandler {
  static void serve(Service& s, net::Reply& res, ChatServe o) {
    ChatParams p = chat_params_from(o.request, o.default_thinking);
    s.check_model(p.model);
    if (s.opt_.max_output_tokens > 0)
      p.max_tokens = p.max_tokens < 0 ? s.opt_.max_output_tokens : std::min(p.max_tokens, s.opt_.max_output_tokens);
    auto run = std::make_shared<ChatRun>(std::move(p), *s.sched_, s.tok_, s.masker_.get(), s.opt_.sched.ctx, s.opt_.log_prompts,
                                         s.grammars_.get());
    std::string warning = run->warning();
    for (auto& n : run->params().notes) warning += (warning.empty() ? "" : "; ") + n;
    if (!warning.empty()) res.set_header("x-v4host-warning", warning);
    std::string enforced;  // custom tools whose input grammar is enforced
    for (auto& f : run->params().freeform) enforced += (enforced.empty() ? "" : ", ") + f.spec.tool;
    if (!enforced.empty()) res.set_header("x-v4host-grammar-tools", enforced);
    const std::string id = new_id(o.id_prefix, s.next_id_++);
    const int64_t created = static_cast<int64_t>(std::time(nullptr));
    const protocol::Dialect d = o.dialect;
    auto req = std::make_shared<protocol::Request>(std::move(o.request));
    auto seal = o.seal;
    auto on_done = o.on_done;

    if (!run->params().stream) {
      respond_when_done(res, run->handle(), [=, &s](net::Reply& res, std::vector<TokenEvent>& ev) {
        const bool failed = run->handle()->finish_reason() == FinishReason::Error;
        if (failed && d != protocol::Dialect::Responses) throw ApiError(500, "generation failed: " + run->handle()->error());
        bool stop = false;
        run->feed(ev, &stop);
        run->finish();
        s.record_chat(*run);
        protocol::Response r = run->result();
        r.id = id;
        r.model = s.model_id_;
        r.created = created;
        // Logprobs of the tokens actually delivered (a stop string may cut the tail).
        if (run->params().logprobs) r.logprobs = ojson::parse(wire(run->logprobs_json(ev)));
        if (seal && r.reasoning) r.reasoning_encrypted = seal(*r.reasoning);
        ojson body = protocol::emit_response(d, r, *req);
        if (on_done) on_done(r, body);
        res.set_content(wire(body), "application/json");
        s.log_request(res, run->prompt_tokens(), run->completion_tokens(), run->finish_reason());
      });
      return;
    }

    protocol::StreamMeta meta;
    meta.id = id;
    meta.model = s.model_id_;
    meta.created = created;
    meta.include_usage = run->params().include_usage;
    meta.request = *req;
    meta.seal = seal;
    std::shared_ptr<protocol::StreamWriter> writer = protocol::make_stream_writer(d, std::move(meta));
    auto started = std::make_shared<bool>(false);
    auto frames = [writer](const std::vector<StreamEvent>& evs, std::vector<std::string>& out) {
      for (auto& e : evs)
        for (auto& f : writer->write(e)) out.push_back(f.wire());
    };
    auto start = [=](std::vector<std::string>& out) {
      if (*started) return;
      *started = true;
      protocol::Usage u;
      u.input_tokens = run->prompt_tokens();
      u.cached_tokens = run->handle()->cached_tokens;  // known once the request was admitted
      frames({StreamEvent::start(u)}, out);
    };
    SseCallbacks cb;
    cb.on_tokens = [=](const std::vector<TokenEvent>& ev, bool* stop) {
      std::vector<std::string> out;
      start(out);
      std::vector<StreamEvent> evs = run->events(run->feed(ev, stop));
      if (run->params().logprobs) {
        StreamEvent lp;
        lp.kind = StreamEvent::Kind::Logprobs;
        lp.logprobs = ojson::parse(wire(run->logprobs_json(ev)));
        evs.push_back(std::move(lp));
      }
      frames(evs, out);
      return out;
    };
    cb.on_finish = [=, &s]() {
      std::vector<std::string> out;
      start(out);
      std::vector<StreamEvent> evs = run->events(run->finish());
      s.record_chat(*run);
      if (run->handle()->finish_reason() == FinishReason::Error) {
        evs.push_back(StreamEvent::failed("generation failed: " + run->handle()->error()));
      } else {
        StreamEvent fin = StreamEvent::finished(run->finish_kind(), run->usage());
        evs.push_back(std::move(fin));
      }
      frames(evs, out);
      if (on_done) {
        if (auto* rw = dynamic_cast<protocol::responses::StreamWriter*>(writer.get())) {
          protocol::Response r = rw->response();
          on_done(r, protocol::responses::emit_response(r, *req));
        }
      }
      return out;
    };
    cb.on_close = s.stream_logger(res, run->handle());
    respond_sse(res, run->handle(), std::move(cb), s.opt_.keepalive_s);
  }

  static int count_tokens(Service& s, const protocol::Request& r) {
    ChatParams p = chat_params_from(r, false);
    s.check_model(p.model);
    const std::string prompt = render_chat_prompt(p, s.opt_.sched.ctx, nullptr);
    return static_cast<int>(s.tok_.encode(prompt).size());
  }
};

void serve_chat(Service& s, net::Reply& res, ChatServe o) { ChatHandler::serve(s, res, std::move(o)); }

// POST /v1/chat/completions (OpenAI), streaming and not.
void Service::handle_chat(const net::Request& req, net::Reply& res) {
  ChatServe o;
  o.dialect = protocol::Dialect::ChatCompletions;
  try {
    o.request = protocol::chat::parse_request(parse_body(req.body));
  } catch (const protocol::ProtocolError& e) {
    rethrow_protocol(e);
  }
  // V4 reads text only. Chat Completions clients hear so (as from other text-only servers);
  // Responses and Messages clients get the text answered and a warning (chat_params_from).
  for (size_t i = 0; i < o.request.messages.size(); ++i)
    if (!o.request.messages[i].images.empty())
      throw bad_param("messages[" + std::to_string(i) + "].content", "image parts are not supported: this model reads text only");
  o.id_prefix = "chatcmpl-";
  o.default_thinking = opt_.default_thinking;
  serve_chat(*this, res, std::move(o));
}

// POST /v1/messages (Anthropic Messages). Any anthropic-version / anthropic-beta header is
// accepted; the body decides everything.
void Service::handle_messages(const net::Request& req, net::Reply& res) {
  ChatServe o;
  o.dialect = protocol::Dialect::AnthropicMessages;
  try {
    o.request = protocol::anthropic::parse_request(parse_body(req.body));
  } catch (const protocol::ProtocolError& e) {
    rethrow_protocol(e);
  }
  o.id_prefix = "msg_";
  o.default_thinking = false;
  serve_chat(*this, res, std::move(o));
}

// POST /v1/messages/count_tokens: exactly the prompt tokens the same /v1/messages request is
// charged (the same rendering and tokenizer; a prefix-cache hit changes the split, not the total).
void Service::handle_count_tokens(const net::Request& req, net::Reply& res) {
  protocol::Request r;
  try {
    r = protocol::anthropic::parse_request(parse_body(req.body), true);
  } catch (const protocol::ProtocolError& e) {
    rethrow_protocol(e);
  }
  const int n = ChatHandler::count_tokens(*this, r);
  res.set_content(wire(nlohmann::json{{"input_tokens", n}}), "application/json");
  log_request(res, n, 0, "count_tokens");
}

}  // namespace v4
