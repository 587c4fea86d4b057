#include "text/tokenizer.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <queue>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "text/byte_level.h"
#include "text/pretokenizer.h"
#include "text/utf8.h"

namespace v4::text {

using nlohmann::json;

// Byte trie over added-token contents for leftmost-longest matching.
struct Tokenizer::Trie {
  struct Node {
    std::vector<std::pair<uint8_t, int32_t>> kids;  // sorted by byte
    int32_t token = -1;
  };
  std::vector<Node> nodes{1};
  bool first_byte[256] = {};
  bool empty = true;

  void insert(std::string_view s, int32_t id) {
    if (s.empty()) return;
    empty = false;
    first_byte[static_cast<uint8_t>(s[0])] = true;
    int32_t n = 0;
    for (unsigned char c : s) {
      auto& kids = nodes[n].kids;
      auto it = std::lower_bound(kids.begin(), kids.end(), std::make_pair(static_cast<uint8_t>(c), int32_t{-1}));
      if (it != kids.end() && it->first == c) {
        n = it->second;
      } else {
        int32_t nn = static_cast<int32_t>(nodes.size());
        kids.insert(it, {static_cast<uint8_t>(c), nn});
        nodes.emplace_back();
        n = nn;
      }
    }
    nodes[n].token = id;
  }
  // Longest token starting at text[i]: returns length (0 if none) and sets id.
  size_t longest(std::string_view text, size_t i, int32_t& id) const {
    int32_t n = 0;
    size_t best = 0;
    for (size_t k = i; k < text.size(); ++k) {
      const auto& kids = nodes[n].kids;
      uint8_t c = static_cast<uint8_t>(text[k]);
      auto it = std::lower_bound(kids.begin(), kids.end(), std::make_pair(c, int32_t{-1}));
      if (it == kids.end() || it->first != c) break;
      n = it->second;
      if (nodes[n].token >= 0) {
        best = k + 1 - i;
        id = nodes[n].token;
      }
    }
    return best;
  }
};

Tokenizer::Tokenizer() : trie_plain_(std::make_unique<Trie>()), trie_normalized_(std::make_unique<Trie>()) {
  std::fill(std::begin(byte_id_), std::end(byte_id_), -1);
}
Tokenizer::~Tokenizer() = default;

std::unique_ptr<Tokenizer> Tokenizer::from_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw InputError("cannot open tokenizer file " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  try {
    return from_json(ss.str());
  } catch (const InputError& e) {
    throw InputError(path + ": " + e.what());
  }
}

std::unique_ptr<Tokenizer> Tokenizer::from_model_dir(const std::string& dir) {
  return from_file(dir + "/tokenizer.json");
}

std::unique_ptr<Tokenizer> Tokenizer::from_json(const std::string& text) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    throw InputError(std::string("tokenizer.json is not valid JSON: ") + e.what());
  }
  std::unique_ptr<Tokenizer> t(new Tokenizer());
  try {
    // Normalizer: only the empty ones are supported (V3/V4 use an empty Sequence).
    const auto& norm = j.value("normalizer", json());
    if (!norm.is_null()) {
      bool ok = norm.value("type", "") == "Sequence" && norm.value("normalizers", json::array()).empty();
      if (!ok) throw InputError("tokenizer.json: normalizer " + norm.dump() + " is not supported");
    }
    const auto& model = j.at("model");
    if (model.value("type", "BPE") != "BPE") throw InputError("tokenizer.json: only BPE models are supported");
    if (model.value("byte_fallback", false)) throw InputError("tokenizer.json: byte_fallback BPE is not supported");
    if (!model.value("continuing_subword_prefix", json()).is_null() || !model.value("end_of_word_suffix", json()).is_null())
      throw InputError("tokenizer.json: subword prefixes/suffixes are not supported");
    t->ignore_merges_ = model.value("ignore_merges", false);
    t->pre_ = std::make_unique<PreTokenizer>(j.value("pre_tokenizer", json()));

    // Vocab: byte-level strings -> raw bytes.
    const auto& vocab = model.at("vocab");
    int32_t max_id = -1;
    for (auto it = vocab.begin(); it != vocab.end(); ++it) max_id = std::max(max_id, it.value().get<int32_t>());
    const auto& added = j.value("added_tokens", json::array());
    for (const auto& a : added) max_id = std::max(max_id, a.at("id").get<int32_t>());
    if (max_id < 0) throw InputError("tokenizer.json: empty vocabulary");
    t->id_bytes_.assign(static_cast<size_t>(max_id) + 1, std::string());
    t->id_flags_.assign(static_cast<size_t>(max_id) + 1, 0);
    std::unordered_map<std::string, int32_t> str_to_id;  // byte-level string -> id (for merges)
    str_to_id.reserve(vocab.size() * 2);
    t->bytes_to_id_.reserve(vocab.size() * 2);
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
      int32_t id = it.value().get<int32_t>();
      if (id < 0) throw InputError("tokenizer.json: negative id in vocab");
      auto raw = byte_level_to_bytes(it.key());
      std::string bytes = raw ? *raw : it.key();
      t->id_bytes_[id] = bytes;
      t->bytes_to_id_.emplace(bytes, id);
      str_to_id.emplace(it.key(), id);
      if (raw && raw->size() == 1) t->byte_id_[static_cast<uint8_t>((*raw)[0])] = id;
    }
    for (int b = 0; b < 256; ++b)
      if (t->byte_id_[b] < 0)
        throw InputError("tokenizer.json: byte-level vocab lacks the token for byte " + std::to_string(b));

    // Merges: "a b" strings (classic) or ["a", "b"] pairs (newer files).
    const auto& merges = model.at("merges");
    t->merges_.reserve(merges.size() * 2);
    int32_t rank = 0;
    for (const auto& m : merges) {
      std::string a, b;
      if (m.is_string()) {
        const std::string& s = m.get_ref<const std::string&>();
        size_t sp = s.find(' ', 1);
        if (sp == std::string::npos) throw InputError("tokenizer.json: bad merge '" + s + "'");
        a = s.substr(0, sp);
        b = s.substr(sp + 1);
      } else {
        a = m.at(0).get<std::string>();
        b = m.at(1).get<std::string>();
      }
      auto ia = str_to_id.find(a), ib = str_to_id.find(b), im = str_to_id.find(a + b);
      if (ia == str_to_id.end() || ib == str_to_id.end() || im == str_to_id.end())
        throw InputError("tokenizer.json: merge '" + a + " " + b + "' refers to unknown tokens");
      uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(ia->second)) << 32) | static_cast<uint32_t>(ib->second);
      t->merges_.emplace(key, std::make_pair(rank, im->second));
      ++rank;
    }

    for (const auto& a : added) {
      AddedToken tok;
      tok.id = a.at("id").get<int32_t>();
      tok.content = a.at("content").get<std::string>();
      tok.special = a.value("special", false);
      tok.normalized = a.value("normalized", !tok.special);
      if (a.value("single_word", false) || a.value("lstrip", false) || a.value("rstrip", false))
        throw InputError("tokenizer.json: added token options single_word/lstrip/rstrip are not supported ('" +
                         tok.content + "')");
      // HF decodes added tokens through the ByteLevel decoder too: characters of the byte-level
      // alphabet become their bytes, otherwise the token's own UTF-8 is used.
      auto raw = byte_level_to_bytes(tok.content);
      t->id_bytes_[tok.id] = raw ? *raw : tok.content;
      t->id_flags_[tok.id] |= 1 | (tok.special ? 2 : 0);
      (tok.normalized ? t->trie_normalized_ : t->trie_plain_)->insert(tok.content, tok.id);
      t->added_.push_back(std::move(tok));
    }
  } catch (const json::exception& e) {
    throw InputError(std::string("tokenizer.json: unexpected structure: ") + e.what());
  }
  return t;
}

const std::string& Tokenizer::token_bytes(int32_t id) const {
  static const std::string empty;
  if (id < 0 || id >= vocab_size()) return empty;
  return id_bytes_[id];
}

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  for (const auto& a : added_)
    if (a.content == token) return a.id;
  auto it = bytes_to_id_.find(std::string(token));
  if (it != bytes_to_id_.end()) return it->second;
  return std::nullopt;
}

bool Tokenizer::is_special(int32_t id) const { return id >= 0 && id < vocab_size() && (id_flags_[id] & 2); }
bool Tokenizer::is_added(int32_t id) const { return id >= 0 && id < vocab_size() && (id_flags_[id] & 1); }

void Tokenizer::split_added(std::string_view text, const Trie& trie,
                            std::vector<std::pair<std::string_view, int32_t>>& out) const {
  if (trie.empty) {
    out.emplace_back(text, -1);
    return;
  }
  size_t start = 0;
  for (size_t i = 0; i < text.size();) {
    if (trie.first_byte[static_cast<uint8_t>(text[i])]) {
      int32_t id = -1;
      size_t len = trie.longest(text, i, id);
      if (len) {
        if (i > start) out.emplace_back(text.substr(start, i - start), -1);
        out.emplace_back(text.substr(i, len), id);
        i += len;
        start = i;
        continue;
      }
    }
    ++i;
  }
  if (start < text.size()) out.emplace_back(text.substr(start), -1);
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  encode_into(text, out);
  return out;
}

void Tokenizer::encode_into(std::string_view text, std::vector<int32_t>& out) const {
  std::vector<std::pair<std::string_view, int32_t>> pass1, pass2;
  split_added(text, *trie_plain_, pass1);
  for (auto [seg, id] : pass1) {
    if (id >= 0) {
      out.push_back(id);
      continue;
    }
    pass2.clear();
    split_added(seg, *trie_normalized_, pass2);
    for (auto [seg2, id2] : pass2) {
      if (id2 >= 0) out.push_back(id2);
      else encode_plain(seg2, out);
    }
  }
}

void Tokenizer::encode_plain(std::string_view text, std::vector<int32_t>& out) const {
  if (text.empty()) return;
  std::string prefixed;
  if (pre_->add_prefix_space() && text[0] != ' ') {
    prefixed = " " + std::string(text);
    text = prefixed;
  }
  thread_local std::vector<std::string_view> words;
  pre_->split(text, words);
  for (std::string_view w : words) bpe_word(w, out);
}

namespace {
struct Sym {
  int32_t id;
  int32_t prev, next;
  bool alive;
};
struct Cand {
  int32_t rank, pos, new_id;
  bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
};
}  // namespace

void Tokenizer::bpe_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  constexpr size_t kCacheMaxWord = 256;
  bool cacheable = word.size() <= kCacheMaxWord;
  std::string key;
  if (cacheable) {
    key.assign(word);
    std::lock_guard<std::mutex> lk(cache_mu_);
    auto it = cache_.find(key);
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  size_t out_start = out.size();
  if (ignore_merges_) {
    auto it = bytes_to_id_.find(std::string(word));
    if (it != bytes_to_id_.end()) {
      out.push_back(it->second);
      goto done;
    }
  }
  if (word.size() == 1) {
    out.push_back(byte_id_[static_cast<uint8_t>(word[0])]);
  } else {
    // Rank-ordered BPE over a linked list of symbols with a min-heap of candidate merges; equal
    // ranks merge leftmost first. Stale heap entries are skipped on pop (same as HF tokenizers).
    thread_local std::vector<Sym> syms;
    thread_local std::vector<Cand> heap_store;
    const int32_t n = static_cast<int32_t>(word.size());
    syms.resize(n);
    for (int32_t i = 0; i < n; ++i) syms[i] = {byte_id_[static_cast<uint8_t>(word[i])], i - 1, i + 1 < n ? i + 1 : -1, true};
    heap_store.clear();
    std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap(std::greater<Cand>(), std::move(heap_store));
    auto lookup = [&](int32_t a, int32_t b) -> const std::pair<int32_t, int32_t>* {
      auto it = merges_.find((static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b));
      return it == merges_.end() ? nullptr : &it->second;
    };
    for (int32_t i = 0; i + 1 < n; ++i)
      if (auto m = lookup(syms[i].id, syms[i + 1].id)) heap.push({m->first, i, m->second});
    while (!heap.empty()) {
      Cand c = heap.top();
      heap.pop();
      Sym& s = syms[c.pos];
      if (!s.alive || s.next < 0) continue;
      Sym& r = syms[s.next];
      auto m = lookup(s.id, r.id);
      if (!m || m->second != c.new_id) continue;
      s.id = c.new_id;
      r.alive = false;
      s.next = r.next;
      if (s.next >= 0) syms[s.next].prev = c.pos;
      if (s.prev >= 0)
        if (auto pm = lookup(syms[s.prev].id, s.id)) heap.push({pm->first, s.prev, pm->second});
      if (s.next >= 0)
        if (auto nm = lookup(s.id, syms[s.next].id)) heap.push({nm->first, c.pos, nm->second});
    }
    for (int32_t i = 0; i >= 0; i = syms[i].next) out.push_back(syms[i].id);
  }
done:
  if (cacheable) {
    std::lock_guard<std::mutex> lk(cache_mu_);
    if (cache_.size() > 500000) cache_.clear();
    cache_.emplace(std::move(key), std::vector<int32_t>(out.begin() + static_cast<std::ptrdiff_t>(out_start), out.end()));
  }
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  std::string out;
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size()) throw InputError("token id " + std::to_string(id) + " is out of range [0, " +
                                                       std::to_string(vocab_size()) + ")");
    if (skip_special && is_special(id)) continue;
    out += id_bytes_[id];
  }
  return out;
}

std::string StreamDecoder::push(int32_t id) {
  if (id < 0 || id >= tok_.vocab_size())
    throw InputError("token id " + std::to_string(id) + " is out of range");
  if (skip_special_ && tok_.is_special(id)) return {};
  return push_bytes(tok_.token_bytes(id));
}

std::string StreamDecoder::push_bytes(std::string_view bytes) {
  pending_.append(bytes);
  size_t tail = utf8_incomplete_tail(pending_);
  std::string_view ready(pending_.data(), pending_.size() - tail);
  std::string out = utf8_valid(ready) ? std::string(ready) : utf8_lossy(ready);
  pending_.erase(0, pending_.size() - tail);
  return out;
}

std::string StreamDecoder::finish() {
  std::string out = utf8_lossy(pending_);
  pending_.clear();
  return out;
}

}  // namespace v4::text
