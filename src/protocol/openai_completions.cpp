#include "protocol/openai_completions.h"

#include "protocol/fields.h"
#include "protocol/openai_chat.h"
#include "protocol/parse_common.h"

namespace v4::protocol::completions {

using namespace fields;

Request parse_request(const ojson& body) {
  if (!body.is_object()) throw ProtocolError("", "the request body must be a JSON object");
  Request r;
  r.dialect = Dialect::Completions;
  if (!body.contains("model") || !body["model"].is_string()) throw ProtocolError("model", "'model' is required (a string)");
  r.model = body["model"];
  if (!body.contains("prompt")) throw ProtocolError("prompt", "'prompt' is required");
  const ojson& pr = body["prompt"];
  if (pr.is_string()) {
    r.prompt = pr;
  } else if (pr.is_array() && pr.size() == 1 && pr[0].is_string()) {
    r.prompt = pr[0];
  } else if (pr.is_array() && !pr.empty() && pr[0].is_number_integer()) {
    r.prompt_is_ids = true;
    for (auto& t : pr) {
      if (!t.is_number_integer() || t.get<int64_t>() < INT32_MIN || t.get<int64_t>() > INT32_MAX)
        throw ProtocolError("prompt", "a token-id prompt must hold only integers");
      r.prompt_ids.push_back(t.get<int32_t>());
    }
  } else {
    throw ProtocolError("prompt", "'prompt' must be a string or an array of token ids (batches are not supported)");
  }
  if (!r.prompt_is_ids && r.prompt.empty()) throw ProtocolError("prompt", "'prompt' is empty");
  r.max_tokens = present(body, "max_tokens") ? integer(body, "max_tokens", 1, 1 << 24) : 16;
  read_sampling(body, r);
  r.stop = read_stop(body, "stop");
  if (present(body, "logprobs")) r.completion_logprobs = static_cast<int>(integer(body, "logprobs", 0, 20));
  if (present(body, "echo")) r.echo = boolean(body, "echo");
  if (present(body, "n") && integer(body, "n", 1, 1) != 1) throw ProtocolError("n", "only n = 1 is supported");
  if (present(body, "stream")) r.stream = boolean(body, "stream");
  if (present(body, "stream_options") && body["stream_options"].is_object() && body["stream_options"].contains("include_usage"))
    r.include_usage = body["stream_options"]["include_usage"].is_boolean() && body["stream_options"]["include_usage"].get<bool>();
  if (present(body, "user") && body["user"].is_string()) r.user = body["user"];
  return r;
}

ojson emit_request(const Request& r) {
  ojson b = ojson::object();
  b["model"] = r.model;
  if (r.prompt_is_ids) {
    b["prompt"] = r.prompt_ids;
  } else if (!r.prompt.empty() || r.messages.empty()) {
    b["prompt"] = r.prompt;
  } else {
    std::string p;
    for (auto& m : r.messages) p += std::string(role_name(m.role)) + ": " + m.text + "\n";
    b["prompt"] = p + "assistant: ";
  }
  if (r.max_tokens) b["max_tokens"] = *r.max_tokens;
  write_sampling(r, b);
  if (!r.stop.empty()) b["stop"] = r.stop;
  if (r.completion_logprobs >= 0) b["logprobs"] = r.completion_logprobs;
  if (r.echo) b["echo"] = true;
  if (r.stream) {
    b["stream"] = true;
    b["stream_options"] = {{"include_usage", true}};
  }
  return b;
}

ojson emit_response(const Response& r) {
  ojson choice = {{"index", 0}, {"text", r.content}, {"logprobs", r.logprobs.is_null() ? ojson(nullptr) : r.logprobs},
                  {"finish_reason", finish_reason_name(r.finish == FinishReason::ToolCalls ? FinishReason::Stop : r.finish)}};
  ojson u = chat::usage_json(r.usage);
  u.erase("completion_tokens_details");
  return {{"id", r.id}, {"object", "text_completion"}, {"created", r.created}, {"model", r.model},
          {"choices", ojson::array({choice})}, {"usage", u}};
}

Response parse_response(const ojson& body) {
  if (!body.is_object()) bad_upstream("", "not a JSON object");
  if (body.contains("error") && body["error"].is_object())
    throw ProtocolError("error", "upstream error: " + body["error"].value("message", body["error"].dump()), 502, "upstream_error");
  if (!body.contains("choices") || !body["choices"].is_array() || body["choices"].empty()) bad_upstream("choices", "no choices");
  const ojson& ch = body["choices"][0];
  Response r;
  r.id = body.value("id", "");
  r.model = body.value("model", "");
  r.content = ch.is_object() ? ch.value("text", "") : "";
  r.finish = chat::parse_finish(ch.is_object() && ch.contains("finish_reason") ? ch["finish_reason"] : ojson(nullptr));
  if (ch.is_object() && ch.contains("logprobs")) r.logprobs = ch["logprobs"];
  if (body.contains("usage")) r.usage = chat::parse_usage(body["usage"]);
  return r;
}

SseFrame StreamWriter::chunk(const std::string& text, ojson finish) const {
  ojson c = {{"index", 0}, {"text", text}, {"logprobs", nullptr}, {"finish_reason", std::move(finish)}};
  return {"", wire(ojson{{"id", m_.id}, {"object", "text_completion"}, {"created", m_.created}, {"model", m_.model},
                         {"choices", ojson::array({c})}})};
}

std::vector<SseFrame> StreamWriter::write(const StreamEvent& e) {
  using K = StreamEvent::Kind;
  std::vector<SseFrame> out;
  if (done_) return out;
  switch (e.kind) {
    case K::TextDelta:
      out.push_back(chunk(e.text, nullptr));
      break;
    case K::Finish: {
      out.push_back(chunk("", finish_reason_name(e.finish)));
      if (m_.include_usage) {
        ojson u = chat::usage_json(e.usage);
        u.erase("completion_tokens_details");
        out.push_back({"", wire(ojson{{"id", m_.id}, {"object", "text_completion"}, {"created", m_.created}, {"model", m_.model},
                                      {"choices", ojson::array()}, {"usage", u}})});
      }
      out.push_back({"", "[DONE]"});
      done_ = true;
      break;
    }
    case K::Error:
      out.push_back({"", wire(ojson{{"error", {{"message", e.text}, {"type", "server_error"}, {"param", nullptr}, {"code", nullptr}}}})});
      out.push_back({"", "[DONE]"});
      done_ = true;
      break;
    default:
      break;
  }
  return out;
}

std::vector<StreamEvent> StreamReader::read(const SseFrame& f) {
  std::vector<StreamEvent> out;
  if (done_) return out;
  if (f.data == "[DONE]") return end();
  ojson j = read_sse_object(f, "chunk");
  if (j.contains("error") && j["error"].is_object()) {
    const ojson& er = j["error"];
    out.push_back(StreamEvent::failed(er.value("message", "upstream error"),
                                      er.contains("code") && er["code"].is_string() ? er["code"].get<std::string>() : "upstream_error"));
    done_ = true;
    return out;
  }
  if (!started_) {
    started_ = true;
    out.push_back(StreamEvent::start());
  }
  if (j.contains("usage") && j["usage"].is_object() && finish_) finish_->usage = chat::parse_usage(j["usage"]);
  else if (j.contains("usage") && j["usage"].is_object()) pending_usage_ = chat::parse_usage(j["usage"]);
  if (j.contains("choices") && j["choices"].is_array())
    for (auto& ch : j["choices"]) {
      if (!ch.is_object()) continue;
      if (ch.contains("text") && ch["text"].is_string() && !ch["text"].get_ref<const std::string&>().empty())
        out.push_back(StreamEvent::content(ch["text"]));
      if (ch.contains("finish_reason") && ch["finish_reason"].is_string())
        finish_ = StreamEvent::finished(chat::parse_finish(ch["finish_reason"]), pending_usage_);
    }
  return out;
}

std::vector<StreamEvent> StreamReader::end() {
  std::vector<StreamEvent> out;
  if (done_) return out;
  if (!started_) out.push_back(StreamEvent::start());
  started_ = true;
  if (finish_) out.push_back(*finish_);
  else out.push_back(StreamEvent::failed("upstream stream ended without a finish_reason", "bad_upstream_response"));
  done_ = true;
  return out;
}

}  // namespace v4::protocol::completions
