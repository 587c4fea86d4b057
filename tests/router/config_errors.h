// Router tests: the error a config text is refused with ("" when it loads).
#pragma once
#include <string>

#include "router/config.h"

namespace router_test {

inline std::string config_error(const std::string& yaml, const std::string& name = "t.yaml") {
  try {
    v4::router::load_config_text(yaml, name);
  } catch (const v4::router::ConfigError& e) {
    return e.what();
  }
  return "";
}

}  // namespace router_test
