// V4 tokenizer: byte-level BPE loaded from a Hugging Face tokenizer.json.
//
// encode(): added tokens (special tokens such as <｜User｜>, <think>, ｜DSML｜) are matched as whole
// strings first (leftmost-longest; non-normalized tokens before normalized ones, as HF does), the
// rest is split by the pre-tokenizer (see pretokenizer.h) and each word is BPE-merged by rank.
// Equivalent to HF `tokenizer.encode(text, add_special_tokens=False)`. Any byte string is accepted:
// ill-formed UTF-8 is encoded byte by byte, so decode(encode(x)) == x for every x.
//
// decode(): ids -> raw bytes (exact, may be ill-formed UTF-8 if the ids are); StreamDecoder turns
// ids into text incrementally and never emits a broken UTF-8 sequence.
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace v4::text {

class PreTokenizer;

struct AddedToken {
  int32_t id;
  std::string content;
  bool special = true;
  bool normalized = false;
};

class Tokenizer {
 public:
  // Parses tokenizer.json text / file; throws v4::InputError on malformed or unsupported files.
  static std::unique_ptr<Tokenizer> from_json(const std::string& json_text);
  static std::unique_ptr<Tokenizer> from_file(const std::string& path);
  // <dir>/tokenizer.json.
  static std::unique_ptr<Tokenizer> from_model_dir(const std::string& dir);
  ~Tokenizer();

  std::vector<int32_t> encode(std::string_view text) const;
  // Appends to out (avoids a copy for callers that concatenate).
  void encode_into(std::string_view text, std::vector<int32_t>& out) const;
  // Raw bytes of the ids; throws InputError for an id outside [0, vocab_size()).
  std::string decode(const std::vector<int32_t>& ids, bool skip_special = false) const;
  // Raw bytes of one token (empty for an unused id).
  const std::string& token_bytes(int32_t id) const;

  // 1 + the largest id (BPE vocab and added tokens).
  int32_t vocab_size() const { return static_cast<int32_t>(id_bytes_.size()); }
  // Id of an exact token string (added token content or raw-byte vocab entry), if any.
  std::optional<int32_t> token_to_id(std::string_view token) const;
  bool is_special(int32_t id) const;
  bool is_added(int32_t id) const;
  const std::vector<AddedToken>& added_tokens() const { return added_; }

 private:
  Tokenizer();
  struct Trie;
  void bpe_word(std::string_view word, std::vector<int32_t>& out) const;
  void encode_plain(std::string_view text, std::vector<int32_t>& out) const;
  void split_added(std::string_view text, const Trie& trie, std::vector<std::pair<std::string_view, int32_t>>& out) const;

  std::unique_ptr<PreTokenizer> pre_;
  std::vector<std::string> id_bytes_;            // raw bytes per id
  std::vector<uint8_t> id_flags_;                // bit0: added, bit1: special
  std::unordered_map<std::string, int32_t> bytes_to_id_;  // BPE vocab, raw bytes -> id
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges_;  // (left,right) -> (rank, merged)
  int32_t byte_id_[256];
  bool ignore_merges_ = false;
  std::vector<AddedToken> added_;
  std::unique_ptr<Trie> trie_plain_;       // added tokens with normalized=false (matched first)
  std::unique_ptr<Trie> trie_normalized_;  // added tokens with normalized=true

  // Word cache (words -> ids); guarded for concurrent use from server threads.
  mutable std::mutex cache_mu_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

// Incremental detokenizer: push ids one at a time; returns only complete, well-formed UTF-8.
// Ill-formed byte sequences come out as U+FFFD once they are known to be ill-formed; finish()
// flushes a dangling incomplete tail as U+FFFD.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok, bool skip_special = false) : tok_(tok), skip_special_(skip_special) {}
  std::string push(int32_t id);
  std::string push_bytes(std::string_view bytes);
  std::string finish();

 private:
  const Tokenizer& tok_;
  bool skip_special_;
  std::string pending_;
};

}  // namespace v4::text
