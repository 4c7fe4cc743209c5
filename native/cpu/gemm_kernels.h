// Micro-kernel interface shared by the portable and the AVX2 translation units.
#pragma once
namespace diffpo {
constexpr int kMR = 6, kNR = 16;
// C[kMR x kNR] tile: acc = Ap (kc x kMR, packed) * Bp (kc x kNR, packed); C = acc (+ C if accumulate).
// Writes only the mr x nr top-left part (edge tiles).
using MicroKernel = void (*)(int kc, const float* Ap, const float* Bp, float* C, long ldc, int mr, int nr,
                             bool accumulate);
void microkernel_portable(int kc, const float* Ap, const float* Bp, float* C, long ldc, int mr, int nr,
                          bool accumulate);
void microkernel_avx2(int kc, const float* Ap, const float* Bp, float* C, long ldc, int mr, int nr,
                      bool accumulate);
double fma_loop_avx2(long iters);
// dst[k*6 + r] = src[r*rs + k] for r < 6, k < kc; writes up to 2 floats past dst[6*kc).
void pack_a_rows6_avx2(float* dst, const float* src, long rs, int kc);
// dst[k*6 + r] = src[k*cs + r] (A stored transposed); writes up to 2 floats past dst[6*kc).
void pack_a_cols6_avx2(float* dst, const float* src, long cs, int kc);
// dst[k*16 + j] = src[j*cs + k] for j < 16 (B stored transposed, as W in out = inp W^T); dst 32-byte aligned.
// T is float or uint16_t (BF16, widened exactly).
template <typename T>
void pack_b_cols16_avx2(float* dst, const T* src, long cs, int kc);  // returns a value so the loop is not optimised away
}  // namespace diffpo
