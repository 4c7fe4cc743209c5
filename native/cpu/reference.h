// Plain reference loops for every op of ops.h, templated on the scalar so that tests can run them in
// double precision (finite differences) as well as float. Slow and obvious on purpose.
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

#include "../ops.h"

namespace diffpo {
namespace ref {

template <typename T>
void embedding_forward(T* out, const int32_t* ids, const T* wte, int N, int D, T scale) {
  for (int n = 0; n < N; n++)
    for (int d = 0; d < D; d++) out[(long)n * D + d] = wte[(long)ids[n] * D + d] * scale;
}
template <typename T>
void embedding_backward(T* dwte, const T* dout, const int32_t* ids, int N, int D, T scale) {
  for (int n = 0; n < N; n++)
    for (int d = 0; d < D; d++) dwte[(long)ids[n] * D + d] += dout[(long)n * D + d] * scale;
}

template <typename T>
void rmsnorm_forward(T* out, T* rstd, const T* inp, const T* w, int N, int D, T eps) {
  for (int n = 0; n < N; n++) {
    const T* x = inp + (long)n * D;
    T ss = 0;
    for (int d = 0; d < D; d++) ss += x[d] * x[d];
    T r = T(1) / std::sqrt(ss / D + eps);
    rstd[n] = r;
    for (int d = 0; d < D; d++) out[(long)n * D + d] = w[d] * x[d] * r;
  }
}
template <typename T>
void rmsnorm_backward(T* dinp, T* dw, const T* dout, const T* inp, const T* w, const T* rstd, int N, int D) {
  for (int n = 0; n < N; n++) {
    const T* x = inp + (long)n * D;
    const T* dy = dout + (long)n * D;
    const T r = rstd[n];
    T dot = 0;  // mean over d of (dy*w) * (x*r)
    for (int d = 0; d < D; d++) dot += dy[d] * w[d] * x[d] * r;
    dot /= D;
    for (int d = 0; d < D; d++) {
      if (dw) dw[d] += dy[d] * x[d] * r;
      dinp[(long)n * D + d] += r * (dy[d] * w[d] - x[d] * r * dot);
    }
  }
}

template <typename T>
void linear_forward(T* out, const T* inp, const T* w, int N, int I, int O, bool accumulate) {
  for (int n = 0; n < N; n++)
    for (int o = 0; o < O; o++) {
      T s = 0;
      for (int i = 0; i < I; i++) s += inp[(long)n * I + i] * w[(long)o * I + i];
      out[(long)n * O + o] = (accumulate ? out[(long)n * O + o] : T(0)) + s;
    }
}
template <typename T>
void linear_backward(T* dinp, bool accumulate_dinp, T* dw, const T* dout, const T* inp, const T* w, int N, int I,
                     int O) {
  if (dinp)
    for (int n = 0; n < N; n++)
      for (int i = 0; i < I; i++) {
        T s = 0;
        for (int o = 0; o < O; o++) s += dout[(long)n * O + o] * w[(long)o * I + i];
        dinp[(long)n * I + i] = (accumulate_dinp ? dinp[(long)n * I + i] : T(0)) + s;
      }
  if (dw)
    for (int o = 0; o < O; o++)
      for (int i = 0; i < I; i++) {
        T s = 0;
        for (int n = 0; n < N; n++) s += dout[(long)n * O + o] * inp[(long)n * I + i];
        dw[(long)o * I + i] += s;
      }
}

// sign = +1 forward rotation, -1 its transpose (the backward).
template <typename T>
void rope_apply(T* x, const T* cos, const T* sin, const int32_t* pos, int B, int T_, int nh, int hd, long ld,
                int sign) {
  const int half = hd / 2;
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T_; t++)
      for (int h = 0; h < nh; h++) {
        T* u = x + ((long)b * T_ + t) * ld + (long)h * hd;
        const long p = pos ? pos[(long)b * T_ + t] : t;
        for (int j = 0; j < half; j++) {
          const T c = cos[p * half + j], s = sign * sin[p * half + j];
          const T x1 = u[j], x2 = u[j + half];
          u[j] = x1 * c - x2 * s;         // rope(u) = u*cos + rotate_half(u)*sin, rotate_half = (-u2, u1)
          u[j + half] = x2 * c + x1 * s;
        }
      }
}
template <typename T>
void rope_forward(T* x, const T* cos, const T* sin, const int32_t* pos, int B, int T_, int nh, int hd, long ld) {
  rope_apply(x, cos, sin, pos, B, T_, nh, hd, ld, +1);
}
template <typename T>
void rope_backward(T* dx, const T* cos, const T* sin, const int32_t* pos, int B, int T_, int nh, int hd, long ld) {
  rope_apply(dx, cos, sin, pos, B, T_, nh, hd, ld, -1);
}

template <typename T>
void attention_forward(T* out, T* att, const T* q, const T* k, const T* v, const uint8_t* keymask,
                       const AttnShape& s) {
  const int B = s.B, T_ = s.T, Tk = s.keys(), H = s.H, KV = s.KV, hd = s.hd, group = H / KV;
  const T scale = T(1) / std::sqrt(T(hd));
  for (int b = 0; b < B; b++)
    for (int h = 0; h < H; h++) {
      const int g = h / group;
      const long kvb = s.kv_rows ? s.kv_rows[b] : b;
      for (int i = 0; i < T_; i++) {
        T* p = att + (((long)b * H + h) * T_ + i) * Tk;
        const T* qi = q + ((long)b * T_ + i) * s.ldq + (long)h * hd;
        T mx = -INFINITY;
        for (int j = 0; j < Tk; j++) {
          if (keymask && !keymask[(long)b * Tk + j]) {
            p[j] = -INFINITY;
            continue;
          }
          const T* kj = k + (kvb * Tk + j) * s.ldkv + (long)g * hd;
          T dot = 0;
          for (int d = 0; d < hd; d++) dot += qi[d] * kj[d];
          p[j] = dot * scale;
          if (p[j] > mx) mx = p[j];
        }
        T sum = 0;
        for (int j = 0; j < Tk; j++) {
          p[j] = std::isinf(p[j]) && p[j] < 0 ? T(0) : std::exp(p[j] - mx);
          sum += p[j];
        }
        for (int j = 0; j < Tk; j++) p[j] /= sum;
        T* o = out + (((long)b * T_ + i) * H + h) * hd;
        for (int d = 0; d < hd; d++) {
          T acc = 0;
          for (int j = 0; j < Tk; j++) acc += p[j] * v[(kvb * Tk + j) * s.ldkv + (long)g * hd + d];
          o[d] = acc;
        }
      }
    }
}
template <typename T>
void attention_backward(T* dq, T* dk, T* dv, const T* dout, const T* att, const T* q, const T* k, const T* v,
                        const AttnShape& s) {
  const int B = s.B, T_ = s.T, H = s.H, KV = s.KV, hd = s.hd, group = H / KV;
  const T scale = T(1) / std::sqrt(T(hd));
  for (long r = 0; r < (long)B * T_; r++) {
    for (int i = 0; i < H * hd; i++) dq[r * s.ldq + i] = 0;
    for (int i = 0; i < KV * hd; i++) dk[r * s.ldkv + i] = dv[r * s.ldkv + i] = 0;
  }
  std::vector<T> dp(T_);
  for (int b = 0; b < B; b++)
    for (int h = 0; h < H; h++) {
      const int g = h / group;
      for (int i = 0; i < T_; i++) {
        const T* p = att + (((long)b * H + h) * T_ + i) * T_;
        const T* doi = dout + (((long)b * T_ + i) * H + h) * hd;
        T rowdot = 0;
        for (int j = 0; j < T_; j++) {
          const T* vj = v + ((long)b * T_ + j) * s.ldkv + (long)g * hd;
          T acc = 0;
          for (int d = 0; d < hd; d++) acc += doi[d] * vj[d];
          dp[j] = acc;
          rowdot += acc * p[j];
          T* dvj = dv + ((long)b * T_ + j) * s.ldkv + (long)g * hd;
          for (int d = 0; d < hd; d++) dvj[d] += p[j] * doi[d];
        }
        const T* qi = q + ((long)b * T_ + i) * s.ldq + (long)h * hd;
        T* dqi = dq + ((long)b * T_ + i) * s.ldq + (long)h * hd;
        for (int j = 0; j < T_; j++) {
          const T ds = p[j] * (dp[j] - rowdot) * scale;
          const T* kj = k + ((long)b * T_ + j) * s.ldkv + (long)g * hd;
          T* dkj = dk + ((long)b * T_ + j) * s.ldkv + (long)g * hd;
          for (int d = 0; d < hd; d++) {
            dqi[d] += ds * kj[d];
            dkj[d] += ds * qi[d];
          }
        }
      }
    }
}

template <typename T>
T sigmoid(T x) {
  return T(1) / (T(1) + std::exp(-x));
}
template <typename T>
void swiglu_forward(T* out, const T* ab, int N, int F) {
  for (long n = 0; n < N; n++)
    for (int f = 0; f < F; f++) {
      const T a = ab[n * 2 * F + f], b = ab[n * 2 * F + F + f];
      out[n * F + f] = a * sigmoid(a) * b;
    }
}
template <typename T>
void swiglu_backward(T* dab, const T* dout, const T* ab, int N, int F) {
  for (long n = 0; n < N; n++)
    for (int f = 0; f < F; f++) {
      const T a = ab[n * 2 * F + f], b = ab[n * 2 * F + F + f], s = sigmoid(a), d = dout[n * F + f];
      dab[n * 2 * F + f] = d * b * s * (T(1) + a * (T(1) - s));
      dab[n * 2 * F + F + f] = d * a * s;
    }
}

template <typename T>
void lmhead_logprob_forward(T* logp, T* lse, const T* h, const T* w, const int32_t* rows, const int32_t* targets,
                            int S, int D, int E, T scale) {
  std::vector<T> logits(E);
  for (int s = 0; s < S; s++) {
    const T* hs = h + (long)rows[s] * D;
    T mx = -INFINITY;
    for (int e = 0; e < E; e++) {
      T acc = 0;
      for (int d = 0; d < D; d++) acc += hs[d] * w[(long)e * D + d];
      logits[e] = acc * scale;
      if (logits[e] > mx) mx = logits[e];
    }
    T sum = 0;
    for (int e = 0; e < E; e++) sum += std::exp(logits[e] - mx);
    lse[s] = mx + std::log(sum);
    logp[s] = logits[targets[s]] - lse[s];
  }
}
template <typename T>
void lmhead_logprob_backward(T* dh, T* dw, const T* dlogp, const T* lse, const T* h, const T* w, const int32_t* rows,
                             const int32_t* targets, int S, int D, int E, T scale) {
  for (int s = 0; s < S; s++) {
    const T* hs = h + (long)rows[s] * D;
    T* dhs = dh + (long)rows[s] * D;
    for (int e = 0; e < E; e++) {
      T acc = 0;
      for (int d = 0; d < D; d++) acc += hs[d] * w[(long)e * D + d];
      const T prob = std::exp(acc * scale - lse[s]);
      const T dlogit = dlogp[s] * ((e == targets[s] ? T(1) : T(0)) - prob) * scale;
      for (int d = 0; d < D; d++) {
        dhs[d] += dlogit * w[(long)e * D + d];
        if (dw) dw[(long)e * D + d] += dlogit * hs[d];
      }
    }
  }
}

template <typename T>
void adamw_update(T* p, const T* g, T* m, T* v, long n, const AdamWStep& s) {
  const double bc1 = 1.0 - std::pow((double)s.beta1, s.t), bc2 = 1.0 - std::pow((double)s.beta2, s.t);
  for (long i = 0; i < n; i++) {
    const T gi = g[i] * s.grad_scale;
    m[i] = s.beta1 * m[i] + (1 - s.beta1) * gi;
    v[i] = s.beta2 * v[i] + (1 - s.beta2) * gi * gi;
    const T mhat = m[i] / bc1, vhat = v[i] / bc2;
    p[i] -= s.lr * (s.weight_decay * p[i] + mhat / (std::sqrt(vhat) + s.eps));
  }
}

}  // namespace ref

// The reference loops as a Backend (float), so a whole model can run on them for parity tests.
class ReferenceBackend : public Backend {
 public:
  const char* name() const override { return "reference"; }
  void embedding_forward(float* out, const int32_t* ids, const float* wte, int N, int D, float scale) override {
    ref::embedding_forward(out, ids, wte, N, D, scale);
  }
  void embedding_backward(float* dwte, const float* dout, const int32_t* ids, int N, int D, float scale) override {
    ref::embedding_backward(dwte, dout, ids, N, D, scale);
  }
  void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* w, int N, int D, float eps) override {
    ref::rmsnorm_forward(out, rstd, inp, w, N, D, eps);
  }
  void rmsnorm_backward(float* dinp, float* dw, const float* dout, const float* inp, const float* w,
                        const float* rstd, int N, int D) override {
    ref::rmsnorm_backward(dinp, dw, dout, inp, w, rstd, N, D);
  }
  void linear_forward(float* out, const float* inp, const float* w, int N, int I, int O, bool acc) override {
    ref::linear_forward(out, inp, w, N, I, O, acc);
  }
  void linear_backward(float* dinp, bool acc, float* dw, const float* dout, const float* inp, const float* w, int N,
                       int I, int O) override {
    ref::linear_backward(dinp, acc, dw, dout, inp, w, N, I, O);
  }
  void rope_forward(float* x, const float* c, const float* s, const int32_t* pos, int B, int T, int nh, int hd,
                    long ld) override {
    ref::rope_forward(x, c, s, pos, B, T, nh, hd, ld);
  }
  void rope_backward(float* dx, const float* c, const float* s, const int32_t* pos, int B, int T, int nh, int hd,
                     long ld) override {
    ref::rope_backward(dx, c, s, pos, B, T, nh, hd, ld);
  }
  void attention_forward(float* out, float* att, const float* q, const float* k, const float* v,
                         const uint8_t* keymask, const AttnShape& s) override {
    ref::attention_forward(out, att, q, k, v, keymask, s);
  }
  void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* /*out*/, const float* att, const float* q,
                          const float* k, const float* v, const AttnShape& s) override {
    ref::attention_backward(dq, dk, dv, dout, att, q, k, v, s);
  }
  void swiglu_forward(float* out, const float* ab, int N, int F) override { ref::swiglu_forward(out, ab, N, F); }
  void swiglu_backward(float* dab, const float* dout, const float* ab, int N, int F) override {
    ref::swiglu_backward(dab, dout, ab, N, F);
  }
  void lmhead_logprob_forward(float* logp, float* lse, const float* h, const float* w, const int32_t* rows,
                              const int32_t* targets, int S, int D, int E, float scale) override {
    ref::lmhead_logprob_forward(logp, lse, h, w, rows, targets, S, D, E, scale);
  }
  void lmhead_logprob_backward(float* dh, float* dw, const float* dlogp, const float* lse, const float* h,
                               const float* w, const int32_t* rows, const int32_t* targets, int S, int D, int E,
                               float scale) override {
    ref::lmhead_logprob_backward(dh, dw, dlogp, lse, h, w, rows, targets, S, D, E, scale);
  }
  void scale(float* x, long n, float s) override {
    for (long i = 0; i < n; i++) x[i] *= s;
  }
  double sum_squares(const float* x, long n) override {
    double s = 0;
    for (long i = 0; i < n; i++) s += (double)x[i] * x[i];
    return s;
  }
  void adamw_update(float* p, const float* g, float* m, float* v, long n, const AdamWStep& s) override {
    ref::adamw_update(p, g, m, v, n, s);
  }
};

}  // namespace diffpo
