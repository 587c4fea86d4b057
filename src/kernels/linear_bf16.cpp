#include "kernels/linear_bf16.h"

#include "kernels/linear_bf16_internal.h"

#include <algorithm>
#include <atomic>
#include <vector>

#include "core/cpu.h"
#include "core/thread_pool.h"

#include <sys/syscall.h>
#include <unistd.h>

namespace v4 {

using namespace bf16;

bool bf16_dot_available() { return use_avx512() && cpu_features().avx512bf16; }

namespace {
std::atomic<bool> g_no_amx{false};
std::atomic<int> g_amx_min{kAmxMinTokens};
bool amx_disabled_for_tests() { return g_no_amx.load(); }
}  // namespace

void set_amx_disabled(bool off) { g_no_amx = off; }

namespace {
// Asked per row by the decoders: one relaxed load.
bool lut_hardware() {
  static const bool hw = [] {
    return cpu_features().avx512vbmi && bf16_dot_available() && !env_flag("V4HOST_NO_LUT");
  }();
  return hw;
}
std::atomic<bool> g_lut{lut_hardware()};
}  // namespace

bool bf16_lut_available() { return g_lut.load(std::memory_order_relaxed); }
void set_bf16_lut_disabled(bool off) { g_lut = !off && lut_hardware(); }

namespace {

// Scale ranges in which every scaled weight is a normal BF16 number (vdpbf16ps treats BF16
// denormals as zero): FP4 values 0.5..6 times 2^(e-127); FP8 e4m3 normals 2^-6..448 and
// subnormals down to 2^-9 times 2^(e-127).
bool scale_in_range(WFormat f, uint8_t e) { return f == WFormat::FP4 ? (e >= 2 && e <= 252) : (e >= 10 && e <= 246); }

}  // namespace

bool bf16_weight_ok(const LinearWeight& w) {
  if (w.format == WFormat::BF16) return w.data != nullptr;
  if ((w.format != WFormat::FP8 && w.format != WFormat::FP4) || w.scale_format != ScaleFormat::E8M0 || !w.scale)
    return false;
  if (w.format == WFormat::FP4 && w.cols % 32) return false;
  const size_t n = w.format == WFormat::FP8 ? ((static_cast<size_t>(w.rows) + 127) / 128) * ((static_cast<size_t>(w.cols) + 127) / 128)
                                            : static_cast<size_t>(w.rows) * static_cast<size_t>(w.cols / 32);
  const uint8_t* s = static_cast<const uint8_t*>(w.scale);
  for (size_t i = 0; i < n; ++i)
    if (!scale_in_range(w.format, s[i])) return false;
  return true;
}

int bf16_padded_k(const LinearWeight& w) { return w.format == WFormat::FP4 ? w.cols : (w.cols + 31) / 32 * 32; }

int bf16_kernel_k(const LinearWeight& w, int p) {
  if ((w.format == WFormat::FP8 || w.format == WFormat::FP4) && bf16_lut_available()) {
    // Table decoders: a 64-byte load gives 64 (FP8) or 128 (FP4) weights whose BF16 halves are
    // interleaved by unpacklo/unpackhi within 128-bit lanes: chunk c, word i holds byte
    // 16*(i/8) + 8*(c%2) + i%8 of the block (FP4: its low nibble for c < 2, high for c >= 2).
    if (w.format == WFormat::FP8) {
      const int K64 = w.cols / 64 * 64;
      if (p >= K64) return p;
      const int b = p / 64 * 64, j = p - b, c = j / 32, i = j % 32;
      return b + 16 * (i / 8) + 8 * c + i % 8;
    }
    const int K128 = w.cols / 128 * 128;
    if (p < K128) {
      const int b = p / 128 * 128, j = p - b, c = j / 32, i = j % 32;
      return b + 2 * (16 * (i / 8) + 8 * (c % 2) + i % 8) + c / 2;
    }
  }
  if (w.format != WFormat::FP4) return p;
  // FP4: 64-column blocks decode as [low nibbles of the 32 bytes, high nibbles]; a trailing
  // 32-column group as [low nibbles of its 16 bytes, high nibbles].
  const int K64 = w.cols / 64 * 64;
  if (p < K64) {
    const int b = p / 64 * 64, j = p - b, hi = j / 32, wj = j % 32;
    return wj < 16 ? b + 2 * wj + hi : b + 32 + 2 * (wj - 16) + hi;
  }
  const int wj = p - K64;
  return wj < 16 ? K64 + 2 * wj : K64 + 2 * (wj - 16) + 1;
}

void bf16_pack_act(const LinearWeight& w, const float* x, int M, int ldx, uint16_t* out) {
  const int Kp = bf16_padded_k(w), K = w.cols;
  thread_local std::vector<int> perm;
  thread_local int perm_k = -1;
  thread_local WFormat perm_f = WFormat::F32;
  thread_local bool perm_lut = false;
  const bool lut = bf16_lut_available();
  if (perm_k != K || perm_f != w.format || perm_lut != lut) {
    perm_lut = lut;
    perm.resize(static_cast<size_t>(Kp));
    for (int p = 0; p < Kp; ++p) perm[static_cast<size_t>(p)] = bf16_kernel_k(w, p);
    perm_k = K;
    perm_f = w.format;
  }
  for (int m = 0; m < M; ++m) {
    const float* xm = x + static_cast<size_t>(m) * ldx;
    uint16_t* o = out + static_cast<size_t>(m) * Kp;
    for (int p = 0; p < Kp; ++p) {
      const int k = perm[static_cast<size_t>(p)];
      o[p] = k < K ? f32_to_bf16(xm[k]) : 0;
    }
  }
}

void bf16_quant_pack_act(const LinearWeight& w, const float* x, int M, int ldx, uint16_t* out) {
  parallel_for(static_cast<size_t>(M), 8, [&](size_t b, size_t e) {
    quant_pack_rows(w, x, ldx, static_cast<int>(b), static_cast<int>(e), out);
  });
}

void bf16_decode_row(const LinearWeight& w, int n, uint16_t* out) { decode_row_impl(w, n, out); }

void linear_bf16_split(const LinearWeight& w, const float* x, int M, float* y, int ldx, int ldy, int parts) {
  parts = parts == 1 ? 1 : 3;
  const int K = w.cols, Kp = bf16_padded_k(w), N = w.rows;
  if (ldx <= 0) ldx = K;
  if (ldy <= 0) ldy = N;
  if (M == 1 && amx_available()) {
    thread_local std::vector<float> xf;
    split_m1_act(w, x, parts, xf);
    const float* xfp = xf.data();
    parallel_for(static_cast<size_t>(N), split_m1_grain(w), [&](size_t b, size_t e) {
      split_rows_m1(w, xfp, y, static_cast<int>(b), static_cast<int>(e));
    });
    return;
  }
  thread_local std::vector<uint16_t> xs;
  thread_local std::vector<float> ys;
  xs.resize(static_cast<size_t>(parts * M) * Kp);
  if (parts == 1) {
    split_rows(w.format, x, M, ldx, K, Kp, 1, xs.data());
    linear_bf16(w, xs.data(), M, y, ldy);
    return;
  }
  ys.resize(static_cast<size_t>(3 * M) * N);
  split_rows(w.format, x, M, ldx, K, Kp, 3, xs.data());
  linear_bf16(w, xs.data(), 3 * M, ys.data());
  for (int m = 0; m < M; ++m) {
    const float* a = ys.data() + static_cast<size_t>(3 * m) * N;
    float* o = y + static_cast<size_t>(m) * ldy;
    for (int n = 0; n < N; ++n) o[n] = (a[n] + a[N + n]) + a[2 * N + n];
  }
}

void linear_bf16_rows(const LinearWeight& w, const uint16_t* xp, int M, float* y, int ldy, int n0, int n1) {
  if (M == 1 && w.format != WFormat::BF16) {
    if (bf16_lut_available()) rows_m1_lut(w, xp, y, n0, n1);
    else rows_m1(w, xp, y, n0, n1);
  }
  else rows_batched(w, xp, M, y, ldy, n0, n1);
}

bool amx_available() {
  static const bool ok = [] {
    if (env_flag("V4HOST_NO_AMX")) return false;
#if defined(__x86_64__) && __GNUC__ >= 12
    if (!cpu_features().amx_tile || !__builtin_cpu_supports("amx-bf16")) return false;
    // Linux hands out the tile state only on request (ARCH_REQ_XCOMP_PERM, XTILEDATA).
    return syscall(SYS_arch_prctl, 0x1023, 18) == 0;
#else
    return false;
#endif
  }();
  return ok && bf16_dot_available() && !amx_disabled_for_tests();
}

int amx_min_tokens() { return g_amx_min.load(); }
void set_amx_min_tokens(int m) { g_amx_min = std::max(1, m); }

void linear_bf16(const LinearWeight& w, const uint16_t* xp, int M, float* y, int ldy) {
  if (M <= 0 || w.rows <= 0) return;
  if (ldy <= 0) ldy = w.rows;
  // Few tokens: bandwidth-bound, tasks stream a few hundred KB of weights each.
  const size_t row_bytes = std::max<size_t>(1, w.bytes() / static_cast<size_t>(w.rows));
  const size_t stream_grain = std::max<size_t>(16, (256u << 10) / row_bytes);
  if (M >= amx_min_tokens() && amx_available()) {
    thread_local std::vector<uint32_t> xv;
    const uint32_t* xvp = pack_vnni(xp, M, bf16_padded_k(w), xv);
    const size_t grain = M <= 32 ? (stream_grain + 31) / 32 * 32 : 64;
    parallel_for(static_cast<size_t>(w.rows), grain, [&](size_t b, size_t e) {
      rows_amx(w, xvp, M, y, ldy, static_cast<int>(b), static_cast<int>(e));
    });
    return;
  }
  if (M == 1 && w.format == WFormat::FP4 && fp4_fma_enabled()) {
    thread_local std::vector<float> xf;
    const bool vnni = fp4_one_token_act(w, xp, xf);
    const float* xfp = xf.data();
    parallel_for(static_cast<size_t>(w.rows), (stream_grain + 15) / 16 * 16, [&](size_t b, size_t e) {
      rows_m1_fp4(w, xfp, vnni, y, static_cast<int>(b), static_cast<int>(e));
    });
    return;
  }
  size_t grain = M == 1 ? stream_grain : RB;
  grain = (grain + 15) / 16 * 16;
  parallel_for(static_cast<size_t>(w.rows), grain, [&](size_t b, size_t e) {
    linear_bf16_rows(w, xp, M, y, ldy, static_cast<int>(b), static_cast<int>(e));
  });
}

}  // namespace v4
