// Router tests: config texts and errors shared by several test files.
#pragma once
#include <string>

#include "router/config.h"

namespace router_test {

// Four upstreams, one of each wire shape: a local v4host, a vLLM, the hosted DeepSeek API (key in
// ROUTER_TEST_DS_KEY) and an Anthropic API. Tests append their own routes and rules.
inline constexpr const char* kFourUpstreams = R"(upstreams:
  flash: {kind: v4host, base_url: "http://127.0.0.1:1/v1", residency: on-prem}
  vllm: {kind: vllm, base_url: "http://127.0.0.1:2/v1", model: deepseek-ai/DeepSeek-V4-Flash}
  pro: {kind: deepseek, base_url: "https://api.deepseek.com", model: deepseek-v4-pro, api_key_env: ROUTER_TEST_DS_KEY}
  claude: {kind: anthropic, base_url: "https://api.anthropic.com", model: claude-x}
)";

// The error a config text is refused with ("" when it loads).
inline std::string config_error(const std::string& yaml, const std::string& name = "t.yaml") {
  try {
    v4::router::load_config_text(yaml, name);
  } catch (const v4::router::ConfigError& e) {
    return e.what();
  }
  return "";
}

}  // namespace router_test
