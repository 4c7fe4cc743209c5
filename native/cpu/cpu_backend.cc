#include "cpu_backend.h"

#include <algorithm>
#include <cmath>

#include "../common/dtype.h"
#include "cpu_features.h"
#include "gemm.h"
#include "row_kernels.h"

namespace diffpo {

namespace {
const RowKernels& K() {
  static const RowKernels& k = cpu_has_avx2_fma() ? kRowKernelsAvx2 : kRowKernelsPortable;
  return k;
}
}  // namespace

CpuBackend::CpuBackend(int threads) : pool_(threads) {}

template <typename F>
void CpuBackend::parallel_range(long n, long min_chunk, F&& fn) {
  const long max_chunks = (long)pool_.size() * 4;
  long chunks = std::min(max_chunks, std::max(1L, n / std::max(1L, min_chunk)));
  pool_.run((int)chunks, [&](int c, int) {
    const long lo = n * c / chunks, hi = n * (c + 1) / chunks;
    if (lo < hi) fn(lo, hi);
  });
}

float* CpuBackend::scratch(size_t floats) {
  if (scratch_.size() < floats) scratch_.resize(floats);
  return scratch_.data();
}

void CpuBackend::dropout(float* y, const float* x, int N, int C, float p, uint64_t seed, uint32_t stream, uint32_t step,
                         bool accumulate) {
  parallel_range(N, 4, [&](long lo, long hi) { dropout_rows(y, x, lo, hi, C, p, seed, stream, step, accumulate); });
}

void CpuBackend::embedding_forward(float* out, const int32_t* ids, const float* wte, int N, int D, float scale) {
  parallel_range(N, 16, [&](long lo, long hi) {
    for (long n = lo; n < hi; n++) {
      const float* src = wte + (long)ids[n] * D;
      float* dst = out + n * D;
      for (int d = 0; d < D; d++) dst[d] = src[d] * scale;
    }
  });
}

void CpuBackend::embedding_forward_bf16(float* out, const int32_t* ids, const uint16_t* wte, int N, int D,
                                        float scale) {
  parallel_range(N, 16, [&](long lo, long hi) {
    for (long n = lo; n < hi; n++) {
      const uint16_t* src = wte + (long)ids[n] * D;
      float* dst = out + n * D;
      for (int d = 0; d < D; d++) dst[d] = bf16_to_f32(src[d]) * scale;
    }
  });
}

void CpuBackend::embedding_backward(float* dwte, const float* dout, const int32_t* ids, int N, int D, float scale) {
  // Several tokens may share an id: split over columns so no two threads touch the same element.
  parallel_range(D, 16, [&](long lo, long hi) {
    for (int n = 0; n < N; n++) {
      float* dst = dwte + (long)ids[n] * D;
      const float* src = dout + (long)n * D;
      for (long d = lo; d < hi; d++) dst[d] += src[d] * scale;
    }
  });
}

void CpuBackend::rmsnorm_forward(float* out, float* rstd, const float* inp, const float* w, int N, int D,
                                 float eps) {
  parallel_range(N, 8, [&](long lo, long hi) {
    for (long n = lo; n < hi; n++) rstd[n] = K().rmsnorm_row(out + n * D, inp + n * D, w, D, eps);
  });
}

void CpuBackend::rmsnorm_backward(float* dinp, float* dw, const float* dout, const float* inp, const float* w,
                                  const float* rstd, int N, int D) {
  // dw is a reduction over rows: each chunk sums into its own slice of scratch, then one pass adds them
  // in chunk order. Chunks are fixed runs of rows, not a share per thread, so the sum (and training)
  // is bit-identical for any thread count.
  constexpr int kRowsPerChunk = 32;
  const int chunks = (N + kRowsPerChunk - 1) / kRowsPerChunk;
  float* partial = scratch((size_t)chunks * D);
  std::fill(partial, partial + (size_t)chunks * D, 0.f);
  pool_.run(chunks, [&](int c, int) {
    const long lo = (long)c * kRowsPerChunk, hi = std::min<long>(N, lo + kRowsPerChunk);
    for (long n = lo; n < hi; n++)
      K().rmsnorm_row_backward(dinp + n * D, partial + (long)c * D, dout + n * D, inp + n * D, w, rstd[n], D);
  });
  if (dw)
    for (int c = 0; c < chunks; c++)
      for (int d = 0; d < D; d++) dw[d] += partial[(long)c * D + d];
}

void CpuBackend::linear_forward(float* out, const float* inp, const float* w, int N, int I, int O, bool accumulate) {
  sgemm(N, O, I, {inp, I, 1}, {w, 1, I}, out, O, accumulate, &pool_);
}

void CpuBackend::linear_forward_bf16(float* out, const float* inp, const uint16_t* w, int N, int I, int O,
                                     bool accumulate) {
  MatView b{nullptr, 1, I};
  b.bf16 = w;
  sgemm(N, O, I, {inp, I, 1}, b, out, O, accumulate, &pool_);
}

void CpuBackend::linear_backward(float* dinp, bool accumulate_dinp, float* dw, const float* dout, const float* inp,
                                 const float* w, int N, int I, int O) {
  if (dinp) sgemm(N, I, O, {dout, O, 1}, {w, I, 1}, dinp, I, accumulate_dinp, &pool_);
  if (dw) sgemm(O, I, N, {dout, 1, O}, {inp, I, 1}, dw, I, true, &pool_);
}

void CpuBackend::linear_backward_bf16(float* dinp, bool accumulate_dinp, const float* dout, const uint16_t* w, int N,
                                      int I, int O) {
  MatView b{nullptr, I, 1};
  b.bf16 = w;
  sgemm(N, I, O, {dout, O, 1}, b, dinp, I, accumulate_dinp, &pool_);
}

void CpuBackend::rope_forward(float* x, const float* cos, const float* sin, const int32_t* pos, int B, int T, int nh,
                              int hd, long ld) {
  rope(x, cos, sin, pos, B, T, nh, hd, ld, 1.f);
}

void CpuBackend::rope_backward(float* dx, const float* cos, const float* sin, const int32_t* pos, int B, int T, int nh,
                               int hd, long ld) {
  rope(dx, cos, sin, pos, B, T, nh, hd, ld, -1.f);
}

void CpuBackend::rope(float* x, const float* cos, const float* sin, const int32_t* pos, int B, int T, int nh, int hd,
                      long ld, float sign) {
  const int half = hd / 2;
  parallel_range((long)B * T, 8, [&](long lo, long hi) {
    for (long bt = lo; bt < hi; bt++) {
      const long t = pos ? pos[bt] : bt % T;
      for (int h = 0; h < nh; h++) K().rope_row(x + bt * ld + (long)h * hd, cos + t * half, sin + t * half, half, sign);
    }
  });
}

void CpuBackend::attention_forward(float* out, float* att, const float* q, const float* k, const float* v,
                                   const uint8_t* keymask, const AttnShape& s) {
  const int T = s.T, Tk = s.keys(), H = s.H, hd = s.hd, group = H / s.KV;
  const long qs = s.ldq, ks = s.ldkv, os = (long)H * hd;  // row strides
  const float scale = 1.f / std::sqrt((float)hd);
  pool_.run(s.B * H, [&](int task, int) {
    const int b = task / H, h = task % H, g = h / group;
    const long kvb = s.kv_rows ? s.kv_rows[b] : b;
    const float* qb = q + (long)b * T * qs + (long)h * hd;
    const float* kb = k + kvb * Tk * ks + (long)g * hd;
    const float* vb = v + kvb * Tk * ks + (long)g * hd;
    float* p = att + (long)task * T * Tk;
    // scores (T,Tk) = q_bh k_bg^T
    sgemm(T, Tk, hd, {qb, qs, 1}, {kb, 1, ks}, p, Tk, false, nullptr);
    const uint8_t* mask = keymask ? keymask + (long)b * Tk : nullptr;
    for (int i = 0; i < T; i++) K().softmax_row(p + (long)i * Tk, Tk, scale, mask);
    // out_bh (T,hd) = P v_bg
    sgemm(T, hd, Tk, {p, Tk, 1}, {vb, ks, 1}, out + (long)b * T * os + (long)h * hd, os, false, nullptr);
  });
}

void CpuBackend::attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* /*out*/, const float* att,
                                    const float* q, const float* k, const float* v, const AttnShape& s) {
  const int T = s.T, H = s.H, KV = s.KV, hd = s.hd, group = H / KV;
  const long qs = s.ldq, ks = s.ldkv, os = (long)H * hd;
  const float scale = 1.f / std::sqrt((float)hd);
  float* dp_all = scratch((size_t)pool_.size() * T * T);
  // One task per (batch, kv head): the heads of a GQA group accumulate into the same dk, dv.
  pool_.run(s.B * KV, [&](int task, int thread) {
    const int b = task / KV, g = task % KV;
    float* dp = dp_all + (long)thread * T * T;
    const float* kb = k + (long)b * T * ks + (long)g * hd;
    const float* vb = v + (long)b * T * ks + (long)g * hd;
    float* dkb = dk + (long)b * T * ks + (long)g * hd;
    float* dvb = dv + (long)b * T * ks + (long)g * hd;
    for (int hi = 0; hi < group; hi++) {
      const int h = g * group + hi;
      const bool acc = hi > 0;
      const float* p = att + ((long)b * H + h) * T * T;
      const float* dob = dout + (long)b * T * os + (long)h * hd;
      const float* qb = q + (long)b * T * qs + (long)h * hd;
      // dv_bg += P^T dout_bh
      sgemm(T, hd, T, {p, 1, T}, {dob, os, 1}, dvb, ks, acc, nullptr);
      // dP = dout_bh v_bg^T, then dS through the softmax
      sgemm(T, T, hd, {dob, os, 1}, {vb, 1, ks}, dp, T, false, nullptr);
      for (int i = 0; i < T; i++) K().softmax_row_backward(dp + (long)i * T, p + (long)i * T, T, scale);
      // dq_bh = dS k_bg ; dk_bg += dS^T q_bh
      sgemm(T, hd, T, {dp, T, 1}, {kb, ks, 1}, dq + (long)b * T * qs + (long)h * hd, qs, false, nullptr);
      sgemm(T, hd, T, {dp, 1, T}, {qb, qs, 1}, dkb, ks, acc, nullptr);
    }
  });
}

void CpuBackend::swiglu_forward(float* out, const float* ab, int N, int F) {
  parallel_range(N, std::max(1, 4096 / F), [&](long lo, long hi) {
    for (long n = lo; n < hi; n++) K().swiglu_span(out + n * F, ab + n * 2 * F, ab + n * 2 * F + F, F);
  });
}

void CpuBackend::swiglu_backward(float* dab, const float* dout, const float* ab, int N, int F) {
  parallel_range(N, std::max(1, 4096 / F), [&](long lo, long hi) {
    for (long n = lo; n < hi; n++)
      K().swiglu_span_backward(dab + n * 2 * F, dab + n * 2 * F + F, dout + n * F, ab + n * 2 * F, ab + n * 2 * F + F, F);
  });
}

namespace {
// Rows of the LM head per chunk: bounds the logits buffer to about 4M floats whatever E is.
int lmhead_chunk_rows(int S, int E) { return std::max(1, std::min(S, (4 << 20) / std::max(1, E))); }
}  // namespace

// logits (n, E) = h[rows] (gathered into hb (n, D)) w^T, unscaled
void CpuBackend::lmhead_chunk(float* logits, float* hb, const float* h, HeadWeight w, const int32_t* rows, int n, int D,
                              int E) {
  for (int i = 0; i < n; i++) std::copy(h + (long)rows[i] * D, h + (long)(rows[i] + 1) * D, hb + (long)i * D);
  MatView wt{w.f32, 1, D};
  wt.bf16 = w.bf16;
  sgemm(n, E, D, {hb, D, 1}, wt, logits, E, false, &pool_);
}

void CpuBackend::lmhead_logprob_forward(float* logp, float* lse, const float* h, const float* w, const int32_t* rows,
                                        const int32_t* targets, int S, int D, int E, float scale) {
  lmhead_forward(logp, lse, h, {w, nullptr}, rows, targets, S, D, E, scale);
}

void CpuBackend::lmhead_logprob_forward_bf16(float* logp, float* lse, const float* h, const uint16_t* w, const int32_t* rows,
                                             const int32_t* targets, int S, int D, int E, float scale) {
  lmhead_forward(logp, lse, h, {nullptr, w}, rows, targets, S, D, E, scale);
}

void CpuBackend::lmhead_logprob_backward(float* dh, float* dw, const float* dlogp, const float* lse, const float* h,
                                         const float* w, const int32_t* rows, const int32_t* targets, int S, int D,
                                         int E, float scale) {
  lmhead_backward(dh, dw, dlogp, lse, h, {w, nullptr}, rows, targets, S, D, E, scale);
}

void CpuBackend::lmhead_logprob_backward_bf16(float* dh, const float* dlogp, const float* lse, const float* h,
                                              const uint16_t* w, const int32_t* rows, const int32_t* targets, int S, int D,
                                              int E, float scale) {
  lmhead_backward(dh, nullptr, dlogp, lse, h, {nullptr, w}, rows, targets, S, D, E, scale);
}

void CpuBackend::lmhead_forward(float* logp, float* lse, const float* h, HeadWeight w, const int32_t* rows,
                                const int32_t* targets, int S, int D, int E, float scale) {
  const int cs = lmhead_chunk_rows(S, E);
  float* hb = scratch((size_t)cs * D + (size_t)cs * E);
  float* logits = hb + (size_t)cs * D;
  for (int s0 = 0; s0 < S; s0 += cs) {
    const int n = std::min(cs, S - s0);
    lmhead_chunk(logits, hb, h, w, rows + s0, n, D, E);
    parallel_range(n, 4, [&](long lo, long hi) {
      for (long i = lo; i < hi; i++) {
        float* row = logits + i * E;
        for (int e = 0; e < E; e++) row[e] *= scale;
        lse[s0 + i] = K().logsumexp_row(row, E);
        logp[s0 + i] = row[targets[s0 + i]] - lse[s0 + i];
      }
    });
  }
}

void CpuBackend::lmhead_backward(float* dh, float* dw, const float* dlogp, const float* lse, const float* h, HeadWeight w,
                                 const int32_t* rows, const int32_t* targets, int S, int D, int E, float scale) {
  const int cs = lmhead_chunk_rows(S, E);
  float* hb = scratch((size_t)cs * D * 2 + (size_t)cs * E);
  float* dhb = hb + (size_t)cs * D;
  float* logits = dhb + (size_t)cs * D;
  for (int s0 = 0; s0 < S; s0 += cs) {
    const int n = std::min(cs, S - s0);
    lmhead_chunk(logits, hb, h, w, rows + s0, n, D, E);
    // dlogit = dlogp * (onehot - softmax) * scale (the last factor from the logit scaling)
    parallel_range(n, 4, [&](long lo, long hi) {
      for (long i = lo; i < hi; i++) {
        float* row = logits + i * E;
        const float g = dlogp[s0 + i], l = lse[s0 + i];
        K().logsoftmax_gather_backward(row, E, scale, l, g, targets[s0 + i]);
      }
    });
    MatView wv{w.f32, D, 1};
    wv.bf16 = w.bf16;
    sgemm(n, D, E, {logits, E, 1}, wv, dhb, D, false, &pool_);
    if (dw) sgemm(E, D, n, {logits, 1, E}, {hb, D, 1}, dw, D, true, &pool_);
    for (int i = 0; i < n; i++) {  // rows may repeat: scatter serially
      float* dst = dh + (long)rows[s0 + i] * D;
      for (int d = 0; d < D; d++) dst[d] += dhb[(long)i * D + d];
    }
  }
}

void CpuBackend::scale(float* x, long n, float s) {
  parallel_range(n, 1 << 14, [&](long lo, long hi) {
    for (long i = lo; i < hi; i++) x[i] *= s;
  });
}

double CpuBackend::sum_squares(const float* x, long n) {
  // chunks depend on n alone (not the thread count), so the sum is the same bits on any machine
  double partial[256] = {};
  const int c_used = (int)std::min<long>(256, std::max(1L, n / 4096));
  pool_.run(c_used, [&](int c, int) {
    const long lo = n * c / c_used, hi = n * (c + 1) / c_used;
    double s = 0;
    for (long i = lo; i < hi; i++) s += (double)x[i] * x[i];
    partial[c] = s;
  });
  double total = 0;
  for (int c = 0; c < c_used; c++) total += partial[c];
  return total;
}

void CpuBackend::adamw_update(float* p, const float* g, float* m, float* v, long n, const AdamWStep& s) {
  const float bc1 = (float)(1.0 - std::pow((double)s.beta1, s.t)), bc2 = (float)(1.0 - std::pow((double)s.beta2, s.t));
  parallel_range(n, 1 << 14, [&](long lo, long hi) {
    K().adamw_span(p + lo, g + lo, m + lo, v + lo, hi - lo, s.lr, s.beta1, s.beta2, s.eps, s.weight_decay, s.grad_scale,
               bc1, bc2);
  });
}

}  // namespace diffpo
