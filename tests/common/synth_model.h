// A small synthetic checkpoint (tiny preset, 512-token vocabulary) written to a per-process
// temporary directory and removed when the test process exits.
#pragma once
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>

#include "model/synth.h"
#include "model/weights.h"

namespace v4::test {

struct SynthModel {
  std::string dir;
  std::unique_ptr<ModelWeights> w;
  SynthModel(const std::string& tag, uint64_t seed, bool with_mtp, const std::string& revision = "preview",
             int layers = 5) {
    dir = (std::filesystem::temp_directory_path() / ("v4host-" + tag + "-" + std::to_string(::getpid()))).string();
    SynthOptions o;
    o.preset = "tiny";
    o.out_dir = dir;
    o.vocab = 512;
    o.layers = layers;
    o.revision = revision;
    o.seed = seed;
    o.quiet = true;
    write_synthetic_checkpoint(o);
    w = ModelWeights::load(dir, with_mtp, true);
  }
  ~SynthModel() { std::filesystem::remove_all(dir); }
};

}  // namespace v4::test
