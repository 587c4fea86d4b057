// The machine's roofline, measured in the same process as the figures compared with it:
// sequential read bandwidth and the register-resident peaks of the FP32 FMA and the BF16
// dot-product units, all threads of the global pool.
#pragma once
#include <cstddef>
#include <span>
#include <string>
#include <vector>

namespace v4 {

// The best read bandwidth this machine gives, over several probes read in turn (each pass of
// every probe once per round, so all see the same neighbours), each the best of `reps` rounds:
//   "anon-4k"        the original probe: a fresh buffer of `bytes` in 4 KiB pages, each pool
//                    thread reading large contiguous pieces (1/32 of the buffer);
//   "weights"        the caller's spans, the first `bytes` of them (the model's mapped weights:
//                    the very pages, 2 MB page-cache folios, a decode step reads), if they add up
//                    to at least `bytes` (smaller ones would be read from the cache);
// and each of them also "/256k": pieces of 256 KB handed out one at a time to the threads, the
// size and order in which the one-token kernels stream a weight matrix.
struct ReadProbe {
  std::string name;
  double bytes_s = 0;
};
struct ReadRoofline {
  double bytes_s = 0;   // the highest probe: the ceiling decode figures are compared with
  std::string probe;    // which probe that was
  double anon_4k_bytes_s = 0;  // the original probe ("anon-4k"), for comparison with older runs
  std::vector<ReadProbe> probes;
};
struct ReadSpan {
  const void* p = nullptr;
  size_t bytes = 0;
};
ReadRoofline measure_read_roofline(std::span<const ReadSpan> weights = {}, size_t bytes = size_t(1) << 30, int reps = 7);
// FLOP/s of independent FMA chains (zmm where AVX-512 is used, else the compiler's vectors).
double measure_fp32_peak();
// FLOP/s of `vdpbf16ps` chains (2 FLOP per BF16 pair); 0 without AVX-512 BF16.
double measure_bf16_peak();

}  // namespace v4
