// The `niah` suite: retrieval over long contexts, generated locally. For every context length L
// (prompt tokens, counted with the V4 tokenizer) and depth d (% into the document):
//   - single: one needle ("The secret code for the violet heron is 4821937.") at depth d; the
//     question asks for that code;
//   - mrcr: N look-alike needles for the same key with different codes (MRCR-style), the first
//     at depth d and the rest spread evenly over the rest of the document; the question asks for
//     the k-th one (k drawn from the seed).
// The haystack is a built-in generated corpus (deterministic for a seed, never repeating) or the
// user's own files (--haystack DIR: the text files under it in path order, e.g. a repository).
// Scoring is exact: the answer, stripped of whitespace, quotes, backticks, ** and a final period,
// equals the code. Lengths whose prompt plus answer room exceed the endpoint's context are
// skipped and listed in the summary.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "eval/suite.h"
#include "text/tokenizer.h"

namespace v4::eval {

struct NiahOptions {
  std::vector<long> lengths = {4096, 32768, 131072, 1048576};
  std::vector<double> depths = {0, 25, 50, 75, 100};
  std::vector<std::string> modes = {"single", "mrcr"};
  int needles = 4;       // look-alike needles for mrcr
  int per_cell = 1;      // items per (mode, length, depth)
  uint64_t seed = 1;
  std::string haystack_dir;  // "" = built-in corpus
  long context = 0;          // the endpoint's context (0 = unknown: no cap)
  int answer_tokens = 64;    // room left for the answer (the cap is length + this <= context)
};

// "4k,32k,128k,1m" -> {4096, 32768, 131072, 1048576}; InputError naming `flag` on bad input.
std::vector<long> parse_lengths(const std::string& s, const std::string& flag);
std::vector<double> parse_depths(const std::string& s, const std::string& flag);

// The exact-match normalisation used for retrieval answers.
std::string normalize_answer(const std::string& s);

std::unique_ptr<Suite> make_niah_suite(const NiahOptions& opt, const text::Tokenizer& tok);

}  // namespace v4::eval
