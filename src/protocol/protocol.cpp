#include "protocol/protocol.h"

namespace v4::protocol {

Request parse_request(Dialect d, const ojson& body) {
  switch (d) {
    case Dialect::ChatCompletions: return chat::parse_request(body);
    case Dialect::Completions: return completions::parse_request(body);
    case Dialect::Responses: return responses::parse_request(body);
    case Dialect::AnthropicMessages: return anthropic::parse_request(body);
  }
  return {};
}

ojson emit_request(Dialect d, const Request& r) {
  switch (d) {
    case Dialect::ChatCompletions: return chat::emit_request(r);
    case Dialect::Completions: return completions::emit_request(r);
    case Dialect::Responses: return responses::emit_request(r);
    case Dialect::AnthropicMessages: return anthropic::emit_request(r);
  }
  return {};
}

Response parse_response(Dialect d, const ojson& body) {
  switch (d) {
    case Dialect::ChatCompletions: return chat::parse_response(body);
    case Dialect::Completions: return completions::parse_response(body);
    case Dialect::Responses: return responses::parse_response(body);
    case Dialect::AnthropicMessages: return anthropic::parse_response(body);
  }
  return {};
}

ojson emit_response(Dialect d, const Response& r, const Request& req) {
  switch (d) {
    case Dialect::ChatCompletions: return chat::emit_response(r);
    case Dialect::Completions: return completions::emit_response(r);
    case Dialect::Responses: return responses::emit_response(r, req);
    case Dialect::AnthropicMessages: return anthropic::emit_response(r);
  }
  return {};
}

std::unique_ptr<StreamWriter> make_stream_writer(Dialect d, StreamMeta meta) {
  switch (d) {
    case Dialect::ChatCompletions: return std::make_unique<chat::StreamWriter>(std::move(meta));
    case Dialect::Completions: return std::make_unique<completions::StreamWriter>(std::move(meta));
    case Dialect::Responses: return std::make_unique<responses::StreamWriter>(std::move(meta));
    case Dialect::AnthropicMessages: return std::make_unique<anthropic::StreamWriter>(std::move(meta));
  }
  return nullptr;
}

std::unique_ptr<StreamReader> make_stream_reader(Dialect d) {
  switch (d) {
    case Dialect::ChatCompletions: return std::make_unique<chat::StreamReader>();
    case Dialect::Completions: return std::make_unique<completions::StreamReader>();
    case Dialect::Responses: return std::make_unique<responses::StreamReader>();
    case Dialect::AnthropicMessages: return std::make_unique<anthropic::StreamReader>();
  }
  return nullptr;
}

const char* dialect_path(Dialect d) {
  switch (d) {
    case Dialect::ChatCompletions: return "/v1/chat/completions";
    case Dialect::Completions: return "/v1/completions";
    case Dialect::Responses: return "/v1/responses";
    case Dialect::AnthropicMessages: return "/v1/messages";
  }
  return "";
}

std::optional<Dialect> dialect_for_path(std::string_view path) {
  if (auto q = path.find('?'); q != std::string_view::npos) path = path.substr(0, q);
  for (Dialect d : {Dialect::ChatCompletions, Dialect::Completions, Dialect::Responses, Dialect::AnthropicMessages})
    if (path == dialect_path(d)) return d;
  return std::nullopt;
}

}  // namespace v4::protocol
