// Row kernels of the elementwise ops, written once and compiled twice: row_kernels_avx2.cc (with
// -mavx2 -mfma) and row_kernels_portable.cc; cpu_backend picks one table at run time. Reductions use
// `omp simd reduction` (-fopenmp-simd: vectorised without fast-math and without an OpenMP runtime).
#pragma once
#include <cmath>
#include <cstdint>

namespace diffpo {

struct RowKernels {
  // out (D) = w * x * rstd; returns rstd
  float (*rmsnorm_row)(float* out, const float* x, const float* w, int D, float eps);
  // dx (D) +=, dw (D) += from dy (D)
  void (*rmsnorm_row_backward)(float* dx, float* dw, const float* dy, const float* x, const float* w, float rstd, int D);
  // p (n) <- softmax(p * scale) over mask-1 entries (others exactly 0); mask may be null
  void (*softmax_row)(float* p, int n, float scale, const uint8_t* mask);
  // log-sum-exp of x (n)
  float (*logsumexp_row)(const float* x, int n);
  // dp (n) <- p * (dp - sum(p*dp)) * scale
  void (*softmax_row_backward)(float* dp, const float* p, int n, float scale);
  // row (n) <- g * (onehot(target) - exp(row*scale - lse)) * scale: the LM head's dlogits
  void (*logsoftmax_gather_backward)(float* row, int n, float scale, float lse, float g, int target);
  // out (n) = silu(a) * b
  void (*swiglu_span)(float* out, const float* a, const float* b, long n);
  void (*swiglu_span_backward)(float* da, float* db, const float* dout, const float* a, const float* b, long n);
  // u (2*half) rotated by angle sign*theta: (u1, u2) -> (u1 c - u2 s, u2 c + u1 s)
  void (*rope_row)(float* u, const float* c, const float* s, int half, float sign);
  void (*adamw_span)(float* p, const float* g, float* m, float* v, long n, float lr, float b1, float b2, float eps,
                     float wd, float gs, float bc1, float bc2);
};

extern const RowKernels kRowKernelsAvx2;
extern const RowKernels kRowKernelsPortable;

}  // namespace diffpo

#ifdef DIFFPO_ROW_KERNELS_IMPL
namespace diffpo {
namespace DIFFPO_ROW_KERNELS_IMPL {

// exp for floats, branch-free so it vectorises (Cephes-style range reduction, degree-6 polynomial;
// relative error below 2e-7 on [-87, 88]).
static inline float fast_expf(float x) {
  x = x < -87.3f ? -87.3f : x;  // (std::fmin/fmax are NaN-aware library calls that block vectorisation)
  x = x > 88.3f ? 88.3f : x;
  // round to nearest by the 1.5*2^23 trick (std::floor may become a call that blocks vectorisation)
  const float n = (x * 1.44269504088896341f + 12582912.f) - 12582912.f;
  float r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  union {
    int32_t i;
    float f;
  } scale;
  scale.i = (int32_t)((uint32_t)((int32_t)n + 127) << 23);  // unsigned: a NaN input (n garbage) must not be UB
  return p * scale.f;
}

static float rmsnorm_row(float* __restrict out, const float* __restrict x, const float* __restrict w, int D, float eps) {
  float ss = 0.f;
#pragma omp simd reduction(+ : ss)
  for (int d = 0; d < D; d++) ss += x[d] * x[d];
  const float r = 1.f / std::sqrt(ss / D + eps);
#pragma omp simd
  for (int d = 0; d < D; d++) out[d] = w[d] * (x[d] * r);
  return r;
}

static void rmsnorm_row_backward(float* __restrict dx, float* __restrict dw, const float* __restrict dy,
                                 const float* __restrict x, const float* __restrict w, float r, int D) {
  float dot = 0.f;
#pragma omp simd reduction(+ : dot)
  for (int d = 0; d < D; d++) dot += dy[d] * w[d] * x[d];
  dot *= r / D;
#pragma omp simd
  for (int d = 0; d < D; d++) {
    dw[d] += dy[d] * x[d] * r;
    dx[d] += r * (dy[d] * w[d] - x[d] * r * dot);
  }
}

static void softmax_row(float* __restrict p, int n, float scale, const uint8_t* __restrict mask) {
  float mx = -INFINITY, sum = 0.f;
  if (mask) {
#pragma omp simd reduction(max : mx)
    for (int j = 0; j < n; j++) {
      const float v = mask[j] ? p[j] * scale : -INFINITY;
      mx = v > mx ? v : mx;
    }
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < n; j++) {
      const float e = fast_expf(p[j] * scale - mx);
      p[j] = mask[j] ? e : 0.f;
      sum += p[j];
    }
  } else {
#pragma omp simd reduction(max : mx)
    for (int j = 0; j < n; j++) mx = p[j] * scale > mx ? p[j] * scale : mx;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < n; j++) {
      p[j] = fast_expf(p[j] * scale - mx);
      sum += p[j];
    }
  }
  const float inv = 1.f / sum;
#pragma omp simd
  for (int j = 0; j < n; j++) p[j] *= inv;
}

static float logsumexp_row(const float* __restrict x, int n) {
  float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
  for (int j = 0; j < n; j++) mx = x[j] > mx ? x[j] : mx;
  float sum = 0.f;
#pragma omp simd reduction(+ : sum)
  for (int j = 0; j < n; j++) sum += fast_expf(x[j] - mx);
  return mx + std::log(sum);
}

static void softmax_row_backward(float* __restrict dp, const float* __restrict p, int n, float scale) {
  float dot = 0.f;
#pragma omp simd reduction(+ : dot)
  for (int j = 0; j < n; j++) dot += p[j] * dp[j];
#pragma omp simd
  for (int j = 0; j < n; j++) dp[j] = p[j] * (dp[j] - dot) * scale;
}

static void logsoftmax_gather_backward(float* __restrict row, int n, float scale, float lse, float g, int target) {
#pragma omp simd
  for (int e = 0; e < n; e++) row[e] = -g * fast_expf(row[e] * scale - lse) * scale;
  row[target] += g * scale;
}

static void swiglu_span(float* __restrict out, const float* __restrict a, const float* __restrict b, long n) {
#pragma omp simd
  for (long i = 0; i < n; i++) out[i] = a[i] / (1.f + fast_expf(-a[i])) * b[i];
}

static void swiglu_span_backward(float* __restrict da, float* __restrict db, const float* __restrict dout,
                                 const float* __restrict a, const float* __restrict b, long n) {
#pragma omp simd
  for (long i = 0; i < n; i++) {
    const float s = 1.f / (1.f + fast_expf(-a[i]));
    db[i] = dout[i] * a[i] * s;
    da[i] = dout[i] * b[i] * s * (1.f + a[i] * (1.f - s));
  }
}

static void rope_row(float* __restrict u, const float* __restrict c, const float* __restrict s, int half, float sign) {
#pragma omp simd
  for (int j = 0; j < half; j++) {
    const float x1 = u[j], x2 = u[j + half], sn = sign * s[j];
    u[j] = x1 * c[j] - x2 * sn;
    u[j + half] = x2 * c[j] + x1 * sn;
  }
}

static void adamw_span(float* __restrict p, const float* __restrict g, float* __restrict m, float* __restrict v, long n,
                       float lr, float b1, float b2, float eps, float wd, float gs, float bc1, float bc2) {
#pragma omp simd
  for (long i = 0; i < n; i++) {
    const float gi = g[i] * gs;
    m[i] = b1 * m[i] + (1.f - b1) * gi;
    v[i] = b2 * v[i] + (1.f - b2) * gi * gi;
    const float mhat = m[i] / bc1, vhat = v[i] / bc2;
    p[i] -= lr * (wd * p[i] + mhat / (std::sqrt(vhat) + eps));
  }
}

static constexpr RowKernels kTable = {rmsnorm_row,  rmsnorm_row_backward, softmax_row,        logsumexp_row,
                                      softmax_row_backward, logsoftmax_gather_backward, swiglu_span,
                                      swiglu_span_backward, rope_row, adamw_span};

}  // namespace DIFFPO_ROW_KERNELS_IMPL
}  // namespace diffpo
#endif
