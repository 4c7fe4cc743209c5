// The host implementations of the ops a device backend overrides (copies, the BF16-weight ops, the
// decoding scores).
#include "ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>

#include "common/dtype.h"

namespace diffpo {

void Backend::copy(float* dst, const float* src, long n) { std::memcpy(dst, src, sizeof(float) * (size_t)n); }

void Backend::zero(float* x, long n) { std::memset(x, 0, sizeof(float) * (size_t)n); }

void Backend::copy_rows(float* dst, long dst_ld, const int32_t* dst_rows, const float* src, long src_ld,
                        const int32_t* src_rows, int rows, int n, bool accumulate) {
  for (int i = 0; i < rows; i++) {
    float* d = dst + (dst_rows ? dst_rows[i] : i) * dst_ld;
    const float* s = src + (src_rows ? src_rows[i] : i) * src_ld;
    if (accumulate)
      for (int c = 0; c < n; c++) d[c] += s[c];
    else
      std::memcpy(d, s, sizeof(float) * n);
  }
}

void Backend::dropout(float* y, const float* x, int N, int C, float p, uint64_t seed, uint32_t stream, uint32_t step,
                      bool accumulate) {
  dropout_rows(y, x, 0, N, C, p, seed, stream, step, accumulate);
}



namespace {
std::unique_ptr<Block> widened(const uint16_t* w, size_t n, Memory& memory) {
  auto wide = std::make_unique<Block>(n, memory);
  for (size_t i = 0; i < n; i++) wide->data[i] = bf16_to_f32(w[i]);
  return wide;
}
}  // namespace

void Backend::lmhead_logprob_forward_bf16(float* logp, float* lse, const float* h, const uint16_t* w, const int32_t* rows,
                                          const int32_t* targets, int S, int D, int E, float scale) {
  lmhead_logprob_forward(logp, lse, h, widened(w, (size_t)E * D, memory())->data, rows, targets, S, D, E, scale);
}

void Backend::lmhead_logprob_backward_bf16(float* dh, const float* dlogp, const float* lse, const float* h, const uint16_t* w,
                                           const int32_t* rows, const int32_t* targets, int S, int D, int E, float scale) {
  lmhead_logprob_backward(dh, nullptr, dlogp, lse, h, widened(w, (size_t)E * D, memory())->data, rows, targets, S, D, E, scale);
}

void Backend::linear_forward_bf16(float* out, const float* inp, const uint16_t* w, int N, int I, int O, bool accumulate) {
  linear_forward(out, inp, widened(w, (size_t)O * I, memory())->data, N, I, O, accumulate);
}

void Backend::linear_backward_bf16(float* dinp, bool accumulate_dinp, const float* dout, const uint16_t* w, int N, int I,
                                   int O) {
  linear_backward(dinp, accumulate_dinp, nullptr, dout, nullptr, widened(w, (size_t)O * I, memory())->data, N, I, O);
}

void Backend::embedding_forward_bf16(float* out, const int32_t* ids, const uint16_t* wte, int N, int D, float scale) {
  for (long n = 0; n < N; n++)
    for (int d = 0; d < D; d++) out[n * D + d] = bf16_to_f32(wte[(size_t)ids[n] * D + d]) * scale;
}

void Backend::decode_score(int32_t* x0, float* conf, float* logp, float* entropy, const float* logits,
                           const NoiseRow* noise, uint64_t seed, int S, int E, int V, int mask_id, double temperature) {
  for (int s = 0; s < S; s++) {
    const float* l = logits + (size_t)s * E;
    double mx = -INFINITY;
    for (int e = 0; e < E; e++) mx = std::max(mx, (double)l[e]);
    double z = 0, zl = 0;
    for (int e = 0; e < E; e++) {
      const double p = std::exp((double)l[e] - mx);
      z += p;
      zl += p * ((double)l[e] - mx);
    }
    int32_t best = -1;
    double best_score = -INFINITY;
    for (int v = 0; v < V; v++) {
      if (v == mask_id) continue;
      const double sc = temperature > 0 ? (double)l[v] / temperature + gumbel_noise(seed, noise[s], (uint32_t)v) : (double)l[v];
      if (sc > best_score) best_score = sc, best = v;
    }
    x0[s] = best;
    conf[s] = (float)(std::exp((double)l[best] - mx) / z);
    entropy[s] = (float)(std::log(z) - zl / z);
    if (temperature <= 0) {
      logp[s] = (float)((double)l[best] - mx - std::log(z));
    } else {
      double zt = 0;
      for (int e = 0; e < E; e++) zt += std::exp(((double)l[e] - mx) / temperature);
      logp[s] = (float)(((double)l[best] - mx) / temperature - std::log(zt));
    }
  }
}

}  // namespace diffpo
