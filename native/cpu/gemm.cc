#include "gemm.h"

#include <algorithm>
#include <cstdlib>
#include <vector>

#include "../common/dtype.h"
#include "../common/threadpool.h"
#include "cpu_features.h"
#include "gemm_kernels.h"

namespace diffpo {

namespace {

constexpr int kKC = 256, kMC = 144, kNC = 3072;  // L1 holds a B micro-panel, L2 an A block

struct PackBuffers {
  float* a = nullptr;
  float* b = nullptr;
  PackBuffers() {
    a = static_cast<float*>(std::aligned_alloc(64, sizeof(float) * (kMC * kKC + 16)));  // + slack for pack_a
    b = static_cast<float*>(std::aligned_alloc(64, sizeof(float) * kKC * kNC));
  }
  ~PackBuffers() {
    std::free(a);
    std::free(b);
  }
};

// One pair of packing buffers per thread, allocated on first use only.
PackBuffers& pack_buffers() {
  static thread_local PackBuffers buffers;
  return buffers;
}

// A[i0:i0+mc, k0:k0+kc] -> MR-row panels, each kc x MR (k-major), zero-padded.
void pack_a(float* dst, MatView A, int i0, int mc, int k0, int kc, bool avx2) {
  for (int ip = 0; ip < mc; ip += kMR, dst += (long)kc * kMR) {
    const int mr = std::min(kMR, mc - ip);
    const float* base = A.p + (long)(i0 + ip) * A.rs + (long)k0 * A.cs;
    if (avx2 && mr == kMR && (A.cs == 1 || A.rs == 1)) {
      if (A.cs == 1)
        pack_a_rows6_avx2(dst, base, A.rs, kc);  // row-major A: transpose in registers
      else
        pack_a_cols6_avx2(dst, base, A.cs, kc);  // transposed A: six contiguous floats per k
      continue;
    }
    for (int k = 0; k < kc; k++) {
      const float* src = base + (long)k * A.cs;
      for (int r = 0; r < kMR; r++) dst[k * kMR + r] = r < mr ? src[r * A.rs] : 0.f;
    }
  }
}

inline float widen(float x) { return x; }
inline float widen(uint16_t x) { return bf16_to_f32(x); }

// B[k0:k0+kc, j0:j0+nc] -> NR-column panels, each kc x NR (k-major), zero-padded. The loop order
// follows whichever stride is contiguous, so that reads stream. T: float, or uint16_t for BF16.
template <typename T>
void pack_b(float* dst, const T* p, long rs, long cs, int k0, int kc, int j0, int nc, bool avx2) {
  for (int jp = 0; jp < nc; jp += kNR, dst += (long)kc * kNR) {
    const int nr = std::min(kNR, nc - jp);
    const T* base = p + (long)k0 * rs + (long)(j0 + jp) * cs;
    if (cs == 1) {
      for (int k = 0; k < kc; k++) {
        const T* src = base + (long)k * rs;
        float* d = dst + k * kNR;
        for (int j = 0; j < nr; j++) d[j] = widen(src[j]);
        for (int j = nr; j < kNR; j++) d[j] = 0.f;
      }
    } else if (avx2 && rs == 1 && nr == kNR) {
      pack_b_cols16_avx2(dst, base, cs, kc);  // transposed B: 8x8 transposes in registers
    } else {
      for (int j = 0; j < nr; j++) {
        const T* src = base + (long)j * cs;
        for (int k = 0; k < kc; k++) dst[k * kNR + j] = widen(src[(long)k * rs]);
      }
      for (int j = nr; j < kNR; j++)
        for (int k = 0; k < kc; k++) dst[k * kNR + j] = 0.f;
    }
  }
}

void pack_b(float* dst, MatView B, int k0, int kc, int j0, int nc, bool avx2) {
  if (B.bf16)
    pack_b(dst, B.bf16, B.rs, B.cs, k0, kc, j0, nc, avx2);
  else
    pack_b(dst, B.p, B.rs, B.cs, k0, kc, j0, nc, avx2);
}

void sgemm_serial(MicroKernel kernel, int M, int N, int K, MatView A, MatView B, float* C, long ldc,
                  bool accumulate) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    if (!accumulate)
      for (int i = 0; i < M; i++) std::fill(C + i * ldc, C + i * ldc + N, 0.f);
    return;
  }
  PackBuffers& buf = pack_buffers();
  for (int jc = 0; jc < N; jc += kNC) {
    const int nc = std::min(kNC, N - jc);
    for (int pc = 0; pc < K; pc += kKC) {
      const int kc = std::min(kKC, K - pc);
      const bool acc = accumulate || pc > 0;
      pack_b(buf.b, B, pc, kc, jc, nc, kernel == microkernel_avx2);
      for (int ic = 0; ic < M; ic += kMC) {
        const int mc = std::min(kMC, M - ic);
        pack_a(buf.a, A, ic, mc, pc, kc, kernel == microkernel_avx2);
        for (int jr = 0; jr < nc; jr += kNR) {
          const int nr = std::min(kNR, nc - jr);
          for (int ir = 0; ir < mc; ir += kMR) {
            const int mr = std::min(kMR, mc - ir);
            kernel(kc, buf.a + (long)ir * kc, buf.b + (long)jr * kc, C + (long)(ic + ir) * ldc + jc + jr, ldc,
                   mr, nr, acc);
          }
        }
      }
    }
  }
}

MicroKernel best_kernel() { return cpu_has_avx2_fma() ? microkernel_avx2 : microkernel_portable; }

}  // namespace

void microkernel_portable(int kc, const float* Ap, const float* Bp, float* C, long ldc, int mr, int nr,
                          bool accumulate) {
  float acc[kMR][kNR] = {};
  for (int k = 0; k < kc; k++) {
    for (int r = 0; r < kMR; r++) {
      const float a = Ap[r];
      for (int j = 0; j < kNR; j++) acc[r][j] += a * Bp[j];
    }
    Ap += kMR;
    Bp += kNR;
  }
  for (int r = 0; r < mr; r++)
    for (int j = 0; j < nr; j++) C[r * ldc + j] = (accumulate ? C[r * ldc + j] : 0.f) + acc[r][j];
}

const char* gemm_kernel_name() { return cpu_has_avx2_fma() ? "avx2-fma-6x16" : "portable-6x16"; }

void sgemm_portable(int M, int N, int K, MatView A, MatView B, float* C, long ldc, bool accumulate) {
  sgemm_serial(microkernel_portable, M, N, K, A, B, C, ldc, accumulate);
}

void sgemm(int M, int N, int K, MatView A, MatView B, float* C, long ldc, bool accumulate, ThreadPool* pool) {
  const MicroKernel kernel = best_kernel();
  const int threads = pool ? pool->size() : 1;
  const double flops = 2.0 * M * N * K;
  if (threads == 1 || flops < 2e6) {
    sgemm_serial(kernel, M, N, K, A, B, C, ldc, accumulate);
    return;
  }
  // Split the larger of M and N into one contiguous slab per thread, aligned to the micro-tile.
  const bool split_m = (long)M * kNR >= (long)N * kMR;
  const int extent = split_m ? M : N, align = split_m ? kMR : kNR;
  const int units = (extent + align - 1) / align;
  const int parts = std::min(threads, units);
  pool->run(parts, [&](int part, int) {
    const int u0 = (int)((long)units * part / parts), u1 = (int)((long)units * (part + 1) / parts);
    const int lo = u0 * align, hi = std::min(extent, u1 * align);
    if (lo >= hi) return;
    if (split_m) {
      MatView a = {A.p + (long)lo * A.rs, A.rs, A.cs};
      sgemm_serial(kernel, hi - lo, N, K, a, B, C + (long)lo * ldc, ldc, accumulate);
    } else {
      MatView b = B;
      if (b.bf16)
        b.bf16 += (long)lo * B.cs;
      else
        b.p += (long)lo * B.cs;
      sgemm_serial(kernel, M, hi - lo, K, A, b, C + lo, ldc, accumulate);
    }
  });
}

}  // namespace diffpo
