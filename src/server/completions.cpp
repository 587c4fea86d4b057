// POST /v1/completions: raw prompts (text or token ids), no chat template.
#include <chrono>

#include "server/chat_params.h"
#include "server/service.h"
#include "server/sse.h"
#include "server/stop_strings.h"
#include "server/submit.h"

namespace v4 {

using json = nlohmann::json;

namespace {

struct LogprobAcc {
  json tokens = json::array(), token_logprobs = json::array(), top = json::array(), offsets = json::array();
  size_t offset = 0;
  void add(const text::Tokenizer& tok, const TokenEvent& e) {
    const std::string s = tok.decode({e.id});
    tokens.push_back(text_or_bytes(s));
    token_logprobs.push_back(e.logprob);
    json t = json::object();
    for (auto& [id, lp] : e.top) t[text_or_bytes(tok.decode({id}))] = lp;
    top.push_back(t);
    offsets.push_back(offset);
    offset += s.size();
  }
  static std::string text_or_bytes(const std::string& s) {
    // JSON needs valid UTF-8: partial characters are shown as "bytes:\xNN..."
    for (unsigned char c : s)
      if (c >= 0x80) {
        std::string r = "bytes:";
        char b[5];
        for (unsigned char d : s) {
          std::snprintf(b, sizeof b, "\\x%02x", d);
          r += b;
        }
        return r;
      }
    return s;
  }
  json body() const { return {{"tokens", tokens}, {"token_logprobs", token_logprobs}, {"top_logprobs", top}, {"text_offset", offsets}}; }
};

}  // namespace

void Service::handle_completions(const net::Request& req, net::Reply& res) {
  auto body = parse_body(req.body);
  CompletionParams p = parse_completion_params(body);
  check_model(p.model);
  GenRequest g;
  g.prompt = p.has_ids ? p.prompt_ids : tokenize(p.prompt_text);
  for (int32_t t : g.prompt)
    if (t < 0 || t >= weights_.cfg.vocab_size)
      throw bad_param("prompt", "token id " + std::to_string(t) + " is outside the vocabulary");
  g.max_tokens = p.max_tokens;
  g.sampling = p.sampling;
  g.top_logprobs = p.logprobs;
  if (opt_.log_prompts) std::fprintf(stderr, "prompt: %s\n", p.has_ids ? "(token ids)" : p.prompt_text.c_str());
  const int prompt_n = static_cast<int>(g.prompt.size());
  auto h = submit_or_throw(*sched_, std::move(g));
  const std::string id = new_id("cmpl-", next_id_++);
  const int64_t created = static_cast<int64_t>(std::time(nullptr));
  const std::string echo = p.echo ? (p.has_ids ? tok_.decode(p.prompt_ids) : p.prompt_text) : "";
  auto usage = [h, prompt_n] {
    return json{{"prompt_tokens", prompt_n},
                {"completion_tokens", h->completion_tokens()},
                {"total_tokens", prompt_n + h->completion_tokens()},
                {"prompt_tokens_details", {{"cached_tokens", h->cached_tokens}}}};
  };
  auto reason = [h](bool stopped) {
    FinishReason r = h->finish_reason();
    return std::string(stopped || r == FinishReason::Stop ? "stop" : r == FinishReason::Length ? "length" : "stop");
  };
  if (!p.stream) {
    respond_when_done(res, h, [=, this](net::Reply& res, std::vector<TokenEvent>& ev) {
      if (h->finish_reason() == FinishReason::Error) throw ApiError(500, "generation failed: " + h->error());
      text::StreamDecoder dec(tok_);
      StopMatcher stop(p.stop);
      std::string out = echo;
      LogprobAcc lp;
      for (auto& e : ev) {
        if (stop.stopped()) break;
        out += stop.feed(dec.push(e.id));
        if (p.logprobs >= 0) lp.add(tok_, e);
      }
      if (!stop.stopped()) out += stop.feed(dec.finish()) + stop.flush();
      json choice = {{"index", 0}, {"text", out}, {"finish_reason", reason(stop.stopped())}, {"logprobs", nullptr}};
      if (p.logprobs >= 0) choice["logprobs"] = lp.body();
      json r = {{"id", id}, {"object", "text_completion"}, {"created", created}, {"model", model_id_},
                {"choices", json::array({choice})}, {"usage", usage()}};
      res.set_content(wire(r), "application/json");
      log_request(res, prompt_n,
                  h->completion_tokens(), "");
    });
    return;
  }
  struct State {
    text::StreamDecoder dec;
    StopMatcher stop;
    bool echoed = false;
  };
  auto st = std::make_shared<State>(State{text::StreamDecoder(tok_), StopMatcher(p.stop)});
  auto chunk = [=, this](const std::string& text, const json& finish, const json& logprobs) {
    json c = {{"index", 0}, {"text", text}, {"finish_reason", finish}, {"logprobs", logprobs}};
    return sse_data(wire(json{{"id", id}, {"object", "text_completion"}, {"created", created}, {"model", model_id_},
                         {"choices", json::array({c})}}));
  };
  SseCallbacks cb;
  cb.on_tokens = [=, this](const std::vector<TokenEvent>& ev, bool* stop) {
    std::vector<std::string> out;
    std::string text;
    if (!st->echoed) {
      text = echo;
      st->echoed = true;
    }
    LogprobAcc lp;
    for (auto& e : ev) {
      text += st->stop.feed(st->dec.push(e.id));
      if (p.logprobs >= 0) lp.add(tok_, e);
      if (st->stop.stopped()) break;
    }
    *stop = st->stop.stopped();
    if (!text.empty() || p.logprobs >= 0) out.push_back(chunk(text, nullptr, p.logprobs >= 0 ? lp.body() : json(nullptr)));
    return out;
  };
  cb.on_finish = [=, this]() {
    std::vector<std::string> out;
    std::string tail = st->stop.stopped() ? "" : st->stop.feed(st->dec.finish()) + st->stop.flush();
    if (h->finish_reason() == FinishReason::Error)
      out.push_back(sse_data(ApiError(500, "generation failed: " + h->error()).body_for("")));
    out.push_back(chunk(tail, reason(st->stop.stopped()), nullptr));
    if (p.include_usage)
      out.push_back(sse_data(wire(json{{"id", id}, {"object", "text_completion"}, {"created", created}, {"model", model_id_},
                                  {"choices", json::array()}, {"usage", usage()}})));
    out.push_back("data: [DONE]\n\n");
    return out;
  };
  cb.on_close = stream_logger(res, h);
  respond_sse(res, h, std::move(cb), opt_.keepalive_s);
}

}  // namespace v4
