// One chat generation answered in any dialect: the neutral request (src/protocol) becomes
// ChatParams, the V4 prompt and a scheduler request; the tokens come back through the DSML
// parser as neutral events, and the dialect's writer (or its response emitter) renders them.
// Every chat-style handler (chat completions, messages, responses) is a parse + this call.
#pragma once
#include <functional>
#include <string>

#include "net/http_exchange.h"
#include "protocol/types.h"

namespace v4 {

class Service;

struct ChatServe {
  protocol::Dialect dialect = protocol::Dialect::ChatCompletions;
  protocol::Request request;
  const char* id_prefix = "chatcmpl-";
  bool default_thinking = true;
  // Responses with include reasoning.encrypted_content: reasoning -> blob.
  std::function<std::string(const std::string&)> seal;
  // Called once with the finished answer and its response object (Responses: the store).
  std::function<void(const protocol::Response&, const protocol::ojson& object)> on_done;
};

void serve_chat(Service& s, net::Reply& res, ChatServe o);

}  // namespace v4
