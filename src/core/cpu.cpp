#include "core/cpu.h"

#include <atomic>
#include <cstdlib>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace v4 {

namespace {
std::atomic<bool> g_force_portable{false};
}  // namespace

bool env_flag(const char* name) {
  const char* e = std::getenv(name);
  return e && *e && *e != '0';
}

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = [] {
    CpuFeatures c;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    c.avx2 = __builtin_cpu_supports("avx2");
    c.fma = __builtin_cpu_supports("fma");
    c.avx512f = __builtin_cpu_supports("avx512f");
    c.avx512bw = __builtin_cpu_supports("avx512bw");
    c.avx512vl = __builtin_cpu_supports("avx512vl");
    c.avx512vbmi = __builtin_cpu_supports("avx512vbmi");
    c.avx512vnni = __builtin_cpu_supports("avx512vnni");
#if __GNUC__ >= 12
    c.avx512bf16 = __builtin_cpu_supports("avx512bf16");
    c.amx_tile = __builtin_cpu_supports("amx-tile");
#endif
    // F16C (vcvtph2ps: the FP8 decoders) is CPUID.1:ECX bit 29; __builtin_cpu_supports has no name
    // for it in every GCC we build with.
    unsigned a = 0, b = 0, cx = 0, d = 0;
    if (__get_cpuid(1, &a, &b, &cx, &d)) c.f16c = (cx >> 29) & 1u;
#endif
    return c;
  }();
  return f;
}

void set_force_portable(bool on) { g_force_portable = on; }

bool use_avx512() {
  static const bool env_off = env_flag("V4HOST_NO_AVX512");
  const auto& f = cpu_features();
  return !g_force_portable && !env_off && f.avx512f && f.avx512bw && f.avx512vl;
}

bool use_avx2() {
  static const bool env_off = env_flag("V4HOST_NO_AVX2");
  const auto& f = cpu_features();
  return !g_force_portable && !env_off && f.avx2 && f.fma && f.f16c && !use_avx512();
}

std::string cpu_summary() {
  const auto& f = cpu_features();
  std::string s;
  s += f.avx512f ? "avx512f " : "";
  s += f.avx512bw ? "avx512bw " : "";
  s += f.avx512bf16 ? "avx512bf16 " : "";
  s += f.avx512vbmi ? "avx512vbmi " : "";
  s += f.avx512vnni ? "avx512vnni " : "";
  s += f.amx_tile ? "amx " : "";
  s += f.avx2 ? "avx2 " : "";
  s += f.fma ? "fma " : "";
  s += f.f16c ? "f16c " : "";
  s += use_avx512() ? "(kernels: avx512)" : use_avx2() ? "(kernels: avx2)" : "(kernels: portable)";
  return s;
}

}  // namespace v4
