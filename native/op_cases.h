// The op case table (test code, never in the product addon), read by every check of the op list as
// ggml's test-backend-ops reads its cases: the CPU backend against float64 reference loops and central
// finite differences (testing.cc), and a device backend against the CPU backend (cuda/gpu_check.cc).
// A case is a set of named arrays and a body written once against the op list; the body runs on any
// Backend (arrays in that backend's memory) and, unchanged, on Ref64, the reference loops in float64.
#pragma once
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "common/dtype.h"
#include "cpu/reference.h"
#include "ops.h"

namespace diffpo {

// The reference loops in float64 behind the op list's signatures (scalars as double), so that a case
// body compiles for both. No ops of its own: each forwards to ref:: or is a plain loop.
struct Ref64 {
  void copy(double* dst, const double* src, long n) { std::copy(src, src + n, dst); }
  void zero(double* x, long n) { std::fill(x, x + n, 0.0); }
  void copy_rows(double* dst, long dst_ld, const int32_t* dst_rows, const double* src, long src_ld, const int32_t* src_rows,
                 int rows, int n, bool accumulate) {
    for (int i = 0; i < rows; i++)
      for (int c = 0; c < n; c++) {
        double& d = dst[(dst_rows ? dst_rows[i] : i) * dst_ld + c];
        d = (accumulate ? d : 0.0) + src[(src_rows ? src_rows[i] : i) * src_ld + c];
      }
  }
  void dropout(double* y, const double* x, int N, int C, double p, uint64_t seed, uint32_t stream, uint32_t step, bool accumulate) {
    for (long n = 0; n < N; n++)
      for (int c = 0; c < C; c++) {
        // element by element (the fast loops go a Philox block of four columns at a time); p as the op list rounds it
        const bool keep = dropout_factor(seed, {stream, step, (uint32_t)n}, (uint32_t)c, (float)p) != 0.f;
        y[n * C + c] = (accumulate ? y[n * C + c] : 0.0) + (keep ? x[n * C + c] / (1 - p) : 0.0);
      }
  }
  void embedding_forward(double* out, const int32_t* ids, const double* wte, int N, int D, double scale) {
    ref::embedding_forward(out, ids, wte, N, D, scale);
  }
  void embedding_forward_bf16(double* out, const int32_t* ids, const uint16_t* wte, int N, int D, double scale) {
    for (long n = 0; n < N; n++)
      for (int d = 0; d < D; d++) out[n * D + d] = bf16_to_f32(wte[(size_t)ids[n] * D + d]) * scale;
  }
  void embedding_backward(double* dwte, const double* dout, const int32_t* ids, int N, int D, double scale) {
    ref::embedding_backward(dwte, dout, ids, N, D, scale);
  }
  void rmsnorm_forward(double* out, double* rstd, const double* inp, const double* w, int N, int D, double eps) {
    ref::rmsnorm_forward(out, rstd, inp, w, N, D, eps);
  }
  void rmsnorm_backward(double* dinp, double* dw, const double* dout, const double* inp, const double* w, const double* rstd,
                        int N, int D) {
    ref::rmsnorm_backward(dinp, dw, dout, inp, w, rstd, N, D);
  }
  void linear_forward(double* out, const double* inp, const double* w, int N, int I, int O, bool acc) {
    ref::linear_forward(out, inp, w, N, I, O, acc);
  }
  void linear_forward_bf16(double* out, const double* inp, const uint16_t* w, int N, int I, int O, bool acc) {
    ref::linear_forward(out, inp, widen(w, (size_t)O * I).data(), N, I, O, acc);
  }
  void linear_backward(double* dinp, bool acc, double* dw, const double* dout, const double* inp, const double* w, int N,
                       int I, int O) {
    ref::linear_backward(dinp, acc, dw, dout, inp, w, N, I, O);
  }
  void linear_backward_bf16(double* dinp, bool acc, const double* dout, const uint16_t* w, int N, int I, int O) {
    ref::linear_backward<double>(dinp, acc, nullptr, dout, nullptr, widen(w, (size_t)O * I).data(), N, I, O);
  }
  void rope_forward(double* x, const double* c, const double* s, const int32_t* pos, int B, int T, int nh, int hd, long ld) {
    ref::rope_forward(x, c, s, pos, B, T, nh, hd, ld);
  }
  void rope_backward(double* dx, const double* c, const double* s, const int32_t* pos, int B, int T, int nh, int hd, long ld) {
    ref::rope_backward(dx, c, s, pos, B, T, nh, hd, ld);
  }
  void attention_forward(double* out, double* att, const double* q, const double* k, const double* v, const uint8_t* keymask,
                         const AttnShape& s) {
    ref::attention_forward(out, att, q, k, v, keymask, s);
  }
  void attention_backward(double* dq, double* dk, double* dv, const double* dout, const double* /*out*/, const double* att,
                          const double* q, const double* k, const double* v, const AttnShape& s) {
    ref::attention_backward(dq, dk, dv, dout, att, q, k, v, s);
  }
  void swiglu_forward(double* out, const double* ab, int N, int F) { ref::swiglu_forward(out, ab, N, F); }
  void swiglu_backward(double* dab, const double* dout, const double* ab, int N, int F) { ref::swiglu_backward(dab, dout, ab, N, F); }
  void lmhead_logprob_forward(double* logp, double* lse, const double* h, const double* w, const int32_t* rows,
                              const int32_t* targets, int S, int D, int E, double scale) {
    ref::lmhead_logprob_forward(logp, lse, h, w, rows, targets, S, D, E, scale);
  }
  void lmhead_logprob_backward(double* dh, double* dw, const double* dlogp, const double* lse, const double* h, const double* w,
                               const int32_t* rows, const int32_t* targets, int S, int D, int E, double scale) {
    ref::lmhead_logprob_backward(dh, dw, dlogp, lse, h, w, rows, targets, S, D, E, scale);
  }
  void lmhead_logprob_forward_bf16(double* logp, double* lse, const double* h, const uint16_t* w, const int32_t* rows,
                                   const int32_t* targets, int S, int D, int E, double scale) {
    const std::vector<double> wide = widen(w, (size_t)E * D);
    ref::lmhead_logprob_forward(logp, lse, h, wide.data(), rows, targets, S, D, E, scale);
  }
  void lmhead_logprob_backward_bf16(double* dh, const double* dlogp, const double* lse, const double* h, const uint16_t* w,
                                    const int32_t* rows, const int32_t* targets, int S, int D, int E, double scale) {
    const std::vector<double> wide = widen(w, (size_t)E * D);
    ref::lmhead_logprob_backward<double>(dh, nullptr, dlogp, lse, h, wide.data(), rows, targets, S, D, E, scale);
  }
  static std::vector<double> widen(const uint16_t* w, size_t n) {
    std::vector<double> wide(n);
    for (size_t i = 0; i < n; i++) wide[i] = bf16_to_f32(w[i]);
    return wide;
  }
  void scale(double* x, long n, double s) {
    for (long i = 0; i < n; i++) x[i] *= s;
  }
  double sum_squares(const double* x, long n) {
    double s = 0;
    for (long i = 0; i < n; i++) s += x[i] * x[i];
    return s;
  }
  void adamw_update(double* p, const double* g, double* m, double* v, long n, const AdamWStep& s) { ref::adamw_update(p, g, m, v, n, s); }
  void decode_score(int32_t* x0, double* conf, double* logp, double* entropy, const double* logits, const NoiseRow* noise, uint64_t seed, int S,
                    int E, int V, int mask_id, double temperature);
};

// An array of a case: its name, its size, and its contents (normal(0, scale) values, zeros when scale
// is 0, or the given values).
struct ArraySpec {
  std::string name;
  size_t n;
  double scale;
  std::vector<double> values;
  ArraySpec(std::string name, size_t n, double scale = 1.0, std::vector<double> values = {})
      : name(std::move(name)), n(n), scale(scale), values(std::move(values)) {}
};

template <typename T>
using Arrays = std::vector<T*>;

// One body, for float backends and for Ref64.
struct Body {
  std::function<void(Backend&, Arrays<float>&)> f32;
  std::function<void(Ref64&, Arrays<double>&)> f64;
  explicit operator bool() const { return (bool)f32; }
};
template <typename F>
Body body(F f) {
  return Body{[f](Backend& be, Arrays<float>& a) { f(be, a); }, [f](Ref64& r, Arrays<double>& a) { f(r, a); }};
}

struct OpCase {
  OpCase(std::string name, std::vector<std::string> covers, std::vector<ArraySpec> arrays)
      : name(std::move(name)), covers(std::move(covers)), arrays(std::move(arrays)) {}
  std::string name;                 // "<op> <variant>"
  std::vector<std::string> covers;  // the op-list methods its bodies call
  std::vector<ArraySpec> arrays;
  Body forward;                     // reads inputs, writes `out`
  Body backward;                    // optional: reads `dout` (and the forward's arrays), accumulates into gradients
  std::vector<int> outputs;         // arrays compared between implementations after forward and backward
  int out = -1, dout = -1;          // the forward output and its upstream gradient (backward cases)
  std::vector<std::pair<int, int>> grads;  // (input, its gradient array): checked against finite differences
  bool finite_differences = true;   // false for variants too large for float64 finite differences
  double tolerance = 1e-5;          // normalised max error allowed between two float backends (fp32 GEMMs)
  double tolerance_bf16 = 0;        // the same with bf16 GEMMs; 0 when the case has no GEMM
};

// Every case, with array contents drawn from the seed.
std::vector<OpCase> op_cases();
std::vector<double> fill(const ArraySpec& spec, std::mt19937_64& rng);

// max |got - want| / max |want|: the error measure of every check.
template <typename A, typename B>
double normalised_error(const A& got, const B& want, size_t n) {
  double scale = 1e-12, err = 0;
  for (size_t i = 0; i < n; i++) scale = std::max(scale, std::fabs((double)want[i]));
  for (size_t i = 0; i < n; i++) err = std::max(err, std::fabs((double)got[i] - (double)want[i]));
  return err / scale;
}

}  // namespace diffpo
