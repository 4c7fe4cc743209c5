// Compiled with -mavx2 -mfma; called only after a runtime CPU check.
#include <immintrin.h>

#include "gemm_kernels.h"

namespace diffpo {

void microkernel_avx2(int kc, const float* Ap, const float* Bp, float* C, long ldc, int mr, int nr,
                      bool accumulate) {
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps(), c10 = _mm256_setzero_ps(),
         c11 = _mm256_setzero_ps(), c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps(),
         c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps(), c40 = _mm256_setzero_ps(),
         c41 = _mm256_setzero_ps(), c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
  for (int k = 0; k < kc; k++) {
    const __m256 b0 = _mm256_load_ps(Bp), b1 = _mm256_load_ps(Bp + 8);
    __m256 a;
    a = _mm256_broadcast_ss(Ap + 0); c00 = _mm256_fmadd_ps(a, b0, c00); c01 = _mm256_fmadd_ps(a, b1, c01);
    a = _mm256_broadcast_ss(Ap + 1); c10 = _mm256_fmadd_ps(a, b0, c10); c11 = _mm256_fmadd_ps(a, b1, c11);
    a = _mm256_broadcast_ss(Ap + 2); c20 = _mm256_fmadd_ps(a, b0, c20); c21 = _mm256_fmadd_ps(a, b1, c21);
    a = _mm256_broadcast_ss(Ap + 3); c30 = _mm256_fmadd_ps(a, b0, c30); c31 = _mm256_fmadd_ps(a, b1, c31);
    a = _mm256_broadcast_ss(Ap + 4); c40 = _mm256_fmadd_ps(a, b0, c40); c41 = _mm256_fmadd_ps(a, b1, c41);
    a = _mm256_broadcast_ss(Ap + 5); c50 = _mm256_fmadd_ps(a, b0, c50); c51 = _mm256_fmadd_ps(a, b1, c51);
    Ap += kMR;
    Bp += kNR;
  }
  alignas(32) float tile[kMR * kNR];
  _mm256_store_ps(tile + 0, c00);  _mm256_store_ps(tile + 8, c01);
  _mm256_store_ps(tile + 16, c10); _mm256_store_ps(tile + 24, c11);
  _mm256_store_ps(tile + 32, c20); _mm256_store_ps(tile + 40, c21);
  _mm256_store_ps(tile + 48, c30); _mm256_store_ps(tile + 56, c31);
  _mm256_store_ps(tile + 64, c40); _mm256_store_ps(tile + 72, c41);
  _mm256_store_ps(tile + 80, c50); _mm256_store_ps(tile + 88, c51);
  if (mr == kMR && nr == kNR) {
    for (int r = 0; r < kMR; r++) {
      float* c = C + r * ldc;
      __m256 t0 = _mm256_load_ps(tile + r * kNR), t1 = _mm256_load_ps(tile + r * kNR + 8);
      if (accumulate) {
        t0 = _mm256_add_ps(t0, _mm256_loadu_ps(c));
        t1 = _mm256_add_ps(t1, _mm256_loadu_ps(c + 8));
      }
      _mm256_storeu_ps(c, t0);
      _mm256_storeu_ps(c + 8, t1);
    }
    return;
  }
  for (int r = 0; r < mr; r++)
    for (int j = 0; j < nr; j++) C[r * ldc + j] = (accumulate ? C[r * ldc + j] : 0.f) + tile[r * kNR + j];
}

double fma_loop_avx2(long iters) {
  // 10 independent chains cover the FMA latency x throughput product of current x86 cores.
  __m256 acc[10];
  for (int i = 0; i < 10; i++) acc[i] = _mm256_set1_ps(0.001f * i);
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  for (long it = 0; it < iters; it++) {
#pragma GCC unroll 10
    for (int i = 0; i < 10; i++) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
  }
  __m256 s = acc[0];
  for (int i = 1; i < 10; i++) s = _mm256_add_ps(s, acc[i]);
  alignas(32) float out[8];
  _mm256_store_ps(out, s);
  return out[0] + out[7];
}

}  // namespace diffpo
