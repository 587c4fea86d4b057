// Synthetic checkpoints: random, well-scaled weights written in the official DeepSeek V4
// instruct layout (config.json, model.safetensors.index.json, one shard per layer,
// generation_config.json, tokenizer_config.json), so the engine, the server and the
// benchmarks can run without downloading the real weights. See docs/synth.md.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/safetensors.h"

namespace v4 {

struct SynthOptions {
  std::string preset = "tiny";        // tiny | flash-shaped | pro-shaped
  std::string revision = "preview";   // preview (NextN mtp.0) | 0731 | 0813 (DSpark drafter mtp.0..2)
  std::string out_dir;                // created if absent; existing model-*.safetensors are replaced
  int experts = 0;                    // routed experts; 0 = preset default (8)
  int layers = 0;                     // num_hidden_layers; 0 = preset default
  int64_t vocab = 0;                  // vocab_size; 0 = 129280 (the real V4 tokenizer's)
  uint64_t seed = 0;
  std::string expert_dtype = "fp4";   // fp4 (instruct) | fp8 (Base / FP8-build layout)
  std::string scale_dtype = "e8m0";   // FP8 block scales: e8m0 (instruct, FP8 build) | f32 (Base)
  std::string tokenizer_json;         // contents of tokenizer.json to write; empty = none
  bool quiet = false;                 // no progress bar
};

// The HF-style config.json the options describe. Throws InputError on bad options.
nlohmann::json synth_config(const SynthOptions& opt);

// Writes the checkpoint for `opt` into opt.out_dir. Throws InputError on bad options or I/O failure.
void write_synthetic_checkpoint(const SynthOptions& opt);

// Same, for an arbitrary HF config (e.g. a golden set's config.json). Only out_dir, seed,
// expert_dtype, scale_dtype, tokenizer_json and quiet are taken from `opt`.
void write_synthetic_checkpoint(const nlohmann::json& config, const SynthOptions& opt);

// Layout (name, dtype, shape of every tensor, grouped by shard) that a config implies.
struct SynthTensorInfo {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
};
struct SynthShardInfo {
  std::string file;  // model-0000k-of-0000n.safetensors
  std::vector<SynthTensorInfo> tensors;
};
std::vector<SynthShardInfo> synth_layout(const nlohmann::json& config, const SynthOptions& opt);

// Fast round-to-nearest-even encoders used by the writer (valid for finite |x| <= 448 and
// |x| <= 6 respectively, i.e. after block scaling); tested against core/float_formats.h.
uint8_t synth_e4m3(float x);
uint8_t synth_e2m1(float x);

}  // namespace v4
