// The row-wise and elementwise ops on the GPU, in ops.h's order, each forward beside its backward:
// embedding, RMSNorm, RoPE, SwiGLU, the LM head's log-softmax/gather, row copies, scale, sum of
// squares, AdamW, and the decoding step's scores. The formulas are the CPU row kernels'.
#include <algorithm>
#include <cfloat>
#include <cmath>

#include "kernels.h"

namespace diffpo {
namespace cuda {

namespace {

constexpr int THREADS = 256;

unsigned blocks_for(long n, int per = THREADS) { return (unsigned)std::min<long>((n + per - 1) / per, 65535L * 8); }

// Sum over the block (all threads get it); shared holds 32 partials.
template <typename T>
__device__ T block_sum(T x, T* shared) {
  for (int o = 16; o > 0; o /= 2) x += __shfl_xor_sync(0xffffffffu, x, o);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();
  if (lane == 0) shared[warp] = x;
  __syncthreads();
  T total = 0;
  for (int w = 0; w < (int)(blockDim.x + 31) / 32; w++) total += shared[w];
  return total;
}

template <typename T>
__device__ T block_max(T x, T* shared) {
  for (int o = 16; o > 0; o /= 2) x = max(x, __shfl_xor_sync(0xffffffffu, x, o));
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();
  if (lane == 0) shared[warp] = x;
  __syncthreads();
  T m = shared[0];
  for (int w = 1; w < (int)(blockDim.x + 31) / 32; w++) m = max(m, shared[w]);
  return m;
}

// ---- embedding: ids (N) -> out (N,D) ; dout (N,D) -> dwte (E,D) +=
__global__ void embedding_forward_kernel(float* out, const int32_t* ids, const float* wte, int N, int D, float scale) {
  for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < (long)N * D; i += (long)gridDim.x * blockDim.x)
    out[i] = wte[(long)ids[i / D] * D + i % D] * scale;
}
__global__ void embedding_backward_kernel(float* dwte, const float* dout, const int32_t* ids, int N, int D, float scale) {
  for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < (long)N * D; i += (long)gridDim.x * blockDim.x)
    atomicAdd(dwte + (long)ids[i / D] * D + i % D, dout[i] * scale);
}

// ---- RMSNorm: a block per row; the backward's dw sums per block in shared memory, then atomically
__global__ void rmsnorm_forward_kernel(float* out, float* rstd, const float* inp, const float* w, int D, float eps) {
  __shared__ float part[32];
  const float* x = inp + (long)blockIdx.x * D;
  float ss = 0.f;
  for (int d = threadIdx.x; d < D; d += blockDim.x) ss += x[d] * x[d];
  const float r = 1.f / sqrtf(block_sum(ss, part) / D + eps);
  for (int d = threadIdx.x; d < D; d += blockDim.x) out[(long)blockIdx.x * D + d] = w[d] * (x[d] * r);
  if (threadIdx.x == 0) rstd[blockIdx.x] = r;
}
__global__ void rmsnorm_backward_kernel(float* dinp, float* dw, const float* dout, const float* inp, const float* w,
                                        const float* rstd, int N, int D) {
  extern __shared__ float dw_part[];  // (D)
  __shared__ float part[32];
  for (int d = threadIdx.x; d < D; d += blockDim.x) dw_part[d] = 0.f;
  for (int n = blockIdx.x; n < N; n += gridDim.x) {
    const float *x = inp + (long)n * D, *dy = dout + (long)n * D;
    const float r = rstd[n];
    float dot = 0.f;
    for (int d = threadIdx.x; d < D; d += blockDim.x) dot += dy[d] * w[d] * x[d];
    dot = block_sum(dot, part) * r / D;
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
      dw_part[d] += dy[d] * x[d] * r;
      dinp[(long)n * D + d] += r * (dy[d] * w[d] - x[d] * r * dot);
    }
  }
  __syncthreads();
  if (dw)
    for (int d = threadIdx.x; d < D; d += blockDim.x) atomicAdd(dw + d, dw_part[d]);
}

// ---- RoPE, rotate-half: x (B,T,nh,hd) in place; sign -1 applies the inverse rotation
__global__ void rope_kernel(float* x, const float* cos, const float* sin, const int32_t* pos, int B, int T, int nh,
                            int half, long ld, float sign) {
  const long n = (long)B * T * nh * half;
  for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
    const long bt = i / ((long)nh * half), h = (i / half) % nh, j = i % half;
    const long t = pos ? pos[bt] : bt % T;
    float* u = x + bt * ld + h * 2 * half;
    const float x1 = u[j], x2 = u[j + half], c = cos[t * half + j], s = sign * sin[t * half + j];
    u[j] = x1 * c - x2 * s;
    u[j + half] = x2 * c + x1 * s;
  }
}

// ---- SwiGLU: ab (N,2F) = [a | b] -> out (N,F) ; dout -> dab (N,2F)
__global__ void swiglu_forward_kernel(float* out, const float* ab, int N, int F) {
  for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < (long)N * F; i += (long)gridDim.x * blockDim.x) {
    const long n = i / F, f = i % F;
    const float a = ab[n * 2 * F + f], b = ab[n * 2 * F + F + f];
    out[i] = a / (1.f + __expf(-a)) * b;
  }
}
__global__ void swiglu_backward_kernel(float* dab, const float* dout, const float* ab, int N, int F) {
  for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < (long)N * F; i += (long)gridDim.x * blockDim.x) {
    const long n = i / F, f = i % F;
    const float a = ab[n * 2 * F + f], b = ab[n * 2 * F + F + f], s = 1.f / (1.f + __expf(-a));
    dab[n * 2 * F + F + f] = dout[i] * a * s;
    dab[n * 2 * F + f] = dout[i] * b * s * (1.f + a * (1.f - s));
  }
}

// ---- LM head: a block per row of logits (E)
__global__ void logsumexp_gather_kernel(float* logits, float* lse, float* logp, const int32_t* targets, int E,
                                        float scale) {
  __shared__ float part[32];
  float* row = logits + (long)blockIdx.x * E;
  float mx = -FLT_MAX;
  for (int e = threadIdx.x; e < E; e += blockDim.x) mx = fmaxf(mx, row[e] *= scale);
  mx = block_max(mx, part);
  float sum = 0.f;
  for (int e = threadIdx.x; e < E; e += blockDim.x) sum += __expf(row[e] - mx);
  sum = block_sum(sum, part);
  if (threadIdx.x == 0) {
    const float l = mx + logf(sum);
    lse[blockIdx.x] = l;
    logp[blockIdx.x] = row[targets[blockIdx.x]] - l;
  }
}
__global__ void logsoftmax_gather_backward_kernel(float* logits, const float* dlogp, const float* lse,
                                                  const int32_t* targets, int E, float scale) {
  float* row = logits + (long)blockIdx.x * E;
  const float g = dlogp[blockIdx.x], l = lse[blockIdx.x];
  const int target = targets[blockIdx.x];
  for (int e = threadIdx.x; e < E; e += blockDim.x)
    row[e] = -g * __expf(row[e] * scale - l) * scale + (e == target ? g * scale : 0.f);
}

__global__ void copy_rows_kernel(float* dst, long dst_ld, const int32_t* dst_rows, const float* src, long src_ld,
                                 const int32_t* src_rows, int rows, int n, bool add) {
  for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < (long)rows * n; i += (long)gridDim.x * blockDim.x) {
    const long r = i / n, c = i % n;
    const float x = src[(src_rows ? src_rows[r] : r) * src_ld + c];
    float* d = dst + (dst_rows ? dst_rows[r] : r) * dst_ld + c;
    if (add)
      atomicAdd(d, x);
    else
      *d = x;
  }
}

__global__ void dropout_kernel(float* y, const float* x, long N, int C, float p, uint64_t seed, uint32_t stream,
                               uint32_t step, bool add) {
  for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < N * C; i += (long)gridDim.x * blockDim.x) {
    const long n = i / C;
    const int c = (int)(i % C);
    const float v = x[i] * dropout_factor(seed, {stream, step, (uint32_t)n}, (uint32_t)c, p);
    y[i] = add ? y[i] + v : v;
  }
}

__global__ void scale_kernel(float* x, long n, float s) {
  for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) x[i] *= s;
}

__global__ void sum_squares_kernel(double* out, const float* x, long n) {
  __shared__ double part[32];
  double s = 0;
  for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x)
    s += (double)x[i] * x[i];
  s = block_sum(s, part);
  if (threadIdx.x == 0) atomicAdd(out, s);
}

__global__ void adamw_kernel(float* p, const float* g, float* m, float* v, long n, float lr, float b1, float b2,
                             float eps, float wd, float gs, float bc1, float bc2) {
  for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
    const float gi = g[i] * gs;
    m[i] = b1 * m[i] + (1.f - b1) * gi;
    v[i] = b2 * v[i] + (1.f - b2) * gi * gi;
    const float mhat = m[i] / bc1, vhat = v[i] / bc2;
    p[i] -= lr * (wd * p[i] + mhat / (sqrtf(vhat) + eps));
  }
}

// ---- decoding scores: a block per row, float64 as the host; argmax ties go to the lower id
__global__ void decode_score_kernel(int32_t* x0, float* conf, float* logp, float* entropy, const float* logits,
                                    const NoiseRow* noise, uint64_t seed, int E, int V, int mask_id, double temperature) {
  __shared__ double part[32];
  __shared__ double best_v[32];
  __shared__ int best_i[32];
  const long s = blockIdx.x;
  const float* l = logits + s * E;
  double mx = -DBL_MAX;
  for (int e = threadIdx.x; e < E; e += blockDim.x) mx = fmax(mx, (double)l[e]);
  mx = block_max(mx, part);
  double z = 0, zl = 0, zt = 0;
  for (int e = threadIdx.x; e < E; e += blockDim.x) {
    const double d = (double)l[e] - mx, p = exp(d);
    z += p;
    zl += p * d;
    if (temperature > 0) zt += exp(d / temperature);
  }
  z = block_sum(z, part);
  zl = block_sum(zl, part);
  zt = block_sum(zt, part);
  double bv = -INFINITY;
  int bi = -1;
  for (int v = threadIdx.x; v < V; v += blockDim.x) {  // increasing v per thread: strict > keeps the lowest
    if (v == mask_id) continue;
    const double sc = temperature > 0 ? (double)l[v] / temperature + gumbel_noise(seed, noise[s], (uint32_t)v) : (double)l[v];
    if (sc > bv) bv = sc, bi = v;
  }
  for (int o = 16; o > 0; o /= 2) {
    const double ov = __shfl_xor_sync(0xffffffffu, bv, o);
    const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
    if (ov > bv || (ov == bv && oi >= 0 && (bi < 0 || oi < bi))) bv = ov, bi = oi;
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) best_v[warp] = bv, best_i[warp] = bi;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < (int)(blockDim.x + 31) / 32; w++)
      if (best_v[w] > bv || (best_v[w] == bv && best_i[w] >= 0 && (bi < 0 || best_i[w] < bi))) bv = best_v[w], bi = best_i[w];
    x0[s] = bi;
    conf[s] = (float)(exp((double)l[bi] - mx) / z);
    entropy[s] = (float)(log(z) - zl / z);
    logp[s] = temperature > 0 ? (float)(((double)l[bi] - mx) / temperature - log(zt))
                              : (float)((double)l[bi] - mx - log(z));
  }
}

__device__ inline uint64_t mix64(uint64_t z) {  // splitmix64's finaliser
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
__global__ void fill_normal_kernel(float* x, long n, float std, uint64_t seed) {
  for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
    const uint64_t h = mix64(seed * 0x9e3779b97f4a7c15ull + (uint64_t)i);
    const float u1 = ((h >> 40) + 1.f) / 16777217.f, u2 = ((h >> 16) & 0xffffff) / 16777216.f;  // Box-Muller
    x[i] = std * sqrtf(-2.f * logf(u1)) * cospif(2.f * u2);
  }
}
__global__ void fill_constant_kernel(float* x, long n, float value) {
  for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) x[i] = value;
}

}  // namespace

void fill_normal(float* x, long n, float std, uint64_t seed) {
  if (n > 0) fill_normal_kernel<<<blocks_for(n), THREADS>>>(x, n, std, seed);
  check_last("fill_normal");
}
void fill_constant(float* x, long n, float value) {
  if (n > 0) fill_constant_kernel<<<blocks_for(n), THREADS>>>(x, n, value);
  check_last("fill_constant");
}

void embedding_forward(float* out, const int32_t* ids, const float* wte, int N, int D, float scale) {
  embedding_forward_kernel<<<blocks_for((long)N * D), THREADS>>>(out, ids, wte, N, D, scale);
  check_last("embedding_forward");
}
void embedding_backward(float* dwte, const float* dout, const int32_t* ids, int N, int D, float scale) {
  embedding_backward_kernel<<<blocks_for((long)N * D), THREADS>>>(dwte, dout, ids, N, D, scale);
  check_last("embedding_backward");
}

void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* w, int N, int D, float eps) {
  if (N > 0) rmsnorm_forward_kernel<<<N, THREADS>>>(out, rstd, inp, w, D, eps);
  check_last("rmsnorm_forward");
}
void rmsnorm_backward(float* dinp, float* dw, const float* dout, const float* inp, const float* w, const float* rstd,
                      int N, int D) {
  const size_t smem = sizeof(float) * D;
  if (smem > 48 * 1024) cudaFuncSetAttribute(rmsnorm_backward_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
  if (N > 0) rmsnorm_backward_kernel<<<std::min(N, 1024), THREADS, smem>>>(dinp, dw, dout, inp, w, rstd, N, D);
  check_last("rmsnorm_backward");
}

void rope(float* x, const float* cos, const float* sin, const int32_t* pos, int B, int T, int nh, int hd, long ld,
          float sign) {
  rope_kernel<<<blocks_for((long)B * T * nh * hd / 2), THREADS>>>(x, cos, sin, pos, B, T, nh, hd / 2, ld, sign);
  check_last("rope");
}

void swiglu_forward(float* out, const float* ab, int N, int F) {
  swiglu_forward_kernel<<<blocks_for((long)N * F), THREADS>>>(out, ab, N, F);
  check_last("swiglu_forward");
}
void swiglu_backward(float* dab, const float* dout, const float* ab, int N, int F) {
  swiglu_backward_kernel<<<blocks_for((long)N * F), THREADS>>>(dab, dout, ab, N, F);
  check_last("swiglu_backward");
}

void logsumexp_gather(float* logits, float* lse, float* logp, const int32_t* targets, int n, int E, float scale) {
  if (n > 0) logsumexp_gather_kernel<<<n, THREADS>>>(logits, lse, logp, targets, E, scale);
  check_last("logsumexp_gather");
}
void logsoftmax_gather_backward(float* logits, const float* dlogp, const float* lse, const int32_t* targets, int n,
                                int E, float scale) {
  if (n > 0) logsoftmax_gather_backward_kernel<<<n, THREADS>>>(logits, dlogp, lse, targets, E, scale);
  check_last("logsoftmax_gather_backward");
}

void copy_rows(float* dst, long dst_ld, const int32_t* dst_rows, const float* src, long src_ld, const int32_t* src_rows,
               int rows, int n, bool add) {
  if ((long)rows * n > 0)
    copy_rows_kernel<<<blocks_for((long)rows * n), THREADS>>>(dst, dst_ld, dst_rows, src, src_ld, src_rows, rows, n, add);
  check_last("copy_rows");
}

void dropout(float* y, const float* x, int N, int C, float p, uint64_t seed, uint32_t stream, uint32_t step, bool add) {
  if ((long)N * C > 0) dropout_kernel<<<blocks_for((long)N * C), THREADS>>>(y, x, N, C, p, seed, stream, step, add);
  check_last("dropout");
}

void scale(float* x, long n, float s) {
  if (n > 0) scale_kernel<<<blocks_for(n), THREADS>>>(x, n, s);
  check_last("scale");
}

void sum_squares(double* out, const float* x, long n) {
  cudaMemsetAsync(out, 0, sizeof(double));
  if (n > 0) sum_squares_kernel<<<std::min(blocks_for(n), 1024u), THREADS>>>(out, x, n);
  check_last("sum_squares");
}

void adamw(float* p, const float* g, float* m, float* v, long n, float lr, float b1, float b2, float eps, float wd,
           float gs, float bc1, float bc2) {
  if (n > 0) adamw_kernel<<<blocks_for(n), THREADS>>>(p, g, m, v, n, lr, b1, b2, eps, wd, gs, bc1, bc2);
  check_last("adamw");
}

void decode_score(int32_t* x0, float* conf, float* logp, float* entropy, const float* logits, const NoiseRow* noise,
                  uint64_t seed, int S, int E, int V, int mask_id, double temperature) {
  if (S > 0) decode_score_kernel<<<S, THREADS>>>(x0, conf, logp, entropy, logits, noise, seed, E, V, mask_id, temperature);
  check_last("decode_score");
}

}  // namespace cuda
}  // namespace diffpo
