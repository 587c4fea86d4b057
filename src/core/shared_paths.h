// Locating the project's shared reference data (golden logits, encoding fixtures).
#pragma once
#include <string>

namespace v4 {

// $V4HOST_SHARED, else `fallback` (tests pass ../shared from the source tree). Empty if absent.
std::string shared_dir(const std::string& fallback);
// $V4HOST_GOLDEN, else <shared>/golden. Empty if absent.
std::string golden_dir(const std::string& fallback_shared);

}  // namespace v4
