// Compiled with -mavx2 -mfma; called only after a runtime CPU check.
#include <immintrin.h>

#include "../common/dtype.h"
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
  if (mr == kMR && nr == kNR) {  // full tile: update C straight from the registers
    __m256* acc[kMR][2] = {{&c00, &c01}, {&c10, &c11}, {&c20, &c21}, {&c30, &c31}, {&c40, &c41}, {&c50, &c51}};
    for (int r = 0; r < kMR; r++) {
      float* c = C + r * ldc;
      __m256 t0 = *acc[r][0], t1 = *acc[r][1];
      if (accumulate) {
        t0 = _mm256_add_ps(t0, _mm256_loadu_ps(c));
        t1 = _mm256_add_ps(t1, _mm256_loadu_ps(c + 8));
      }
      _mm256_storeu_ps(c, t0);
      _mm256_storeu_ps(c + 8, t1);
    }
    return;
  }
  alignas(32) float tile[kMR * kNR];
  _mm256_store_ps(tile + 0, c00);  _mm256_store_ps(tile + 8, c01);
  _mm256_store_ps(tile + 16, c10); _mm256_store_ps(tile + 24, c11);
  _mm256_store_ps(tile + 32, c20); _mm256_store_ps(tile + 40, c21);
  _mm256_store_ps(tile + 48, c30); _mm256_store_ps(tile + 56, c31);
  _mm256_store_ps(tile + 64, c40); _mm256_store_ps(tile + 72, c41);
  _mm256_store_ps(tile + 80, c50); _mm256_store_ps(tile + 88, c51);
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

namespace diffpo {

// Packs a full 6-row panel of a row-major A (k contiguous): dst[k*6 + r] = src[r*rs + k]. Eight k at a
// time: an 8x8 transpose of the six rows (two zero rows) gives, per k, the six values in one register;
// overlapping 8-wide stores at dst + 6k lay them end to end (dst needs 2 floats of slack).
void pack_a_rows6_avx2(float* dst, const float* src, long rs, int kc) {
  int k = 0;
  const __m256 zero = _mm256_setzero_ps();
  for (; k + 8 <= kc; k += 8) {
    const __m256 r0 = _mm256_loadu_ps(src + k), r1 = _mm256_loadu_ps(src + rs + k),
                 r2 = _mm256_loadu_ps(src + 2 * rs + k), r3 = _mm256_loadu_ps(src + 3 * rs + k),
                 r4 = _mm256_loadu_ps(src + 4 * rs + k), r5 = _mm256_loadu_ps(src + 5 * rs + k);
    const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
    const __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
    const __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
    const __m256 t6 = _mm256_unpacklo_ps(zero, zero), t7 = t6;
    const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    float* d = dst + (long)k * 6;
    _mm256_storeu_ps(d + 0, _mm256_permute2f128_ps(u0, u4, 0x20));
    _mm256_storeu_ps(d + 6, _mm256_permute2f128_ps(u1, u5, 0x20));
    _mm256_storeu_ps(d + 12, _mm256_permute2f128_ps(u2, u6, 0x20));
    _mm256_storeu_ps(d + 18, _mm256_permute2f128_ps(u3, u7, 0x20));
    _mm256_storeu_ps(d + 24, _mm256_permute2f128_ps(u0, u4, 0x31));
    _mm256_storeu_ps(d + 30, _mm256_permute2f128_ps(u1, u5, 0x31));
    _mm256_storeu_ps(d + 36, _mm256_permute2f128_ps(u2, u6, 0x31));
    _mm256_storeu_ps(d + 42, _mm256_permute2f128_ps(u3, u7, 0x31));
  }
  for (; k < kc; k++)
    for (int r = 0; r < 6; r++) dst[k * 6 + r] = src[r * rs + k];
}

}  // namespace diffpo

namespace diffpo {

namespace {
// In-register transpose of eight rows of eight floats.
inline void transpose8(__m256& r0, __m256& r1, __m256& r2, __m256& r3, __m256& r4, __m256& r5, __m256& r6,
                       __m256& r7) {
  const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
  const __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
  const __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
  const __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r0 = _mm256_permute2f128_ps(u0, u4, 0x20);
  r1 = _mm256_permute2f128_ps(u1, u5, 0x20);
  r2 = _mm256_permute2f128_ps(u2, u6, 0x20);
  r3 = _mm256_permute2f128_ps(u3, u7, 0x20);
  r4 = _mm256_permute2f128_ps(u0, u4, 0x31);
  r5 = _mm256_permute2f128_ps(u1, u5, 0x31);
  r6 = _mm256_permute2f128_ps(u2, u6, 0x31);
  r7 = _mm256_permute2f128_ps(u3, u7, 0x31);
}
}  // namespace

namespace {
inline __m256 load8(const float* s) { return _mm256_loadu_ps(s); }
inline __m256 load8(const uint16_t* s) {  // BF16 -> float32: the 16 bits become the high half
  const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}
inline float widen(float x) { return x; }
inline float widen(uint16_t x) { return bf16_to_f32(x); }
}  // namespace

template <typename T>
void pack_b_cols16_avx2(float* dst, const T* src, long cs, int kc) {
  int k = 0;
  for (; k + 8 <= kc; k += 8)
    for (int half = 0; half < 2; half++) {
      const T* s = src + (long)half * 8 * cs + k;
      __m256 r0 = load8(s), r1 = load8(s + cs), r2 = load8(s + 2 * cs), r3 = load8(s + 3 * cs), r4 = load8(s + 4 * cs),
             r5 = load8(s + 5 * cs), r6 = load8(s + 6 * cs), r7 = load8(s + 7 * cs);
      transpose8(r0, r1, r2, r3, r4, r5, r6, r7);
      float* d = dst + (long)k * 16 + half * 8;
      _mm256_store_ps(d, r0);
      _mm256_store_ps(d + 16, r1);
      _mm256_store_ps(d + 32, r2);
      _mm256_store_ps(d + 48, r3);
      _mm256_store_ps(d + 64, r4);
      _mm256_store_ps(d + 80, r5);
      _mm256_store_ps(d + 96, r6);
      _mm256_store_ps(d + 112, r7);
    }
  for (; k < kc; k++)
    for (int j = 0; j < 16; j++) dst[k * 16 + j] = widen(src[j * cs + k]);
}
template void pack_b_cols16_avx2<float>(float*, const float*, long, int);
template void pack_b_cols16_avx2<uint16_t>(float*, const uint16_t*, long, int);

void pack_a_cols6_avx2(float* dst, const float* src, long cs, int kc) {
  const __m256i six = _mm256_setr_epi32(-1, -1, -1, -1, -1, -1, 0, 0);
  for (int k = 0; k < kc; k++) _mm256_storeu_ps(dst + k * 6, _mm256_maskload_ps(src + (long)k * cs, six));
}

}  // namespace diffpo
