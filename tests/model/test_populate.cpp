// Mapping the checkpoint up front (--populate): the pages end up mapped into the process (so a
// host's reclaim of cold unmapped file pages cannot take them), read from disk when the page
// cache had dropped them; `off` leaves them to be mapped as used; bad values are refused.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <vector>

#include "core/mmap_file.h"
#include "model/synth.h"
#include "model/weights.h"

using namespace v4;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  std::string path;
  explicit TempDir(const std::string& name)
      : path((fs::temp_directory_path() / ("v4host-populate-" + name + "-" + std::to_string(::getpid()))).string()) {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

const std::string& tiny_ckpt() {
  static TempDir dir("ckpt");
  static const bool made = [] {
    SynthOptions o;
    o.preset = "tiny";
    o.out_dir = dir.path + "/m";
    o.vocab = 300;
    o.layers = 4;
    o.quiet = true;
    write_synthetic_checkpoint(o);
    return true;
  }();
  (void)made;
  static const std::string p = dir.path + "/m";
  return p;
}

size_t safetensors_bytes(const std::string& dir) {
  size_t b = 0;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".safetensors") b += static_cast<size_t>(e.file_size());
  return b;
}

size_t page_round(size_t b) {
  const size_t pg = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  return (b + pg - 1) / pg * pg;
}

}  // namespace

TEST(Populate, ParsesItsThreeValues) {
  Populate p = Populate::Off;
  EXPECT_TRUE(parse_populate("auto", &p));
  EXPECT_EQ(p, Populate::Auto);
  EXPECT_TRUE(parse_populate("on", &p));
  EXPECT_EQ(p, Populate::On);
  EXPECT_TRUE(parse_populate("off", &p));
  EXPECT_EQ(p, Populate::Off);
  EXPECT_FALSE(parse_populate("yes", &p));
  EXPECT_FALSE(parse_populate("", &p));
}

// A file whose page cache was dropped: populate reads it back and maps every page.
TEST(Populate, MapsEveryPageOfAFileTheCacheHadDropped) {
  TempDir dir("file");
  const std::string path = dir.path + "/blob";
  const size_t bytes = (size_t{8} << 20) + 12345;  // not a whole number of pages
  {
    std::vector<char> data(bytes);
    std::mt19937 rng(7);
    for (auto& c : data) c = static_cast<char>(rng() | 1);
    std::ofstream f(path, std::ios::binary);
    f.write(data.data(), static_cast<std::streamsize>(data.size()));
  }
  int fd = ::open(path.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  ::fdatasync(fd);
  // Clean pages of an unmapped file: the kernel drops them (on tmpfs it cannot; then the
  // "before" figure below is simply not low, and the test still checks the mapping).
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);

  MappedFile m(path);
  auto before = m.resident_bytes();
  ASSERT_TRUE(before.has_value()) << "no /proc/self/smaps entry for the mapping";
  EXPECT_LT(*before, bytes / 4) << "a fresh mapping should map few pages until they are touched";
  std::string why;
  ASSERT_TRUE(m.populate(0, m.size(), &why)) << why;
  auto after = m.resident_bytes();
  ASSERT_TRUE(after.has_value());
  EXPECT_EQ(*after, page_round(bytes));
  // A range that starts mid-page and one past the end are fine too.
  EXPECT_TRUE(m.populate(4097, 10, &why)) << why;
  EXPECT_TRUE(m.populate(bytes + 100, 10, &why)) << why;
}

TEST(Populate, OnMapsTheWholeCheckpointAndOffLeavesItToTheForwardPasses) {
  const std::string dir = tiny_ckpt();
  const size_t files = safetensors_bytes(dir);
  ASSERT_GT(files, size_t{1} << 20);
  {
    auto w = ModelWeights::load(dir, true, true, Populate::On);
    const PopulateReport& r = w->populate_report();
    EXPECT_TRUE(r.populated);
    EXPECT_EQ(r.bytes, files);
    EXPECT_GE(r.seconds, 0.0);
    auto res = w->store().resident_bytes();
    ASSERT_TRUE(res.has_value());
    EXPECT_GE(*res, files);  // every page of every shard (whole pages: at least the files' bytes)
  }
  {
    auto w = ModelWeights::load(dir, true, true, Populate::Off);
    const PopulateReport& r = w->populate_report();
    EXPECT_FALSE(r.populated);
    EXPECT_EQ(r.why, "--populate off");
    auto res = w->store().resident_bytes();
    ASSERT_TRUE(res.has_value());
    // Validation reads headers, norms and scales, not the weight matrices.
    EXPECT_LT(*res, files / 2);
  }
  {
    // A tiny checkpoint fits in any machine's memory: auto maps it.
    auto w = ModelWeights::load(dir, true, true, Populate::Auto);
    EXPECT_TRUE(w->populate_report().populated) << w->populate_report().why;
  }
}

TEST(Populate, TheCliRefusesABadValueWithExit2) {
  const std::string cmd = std::string("'") + V4_BINARY + "' generate --model '" + tiny_ckpt() + "' --populate sometimes -n 1 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  const int st = pclose(p);
  ASSERT_TRUE(WIFEXITED(st));
  EXPECT_EQ(WEXITSTATUS(st), 2) << out;
  EXPECT_NE(out.find("--populate"), std::string::npos) << out;
}
