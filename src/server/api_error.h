// Errors returned to API clients in the OpenAI shape:
// {"error": {"message": ..., "type": ..., "param": ..., "code": ...}} with an HTTP status.
#pragma once
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

namespace v4 {

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
};

inline ApiError bad_param(const std::string& param, const std::string& msg) { return ApiError(400, msg, param); }

}  // namespace v4
