// Launchers of the CUDA kernels, one per op of ops.h (forward and backward side by side, shapes as
// there). Every pointer is device-addressable (device or managed memory); every launcher enqueues on
// the legacy default stream and returns without synchronising. Plain C++: no CUDA types here.
#pragma once
#include <cstddef>
#include <cstdint>

#include "../common/philox.h"

namespace diffpo {
namespace cuda {

// Throws diffpo::Error("ERR_CUDA", ...) when the last launch or call failed.
void check_last(const char* what);

// C (M,N) (row stride ldc) = A (M,K) B (K,N) (+ C when accumulate), with A(i,k) = A[i*a_i + k*a_k] and
// B(k,j) = B[k*b_k + j*b_j]. bf16: tensor cores (inputs rounded to bf16 as they are packed, fp32
// accumulation; sm_80 and later, else the fp32 kernel); otherwise the plain fp32 tiled kernel (the reference).
struct GemmArgs {
  int M, N, K;
  const float* A;
  long a_i, a_k;
  const float* B;
  long b_k, b_j;
  float* C;
  long ldc;
  bool accumulate;
};
void gemm(const GemmArgs& g, bool bf16);

// ids (N) -> out (N,D) = wte[ids] * scale ; dout (N,D) -> dwte (E,D) += scatter(dout) * scale
void embedding_forward(float* out, const int32_t* ids, const float* wte, int N, int D, float scale);
void embedding_backward(float* dwte, const float* dout, const int32_t* ids, int N, int D, float scale);

// inp (N,D), w (D) -> out (N,D), rstd (N) ; dout (N,D) -> dinp (N,D) +=, dw (D) +=
void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* w, int N, int D, float eps);
void rmsnorm_backward(float* dinp, float* dw, const float* dout, const float* inp, const float* w, const float* rstd,
                      int N, int D);

// x (B,T,nh,hd) rows ld apart, rotated in place (sign +1) or by the inverse (sign -1)
void rope(float* x, const float* cos, const float* sin, const int32_t* pos, int B, int T, int nh, int hd, long ld,
          float sign);

// Flash-style attention: state = [lse (B,H,T) | key mask as floats (B,Tk)], no T x T matrix in memory.
// q (B,T,H,hd), k v (B,Tk,KV,hd) -> out (B,T,H,hd), state
void attention_forward(float* out, float* state, const float* q, const float* k, const float* v, const uint8_t* keymask,
                       int B, int T, int Tk, int H, int KV, int hd, long ldq, long ldkv, const int32_t* kv_rows);
// dout, out (B,T,H,hd) -> dq (B,T,H,hd) =, dk dv (B,T,KV,hd) =; scratch (B,H,T) floats
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* out, const float* state,
                        const float* q, const float* k, const float* v, float* scratch, int B, int T, int H, int KV,
                        int hd, long ldq, long ldkv);
size_t attention_state_floats(int B, int H, int T, int Tk);

// ab (N,2F) -> out (N,F) = silu(a) * b ; dout (N,F) -> dab (N,2F)
void swiglu_forward(float* out, const float* ab, int N, int F);
void swiglu_backward(float* dab, const float* dout, const float* ab, int N, int F);

// Row-wise log-softmax over logits (n,E) scaled in place by scale: lse (n), logp (n) = logits[targets] - lse
void logsumexp_gather(float* logits, float* lse, float* logp, const int32_t* targets, int n, int E, float scale);
// logits (n,E) (unscaled) -> dlogits in place = dlogp * (onehot(target) - softmax(scale * logits)) * scale
void logsoftmax_gather_backward(float* logits, const float* dlogp, const float* lse, const int32_t* targets, int n,
                                int E, float scale);
// dst rows (dst_rows[i] or i) * dst_ld  (= or += when add, atomically) src rows (src_rows[i] or i) * src_ld, n columns
void copy_rows(float* dst, long dst_ld, const int32_t* dst_rows, const float* src, long src_ld, const int32_t* src_rows,
               int rows, int n, bool add);

void dropout(float* y, const float* x, int N, int C, float p, uint64_t seed, uint32_t stream, uint32_t step, bool add);
void scale(float* x, long n, float s);
// sum of squares in double into *out (device memory)
void sum_squares(double* out, const float* x, long n);
void adamw(float* p, const float* g, float* m, float* v, long n, float lr, float b1, float b2, float eps, float wd,
           float gs, float bc1, float bc2);

// Test data drawn on the device (a model of billions of parameters initialises in a moment):
// x (n) ~ N(0, std^2) from a counter-based hash of (seed, i), or x (n) = value
void fill_normal(float* x, long n, float std, uint64_t seed);
void fill_constant(float* x, long n, float value);

// The decoding step's scores in float64, the Gumbel noise made in the kernel (see Backend::decode_score)
void decode_score(int32_t* x0, float* conf, float* logp, float* entropy, const float* logits, const NoiseRow* noise,
                  uint64_t seed, int S, int E, int V, int mask_id, double temperature);

}  // namespace cuda
}  // namespace diffpo
