// AVX2 + FMA + F16C implementation of linear_rows, for x86-64 CPUs without AVX-512 (AMD Zen 2/3,
// Intel client cores). Compiled with per-function target attributes; only called when
// core/cpu.h's use_avx2() holds.
#pragma once
#include "kernels/linear.h"

namespace v4 {

void linear_rows_avx2(const LinearWeight& w, const float* x, int M, float* y, int ldx, int ldy, int n0, int n1);
// Dequantise row n of w into out with the AVX2 decoders (the values the kernels multiply by);
// exposed for tests: they equal LinearWeight::dequant_row bit for bit.
void dequant_row_avx2(const LinearWeight& w, int n, float* out);

}  // namespace v4
