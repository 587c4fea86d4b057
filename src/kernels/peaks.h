// The machine's roofline, measured in the same process as the figures compared with it:
// sequential read bandwidth and the register-resident peaks of the FP32 FMA and the BF16
// dot-product units, all threads of the global pool.
#pragma once
#include <cstddef>

namespace v4 {

// Sequential read bandwidth (bytes/s) over a buffer of `bytes`, best of `reps` passes (as the
// peaks: the best rate observed).
double measure_read_bandwidth(size_t bytes = size_t(1) << 30, int reps = 5);
// FLOP/s of independent FMA chains (zmm where AVX-512 is used, else the compiler's vectors).
double measure_fp32_peak();
// FLOP/s of `vdpbf16ps` chains (2 FLOP per BF16 pair); 0 without AVX-512 BF16.
double measure_bf16_peak();

}  // namespace v4
