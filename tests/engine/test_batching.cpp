// Continuous-batching and prefix-state properties on a synthetic checkpoint: many sequences in
// one forward give bit-identical results to running them one at a time, and a copied state
// (prefix cache) continues exactly like a cold run.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <random>

#include "engine/engine.h"
#include "engine/sampler.h"
#include "kernels/linear_bf16.h"
#include "../common/synth_model.h"

using namespace v4;

namespace {

test::SynthModel& model() {
  static test::SynthModel m("batch", 3, true);
  return m;
}

std::vector<std::vector<int32_t>> prompts(int n, int vocab) {
  std::mt19937 rng(11);
  std::vector<std::vector<int32_t>> p;
  for (int i = 0; i < n; ++i) {
    std::vector<int32_t> t(static_cast<size_t>(3 + 17 * i % 71));
    for (auto& x : t) x = static_cast<int32_t>(rng() % static_cast<unsigned>(vocab));
    p.push_back(t);
  }
  return p;
}

// Greedy-decodes `steps` tokens for every prompt, batching all sequences in each forward when
// `batched`, else one sequence at a time. Returns per-sequence (tokens, all step logits).
std::vector<std::pair<std::vector<int32_t>, std::vector<float>>> run(Engine& eng, const std::vector<std::vector<int32_t>>& ps,
                                                                     int steps, bool batched) {
  const int V = eng.config().vocab_size;
  const size_t S = ps.size();
  std::vector<std::unique_ptr<SequenceState>> st;
  std::vector<std::pair<std::vector<int32_t>, std::vector<float>>> out(S);
  std::vector<std::vector<float>> logits(S, std::vector<float>(static_cast<size_t>(V)));
  std::vector<int32_t> last(S);
  for (size_t i = 0; i < S; ++i) st.push_back(eng.new_sequence());
  for (int step = 0; step <= steps; ++step) {
    std::vector<Segment> segs(S);
    for (size_t i = 0; i < S; ++i) {
      segs[i].state = st[i].get();
      segs[i].tokens = step == 0 ? ps[i].data() : &last[i];
      segs[i].n = step == 0 ? static_cast<int>(ps[i].size()) : 1;
      segs[i].logits = logits[i].data();
    }
    if (batched) {
      eng.forward(segs);
    } else {
      for (auto& s : segs) eng.forward(std::span<Segment>(&s, 1));
    }
    for (size_t i = 0; i < S; ++i) {
      last[i] = argmax(logits[i].data(), V);
      out[i].first.push_back(last[i]);
      out[i].second.insert(out[i].second.end(), logits[i].begin(), logits[i].end());
    }
  }
  return out;
}

TEST(Batching, EightSequencesAtOnceAreBitIdenticalToOneAtATime) {
  Engine eng(*model().w);
  auto ps = prompts(8, eng.config().vocab_size);
  auto alone = run(eng, ps, 24, false);
  auto together = run(eng, ps, 24, true);
  for (size_t i = 0; i < ps.size(); ++i) {
    EXPECT_EQ(alone[i].first, together[i].first) << "sequence " << i;
    ASSERT_EQ(alone[i].second.size(), together[i].second.size());
    EXPECT_EQ(0, std::memcmp(alone[i].second.data(), together[i].second.data(), alone[i].second.size() * 4))
        << "logits differ for sequence " << i;
  }
}

// The official numerics on the BF16 dot-product units keep the same property (the decode and the
// batched kernels accumulate every (token, row) in the same order).
TEST(Batching, OfficialNumericsBatchedAreBitIdenticalToOneAtATime) {
  set_amx_disabled(true);  // AMX (prompts >= 16 tokens) sums in tile order: not bit-comparable
  Engine eng(*model().w, Numerics::Official);
  auto ps = prompts(6, eng.config().vocab_size);
  auto alone = run(eng, ps, 6, false);
  auto together = run(eng, ps, 6, true);
  for (size_t i = 0; i < ps.size(); ++i) {
    EXPECT_EQ(alone[i].first, together[i].first) << "sequence " << i;
    EXPECT_EQ(0, std::memcmp(alone[i].second.data(), together[i].second.data(), alone[i].second.size() * 4))
        << "logits differ for sequence " << i;
  }
  set_amx_disabled(false);
}

TEST(Batching, MixedPrefillAndDecodeInOneForward) {
  Engine eng(*model().w);
  const int V = eng.config().vocab_size;
  auto ps = prompts(3, V);
  // Reference: each sequence alone.
  auto ref = run(eng, ps, 0, false);
  // Sequence 0 is decoding while sequences 1 and 2 prefill in the same forward.
  auto s0 = eng.new_sequence(), s1 = eng.new_sequence(), s2 = eng.new_sequence();
  std::vector<float> l0(static_cast<size_t>(V)), l1(l0.size()), l2(l0.size());
  Segment a{s0.get(), ps[0].data(), static_cast<int>(ps[0].size()) - 1, false, nullptr, nullptr};
  eng.forward(std::span<Segment>(&a, 1));
  std::vector<Segment> segs = {{s0.get(), ps[0].data() + ps[0].size() - 1, 1, false, l0.data(), nullptr},
                               {s1.get(), ps[1].data(), static_cast<int>(ps[1].size()), false, l1.data(), nullptr},
                               {s2.get(), ps[2].data(), static_cast<int>(ps[2].size()), false, l2.data(), nullptr}};
  eng.forward(segs);
  EXPECT_EQ(0, std::memcmp(l0.data(), ref[0].second.data(), l0.size() * 4));
  EXPECT_EQ(0, std::memcmp(l1.data(), ref[1].second.data(), l1.size() * 4));
  EXPECT_EQ(0, std::memcmp(l2.data(), ref[2].second.data(), l2.size() * 4));
}

TEST(PrefixState, CopiedStateContinuesExactlyLikeAColdRun) {
  Engine eng(*model().w);
  const int V = eng.config().vocab_size;
  std::mt19937 rng(5);
  std::vector<int32_t> toks(150);
  for (auto& t : toks) t = static_cast<int32_t>(rng() % static_cast<unsigned>(V));
  // Cold: whole prompt at once.
  auto cold = eng.new_sequence();
  std::vector<float> ref(static_cast<size_t>(V)), got(static_cast<size_t>(V));
  Segment s{cold.get(), toks.data(), 150, false, ref.data(), nullptr};
  eng.forward(std::span<Segment>(&s, 1));
  // Prefix of odd length (partial compressor windows, partial ring), snapshot, continue twice.
  for (int P : {1, 37, 64, 101}) {
    auto warm = eng.new_sequence();
    Segment a{warm.get(), toks.data(), P, false, nullptr, nullptr};
    eng.forward(std::span<Segment>(&a, 1));
    SequenceState snapshot = *warm;
    for (int rep = 0; rep < 2; ++rep) {
      SequenceState st = snapshot;
      Segment b{&st, toks.data() + P, 150 - P, false, got.data(), nullptr};
      eng.forward(std::span<Segment>(&b, 1));
      EXPECT_EQ(0, std::memcmp(got.data(), ref.data(), got.size() * 4)) << "prefix " << P << " rep " << rep;
    }
  }
}

}  // namespace
