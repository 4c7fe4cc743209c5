// Bidirectional attention, flash-style: scores live in registers one key at a time with an online
// softmax, so no T x T matrix reaches global memory. The forward keeps each row's log-sum-exp (and the
// key mask, as floats) for the backward, which recomputes the probabilities: one kernel for dq (a
// thread per query row) and one for dk, dv (a thread per key row, over the heads of its GQA group).
// Keys and values are staged in shared memory a tile at a time. fp32 throughout.
#include <cmath>
#include <string>
#include <type_traits>

#include "../common/errors.h"
#include "kernels.h"

namespace diffpo {
namespace cuda {

namespace {

constexpr int ROWS = 64;  // threads (query or key rows) per block
constexpr int TILE = 32;  // keys (or queries) staged per iteration

// state layout: lse (B,H,T) then the key mask (B,Tk) as 0/1 floats
__device__ inline float* mask_of(float* state, int B, int H, int T) { return state + (long)B * H * T; }

template <int HD>
__global__ void __launch_bounds__(ROWS) attn_forward_kernel(float* out, float* state, const float* q, const float* k,
                                                           const float* v, const uint8_t* keymask, int B, int T,
                                                           int Tk, int H, int KV, long ldq, long ldkv,
                                                           const int32_t* kv_rows, float scale) {
  __shared__ float Ks[TILE][HD], Vs[TILE][HD], Ms[TILE];
  const int bh = blockIdx.y, b = bh / H, h = bh % H, g = h / (H / KV);
  const int t = blockIdx.x * ROWS + threadIdx.x;
  const long kvb = kv_rows ? kv_rows[b] : b;
  float qr[HD], o[HD];
  const bool live = t < T;
  for (int d = 0; d < HD; d++) {
    qr[d] = live ? q[((long)b * T + t) * ldq + (long)h * HD + d] * scale : 0.f;
    o[d] = 0.f;
  }
  float m = -INFINITY, l = 0.f;
  for (int j0 = 0; j0 < Tk; j0 += TILE) {
    for (int idx = threadIdx.x; idx < TILE * HD; idx += ROWS) {
      const int j = idx / HD, d = idx % HD;
      const bool in = j0 + j < Tk;
      const long row = (kvb * Tk + j0 + j) * ldkv + (long)g * HD + d;
      Ks[j][d] = in ? k[row] : 0.f;
      Vs[j][d] = in ? v[row] : 0.f;
    }
    for (int j = threadIdx.x; j < TILE; j += ROWS)
      Ms[j] = j0 + j < Tk && (!keymask || keymask[(long)b * Tk + j0 + j]) ? 1.f : 0.f;
    __syncthreads();
    const int n = min(TILE, Tk - j0);
    for (int j = 0; j < n; j++) {
      if (Ms[j] == 0.f) continue;
      float s = 0.f;
      for (int d = 0; d < HD; d++) s += qr[d] * Ks[j][d];
      const float mn = fmaxf(m, s), corr = __expf(m - mn), p = __expf(s - mn);
      l = l * corr + p;
      for (int d = 0; d < HD; d++) o[d] = o[d] * corr + p * Vs[j][d];
      m = mn;
    }
    __syncthreads();
  }
  if (live) {
    const float inv = 1.f / l;
    for (int d = 0; d < HD; d++) out[((long)b * T + t) * H * HD + (long)h * HD + d] = o[d] * inv;
    state[((long)b * H + h) * T + t] = m + logf(l);
  }
  if (h == 0)  // one head of each sequence records the key mask
    for (int j = threadIdx.x + blockIdx.x * ROWS; j < Tk; j += gridDim.x * ROWS)
      mask_of(state, B, H, T)[(long)b * Tk + j] = !keymask || keymask[(long)b * Tk + j] ? 1.f : 0.f;
}

// delta (B,H,T) = rowsum(dout * out), the softmax backward's correction term
__global__ void attn_delta_kernel(float* delta, const float* dout, const float* out, int B, int T, int H, int hd) {
  const long i = (long)blockIdx.x * blockDim.x + threadIdx.x;  // (b, t, h) row of out
  if (i >= (long)B * T * H) return;
  const long b = i / ((long)T * H), t = (i / H) % T, h = i % H;
  float s = 0.f;
  for (int d = 0; d < hd; d++) s += dout[i * hd + d] * out[i * hd + d];
  delta[(b * H + h) * T + t] = s;
}

template <int HD>
__global__ void __launch_bounds__(ROWS) attn_dq_kernel(float* dq, const float* dout, const float* state,
                                                      const float* delta, const float* q, const float* k,
                                                      const float* v, int B, int T, int H, int KV, long ldq, long ldkv,
                                                      float scale) {
  __shared__ float Ks[TILE][HD], Vs[TILE][HD], Ms[TILE];
  const int bh = blockIdx.y, b = bh / H, h = bh % H, g = h / (H / KV);
  const int t = blockIdx.x * ROWS + threadIdx.x;
  const bool live = t < T;
  const float* keymask = mask_of(const_cast<float*>(state), B, H, T) + (long)b * T;
  float qr[HD], dor[HD], acc[HD];
  for (int d = 0; d < HD; d++) {
    qr[d] = live ? q[((long)b * T + t) * ldq + (long)h * HD + d] * scale : 0.f;
    dor[d] = live ? dout[((long)b * T + t) * H * HD + (long)h * HD + d] : 0.f;
    acc[d] = 0.f;
  }
  const float lse = live ? state[((long)b * H + h) * T + t] : 0.f;
  const float D = live ? delta[((long)b * H + h) * T + t] : 0.f;
  for (int j0 = 0; j0 < T; j0 += TILE) {
    for (int idx = threadIdx.x; idx < TILE * HD; idx += ROWS) {
      const int j = idx / HD, d = idx % HD;
      const bool in = j0 + j < T;
      const long row = ((long)b * T + j0 + j) * ldkv + (long)g * HD + d;
      Ks[j][d] = in ? k[row] : 0.f;
      Vs[j][d] = in ? v[row] : 0.f;
    }
    for (int j = threadIdx.x; j < TILE; j += ROWS) Ms[j] = j0 + j < T ? keymask[j0 + j] : 0.f;
    __syncthreads();
    const int n = min(TILE, T - j0);
    for (int j = 0; j < n; j++) {
      if (Ms[j] == 0.f) continue;
      float s = 0.f, dp = 0.f;
      for (int d = 0; d < HD; d++) s += qr[d] * Ks[j][d], dp += dor[d] * Vs[j][d];
      const float ds = __expf(s - lse) * (dp - D);
      for (int d = 0; d < HD; d++) acc[d] += ds * Ks[j][d];
    }
    __syncthreads();
  }
  if (live)
    for (int d = 0; d < HD; d++) dq[((long)b * T + t) * ldq + (long)h * HD + d] = acc[d] * scale;
}

template <int HD>
__global__ void __launch_bounds__(ROWS) attn_dkv_kernel(float* dk, float* dv, const float* dout, const float* state,
                                                       const float* delta, const float* q, const float* k,
                                                       const float* v, int B, int T, int H, int KV, long ldq,
                                                       long ldkv, float scale) {
  __shared__ float Qs[TILE][HD], Os[TILE][HD], Ls[TILE], Ds[TILE];
  const int bg = blockIdx.y, b = bg / KV, g = bg % KV, group = H / KV;
  const int j = blockIdx.x * ROWS + threadIdx.x;
  const bool live = j < T && mask_of(const_cast<float*>(state), B, H, T)[(long)b * T + min(j, T - 1)] != 0.f;
  float kr[HD], vr[HD], dkr[HD], dvr[HD];
  for (int d = 0; d < HD; d++) {
    const long row = ((long)b * T + min(j, T - 1)) * ldkv + (long)g * HD + d;
    kr[d] = live ? k[row] * scale : 0.f;
    vr[d] = live ? v[row] : 0.f;
    dkr[d] = dvr[d] = 0.f;
  }
  for (int hi = 0; hi < group; hi++) {
    const int h = g * group + hi;
    for (int i0 = 0; i0 < T; i0 += TILE) {
      for (int idx = threadIdx.x; idx < TILE * HD; idx += ROWS) {
        const int i = idx / HD, d = idx % HD;
        const bool in = i0 + i < T;
        Qs[i][d] = in ? q[((long)b * T + i0 + i) * ldq + (long)h * HD + d] : 0.f;
        Os[i][d] = in ? dout[((long)b * T + i0 + i) * H * HD + (long)h * HD + d] : 0.f;
      }
      for (int i = threadIdx.x; i < TILE; i += ROWS) {
        const bool in = i0 + i < T;
        Ls[i] = in ? state[((long)b * H + h) * T + i0 + i] : 0.f;
        Ds[i] = in ? delta[((long)b * H + h) * T + i0 + i] : 0.f;
      }
      __syncthreads();
      const int n = min(TILE, T - i0);
      if (live)
        for (int i = 0; i < n; i++) {
          float s = 0.f, dp = 0.f;
          for (int d = 0; d < HD; d++) s += Qs[i][d] * kr[d], dp += Os[i][d] * vr[d];
          const float p = __expf(s - Ls[i]), ds = p * (dp - Ds[i]);
          for (int d = 0; d < HD; d++) dvr[d] += p * Os[i][d], dkr[d] += ds * Qs[i][d];
        }
      __syncthreads();
    }
  }
  if (j < T)
    for (int d = 0; d < HD; d++) {
      const long row = ((long)b * T + j) * ldkv + (long)g * HD + d;
      dk[row] = dkr[d] * scale;
      dv[row] = dvr[d];
    }
}

template <typename F>
void dispatch_hd(int hd, F&& f) {
  switch (hd) {
    case 8: return f(std::integral_constant<int, 8>());
    case 16: return f(std::integral_constant<int, 16>());
    case 32: return f(std::integral_constant<int, 32>());
    case 64: return f(std::integral_constant<int, 64>());
    case 128: return f(std::integral_constant<int, 128>());
    default:
      throw Error("ERR_UNSUPPORTED", "the CUDA attention kernels support head dims 8, 16, 32, 64 and 128, not " +
                                         std::to_string(hd));
  }
}

}  // namespace

size_t attention_state_floats(int B, int H, int T, int Tk) { return (size_t)B * H * T + (size_t)B * Tk; }

void attention_forward(float* out, float* state, const float* q, const float* k, const float* v, const uint8_t* keymask,
                       int B, int T, int Tk, int H, int KV, int hd, long ldq, long ldkv, const int32_t* kv_rows) {
  const float scale = 1.f / std::sqrt((float)hd);
  dispatch_hd(hd, [&](auto HD) {
    attn_forward_kernel<decltype(HD)::value><<<dim3((T + ROWS - 1) / ROWS, B * H), ROWS>>>(
        out, state, q, k, v, keymask, B, T, Tk, H, KV, ldq, ldkv, kv_rows, scale);
  });
  check_last("attention_forward");
}

void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* out, const float* state,
                        const float* q, const float* k, const float* v, float* scratch, int B, int T, int H, int KV,
                        int hd, long ldq, long ldkv) {
  const float scale = 1.f / std::sqrt((float)hd);
  const long rows = (long)B * T * H;
  attn_delta_kernel<<<(unsigned)((rows + 255) / 256), 256>>>(scratch, dout, out, B, T, H, hd);
  dispatch_hd(hd, [&](auto HD) {
    constexpr int D = decltype(HD)::value;
    attn_dq_kernel<D><<<dim3((T + ROWS - 1) / ROWS, B * H), ROWS>>>(dq, dout, state, scratch, q, k, v, B, T, H, KV, ldq,
                                                                    ldkv, scale);
    attn_dkv_kernel<D><<<dim3((T + ROWS - 1) / ROWS, B * KV), ROWS>>>(dk, dv, dout, state, scratch, q, k, v, B, T, H,
                                                                      KV, ldq, ldkv, scale);
  });
  check_last("attention_backward");
}

}  // namespace cuda
}  // namespace diffpo
