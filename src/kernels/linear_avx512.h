// AVX-512 implementation of linear_rows (compiled with per-function target attributes; only
// called when core/cpu.h reports AVX-512F/BW/VL).
#pragma once
#include "kernels/linear.h"

namespace v4 {

void linear_rows_avx512(const LinearWeight& w, const float* x, int M, float* y, int ldx, int ldy, int n0, int n1);
// Dequantise row n of w into out (AVX-512); exposed for tests.
void dequant_row_avx512(const LinearWeight& w, int n, float* out);

}  // namespace v4
