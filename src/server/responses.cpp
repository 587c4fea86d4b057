// POST /v1/responses (OpenAI Responses), GET / DELETE /v1/responses/{id}.
//
// State: with store (default true) the response object and the conversation through its
// output are kept in the bounded ResponseStore; previous_response_id continues such a
// conversation (the new request's instructions replace the old ones, as OpenAI does).
// Without state (store: false, Codex), include ["reasoning.encrypted_content"] returns the
// reasoning sealed in the reasoning item; sent back, it is verified and rendered into the
// prompt exactly as generated.
#include "protocol/openai_responses.h"
#include "server/api_error.h"
#include "server/chat_params.h"
#include "server/chat_serve.h"
#include "server/reasoning_seal.h"
#include "server/response_store.h"
#include "server/service.h"

namespace v4 {

using protocol::Message;
using protocol::Role;

namespace {

// The assistant turn a response adds to the conversation.
Message output_message(const protocol::Response& r) {
  Message a;
  a.role = Role::Assistant;
  a.reasoning = r.reasoning;
  a.reasoning_encrypted = r.reasoning_encrypted;
  a.text = r.content;
  a.has_text = !r.content.empty() || r.tool_calls.empty();
  a.tool_calls = r.tool_calls;
  return a;
}

}  // namespace

void Service::handle_responses(const net::Request& req, net::Reply& res) {
  protocol::Request r;
  try {
    r = protocol::responses::parse_request(parse_body(req.body));
  } catch (const protocol::ProtocolError& e) {
    rethrow_protocol(e);
  }
  // The conversation without this request's instructions (they are not carried over).
  std::vector<Message> conv;
  const bool has_instructions = !r.instructions.empty();
  if (!r.previous_response_id.empty()) {
    auto prev = responses_->get(r.previous_response_id);
    if (!prev)
      throw ApiError(404, "previous response '" + r.previous_response_id +
                              "' not found (never stored, deleted, or evicted from this server's bounded store)",
                     "previous_response_id", "previous_response_not_found");
    conv = prev->conversation;
  }
  conv.insert(conv.end(), r.messages.begin() + (has_instructions ? 1 : 0), r.messages.end());
  // Sealed reasoning sent back: verified, then rendered as generated.
  for (Message& m : conv) {
    if (m.reasoning_encrypted.empty()) continue;
    auto text = seal_->open(m.reasoning_encrypted);
    if (!text)
      throw ApiError(400, "a reasoning item's encrypted_content failed its integrity check (altered, or sealed by a server with another --secret)",
                     "input", "invalid_encrypted_content");
    m.reasoning = *text;
  }
  if (conv.empty()) throw bad_param("input", "'input' is empty");
  r.messages.clear();
  if (has_instructions) {
    Message sys;
    sys.role = Role::System;
    sys.text = r.instructions;
    r.messages.push_back(std::move(sys));
  }
  r.messages.insert(r.messages.end(), conv.begin(), conv.end());

  ChatServe o;
  o.dialect = protocol::Dialect::Responses;
  o.id_prefix = "resp_";
  o.default_thinking = opt_.default_thinking;
  const bool include_encrypted =
      std::find(r.include.begin(), r.include.end(), "reasoning.encrypted_content") != r.include.end();
  if (include_encrypted) o.seal = [seal = seal_.get()](const std::string& t) { return seal->seal(t); };
  if (r.store.value_or(true)) {
    o.on_done = [store = responses_.get(), conv](const protocol::Response& resp, const protocol::ojson& object) {
      ResponseStore::Entry e;
      e.object = wire(object);
      e.conversation = conv;
      e.conversation.push_back(output_message(resp));
      store->put(resp.id, std::move(e));
    };
  }
  o.request = std::move(r);
  serve_chat(*this, res, std::move(o));
}

void Service::handle_response_get(const net::Request& req, net::Reply& res) {
  const std::string id = net::url_decode(req.param("id"));
  auto e = responses_->get(id);
  if (!e) throw ApiError(404, "response '" + id + "' not found (never stored, deleted, or evicted)", "response_id", "not_found");
  res.set_content(e->object, "application/json");
}

void Service::handle_response_delete(const net::Request& req, net::Reply& res) {
  const std::string id = net::url_decode(req.param("id"));
  if (!responses_->erase(id)) throw ApiError(404, "response '" + id + "' not found", "response_id", "not_found");
  res.set_content(wire(nlohmann::json{{"id", id}, {"object", "response"}, {"deleted", true}}), "application/json");
}

}  // namespace v4
