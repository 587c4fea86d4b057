// Errors returned to API clients in the OpenAI shape:
// {"error": {"message": ..., "type": ..., "param": ..., "code": ...}} with an HTTP status.
#pragma once
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

#include "protocol/types.h"

namespace v4 {

// Serialises a response: the protocol layer's serialiser (ill-formed UTF-8 in model output or
// echoed client strings becomes U+FFFD; echoed big integers keep their digits).
using protocol::wire;

struct ApiError : std::runtime_error {
  int status;
  std::string type, param, code;
  ApiError(int status_, std::string message, std::string param_ = "", std::string code_ = "",
           std::string type_ = "")
      : std::runtime_error(std::move(message)), status(status_), type(std::move(type_)), param(std::move(param_)),
        code(std::move(code_)) {
    if (type.empty()) type = status == 401 ? "authentication_error"
                             : status == 404 ? "not_found_error"
                             : status == 429 ? "rate_limit_error"
                             : status >= 500 ? "server_error"
                                             : "invalid_request_error";
  }
  nlohmann::json body() const {
    nlohmann::json e = {{"message", what()}, {"type", type}, {"param", nullptr}, {"code", nullptr}};
    if (!param.empty()) e["param"] = param;
    if (!code.empty()) e["code"] = code;
    return {{"error", e}};
  }
  // The Anthropic Messages shape: {"type": "error", "error": {"type": ..., "message": ...}}.
  nlohmann::json anthropic_body() const {
    std::string t = status == 401 ? "authentication_error" : status == 404 ? "not_found_error"
                    : status == 413 ? "request_too_large" : status == 429 ? "rate_limit_error"
                    : status >= 500 ? "api_error" : "invalid_request_error";
    return {{"type", "error"}, {"error", {{"type", t}, {"message", what()}}}};
  }
  // The shape the client of `path` expects.
  std::string body_for(const std::string& path) const {
    return wire(path.rfind("/v1/messages", 0) == 0 ? anthropic_body() : body());
  }
};

inline ApiError bad_param(const std::string& param, const std::string& msg) { return ApiError(400, msg, param); }

}  // namespace v4
