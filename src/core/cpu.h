// Run-time CPU feature detection; kernels choose AVX-512 paths only where present.
#pragma once
#include <string>

namespace v4 {

struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512bf16 = false;
  bool avx512vbmi = false;  // byte permutes (vpermb/vpermi2b): the BF16 kernels' table decoders
  bool avx512vnni = false;  // vpdpbusd: the one-token FP4 kernel's integer dot products
  bool amx_tile = false;
};

const CpuFeatures& cpu_features();
// Forces the portable path (tests compare it with the fast one); also V4HOST_NO_AVX512=1.
void set_force_portable(bool on);
bool use_avx512();
std::string cpu_summary();

}  // namespace v4
