// The embedded default: a small synthetic V4 checkpoint with the V4 tokenizer, created on first
// use under $XDG_CACHE_HOME/v4host (or ~/.cache/v4host), so `v4host serve --demo` runs anywhere.
#pragma once
#include <string>

namespace v4::cli {

std::string ensure_demo_model(bool quiet);
// tokenizer.json contents for synthetic checkpoints (built from the V3 npm tokenizer), or "".
std::string synthetic_tokenizer_json();

}  // namespace v4::cli
