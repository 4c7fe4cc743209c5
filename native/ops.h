// The op list. Every backend (CPU now, CUDA later) implements exactly these, forward and backward side
// by side; the model is written once against this interface. Shapes: N = B*T tokens, D model width,
// H query heads, KV key/value heads, hd head dim, F FFN width, E embedding rows, S selected positions.
// Backward ops accumulate (+=) into parameter gradients; activation gradients are noted per op.
#pragma once
#include "common/philox.h"
#include <cstddef>
#include <cstdint>

#include "common/block.h"

namespace diffpo {

struct AttnShape {
  int B, T, H, KV, hd;
  long ldq, ldkv;  // elements from one token to the next in q (and dq), and in k, v (and dk, dv)
  // Forward only, for decoding with a KV cache: Tk keys per sequence (0: T), and the cache row that
  // holds query row b's keys and values (null: row b).
  int Tk = 0;
  const int32_t* kv_rows = nullptr;
  int keys() const { return Tk ? Tk : T; }
};

struct AdamWStep {
  float lr, beta1, beta2, eps, weight_decay;
  float grad_scale;  // gradients are multiplied by this first (global-norm clipping, accumulation)
  int t;             // 1-based step, for bias correction
};

// Pointers are in the backend's memory(); index arrays (ids, rows, targets, positions, masks) and the
// small outputs may also be plain host memory. An op returns when its results are visible to the host.
// The defaults marked (host) are the host implementations, which a device backend overrides.
class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;

  // Where parameters, gradients, optimizer moments, activations and caches are allocated (host)
  virtual Memory& memory() { return host_memory(); }
  // dst (n) = src (n) (host)
  virtual void copy(float* dst, const float* src, long n);
  // x (n) = 0 (host)
  virtual void zero(float* x, long n);
  // for i < rows: dst[(dst_rows ? dst_rows[i] : i) * dst_ld + c] = src[(src_rows ? src_rows[i] : i) * src_ld + c],
  // c < n: a row gather or scatter (KV-cache fills, scored rows); with `accumulate`, += (a LoRA branch
  // into its columns of a fused projection; destination rows distinct) (host)
  virtual void copy_rows(float* dst, long dst_ld, const int32_t* dst_rows, const float* src, long src_ld,
                         const int32_t* src_rows, int rows, int n, bool accumulate);

  // x (N,C) -> y (N,C) = x * dropout_factor(seed, {stream, step, n}, c, p) (common/philox.h): inverted
  // dropout whose mask is a function of its key, so the backward remakes it (the backward is this op on
  // the gradient); with `accumulate`, +=; y and x distinct (host)
  virtual void dropout(float* y, const float* x, int N, int C, float p, uint64_t seed, uint32_t stream, uint32_t step,
                       bool accumulate);

  // ids (N) -> out (N,D) = wte[ids] * scale
  virtual void embedding_forward(float* out, const int32_t* ids, const float* wte, int N, int D, float scale) = 0;
  // The same from a BF16-resident table (host)
  virtual void embedding_forward_bf16(float* out, const int32_t* ids, const uint16_t* wte, int N, int D, float scale);
  // dout (N,D) -> dwte (E,D) += scatter(dout) * scale
  virtual void embedding_backward(float* dwte, const float* dout, const int32_t* ids, int N, int D,
                                  float scale) = 0;

  // inp (N,D), w (D) -> out (N,D) = w * inp * rstd, rstd (N) = 1/sqrt(mean(inp^2) + eps)
  virtual void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* w, int N, int D,
                               float eps) = 0;
  // dout (N,D) -> dinp (N,D) +=, dw (D) += (dw null: a frozen weight, no gradient)
  virtual void rmsnorm_backward(float* dinp, float* dw, const float* dout, const float* inp, const float* w,
                                const float* rstd, int N, int D) = 0;

  // inp (N,I), w (O,I) -> out (N,O) = inp w^T (+= when accumulate)
  virtual void linear_forward(float* out, const float* inp, const float* w, int N, int I, int O,
                              bool accumulate) = 0;
  // The same with BF16-resident weights w (O,I) (inference only; exact widening, so the result equals
  // linear_forward on the widened w up to summation order) (host: widens w, then linear_forward)
  virtual void linear_forward_bf16(float* out, const float* inp, const uint16_t* w, int N, int I, int O,
                                   bool accumulate);
  // dout (N,O) -> dinp (N,I) = (or += when accumulate_dinp) dout w, dw (O,I) += dout^T inp; dinp may be
  // null, and dw (a frozen weight: LoRA's base)
  virtual void linear_backward(float* dinp, bool accumulate_dinp, float* dw, const float* dout, const float* inp,
                               const float* w, int N, int I, int O) = 0;
  // dinp (N,I) = (or +=) dout (N,O) widen(w) (O,I): the input gradient through a frozen BF16-resident
  // weight (LoRA on a BF16 base) (host: widens w, then linear_backward)
  virtual void linear_backward_bf16(float* dinp, bool accumulate_dinp, const float* dout, const uint16_t* w, int N,
                                    int I, int O);

  // x (B,T,nh,hd), token rows ld elements apart, rotated in place, rotate-half layout; cos, sin (P, hd/2);
  // pos (B*T) is each token's row in the tables (null: its index t in the sequence)
  virtual void rope_forward(float* x, const float* cos, const float* sin, const int32_t* pos, int B, int T, int nh,
                            int hd, long ld) = 0;
  // dx (B,T,nh,hd) in place: the transpose (inverse) rotation
  virtual void rope_backward(float* dx, const float* cos, const float* sin, const int32_t* pos, int B, int T, int nh,
                             int hd, long ld) = 0;

  // q (B,T,H,hd), k v (B,Tk,KV,hd) (row strides in s), keymask (B,Tk) or null (1 = attend)
  //   -> out (B,T,H,hd) contiguous, att: what the backward needs, attention_state_floats() floats
  //   (the CPU keeps the probabilities (B,H,T,Tk); a flash-style kernel the row log-sum-exps (B,H,T))
  virtual void attention_forward(float* out, float* att, const float* q, const float* k, const float* v,
                                 const uint8_t* keymask, const AttnShape& s) = 0;
  virtual size_t attention_state_floats(int B, int H, int T, int Tk) const { return (size_t)B * H * T * Tk; }
  // dout (B,T,H,hd), out (the forward's) -> dq (B,T,H,hd) =, dk dv (B,T,KV,hd) =  (Tk == T, no kv_rows)
  virtual void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* out,
                                  const float* att, const float* q, const float* k, const float* v,
                                  const AttnShape& s) = 0;

  // ab (N, 2F) = [a | b] per row (one GEMM computes both projections) -> out (N,F) = silu(a) * b
  virtual void swiglu_forward(float* out, const float* ab, int N, int F) = 0;
  // dout (N,F) -> dab (N, 2F) = [da | db]
  virtual void swiglu_backward(float* dab, const float* dout, const float* ab, int N, int F) = 0;

  // LM head fused with log-softmax and gather over selected rows:
  // h (N,D), w (E,D), rows targets (S) -> logp (S) = log_softmax(scale * h[rows] w^T)[targets], lse (S)
  virtual void lmhead_logprob_forward(float* logp, float* lse, const float* h, const float* w, const int32_t* rows,
                                      const int32_t* targets, int S, int D, int E, float scale) = 0;
  // dlogp (S) -> dh (N,D) += (rows only), dw (E,D) += (dw null: a frozen head)
  virtual void lmhead_logprob_backward(float* dh, float* dw, const float* dlogp, const float* lse, const float* h,
                                       const float* w, const int32_t* rows, const int32_t* targets, int S, int D,
                                       int E, float scale) = 0;
  // The same two with a BF16-resident head w (E,D), frozen (no dw): LoRA on a BF16 base, without a
  // float32 copy of the head (2 GiB at LLaDA-8B) (host: widens w, then the float32 op)
  virtual void lmhead_logprob_forward_bf16(float* logp, float* lse, const float* h, const uint16_t* w, const int32_t* rows,
                                           const int32_t* targets, int S, int D, int E, float scale);
  virtual void lmhead_logprob_backward_bf16(float* dh, const float* dlogp, const float* lse, const float* h,
                                            const uint16_t* w, const int32_t* rows, const int32_t* targets, int S, int D,
                                            int E, float scale);

  // x (n) *= s
  virtual void scale(float* x, long n, float s) = 0;
  // sum of squares of x (n), in double
  virtual double sum_squares(const float* x, long n) = 0;
  // p (n) updated in place from g (n) with moments m v (n); decoupled weight decay
  virtual void adamw_update(float* p, const float* g, float* m, float* v, long n, const AdamWStep& s) = 0;

  // The decoding step's scores, so that only a few numbers per position leave the backend:
  // logits (S,E), noise (S) each row's NoiseRow (host memory; null at temperature 0) -> x0 (S) =
  // argmax over the V ids but mask_id of logits/temperature + gumbel_noise(seed, noise[s], id) (of
  // logits at temperature 0; ties to the lower id), conf (S) = softmax(logits)[x0], logp (S) =
  // log_softmax(logits/temperature)[x0] (plain at 0), entropy (S) of softmax(logits); in float64.
  // The noise is made here, where the logits are (common/philox.h).
  virtual void decode_score(int32_t* x0, float* conf, float* logp, float* entropy, const float* logits,
                            const NoiseRow* noise, uint64_t seed, int S, int E, int V, int mask_id, double temperature);
};

}  // namespace diffpo
