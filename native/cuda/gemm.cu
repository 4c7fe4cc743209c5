// GEMM for every linear op: a tensor-core kernel (bf16 inputs, fp32 accumulation) and the plain fp32
// tiled kernel beside it as the reference. The tensor-core path first packs each operand, whatever its
// strides, into a zero-padded bf16 matrix with K contiguous (one memory-bound pass: a tiled transpose
// where K is the strided dimension), so that one kernel serves out = inp w^T, dinp = dout w and
// dw += dout^T inp, and that kernel needs no bounds checks: 16-byte cp.async copies into a 4-stage
// shared-memory ring, ldmatrix, and mma.sync m16n8k16 (the sm_80+ instructions; older GPUs take the
// fp32 kernel).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>

#include "../common/errors.h"
#include "kernels.h"

namespace diffpo {
namespace cuda {

namespace {

constexpr int BM = 128, BN = 128, BK = 32;  // block tile
constexpr int STAGES = 4;                    // k-tiles in flight
constexpr int LDS = BK + 8;                  // shared row stride: 80 bytes, so ldmatrix's 8 rows hit distinct banks
constexpr int WARPS_M = 2, WARPS_N = 4;      // 8 warps, each 64 x 32 of C = 4 x 4 mma tiles (16 x 8)
constexpr int THREADS = 32 * WARPS_M * WARPS_N;
constexpr size_t SMEM_BYTES = (size_t)STAGES * (BM + BN) * LDS * sizeof(__nv_bfloat16);  // 80 KiB

int round_up(int x, int m) { return (x + m - 1) / m * m; }

// X(r, k) = X[r*x_r + k*x_k] (R x K, fp32) -> P (Rp x Kp, bf16, K contiguous, zero outside X). A 32 x 32
// tile goes through shared memory, read along whichever of r and k is contiguous and written along k.
__global__ void pack_bf16_kernel(__nv_bfloat16* P, const float* X, long x_r, long x_k, int R, int K, int Kp) {
  __shared__ float t[32][33];
  const int r0 = blockIdx.y * 32, k0 = blockIdx.x * 32, tx = threadIdx.x;
  for (int i = threadIdx.y; i < 32; i += blockDim.y) {
    const int r = x_k == 1 ? r0 + i : r0 + tx, k = x_k == 1 ? k0 + tx : k0 + i;
    const float v = r < R && k < K ? X[(long)r * x_r + (long)k * x_k] : 0.f;
    if (x_k == 1) t[i][tx] = v; else t[tx][i] = v;
  }
  __syncthreads();
  for (int i = threadIdx.y; i < 32; i += blockDim.y) P[(long)(r0 + i) * Kp + k0 + tx] = __float2bfloat16_rn(t[i][tx]);
}

__device__ inline unsigned smem_addr(const void* p) { return (unsigned)__cvta_generic_to_shared(p); }

// C (M x N, row stride ldc) (+)= A B^T for A (Mp x Kp), B (Np x Kp) packed bf16: block (bx, by) makes the
// BM x BN tile of C at (by*BM, bx*BN).
__global__ void __launch_bounds__(THREADS, 2)
    gemm_bf16_kernel(const __nv_bfloat16* __restrict__ A, const __nv_bfloat16* __restrict__ B, int Kp, float* C, long ldc,
                     int M, int N, bool accumulate) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
  constexpr int MI = 4, NI = 4;  // mma tiles per warp along M and N
  extern __shared__ __align__(16) unsigned char smem[];
  __nv_bfloat16* As = reinterpret_cast<__nv_bfloat16*>(smem);  // [STAGES][BM][LDS]
  __nv_bfloat16* Bs = As + (size_t)STAGES * BM * LDS;          // [STAGES][BN][LDS]
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int wm = warp / WARPS_N, wn = warp % WARPS_N;
  const __nv_bfloat16* Ab = A + (long)m0 * Kp;
  const __nv_bfloat16* Bb = B + (long)n0 * Kp;

  // one k-tile of A and of B: 128 rows x 4 chunks of 16 bytes each, two chunks per thread per operand
  auto load = [&](int stage, int k0) {
#pragma unroll
    for (int c = threadIdx.x; c < BM * BK / 8; c += THREADS) {
      const int row = c / (BK / 8), col = c % (BK / 8) * 8;
      asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smem_addr(As + ((size_t)stage * BM + row) * LDS + col)),
                   "l"(Ab + (long)row * Kp + k0 + col));
      asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smem_addr(Bs + ((size_t)stage * BN + row) * LDS + col)),
                   "l"(Bb + (long)row * Kp + k0 + col));
    }
  };

  float acc[MI][NI][4] = {};
  const int KT = Kp / BK;
#pragma unroll
  for (int s = 0; s < STAGES - 1; s++) {
    if (s < KT) load(s, s * BK);
    asm volatile("cp.async.commit_group;\n" ::);
  }
  for (int kt = 0; kt < KT; kt++) {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(STAGES - 2));  // k-tile kt has landed
    __syncthreads();  // ... for every thread, and every warp is done with the stage refilled below
    if (kt + STAGES - 1 < KT) load((kt + STAGES - 1) % STAGES, (kt + STAGES - 1) * BK);
    asm volatile("cp.async.commit_group;\n" ::);
    const __nv_bfloat16* as = As + (size_t)(kt % STAGES) * BM * LDS;
    const __nv_bfloat16* bs = Bs + (size_t)(kt % STAGES) * BN * LDS;
#pragma unroll
    for (int kk = 0; kk < BK; kk += 16) {
      unsigned a[MI][4], b[NI][2];
#pragma unroll
      for (int i = 0; i < MI; i++)  // rows 0-15 at k 0-7 (lanes 0-15), then at k 8-15 (lanes 16-31)
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                     : "=r"(a[i][0]), "=r"(a[i][1]), "=r"(a[i][2]), "=r"(a[i][3])
                     : "r"(smem_addr(as + (wm * 64 + i * 16 + lane % 16) * LDS + kk + lane / 16 * 8)));
#pragma unroll
      for (int j = 0; j < NI; j += 2)  // two 8-wide n tiles: (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, ...)
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                     : "=r"(b[j][0]), "=r"(b[j][1]), "=r"(b[j + 1][0]), "=r"(b[j + 1][1])
                     : "r"(smem_addr(bs + (wn * 32 + j * 8 + lane % 8 + lane / 16 * 8) * LDS + kk + lane / 8 % 2 * 8)));
#pragma unroll
      for (int i = 0; i < MI; i++)
#pragma unroll
        for (int j = 0; j < NI; j++)
          asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                       "{%0,%1,%2,%3};\n"
                       : "+f"(acc[i][j][0]), "+f"(acc[i][j][1]), "+f"(acc[i][j][2]), "+f"(acc[i][j][3])
                       : "r"(a[i][0]), "r"(a[i][1]), "r"(a[i][2]), "r"(a[i][3]), "r"(b[j][0]), "r"(b[j][1]));
    }
  }
  asm volatile("cp.async.wait_group 0;\n" ::);
  // each thread holds rows lane/4 and lane/4 + 8, columns 2 (lane % 4) and the next, of every mma tile
#pragma unroll
  for (int i = 0; i < MI; i++)
#pragma unroll
    for (int j = 0; j < NI; j++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int r = m0 + wm * 64 + i * 16 + lane / 4 + (e / 2) * 8, c = n0 + wn * 32 + j * 8 + lane % 4 * 2 + e % 2;
        if (r < M && c < N) {
          float* dst = C + (long)r * ldc + c;
          *dst = acc[i][j][e] + (accumulate ? *dst : 0.f);
        }
      }
#endif
}

// The packed operands, per host thread (ops of one backend run on one thread at a time; each thread
// that runs ops gets its own), grown as needed and kept.
struct PackBuffers {
  __nv_bfloat16* p = nullptr;
  size_t elems = 0;
  ~PackBuffers() { cudaFree(p); }
  __nv_bfloat16* get(size_t n) {
    if (n > elems) {
      cudaFree(p);
      p = nullptr, elems = 0;
      if (cudaMalloc(&p, n * sizeof(__nv_bfloat16)) != cudaSuccess) return nullptr;
      elems = n;
    }
    return p;
  }
};
thread_local PackBuffers pack_buffers;

bool tensor_cores_available() {
  static const bool ok = [] {
    int dev = 0, major = 0;
    return cudaGetDevice(&dev) == cudaSuccess && cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
           major >= 8 && cudaFuncSetAttribute(gemm_bf16_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)SMEM_BYTES) == cudaSuccess;
  }();
  return ok;
}

// The reference: 16x16 tiles of C, fp32 throughout.
constexpr int RT = 16;
__global__ void gemm_fp32_kernel(GemmArgs g) {
  __shared__ float As[RT][RT + 1], Bs[RT][RT + 1];
  const int r = blockIdx.y * RT + threadIdx.y, c = blockIdx.x * RT + threadIdx.x;
  float acc = 0.f;
  for (int k0 = 0; k0 < g.K; k0 += RT) {
    const int ak = k0 + threadIdx.x, bk = k0 + threadIdx.y;
    As[threadIdx.y][threadIdx.x] = r < g.M && ak < g.K ? g.A[(long)r * g.a_i + (long)ak * g.a_k] : 0.f;
    Bs[threadIdx.y][threadIdx.x] = c < g.N && bk < g.K ? g.B[(long)bk * g.b_k + (long)c * g.b_j] : 0.f;
    __syncthreads();
    for (int k = 0; k < RT; k++) acc += As[threadIdx.y][k] * Bs[k][threadIdx.x];
    __syncthreads();
  }
  if (r < g.M && c < g.N) {
    float* dst = g.C + (long)r * g.ldc + c;
    *dst = acc + (g.accumulate ? *dst : 0.f);
  }
}

}  // namespace

void gemm(const GemmArgs& g, bool bf16) {
  if (g.M <= 0 || g.N <= 0) return;
  if (g.K <= 0) {  // an empty sum: C = 0 (or unchanged when accumulating)
    if (!g.accumulate)
      for (int r = 0; r < g.M; r++) cudaMemsetAsync(g.C + (long)r * g.ldc, 0, sizeof(float) * g.N);
    check_last("gemm (K = 0)");
    return;
  }
  if (bf16 && tensor_cores_available()) {
    const int Mp = round_up(g.M, BM), Np = round_up(g.N, BN), Kp = round_up(g.K, BK);
    __nv_bfloat16* Ap = pack_buffers.get((size_t)(Mp + Np) * Kp);
    if (!Ap) {
      cudaGetLastError();
      throw Error("ERR_CUDA", "gemm: out of device memory for the packed bf16 operands");
    }
    __nv_bfloat16* Bp = Ap + (size_t)Mp * Kp;
    pack_bf16_kernel<<<dim3(Kp / 32, Mp / 32), dim3(32, 8)>>>(Ap, g.A, g.a_i, g.a_k, g.M, g.K, Kp);
    pack_bf16_kernel<<<dim3(Kp / 32, Np / 32), dim3(32, 8)>>>(Bp, g.B, g.b_j, g.b_k, g.N, g.K, Kp);
    gemm_bf16_kernel<<<dim3(Np / BN, Mp / BM), THREADS, SMEM_BYTES>>>(Ap, Bp, Kp, g.C, g.ldc, g.M, g.N, g.accumulate);
    check_last("gemm_bf16");
    return;
  }
  gemm_fp32_kernel<<<dim3((g.N + RT - 1) / RT, (g.M + RT - 1) / RT), dim3(RT, RT)>>>(g);
  check_last("gemm_fp32");
}

}  // namespace cuda
}  // namespace diffpo
