// GEMM for every linear op: a tensor-core kernel (bf16 inputs, fp32 accumulation) and the plain fp32
// tiled kernel beside it as the reference. Operands are read through (row, k) strides so that one
// kernel serves out = inp w^T, dinp = dout w and dw += dout^T inp without transposing copies; each
// tile is staged with consecutive threads on the operand's contiguous dimension (coalesced loads).
#include <cuda_bf16.h>
#include <mma.h>

#include "kernels.h"

namespace diffpo {
namespace cuda {

namespace {

using namespace nvcuda;

constexpr int BM = 128, BN = 128, BK = 32, PAD = 8;  // block tile; PAD keeps WMMA rows 32-byte aligned
constexpr int WARPS_M = 2, WARPS_N = 4;               // 8 warps, each 64 x 32 = 4 x 2 fragments
constexpr int THREADS = 32 * WARPS_M * WARPS_N;

// A (ROWS x BK) tile of X(r, k) = X[r*x_r + k*x_k] on its way to shared memory: load() fetches the
// next tile into registers (its global loads stay in flight while the MMAs of the current tile run),
// store() writes it to S[r][k] as bf16. Zero outside the matrix.
template <bool K_CONTIG, int ROWS>
struct TileLoader {
  static constexpr int PER_THREAD = ROWS * BK / THREADS;
  float reg[PER_THREAD];
  __device__ void load(const float* X, long x_r, long x_k, int r0, int k0, int R, int K) {
#pragma unroll
    for (int i = 0; i < PER_THREAD; i++) {
      const int idx = threadIdx.x + i * THREADS;
      const int r = K_CONTIG ? idx / BK : idx % ROWS, c = K_CONTIG ? idx % BK : idx / ROWS;
      const int gr = r0 + r, gk = k0 + c;
      reg[i] = gr < R && gk < K ? X[(long)gr * x_r + (long)gk * x_k] : 0.f;
    }
  }
  __device__ void store(__nv_bfloat16 (*S)[BK + PAD]) const {
#pragma unroll
    for (int i = 0; i < PER_THREAD; i++) {
      const int idx = threadIdx.x + i * THREADS;
      const int r = K_CONTIG ? idx / BK : idx % ROWS, c = K_CONTIG ? idx % BK : idx / ROWS;
      S[r][c] = __float2bfloat16_rn(reg[i]);
    }
  }
};
static_assert(BM * BK % THREADS == 0 && BN * BK % THREADS == 0, "tiles split evenly over the threads");

template <bool A_K_CONTIG, bool B_K_CONTIG>
__global__ void __launch_bounds__(THREADS) gemm_bf16_kernel(GemmArgs g) {
  __shared__ __align__(32) __nv_bfloat16 As[BM][BK + PAD];
  __shared__ __align__(32) __nv_bfloat16 Bs[BN][BK + PAD];  // B transposed: Bs[n][k]
  __shared__ __align__(32) float Cs[WARPS_M * WARPS_N][16][16];
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int wm = warp / WARPS_N, wn = warp % WARPS_N;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[4][2];
#pragma unroll
  for (int i = 0; i < 4; i++)
#pragma unroll
    for (int j = 0; j < 2; j++) wmma::fill_fragment(acc[i][j], 0.f);
  TileLoader<A_K_CONTIG, BM> a_tile;
  TileLoader<B_K_CONTIG, BN> b_tile;  // B(k, n) staged transposed: Bs[n][k]
  a_tile.load(g.A, g.a_i, g.a_k, m0, 0, g.M, g.K);
  b_tile.load(g.B, g.b_j, g.b_k, n0, 0, g.N, g.K);
  for (int k0 = 0; k0 < g.K; k0 += BK) {
    a_tile.store(As);
    b_tile.store(Bs);
    __syncthreads();
    if (k0 + BK < g.K) {  // prefetch the next tiles while this one is multiplied
      a_tile.load(g.A, g.a_i, g.a_k, m0, k0 + BK, g.M, g.K);
      b_tile.load(g.B, g.b_j, g.b_k, n0, k0 + BK, g.N, g.K);
    }
#pragma unroll
    for (int kk = 0; kk < BK; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> a[4];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> b[2];
#pragma unroll
      for (int i = 0; i < 4; i++) wmma::load_matrix_sync(a[i], &As[wm * 64 + i * 16][kk], BK + PAD);
#pragma unroll
      for (int j = 0; j < 2; j++) wmma::load_matrix_sync(b[j], &Bs[wn * 32 + j * 16][kk], BK + PAD);
#pragma unroll
      for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 2; j++) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }
  // epilogue through a per-warp 16x16 staging tile: bounds and accumulation per element
#pragma unroll
  for (int i = 0; i < 4; i++)
#pragma unroll
    for (int j = 0; j < 2; j++) {
      wmma::store_matrix_sync(&Cs[warp][0][0], acc[i][j], 16, wmma::mem_row_major);
      __syncwarp();
      for (int e = lane; e < 256; e += 32) {
        const int r = m0 + wm * 64 + i * 16 + e / 16, c = n0 + wn * 32 + j * 16 + e % 16;
        if (r < g.M && c < g.N) {
          float* dst = g.C + (long)r * g.ldc + c;
          *dst = Cs[warp][e / 16][e % 16] + (g.accumulate ? *dst : 0.f);
        }
      }
      __syncwarp();
    }
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
  if (!bf16) {
    gemm_fp32_kernel<<<dim3((g.N + RT - 1) / RT, (g.M + RT - 1) / RT), dim3(RT, RT)>>>(g);
    check_last("gemm_fp32");
    return;
  }
  const dim3 grid((g.N + BN - 1) / BN, (g.M + BM - 1) / BM);
  const bool ak = g.a_k == 1, bk = g.b_k == 1;
  if (ak && bk)
    gemm_bf16_kernel<true, true><<<grid, THREADS>>>(g);
  else if (ak)
    gemm_bf16_kernel<true, false><<<grid, THREADS>>>(g);
  else if (bk)
    gemm_bf16_kernel<false, true><<<grid, THREADS>>>(g);
  else
    gemm_bf16_kernel<false, false><<<grid, THREADS>>>(g);
  check_last("gemm_bf16");
}

}  // namespace cuda
}  // namespace diffpo
