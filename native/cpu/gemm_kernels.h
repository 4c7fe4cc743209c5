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
double fma_loop_avx2(long iters);  // returns a value so the loop is not optimised away
}  // namespace diffpo
