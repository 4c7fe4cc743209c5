#include "testing.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <cmath>
#include <functional>
#include <random>

#include "common/errors.h"
#include "cpu/cpu_backend.h"
#include "cpu/gemm.h"
#include "cpu/cpu_features.h"
#include "cpu/gemm_kernels.h"
#include "cpu/reference.h"

namespace diffpo {

namespace {

using Vec = std::vector<double>;
using FVec = std::vector<float>;

double norm_error(const FVec& got, const Vec& want) {
  double scale = 1e-6, err = 0;
  for (double w : want) scale = std::max(scale, std::fabs(w));
  for (size_t i = 0; i < got.size(); i++) err = std::max(err, std::fabs((double)got[i] - want[i]));
  return err / scale;
}
double norm_error(const Vec& got, const Vec& want) {
  double scale = 1e-6, err = 0;
  for (double w : want) scale = std::max(scale, std::fabs(w));
  for (size_t i = 0; i < got.size(); i++) err = std::max(err, std::fabs(got[i] - want[i]));
  return err / scale;
}
FVec to_float(const Vec& v) { return FVec(v.begin(), v.end()); }

// A differentiable op: inputs -> output, with forward/backward in float (fast backend) and double (reference).
struct OpCase {
  std::vector<std::string> names;
  std::vector<Vec> inputs;
  size_t out_size = 0;
  std::function<void(std::vector<double*>&, double* out)> ref_forward;
  std::function<void(std::vector<double*>&, const double* dout, std::vector<double*>& grads)> ref_backward;
  std::function<void(std::vector<float*>&, float* out)> fast_forward;
  std::function<void(std::vector<float*>&, const float* dout, std::vector<float*>& grads)> fast_backward;
};

CheckResult run_case(OpCase& c, std::mt19937_64& rng) {
  CheckResult r;
  std::normal_distribution<double> normal(0.0, 1.0);
  Vec dout(c.out_size);
  for (auto& d : dout) d = normal(rng);
  std::vector<double*> in_d;
  for (auto& v : c.inputs) in_d.push_back(v.data());
  std::vector<FVec> in_f;
  for (auto& v : c.inputs) in_f.push_back(to_float(v));
  std::vector<float*> in_fp;
  for (auto& v : in_f) in_fp.push_back(v.data());

  Vec out_ref(c.out_size);
  c.ref_forward(in_d, out_ref.data());
  FVec out_fast(c.out_size);
  c.fast_forward(in_fp, out_fast.data());
  r.forward_error = norm_error(out_fast, out_ref);

  std::vector<Vec> g_ref;
  std::vector<FVec> g_fast;
  std::vector<double*> g_ref_p;
  std::vector<float*> g_fast_p;
  for (auto& v : c.inputs) {
    g_ref.emplace_back(v.size(), 0.0);
    g_fast.emplace_back(v.size(), 0.f);
  }
  for (auto& v : g_ref) g_ref_p.push_back(v.data());
  for (auto& v : g_fast) g_fast_p.push_back(v.data());
  c.ref_backward(in_d, dout.data(), g_ref_p);
  FVec dout_f = to_float(dout);
  c.fast_backward(in_fp, dout_f.data(), g_fast_p);

  const double h = 1e-5;
  Vec tmp(c.out_size);
  auto objective = [&] {
    c.ref_forward(in_d, tmp.data());
    double s = 0;
    for (size_t i = 0; i < c.out_size; i++) s += tmp[i] * dout[i];
    return s;
  };
  for (size_t k = 0; k < c.inputs.size(); k++) {
    Vec fd(c.inputs[k].size());
    for (size_t i = 0; i < fd.size(); i++) {
      const double x0 = c.inputs[k][i];
      c.inputs[k][i] = x0 + h;
      const double lp = objective();
      c.inputs[k][i] = x0 - h;
      const double lm = objective();
      c.inputs[k][i] = x0;
      fd[i] = (lp - lm) / (2 * h);
    }
    r.backward_error[c.names[k]] = norm_error(g_fast[k], fd);
    r.reference_backward_error[c.names[k]] = norm_error(g_ref[k], fd);
  }
  return r;
}

Vec random_vec(size_t n, std::mt19937_64& rng, double scale = 1.0) {
  std::normal_distribution<double> normal(0.0, scale);
  Vec v(n);
  for (auto& x : v) x = normal(rng);
  return v;
}

CpuBackend& fast_backend() {
  static CpuBackend be(2);
  return be;
}

void rope_tables(int T, int hd, double theta, Vec& cos_d, Vec& sin_d) {
  const int half = hd / 2;
  cos_d.resize((size_t)T * half);
  sin_d.resize((size_t)T * half);
  for (int t = 0; t < T; t++)
    for (int j = 0; j < half; j++) {
      const double a = t * std::pow(theta, -2.0 * j / hd);
      cos_d[(size_t)t * half + j] = std::cos(a);
      sin_d[(size_t)t * half + j] = std::sin(a);
    }
}

OpCase make_case(const std::string& op, std::mt19937_64& rng) {
  CpuBackend& be = fast_backend();
  OpCase c;
  if (op == "embedding") {
    const int N = 9, D = 13, E = 5;
    auto ids = std::make_shared<std::vector<int32_t>>(std::vector<int32_t>{0, 3, 3, 1, 4, 0, 2, 3, 1});
    c.names = {"wte"};
    c.inputs = {random_vec((size_t)E * D, rng)};
    c.out_size = (size_t)N * D;
    const double sc = 1.7;
    c.ref_forward = [=](auto& in, double* out) { ref::embedding_forward(out, ids->data(), in[0], N, D, sc); };
    c.ref_backward = [=](auto&, const double* dout, auto& g) { ref::embedding_backward(g[0], dout, ids->data(), N, D, sc); };
    c.fast_forward = [=, &be](auto& in, float* out) { be.embedding_forward(out, ids->data(), in[0], N, D, (float)sc); };
    c.fast_backward = [=, &be](auto&, const float* dout, auto& g) {
      be.embedding_backward(g[0], dout, ids->data(), N, D, (float)sc);
    };
  } else if (op == "rmsnorm") {
    const int N = 7, D = 37;
    c.names = {"inp", "weight"};
    c.inputs = {random_vec((size_t)N * D, rng), random_vec(D, rng)};
    c.out_size = (size_t)N * D;
    const double eps = 1e-5;
    c.ref_forward = [=](auto& in, double* out) {
      Vec rstd(N);
      ref::rmsnorm_forward(out, rstd.data(), in[0], in[1], N, D, eps);
    };
    c.ref_backward = [=](auto& in, const double* dout, auto& g) {
      Vec out((size_t)N * D), rstd(N);
      ref::rmsnorm_forward(out.data(), rstd.data(), in[0], in[1], N, D, eps);
      ref::rmsnorm_backward(g[0], g[1], dout, in[0], in[1], rstd.data(), N, D);
    };
    c.fast_forward = [=, &be](auto& in, float* out) {
      FVec rstd(N);
      be.rmsnorm_forward(out, rstd.data(), in[0], in[1], N, D, (float)eps);
    };
    c.fast_backward = [=, &be](auto& in, const float* dout, auto& g) {
      FVec out((size_t)N * D), rstd(N);
      be.rmsnorm_forward(out.data(), rstd.data(), in[0], in[1], N, D, (float)eps);
      be.rmsnorm_backward(g[0], g[1], dout, in[0], in[1], rstd.data(), N, D);
    };
  } else if (op == "linear") {
    // odd sizes exercise the micro-kernel's edge tiles; K > 256 crosses a K block
    const int N = 13, I = 300, O = 35;
    c.names = {"inp", "weight"};
    c.inputs = {random_vec((size_t)N * I, rng), random_vec((size_t)O * I, rng, 0.1)};
    c.out_size = (size_t)N * O;
    c.ref_forward = [=](auto& in, double* out) { ref::linear_forward(out, in[0], in[1], N, I, O, false); };
    c.ref_backward = [=](auto& in, const double* dout, auto& g) {
      ref::linear_backward(g[0], false, g[1], dout, in[0], in[1], N, I, O);
    };
    c.fast_forward = [=, &be](auto& in, float* out) { be.linear_forward(out, in[0], in[1], N, I, O, false); };
    c.fast_backward = [=, &be](auto& in, const float* dout, auto& g) {
      be.linear_backward(g[0], false, g[1], dout, in[0], in[1], N, I, O);
    };
  } else if (op == "rope") {
    // token rows wider than the heads (as in the fused q|k|v buffer): the other columns pass through
    const int B = 2, T = 5, nh = 3, hd = 8;
    const long ld = nh * hd + 5;
    // explicit positions: the second sequence is shifted by 3, as a left-padded prompt would be
    auto pos = std::make_shared<std::vector<int32_t>>(std::vector<int32_t>{0, 1, 2, 3, 4, 0, 0, 0, 1, 2});
    auto cd = std::make_shared<Vec>(), sd = std::make_shared<Vec>();
    rope_tables(T, hd, 10000.0, *cd, *sd);
    auto cf = std::make_shared<FVec>(to_float(*cd)), sf = std::make_shared<FVec>(to_float(*sd));
    const size_t n = (size_t)B * T * ld;
    c.names = {"x"};
    c.inputs = {random_vec(n, rng)};
    c.out_size = n;
    c.ref_forward = [=](auto& in, double* out) {
      std::copy(in[0], in[0] + n, out);
      ref::rope_forward(out, cd->data(), sd->data(), pos->data(), B, T, nh, hd, ld);
    };
    c.ref_backward = [=](auto&, const double* dout, auto& g) {
      std::copy(dout, dout + n, g[0]);
      ref::rope_backward(g[0], cd->data(), sd->data(), pos->data(), B, T, nh, hd, ld);
    };
    c.fast_forward = [=, &be](auto& in, float* out) {
      std::copy(in[0], in[0] + n, out);
      be.rope_forward(out, cf->data(), sf->data(), pos->data(), B, T, nh, hd, ld);
    };
    c.fast_backward = [=, &be](auto&, const float* dout, auto& g) {
      std::copy(dout, dout + n, g[0]);
      be.rope_backward(g[0], cf->data(), sf->data(), pos->data(), B, T, nh, hd, ld);
    };
  } else if (op == "attention") {
    // GQA (4 query heads over 2 kv heads) with key padding in the second sequence
    // rows wider than the heads, as in the fused q|k|v buffer
    const AttnShape s{2, 6, 4, 2, 8, 4 * 8 + 3, 2 * 8 + 5};
    const size_t nq = (size_t)s.B * s.T * s.ldq, nk = (size_t)s.B * s.T * s.ldkv;
    const size_t nout = (size_t)s.B * s.T * s.H * s.hd;
    const size_t natt = (size_t)s.B * s.H * s.T * s.T;
    auto mask = std::make_shared<std::vector<uint8_t>>(std::vector<uint8_t>{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0});
    c.names = {"q", "k", "v"};
    c.inputs = {random_vec(nq, rng), random_vec(nk, rng), random_vec(nk, rng)};
    c.out_size = nout;
    c.ref_forward = [=](auto& in, double* out) {
      Vec att(natt);
      ref::attention_forward(out, att.data(), in[0], in[1], in[2], mask->data(), s);
    };
    c.ref_backward = [=](auto& in, const double* dout, auto& g) {
      Vec out(nout), att(natt);
      ref::attention_forward(out.data(), att.data(), in[0], in[1], in[2], mask->data(), s);
      ref::attention_backward(g[0], g[1], g[2], dout, att.data(), in[0], in[1], in[2], s);
    };
    c.fast_forward = [=, &be](auto& in, float* out) {
      FVec att(natt);
      be.attention_forward(out, att.data(), in[0], in[1], in[2], mask->data(), s);
    };
    c.fast_backward = [=, &be](auto& in, const float* dout, auto& g) {
      FVec out(nout), att(natt);
      be.attention_forward(out.data(), att.data(), in[0], in[1], in[2], mask->data(), s);
      be.attention_backward(g[0], g[1], g[2], dout, out.data(), att.data(), in[0], in[1], in[2], s);
    };
  } else if (op == "swiglu") {
    const int N = 7, F = 29;
    c.names = {"ab"};
    c.inputs = {random_vec((size_t)N * 2 * F, rng, 3.0)};
    c.out_size = (size_t)N * F;
    c.ref_forward = [=](auto& in, double* out) { ref::swiglu_forward(out, in[0], N, F); };
    c.ref_backward = [=](auto& in, const double* dout, auto& g) { ref::swiglu_backward(g[0], dout, in[0], N, F); };
    c.fast_forward = [=, &be](auto& in, float* out) { be.swiglu_forward(out, in[0], N, F); };
    c.fast_backward = [=, &be](auto& in, const float* dout, auto& g) { be.swiglu_backward(g[0], dout, in[0], N, F); };
  } else if (op == "lmhead") {
    // rows repeat (position 2 scored twice) and the logits are scaled, as with scale_logits
    const int N = 6, D = 12, E = 11, S = 5;
    auto rows = std::make_shared<std::vector<int32_t>>(std::vector<int32_t>{2, 0, 5, 2, 3});
    auto targets = std::make_shared<std::vector<int32_t>>(std::vector<int32_t>{1, 10, 0, 4, 7});
    const double sc = 0.7;
    c.names = {"h", "weight"};
    c.inputs = {random_vec((size_t)N * D, rng), random_vec((size_t)E * D, rng)};
    c.out_size = S;
    c.ref_forward = [=](auto& in, double* out) {
      Vec lse(S);
      ref::lmhead_logprob_forward(out, lse.data(), in[0], in[1], rows->data(), targets->data(), S, D, E, sc);
    };
    c.ref_backward = [=](auto& in, const double* dout, auto& g) {
      Vec out(S), lse(S);
      ref::lmhead_logprob_forward(out.data(), lse.data(), in[0], in[1], rows->data(), targets->data(), S, D, E, sc);
      ref::lmhead_logprob_backward(g[0], g[1], dout, lse.data(), in[0], in[1], rows->data(), targets->data(), S, D, E, sc);
    };
    c.fast_forward = [=, &be](auto& in, float* out) {
      FVec lse(S);
      be.lmhead_logprob_forward(out, lse.data(), in[0], in[1], rows->data(), targets->data(), S, D, E, (float)sc);
    };
    c.fast_backward = [=, &be](auto& in, const float* dout, auto& g) {
      FVec out(S), lse(S);
      be.lmhead_logprob_forward(out.data(), lse.data(), in[0], in[1], rows->data(), targets->data(), S, D, E, (float)sc);
      be.lmhead_logprob_backward(g[0], g[1], dout, lse.data(), in[0], in[1], rows->data(), targets->data(), S, D, E,
                                 (float)sc);
    };
  } else {
    throw Error("ERR_INVALID_ARGUMENT", "unknown op '" + op + "'");
  }
  return c;
}

// AdamW has no gradient to check: compare the fast update against the reference over a few steps.
CheckResult adamw_check(std::mt19937_64& rng) {
  const long n = 1000;
  Vec p = random_vec(n, rng), m(n, 0.0), v(n, 0.0);
  FVec pf = to_float(p), mf(n, 0.f), vf(n, 0.f);
  for (int t = 1; t <= 5; t++) {
    Vec g = random_vec(n, rng);
    FVec gf = to_float(g);
    const AdamWStep s{1e-2f, 0.9f, 0.99f, 1e-8f, 0.1f, 0.5f, t};
    ref::adamw_update(p.data(), g.data(), m.data(), v.data(), n, s);
    fast_backend().adamw_update(pf.data(), gf.data(), mf.data(), vf.data(), n, s);
  }
  CheckResult r;
  r.forward_error = norm_error(pf, p);
  return r;
}

// Both GEMM kernels (dispatched + threaded, and portable) on every transpose pattern, edge-tile sizes,
// with and without accumulation, against a double loop.
CheckResult gemm_check(std::mt19937_64& rng) {
  double worst = 0;
  const int shapes[][3] = {{1, 1, 1}, {7, 19, 5}, {13, 35, 300}, {150, 70, 260}, {301, 33, 17}};
  for (auto& sh : shapes) {
    const int M = sh[0], N = sh[1], K = sh[2];
    Vec a = random_vec((size_t)M * K, rng), b = random_vec((size_t)K * N, rng), c0 = random_vec((size_t)M * N, rng);
    FVec af = to_float(a), bf = to_float(b);
    for (int pattern = 0; pattern < 4; pattern++) {
      const bool ta = pattern & 1, tb = pattern & 2;  // operand stored transposed
      const MatView A = ta ? MatView{af.data(), 1, M} : MatView{af.data(), K, 1};
      const MatView B = tb ? MatView{bf.data(), 1, K} : MatView{bf.data(), N, 1};
      for (int acc = 0; acc < 2; acc++) {
        Vec want((size_t)M * N);
        for (int i = 0; i < M; i++)
          for (int j = 0; j < N; j++) {
            double s = acc ? (double)(float)c0[(size_t)i * N + j] : 0.0;
            for (int k = 0; k < K; k++)
              s += (double)af[ta ? (size_t)k * M + i : (size_t)i * K + k] * bf[tb ? (size_t)j * K + k : (size_t)k * N + j];
            want[(size_t)i * N + j] = s;
          }
        FVec fast = to_float(c0), portable = to_float(c0);
        sgemm(M, N, K, A, B, fast.data(), N, acc, &fast_backend().pool());
        sgemm_portable(M, N, K, A, B, portable.data(), N, acc);
        worst = std::max({worst, norm_error(fast, want), norm_error(portable, want)});
      }
    }
  }
  CheckResult r;
  r.forward_error = worst;
  return r;
}

// The whole model in plain loops, any precision: loss = -sum_s w_s logp_s (logits out if asked).
template <typename T>
T reference_model(const ModelConfig& c, const std::vector<TensorSpec>& ts, const T* P, const int32_t* ids,
                  const uint8_t* keymask, const int32_t* pos, int B, int Tn, const std::vector<int32_t>& rows,
                  const std::vector<int32_t>& targets, const std::vector<T>& weights, std::vector<T>* logits_out,
                  std::vector<T>* logp_out = nullptr) {
  const int N = B * Tn, D = c.d_model, F = c.mlp_hidden_size, H = c.n_heads, KV = c.n_kv_heads, hd = c.head_dim();
  const int E = c.embedding_size, KVd = KV * hd, S = (int)rows.size();
  auto W = [&](size_t i) { return P + ts[i].offset; };
  std::vector<T> x((size_t)N * D), h((size_t)N * D), rstd(N), q((size_t)N * D), k((size_t)N * KVd), v((size_t)N * KVd);
  std::vector<T> att((size_t)B * H * Tn * Tn), y((size_t)N * D), a((size_t)N * F), bb((size_t)N * F), g((size_t)N * F);
  std::vector<T> ab((size_t)N * 2 * F);
  std::vector<T> cs((size_t)Tn * hd / 2), sn((size_t)Tn * hd / 2);
  for (int t = 0; t < Tn; t++)
    for (int j = 0; j < hd / 2; j++) {
      const float inv = (float)(1.0 / std::pow(c.rope_theta, (double)(2 * j) / hd));
      const float ang = (float)t * inv;
      cs[(size_t)t * hd / 2 + j] = (T)std::cos((double)ang);
      sn[(size_t)t * hd / 2 + j] = (T)std::sin((double)ang);
    }
  ref::embedding_forward(x.data(), ids, W(0), N, D, c.input_emb_norm ? (T)std::sqrt((T)D) : T(1));
  for (int l = 0; l < c.n_layers; l++) {
    const size_t base = 1 + (size_t)l * 9;
    ref::rmsnorm_forward(h.data(), rstd.data(), x.data(), W(base), N, D, (T)c.rms_norm_eps);
    ref::linear_forward(q.data(), h.data(), W(base + 1), N, D, D, false);
    ref::linear_forward(k.data(), h.data(), W(base + 2), N, D, KVd, false);
    ref::linear_forward(v.data(), h.data(), W(base + 3), N, D, KVd, false);
    ref::rope_forward(q.data(), cs.data(), sn.data(), pos, B, Tn, H, hd, D);
    ref::rope_forward(k.data(), cs.data(), sn.data(), pos, B, Tn, KV, hd, KVd);
    ref::attention_forward(y.data(), att.data(), q.data(), k.data(), v.data(), keymask, AttnShape{B, Tn, H, KV, hd, D, KVd});
    ref::linear_forward(x.data(), y.data(), W(base + 4), N, D, D, true);
    ref::rmsnorm_forward(h.data(), rstd.data(), x.data(), W(base + 5), N, D, (T)c.rms_norm_eps);
    ref::linear_forward(a.data(), h.data(), W(base + 6), N, D, F, false);
    ref::linear_forward(bb.data(), h.data(), W(base + 7), N, D, F, false);
    for (long n = 0; n < N; n++)
      for (int f = 0; f < F; f++) ab[n * 2 * F + f] = a[n * F + f], ab[n * 2 * F + F + f] = bb[n * F + f];
    ref::swiglu_forward(g.data(), ab.data(), N, F);
    ref::linear_forward(x.data(), g.data(), W(base + 8), N, F, D, true);
  }
  ref::rmsnorm_forward(h.data(), rstd.data(), x.data(), W(1 + (size_t)c.n_layers * 9), N, D, (T)c.rms_norm_eps);
  const T* head = c.weight_tying ? W(0) : W(ts.size() - 1);
  const T scale = c.scale_logits ? T(1) / std::sqrt((T)D) : T(1);
  if (logits_out) {
    logits_out->resize((size_t)N * E);
    ref::linear_forward(logits_out->data(), h.data(), head, N, D, E, false);
    for (auto& z : *logits_out) z *= scale;
  }
  std::vector<T> logp(S), lse(S);
  ref::lmhead_logprob_forward(logp.data(), lse.data(), h.data(), head, rows.data(), targets.data(), S, D, E, scale);
  T loss = 0;
  for (int s = 0; s < S; s++) loss -= weights[s] * logp[s];
  if (logp_out) *logp_out = logp;
  return loss;
}

}  // namespace

std::vector<double> reference_logprobs(const ModelConfig& cfg, const double* params, const int32_t* ids,
                                       const uint8_t* keymask, const int32_t* pos, int B, int T,
                                       const std::vector<int32_t>& rows, const std::vector<int32_t>& targets) {
  Model layout(cfg, std::unique_ptr<Backend>(new ReferenceBackend()));  // for the tensor offsets only
  std::vector<double> logp, weights(rows.size(), 0.0);
  reference_model<double>(cfg, layout.tensors(), params, ids, keymask, pos, B, T, rows, targets, weights, nullptr, &logp);
  return logp;
}

std::vector<std::string> op_check_names() {
  return {"gemm", "embedding", "rmsnorm", "linear", "rope", "attention", "swiglu", "lmhead", "adamw"};
}

CheckResult op_check(const std::string& op, uint64_t seed) {
  std::mt19937_64 rng(seed);
  if (op == "adamw") return adamw_check(rng);
  if (op == "gemm") return gemm_check(rng);
  OpCase c = make_case(op, rng);
  return run_case(c, rng);
}

CheckResult model_check(const ModelConfig& cfg, uint64_t seed) {
  Model model(cfg, std::unique_ptr<Backend>(new CpuBackend(2)));
  model.init_random(seed, 0.3f);
  std::mt19937_64 rng(seed + 1);
  const int B = 2, T = 6, N = B * T;
  std::vector<int32_t> ids(N);
  for (auto& id : ids) id = (int32_t)(rng() % cfg.vocab_size);
  // the second sequence is left-padded by one position, with positions shifted to match
  std::vector<uint8_t> keymask(N, 1);
  keymask[T] = 0;
  std::vector<int32_t> pos(N);
  for (int t = 0; t < T; t++) pos[t] = t, pos[T + t] = std::max(0, t - 1);
  std::vector<int32_t> rows, targets;
  std::vector<float> wf;
  std::vector<double> wd;
  for (int i = 0; i < N; i += 2) {
    rows.push_back(i);
    targets.push_back((int32_t)(rng() % cfg.vocab_size));
    wd.push_back(0.5 + (double)(rng() % 100) / 100.0);
    wf.push_back((float)wd.back());
  }
  model.zero_grad();
  const double loss_fast = model.logprob_loss(ids.data(), keymask.data(), pos.data(), B, T, rows.data(), targets.data(), wf.data(),
                                              (int)rows.size(), nullptr, true);
  const float* gf = model.grads()->data;
  const float* pf = model.params()->data;
  const auto& ts = model.tensors();
  std::vector<double> P(model.params()->size);
  for (size_t i = 0; i < P.size(); i++) P[i] = pf[i];

  CheckResult r;
  std::vector<double> logits_ref;
  const double loss_ref = reference_model<double>(cfg, ts, P.data(), ids.data(), keymask.data(), pos.data(), B, T, rows, targets,
                                                  wd, &logits_ref);
  std::vector<float> logits_fast((size_t)N * cfg.embedding_size);
  model.logits(ids.data(), keymask.data(), pos.data(), B, T, logits_fast.data());
  r.forward_error = std::max(norm_error(logits_fast, logits_ref), std::fabs(loss_fast - loss_ref) / std::fabs(loss_ref));
  const double h = 1e-6;
  for (const auto& t : ts) {
    std::vector<double> fd(t.numel);
    std::vector<float> got(gf + t.offset, gf + t.offset + t.numel);
    for (size_t i = 0; i < t.numel; i++) {
      double& p = P[t.offset + i];
      const double p0 = p;
      p = p0 + h;
      const double lp = reference_model<double>(cfg, ts, P.data(), ids.data(), keymask.data(), pos.data(), B, T, rows, targets, wd, nullptr);
      p = p0 - h;
      const double lm = reference_model<double>(cfg, ts, P.data(), ids.data(), keymask.data(), pos.data(), B, T, rows, targets, wd, nullptr);
      p = p0;
      fd[i] = (lp - lm) / (2 * h);
    }
    r.backward_error[t.name] = norm_error(got, fd);
  }
  return r;
}

double measure_fma_peak_gflops(int threads, double seconds) {
  if (!cpu_has_avx2_fma()) return 0.0;
  const long iters = 20'000'000;  // 10 x 8 lanes x 2 flops per iteration
  std::atomic<double> sink{0.0};
  auto one = [&] {
    // best of several timed runs: the machine is shared
    double best = 0;
    auto start = std::chrono::steady_clock::now();
    do {
      auto t0 = std::chrono::steady_clock::now();
      double v = fma_loop_avx2(iters);
      auto t1 = std::chrono::steady_clock::now();
      double s = std::chrono::duration<double>(t1 - t0).count();
      best = std::max(best, 160.0 * iters / s / 1e9);
      sink.store(sink.load() + v);
    } while (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < seconds);
    return best;
  };
  if (threads <= 1) return one();
  std::vector<double> per(threads);
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; t++) ts.emplace_back([&, t] { per[t] = one(); });
  for (auto& t : ts) t.join();
  double total = 0;
  for (double g : per) total += g;
  return total;
}

}  // namespace diffpo
