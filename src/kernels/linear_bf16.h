// Linear layers on the BF16 dot-product units (AVX-512 BF16 `vdpbf16ps`, FP32 accumulation) for
// the `official` numerics: there the activations entering every FP8/FP4 GEMM are FP8 e4m3 values
// times a power-of-two block scale, so they are exact in BF16, and FP8 e4m3 / FP4 e2m1 weights
// times their UE8M0 (power-of-two) scales are exact in BF16 too. Each product is then exact in
// FP32 and the kernel computes the same function as the float32 path; only the order of the FP32
// summation differs.
//
// Activations are packed once per call into BF16 rows in the weight format's k order (natural
// for FP8; for FP4 the order the nibble decoder produces, see kernel_k()), zero-padded to
// padded_k(). Per (token, row) the accumulation order is fixed (one 16-lane accumulator over
// 32-wide chunks in kernel order, then one horizontal sum), so the decode path (M = 1, weights
// decoded in registers) and the batched path (rows decoded once into a buffer, reused for every
// token) give bit-identical results whatever the batch.
#pragma once
#include <cstdint>

#include "kernels/linear.h"

namespace v4 {

// Whether the BF16 kernels can run on this CPU (AVX-512 BF16 present and not forced portable).
bool bf16_dot_available();
// AMX tiles (where present and granted by the OS; V4HOST_NO_AMX=1 turns them off) compute calls
// of at least kAmxMinTokens tokens: the same exact products, FP32 accumulation in tile order.
// From two tokens on, the tile path (weights decoded once per k block into an L1 buffer,
// overlapped with the tile products) beats the register path, which decodes per 16 rows into a
// buffer and runs M dot products per weight (measured, bench/bench_kernels.cpp); one token
// (decode, batch 1) keeps the register path, which decodes weights in registers. Tile results
// do not depend on the number of tokens in the call, but they are not bit-identical to the
// vdpbf16ps path used for one token.
constexpr int kAmxMinTokens = 2;
bool amx_available();
// Tests: force the vdpbf16ps path.
void set_amx_disabled(bool off);
// The smallest call (tokens) that runs on the tiles; benchmarks and tests move it.
int amx_min_tokens();
void set_amx_min_tokens(int m);
// Table decoders (AVX-512 VBMI byte permutes; V4HOST_NO_LUT=1 turns them off): FP8/FP4 weights
// decoded to BF16 by table lookup instead of bit arithmetic. They change the kernel k order
// (bf16_kernel_k), so activations must be packed with the same setting they are used with.
bool bf16_lut_available();
// Tests: force the arithmetic decoders.
void set_bf16_lut_disabled(bool off);
// One-token FP4 (decode, batch 1, where AMX runs the batches) on the integer dot-product units
// (AVX-512 VNNI vpdpbusd): FP8-quantised activations split exactly into three 7-bit digits per
// 128-column block, each lane's 8 products summed exactly as integers (V4HOST_NO_FP4_VNNI=1 keeps
// the FMA path). Whether it runs here; tests turn it off to check the FMA path too.
bool fp4_vnni_available();
void set_fp4_vnni_disabled(bool off);
// One-token FP8 (where AMX runs the batches) on fixed tables, one vpermb per byte half, zeros and
// subnormals summed again exactly per block (V4HOST_NO_FP8_FIXED=1 keeps the scaled tables).
// Whether it runs here; a switch for A/B runs and tests.
bool fp8_fixed_available();
void set_fp8_fixed_disabled(bool off);
// Whether `w` has a format the BF16 kernels compute exactly: BF16, or FP8 / FP4 with UE8M0 scales in the
// range where every scaled weight is a normal BF16 number (reads every scale: callers cache it).
bool bf16_weight_ok(const LinearWeight& w);
// Padded row length of packed activations for w (multiple of 32; of 64 for FP4 where K allows).
int bf16_padded_k(const LinearWeight& w);
// Position p of a packed row holds source column kernel_k(w, p) (or padding when >= cols).
int bf16_kernel_k(const LinearWeight& w, int p);
// Packs M rows of x (values exactly representable in BF16, e.g. FP8-quantised activations) into
// out[M * padded_k] in kernel order.
void bf16_pack_act(const LinearWeight& w, const float* x, int M, int ldx, uint16_t* out);
// The official FP8 activation quantisation (1x128 blocks, power-of-two scales, e4m3 round to
// nearest even with saturation; the values of act_quant_fp8) fused with the packing.
void bf16_quant_pack_act(const LinearWeight& w, const float* x, int M, int ldx, uint16_t* out);
// y[m*ldy + n] = Σ_k x[m,k] · W[n,k] over packed activations; threaded over N.
void linear_bf16(const LinearWeight& w, const uint16_t* xp, int M, float* y, int ldy = 0);
// Same over rows [n0, n1), caller-threaded.
void linear_bf16_rows(const LinearWeight& w, const uint16_t* xp, int M, float* y, int ldy, int n0, int n1);
// BF16 (or FP8 with qualifying UE8M0 scales: exact in BF16) weights times FP32 activations with
// exactly the FP32 products: each activation is split into three BF16 parts that sum to it
// exactly, the three GEMMs run on the dot-product units and their results are added (another
// summation order than the float32 kernels, same products). parts = 1: the activations rounded
// once to BF16 instead (a plain BF16 GEMM, a third of the work; the `fast` numerics' wo_a).
void linear_bf16_split(const LinearWeight& w, const float* x, int M, float* y, int ldx = 0, int ldy = 0, int parts = 3);
// One token through several independent projections in one parallel call (a decode step's
// projections of the same input, or of the same layer, one fork/join instead of one each).
// A job is either packed FP8 activations `xp` for an FP8/FP4 weight (as linear_bf16 with M = 1)
// or FP32 activations `x` (as linear_bf16_split with M = 1 and `parts`). Each row is computed
// by the same row kernel as the single call, so the results are bit-identical to running the
// jobs one by one; the rows of all jobs are cut into pieces of about 256 KB of weights, handed
// out one at a time, the jobs' pieces interleaved (so the two cores mix the compute-bound FP4
// rows with the memory-bound FP8 ones).
struct OneTokenJob {
  const LinearWeight* w = nullptr;
  const uint16_t* xp = nullptr;
  const float* x = nullptr;
  int parts = 3;
  float* y = nullptr;
};
void linear_one_token(const OneTokenJob* jobs, int n);
// Benchmarks: run the jobs one call each instead (V4HOST_NO_GATHER=1 sets it at start).
void set_one_token_gather_disabled(bool off);
// Decodes row n of w into BF16 in kernel order (padded_k values); exposed for tests.
void bf16_decode_row(const LinearWeight& w, int n, uint16_t* out);

}  // namespace v4
