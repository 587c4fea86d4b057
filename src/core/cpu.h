// Run-time CPU feature detection; kernels choose AVX-512 or AVX2 paths only where present.
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
// Forces the portable path for every kernel (tests compare it with the fast ones).
void set_force_portable(bool on);
// AVX-512 kernels: AVX-512 F/BW/VL present, not forced portable, V4HOST_NO_AVX512 unset.
bool use_avx512();
// AVX2 kernels (for CPUs without AVX-512, e.g. AMD Zen 2/3): AVX2+FMA+F16C present, use_avx512()
// false, not forced portable, V4HOST_NO_AVX2 unset. So on an AVX-512 machine V4HOST_NO_AVX512=1
// runs the AVX2 kernels, and V4HOST_NO_AVX512=1 V4HOST_NO_AVX2=1 (or set_force_portable) the
// portable ones.
bool use_avx2();
// Whether the switch variable `name` is set to something other than empty or "0" (the
// V4HOST_NO_* switches that turn a kernel path off for A/B runs and tests).
bool env_flag(const char* name);
std::string cpu_summary();

}  // namespace v4
