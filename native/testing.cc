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
#include "op_cases.h"

namespace diffpo {

namespace {

using Vec = std::vector<double>;
using FVec = std::vector<float>;

FVec to_float(const Vec& v) { return FVec(v.begin(), v.end()); }

CpuBackend& fast_backend() {
  static CpuBackend be(2);
  return be;
}

Vec random_vec(size_t n, std::mt19937_64& rng, double scale = 1.0) {
  std::normal_distribution<double> normal(0.0, scale);
  Vec v(n);
  for (auto& x : v) x = normal(rng);
  return v;
}

template <typename T>
struct CaseArrays {
  std::vector<std::vector<T>> data;
  Arrays<T> ptrs;
  explicit CaseArrays(const std::vector<Vec>& values) {
    for (const auto& v : values) data.emplace_back(v.begin(), v.end());
    for (auto& d : data) ptrs.push_back(d.data());
  }
};

// One case of the op table on the CPU backend and on the float64 reference: the largest normalised
// error of any output, then each gradient of the backward against central finite differences of the
// float64 forward (objective sum(out * dout)), for the CPU's gradient and the reference's own.
CheckResult run_case(const OpCase& c, std::mt19937_64& rng) {
  std::vector<Vec> init;
  for (const auto& a : c.arrays) init.push_back(fill(a, rng));
  CaseArrays<float> cpu(init);
  CaseArrays<double> ref(init);
  Ref64 r64;
  c.forward.f32(fast_backend(), cpu.ptrs);
  c.forward.f64(r64, ref.ptrs);
  if (c.backward) {
    c.backward.f32(fast_backend(), cpu.ptrs);
    c.backward.f64(r64, ref.ptrs);
  }
  CheckResult r;
  for (int o : c.outputs) r.forward_error = std::max(r.forward_error, normalised_error(cpu.data[o], ref.data[o], init[o].size()));
  if (!c.backward || !c.finite_differences) return r;
  const double h = 1e-5;
  const Vec& dout = init[c.dout];
  auto objective = [&](std::vector<Vec>& arrays) {
    CaseArrays<double> a(arrays);
    c.forward.f64(r64, a.ptrs);
    double s = 0;
    for (size_t i = 0; i < dout.size(); i++) s += a.data[c.out][i] * dout[i];
    return s;
  };
  for (const auto& [input, grad] : c.grads) {
    Vec fd(init[input].size());
    std::vector<Vec> probe = init;
    for (size_t i = 0; i < fd.size(); i++) {
      const double x0 = init[input][i];
      probe[input][i] = x0 + h;
      const double lp = objective(probe);
      probe[input][i] = x0 - h;
      const double lm = objective(probe);
      probe[input][i] = x0;
      fd[i] = (lp - lm) / (2 * h);
    }
    // a gradient array that starts non-zero (accumulating backwards) holds start + gradient
    Vec got_cpu(fd.size()), got_ref(fd.size());
    for (size_t i = 0; i < fd.size(); i++) got_cpu[i] = cpu.data[grad][i] - init[grad][i], got_ref[i] = ref.data[grad][i] - init[grad][i];
    r.backward_error[c.arrays[input].name] = normalised_error(got_cpu, fd, fd.size());
    r.reference_backward_error[c.arrays[input].name] = normalised_error(got_ref, fd, fd.size());
  }
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
        worst = std::max({worst, normalised_error(fast, want, want.size()), normalised_error(portable, want, want.size())});
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
  std::vector<std::string> names{"gemm"};
  for (const auto& c : op_cases()) names.push_back(c.name);
  return names;
}

std::vector<std::string> op_case_covers(const std::string& name) {
  for (const auto& c : op_cases())
    if (c.name == name) return c.covers;
  throw Error("ERR_INVALID_ARGUMENT", "unknown op case '" + name + "'");
}

CheckResult op_check(const std::string& name, uint64_t seed) {
  std::mt19937_64 rng(seed);
  if (name == "gemm") return gemm_check(rng);
  for (const auto& c : op_cases())
    if (c.name == name) return run_case(c, rng);
  throw Error("ERR_INVALID_ARGUMENT", "unknown op case '" + name + "'");
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
  r.forward_error = std::max(normalised_error(logits_fast, logits_ref, logits_ref.size()), std::fabs(loss_fast - loss_ref) / std::fabs(loss_ref));
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
    r.backward_error[t.name] = normalised_error(got, fd, fd.size());
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
