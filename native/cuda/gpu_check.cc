// The CUDA backend's harness, without Node.js: every op against the CPU backend by normalised error
// (forward and backward, bf16 and fp32 GEMMs), a whole-model forward/backward, the decoding step and a
// decoding run, then a timing table at LLaDA-8B's shapes. `gpu_check --self-test` runs the same parity
// checks with the reference loops in place of the GPU, so the harness itself is tested on any machine.
// Usage: gpu_check [--self-test] [--out FILE.md] [--skip-timing] [--gen N]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "../common/errors.h"
#include "../cpu/cpu_backend.h"
#include "../cpu/reference.h"
#include "../model.h"
#include "../sampler.h"
#ifdef DIFFPO_CUDA
#include "cuda_backend.h"
#include "kernels.h"
#endif

namespace diffpo {
namespace {

using Vec = std::vector<float>;
bool g_self_test = false;
int g_failures = 0;
std::string g_report;

void report(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void report(const char* fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  std::fputs(buf, stdout);
  std::fflush(stdout);
  g_report += buf;
}

std::unique_ptr<Backend> make_device(bool bf16) {
#ifdef DIFFPO_CUDA
  if (!g_self_test) return make_cuda_backend(0, bf16);
#endif
  (void)bf16;
  return std::unique_ptr<Backend>(new ReferenceBackend());
}

// A float array in the device backend's memory (managed on CUDA), filled from a host vector.
struct DevArray {
  BlockPtr block;
  DevArray(Backend& be, const Vec& host) : block(std::make_shared<Block>(host.size() ? host.size() : 1, be.memory())) {
    std::memcpy(block->data, host.data(), sizeof(float) * host.size());
  }
  float* data() { return block->data; }
  Vec host(size_t n) const { return Vec(block->data, block->data + n); }
};

Vec randn(size_t n, std::mt19937_64& rng, float std = 1.f) {
  std::normal_distribution<float> d(0.f, std);
  Vec v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

double nerr(const Vec& got, const Vec& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); i++) num += (got[i] - want[i]) * (double)(got[i] - want[i]), den += (double)want[i] * want[i];
  return std::sqrt(num / std::max(den, 1e-30));
}

void expect(const std::string& what, double err, double tol) {
  const bool ok = err <= tol && std::isfinite(err);
  if (!ok) g_failures++;
  report("| %s | %.2e | %.0e | %s |\n", what.c_str(), err, tol, ok ? "ok" : "FAIL");
}

// Runs `op` on the CPU backend (host arrays) and on the device backend (its memory), then compares
// every output array. `op(backend, arrays)` may modify any array; outputs are the listed indices.
// Runs one check; an exception (a CUDA error, an unsupported shape) fails it and the run goes on, so
// one bad kernel does not hide the state of the others.
void guarded(const std::string& name, const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    g_failures++;
    report("| %s | error: %s | | FAIL |\n", name.c_str(), e.what());
  }
}

void parity(const std::string& name, std::vector<Vec> arrays, const std::vector<int>& outputs, double tol, bool bf16,
            const std::function<void(Backend&, std::vector<float*>&)>& op) {
  guarded(name, [&] {
    CpuBackend cpu(2);
    auto dev = make_device(bf16);
    std::vector<float*> host_ptrs;
    for (auto& a : arrays) host_ptrs.push_back(a.data());
    std::vector<DevArray> dev_arrays;
    for (auto& a : arrays) dev_arrays.emplace_back(*dev, a);
    std::vector<float*> dev_ptrs;
    for (auto& d : dev_arrays) dev_ptrs.push_back(d.data());
    op(cpu, host_ptrs);
    op(*dev, dev_ptrs);
    for (int o : outputs) expect(name + " [" + std::to_string(o) + "]", nerr(dev_arrays[o].host(arrays[o].size()), arrays[o]), tol);
  });
}

void op_parity() {
  std::mt19937_64 rng(1);
  report("\n## Ops: device vs CPU backend (normalised L2 error)\n\n| op [output] | error | tolerance | |\n|---|---|---|---|\n");
  {
    const int N = 37, D = 48, E = 20;
    std::vector<int32_t> ids(N);
    for (int n = 0; n < N; n++) ids[n] = (n * 7) % E;  // repeated ids: the backward's atomic scatter
    parity("embedding fwd/bwd", {randn(E * D, rng), Vec(N * D), randn(N * D, rng), Vec(E * D)}, {1, 3}, 1e-6, true,
           [&](Backend& be, std::vector<float*>& a) {
             be.embedding_forward(a[1], ids.data(), a[0], N, D, 1.5f);
             be.embedding_backward(a[3], a[2], ids.data(), N, D, 1.5f);
           });
  }
  {
    const int N = 33, D = 200;
    parity("rmsnorm fwd/bwd", {randn(N * D, rng), randn(D, rng), Vec(N * D), Vec(N), randn(N * D, rng), randn(N * D, rng), randn(D, rng)},
           {2, 3, 5, 6}, 1e-5, true, [&](Backend& be, std::vector<float*>& a) {
             be.rmsnorm_forward(a[2], a[3], a[0], a[1], N, D, 1e-5f);
             be.rmsnorm_backward(a[5], a[6], a[4], a[0], a[1], a[3], N, D);
           });
  }
  for (const bool bf16 : {false, true}) {
    const int N = 77, I = 129, O = 300;
    const double tol = bf16 ? 1.5e-2 : 1e-5;
    parity(std::string("linear fwd/bwd ") + (bf16 ? "bf16" : "fp32"),
           {randn(N * I, rng), randn(O * I, rng), randn(N * O, rng), randn(N * O, rng), randn(N * I, rng), randn(O * I, rng)},
           {2, 4, 5}, tol, bf16, [&](Backend& be, std::vector<float*>& a) {
             be.linear_forward(a[2], a[0], a[1], N, I, O, true);
             be.linear_backward(a[4], true, a[5], a[3], a[0], a[1], N, I, O);
           });
  }
  {
    const int B = 2, T = 19, nh = 3, hd = 16, P = 40;
    std::vector<int32_t> pos(B * T);
    for (int i = 0; i < B * T; i++) pos[i] = (i * 5) % P;
    Vec cs(P * hd / 2), sn(P * hd / 2);
    for (int t = 0; t < P; t++)
      for (int j = 0; j < hd / 2; j++) cs[t * hd / 2 + j] = std::cos(t * 0.1f * (j + 1)), sn[t * hd / 2 + j] = std::sin(t * 0.1f * (j + 1));
    const long ld = nh * hd + 5;
    parity("rope fwd/bwd", {randn(B * T * ld, rng), randn(B * T * ld, rng), cs, sn}, {0, 1}, 1e-6, true,
           [&](Backend& be, std::vector<float*>& a) {
             be.rope_forward(a[0], a[2], a[3], pos.data(), B, T, nh, hd, ld);
             be.rope_backward(a[1], a[2], a[3], nullptr, B, T, nh, hd, ld);
           });
  }
  for (const int hd : {32, 128}) {
    const int B = 2, T = 45, H = 4, KV = 2, D = H * hd, KVd = KV * hd, QKV = D + 2 * KVd;
    std::vector<uint8_t> mask(B * T, 1);
    for (int t = 0; t < 6; t++) mask[T + t] = 0;  // left padding in the second sequence
    const AttnShape s{B, T, H, KV, hd, QKV, QKV};
    CpuBackend probe(1);
    // forward then backward, in one op; the state array is sized for the larger of the two backends
    const size_t state = std::max(probe.attention_state_floats(B, H, T, T), (size_t)B * H * T + B * T);
    parity("attention fwd/bwd hd " + std::to_string(hd), {randn(B * T * QKV, rng), Vec(B * T * D), Vec(state), randn(B * T * D, rng), Vec(B * T * QKV)},
           {1, 4}, 2e-5, true, [&](Backend& be, std::vector<float*>& a) {
             const float* qkv = a[0];
             be.attention_forward(a[1], a[2], qkv, qkv + D, qkv + D + KVd, mask.data(), s);
             be.attention_backward(a[4], a[4] + D, a[4] + D + KVd, a[3], a[1], a[2], qkv, qkv + D, qkv + D + KVd, s);
           });
  }
  {
    const int N = 29, F = 71;
    parity("swiglu fwd/bwd", {randn(N * 2 * F, rng), Vec(N * F), randn(N * F, rng), Vec(N * 2 * F)}, {1, 3}, 1e-5, true,
           [&](Backend& be, std::vector<float*>& a) {
             be.swiglu_forward(a[1], a[0], N, F);
             be.swiglu_backward(a[3], a[2], a[0], N, F);
           });
  }
  for (const bool bf16 : {false, true}) {
    const int N = 25, S = 30, D = 64, E = 1000;
    std::vector<int32_t> rows(S), targets(S);
    for (int s = 0; s < S; s++) rows[s] = (s * 3) % N, targets[s] = (s * 37) % E;  // rows repeat
    parity(std::string("lmhead logprob fwd/bwd ") + (bf16 ? "bf16" : "fp32"),
           {randn(N * D, rng), randn(E * D, rng, 0.2f), Vec(S), Vec(S), randn(S, rng), Vec(N * D), Vec(E * D)}, {2, 3, 5, 6},
           bf16 ? 1.5e-2 : 1e-5, bf16, [&](Backend& be, std::vector<float*>& a) {
             be.lmhead_logprob_forward(a[2], a[3], a[0], a[1], rows.data(), targets.data(), S, D, E, 0.7f);
             be.lmhead_logprob_backward(a[5], a[6], a[4], a[3], a[0], a[1], rows.data(), targets.data(), S, D, E, 0.7f);
           });
  }
  {
    const long n = 100003;
    const AdamWStep st{1e-3f, 0.9f, 0.99f, 1e-8f, 0.1f, 0.5f, 3};
    parity("scale, adamw", {randn(n, rng), randn(n, rng), randn(n, rng, 0.1f), Vec(n, 0.01f)}, {0, 2, 3}, 1e-6, true,
           [&](Backend& be, std::vector<float*>& a) {
             be.scale(a[1], n, 0.5f);
             be.adamw_update(a[0], a[1], a[2], a[3], n, st);
           });
    Vec x = randn(n, rng);
    CpuBackend cpu(2);
    auto dev = make_device(true);
    DevArray dx(*dev, x);
    const double want = cpu.sum_squares(x.data(), n), got = dev->sum_squares(dx.data(), n);
    expect("sum_squares", std::abs(got - want) / want, 1e-9);
  }
  {
    const int rows = 13, n = 40;
    std::vector<int32_t> dst_rows(rows), src_rows(rows);
    for (int i = 0; i < rows; i++) dst_rows[i] = (i * 5) % 17, src_rows[i] = 16 - i;
    parity("copy_rows gather/scatter", {randn(17 * 50, rng), Vec(rows * n), Vec(17 * 60)}, {1, 2}, 0, true,
           [&](Backend& be, std::vector<float*>& a) {
             be.copy_rows(a[1], n, nullptr, a[0], 50, src_rows.data(), rows, n);
             be.copy_rows(a[2], 60, dst_rows.data(), a[1], n, nullptr, rows, n);
           });
  }
  for (const double temp : {0.0, 0.7}) {
    const int S = 21, E = 300, V = 290, mask_id = 289;
    Vec logits = randn(S * E, rng, 3.f);
    std::vector<double> noise(S * V);
    std::mt19937_64 nr(5);
    std::uniform_real_distribution<double> u(1e-12, 1.0);
    for (auto& z : noise) z = -std::log(-std::log(u(nr)));
    CpuBackend cpu(1);
    auto dev = make_device(true);
    DevArray dl(*dev, logits);
    std::vector<int32_t> x_cpu(S), x_dev(S);
    Vec c_cpu(S), c_dev(S), l_cpu(S), l_dev(S), e_cpu(S), e_dev(S);
    cpu.decode_score(x_cpu.data(), c_cpu.data(), l_cpu.data(), e_cpu.data(), logits.data(), noise.data(), S, E, V, mask_id, temp);
    dev->decode_score(x_dev.data(), c_dev.data(), l_dev.data(), e_dev.data(), dl.data(), noise.data(), S, E, V, mask_id, temp);
    int same = 0;
    for (int s = 0; s < S; s++) same += x_cpu[s] == x_dev[s];
    const std::string tag = "decode_score T=" + std::to_string(temp).substr(0, 3);
    expect(tag + " tokens differing", (double)(S - same), 0);
    expect(tag + " conf/logp/entropy", std::max({nerr(c_dev, c_cpu), nerr(l_dev, l_cpu), nerr(e_dev, e_cpu)}), 1e-6);
  }
}

ModelConfig small_config() {
  ModelConfig c;
  c.d_model = 256, c.n_heads = 8, c.n_kv_heads = 4, c.n_layers = 2, c.mlp_hidden_size = 512;
  c.vocab_size = 500, c.embedding_size = 512, c.mask_token_id = 499;
  return c;
}

void model_parity() {
  report("\n## Whole model: logprob loss, forward and backward, device vs CPU\n\n| check | error | tolerance | |\n|---|---|---|---|\n");
  const ModelConfig cfg = small_config();
  const int B = 2, T = 48;
  std::mt19937_64 rng(7);
  std::vector<int32_t> ids(B * T), pos(B * T), rows, targets;
  std::vector<uint8_t> mask(B * T, 1);
  for (int i = 0; i < B * T; i++) ids[i] = (int)(rng() % cfg.vocab_size);
  for (int t = 0; t < 5; t++) mask[T + t] = 0;  // the second sequence is left-padded by 5
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++) pos[b * T + t] = std::max(0, t - (b ? 5 : 0));
  Vec weights;
  for (int i = 0; i < B * T; i += 3) rows.push_back(i), targets.push_back((int)(rng() % cfg.vocab_size)), weights.push_back(0.5f + (i % 7) * 0.1f);
  const int S = (int)rows.size();
  for (const bool bf16 : {false, true}) {
    Model cpu(cfg, std::unique_ptr<Backend>(new CpuBackend(2)));
    Model dev(cfg, make_device(bf16));
    cpu.init_random(3, 0.05f);
    std::memcpy(dev.params()->data, cpu.params()->data, sizeof(float) * cpu.params()->size);
    Vec lp_cpu(S), lp_dev(S);
    const double loss_cpu = cpu.logprob_loss(ids.data(), mask.data(), pos.data(), B, T, rows.data(), targets.data(), weights.data(), S, lp_cpu.data(), true);
    const double loss_dev = dev.logprob_loss(ids.data(), mask.data(), pos.data(), B, T, rows.data(), targets.data(), weights.data(), S, lp_dev.data(), true);
    const double tol = bf16 ? 3e-2 : 1e-4;
    const std::string tag = bf16 ? " (bf16 GEMMs)" : " (fp32 GEMMs)";
    expect("loss" + tag, std::abs(loss_dev - loss_cpu) / std::abs(loss_cpu), tol);
    expect("log-probs" + tag, nerr(lp_dev, lp_cpu), tol);
    // full logits into a plain host array (the CUDA backend stages the output)
    Vec logits_cpu((size_t)B * T * cfg.embedding_size), logits_dev(logits_cpu.size());
    cpu.logits(ids.data(), mask.data(), pos.data(), B, T, logits_cpu.data());
    dev.logits(ids.data(), mask.data(), pos.data(), B, T, logits_dev.data());
    expect("logits into host memory" + tag, nerr(logits_dev, logits_cpu), tol);
    const size_t P = cpu.params()->size;
    expect("all gradients" + tag, nerr(Vec(dev.grads()->data, dev.grads()->data + P), Vec(cpu.grads()->data, cpu.grads()->data + P)), tol * 3);
    for (const auto& t : cpu.tensors()) {
      if (t.name.find("blocks.0.") == std::string::npos && t.name.find("wte") == std::string::npos) continue;
      const float *g = dev.grads()->data + t.offset, *w = cpu.grads()->data + t.offset;
      expect("grad " + t.name + tag, nerr(Vec(g, g + t.numel), Vec(w, w + t.numel)), tol * 3);
    }
    // one AdamW step on both
    const AdamWStep st{1e-3f, 0.9f, 0.99f, 1e-8f, 0.1f, 1.f, 1};
    BlockPtr m_cpu = cpu.new_moment(), v_cpu = cpu.new_moment(), m_dev = dev.new_moment(), v_dev = dev.new_moment();
    const double n_cpu = cpu.adamw_step(st, 1.f, *m_cpu, *v_cpu), n_dev = dev.adamw_step(st, 1.f, *m_dev, *v_dev);
    expect("grad norm + AdamW step" + tag, std::abs(n_dev - n_cpu) / n_cpu + nerr(Vec(dev.params()->data, dev.params()->data + P), Vec(cpu.params()->data, cpu.params()->data + P)), tol);
  }
}

void decode_parity() {
  report("\n## Decoding: threshold 0.9 and entropy-bounded runs, device (fp32 GEMMs) vs CPU\n\n| check | value | tolerance | |\n|---|---|---|---|\n");
  const ModelConfig cfg = small_config();
  for (const auto strategy : {Strategy::Threshold, Strategy::Entropy}) {
    for (const auto cache : {CacheMode::None, CacheMode::Dual}) {
      Model cpu(cfg, std::unique_ptr<Backend>(new CpuBackend(2)));
      Model dev(cfg, make_device(false));
      cpu.init_random(11, 0.15f);  // peaked predictions: few near-ties
      std::memcpy(dev.params()->data, cpu.params()->data, sizeof(float) * cpu.params()->size);
      std::vector<std::vector<int32_t>> prompts = {{1, 2, 3, 4, 5, 6, 7}, {9, 8, 7}, {40, 41, 42, 43, 44}};
      SamplerOptions o;
      o.gen_length = 32, o.block_length = 8, o.strategy = strategy, o.cache = cache;
      o.threshold.assign(prompts.size(), strategy == Strategy::Threshold ? 0.9f : 0.5f);
      o.max_nfe.assign(prompts.size(), 0);
      Decoder a(cfg, prompts, o), b(cfg, prompts, o);
      while (!a.step(cpu)) {}
      while (!b.step(dev)) {}
      const auto ta = a.tokens(), tb = b.tokens();
      int diff = 0;
      for (size_t i = 0; i < ta.size(); i++) diff += ta[i] != tb[i];
      const std::string tag = std::string(strategy == Strategy::Threshold ? "threshold" : "entropy") + (cache == CacheMode::Dual ? ", dual cache" : "");
      expect(tag + ": fraction of tokens differing", (double)diff / ta.size(), 0.02);
      int nfe_diff = 0;
      for (size_t i = 0; i < prompts.size(); i++) nfe_diff += std::abs(a.nfe()[i] - b.nfe()[i]);
      expect(tag + ": NFE difference", (double)nfe_diff, 1);
    }
  }
}

#ifdef DIFFPO_CUDA
double seconds_of(const std::function<void()>& f, int reps) {
  f();  // warm-up
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < reps; i++) f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps;
}

ModelConfig llada8b() {
  ModelConfig c;
  c.d_model = 4096, c.n_heads = 32, c.n_kv_heads = 32, c.n_layers = 32, c.mlp_hidden_size = 12288;
  c.vocab_size = 126464, c.embedding_size = 126464, c.mask_token_id = 126336, c.rope_theta = 500000;
  return c;
}

void timing(int gen) {
  report("\n## Timing (LLaDA-8B shapes: D 4096, F 12288, 4096 tokens per GEMM)\n\n| kernel | shape (M x N x K) | ms | TFLOP/s |\n|---|---|---|---|\n");
  const int N = 4096, D = 4096, F = 12288;
  struct Shape {
    const char* name;
    int I, O;
  } shapes[] = {{"q|k|v projection", D, 3 * D}, {"attn_out", D, D}, {"ff_proj|up_proj", D, 2 * F}, {"ff_out", F, D}};
  for (const bool bf16 : {true, false}) {
    auto be = make_cuda_backend(0, bf16);
    for (const auto& s : shapes) {
      Block x((size_t)N * s.I, be->memory()), w((size_t)s.O * s.I, be->memory()), y((size_t)N * s.O, be->memory());
      cuda::fill_normal(x.data, x.size, 1.f, 1);
      cuda::fill_normal(w.data, w.size, 0.02f, 2);
      const double sec = seconds_of([&] { be->linear_forward(y.data, x.data, w.data, N, s.I, s.O, false); }, bf16 ? 10 : 2);
      report("| %s %s forward | %d x %d x %d | %.3f | %.1f |\n", bf16 ? "bf16 tensor-core" : "fp32 reference", s.name, N, s.O, s.I,
             sec * 1e3, 2.0 * N * s.O * s.I / sec / 1e12);
      if (bf16 && s.O == 2 * F) {
        Block dx((size_t)N * s.I, be->memory()), dw((size_t)s.O * s.I, be->memory());
        const double sb = seconds_of([&] { be->linear_backward(dx.data, false, dw.data, y.data, x.data, w.data, N, s.I, s.O); }, 5);
        report("| bf16 tensor-core %s backward (dinp + dw) | 2 x %d x %d x %d | %.3f | %.1f |\n", s.name, N, s.O, s.I, sb * 1e3,
               4.0 * N * s.O * s.I / sb / 1e12);
      }
    }
  }
  // threshold decoding of a randomly initialised LLaDA-8B-shaped model (weights drawn on the device)
  const ModelConfig cfg = llada8b();
  Model model(cfg, make_cuda_backend(0, true));
  for (const auto& t : model.tensors())
    if (t.shape.size() == 1)
      cuda::fill_constant(model.params()->data + t.offset, t.numel, 1.f);
    else
      cuda::fill_normal(model.params()->data + t.offset, t.numel, 0.02f, t.offset);
  report("\n## Threshold decoding (0.9) of a random LLaDA-8B-shaped model (%zu parameters, fp32 weights, bf16 GEMMs)\n\n"
         "| batch | prompt + generated (block) | cache | NFE | ms / NFE | tokens/s |\n|---|---|---|---|---|---|\n", model.params()->size);
  for (const auto cache : {CacheMode::None, CacheMode::Dual}) {
    std::vector<std::vector<int32_t>> prompts(1, std::vector<int32_t>(64));
    for (int i = 0; i < 64; i++) prompts[0][i] = 1000 + i;
    SamplerOptions o;
    o.gen_length = gen, o.block_length = 32, o.strategy = Strategy::Threshold, o.cache = cache;
    o.threshold.assign(1, 0.9f);
    o.max_nfe.assign(1, 0);
    Decoder d(cfg, prompts, o);
    d.step(model);  // warm-up: allocations, the first forward
    const auto t0 = std::chrono::steady_clock::now();
    int steps = 1;
    while (!d.step(model)) steps++;
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    report("| 1 | 64 + %d (32) | %s | %d | %.2f | %.1f |\n", gen, cache == CacheMode::Dual ? "dual" : "none", d.nfe()[0],
           sec * 1e3 / steps, gen / sec * steps / d.nfe()[0]);
  }
}
#endif

}  // namespace
}  // namespace diffpo

int main(int argc, char** argv) {
  using namespace diffpo;
  std::string out;
  bool skip_timing = false;
  int gen = 256;
  for (int i = 1; i < argc; i++) {
    if (!std::strcmp(argv[i], "--self-test")) g_self_test = true;
    else if (!std::strcmp(argv[i], "--skip-timing")) skip_timing = true;
    else if (!std::strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
    else if (!std::strcmp(argv[i], "--gen") && i + 1 < argc) gen = std::atoi(argv[++i]);
  }
  try {
#ifdef DIFFPO_CUDA
    if (!g_self_test) {
      const CudaInfo info = cuda_info();
      if (info.devices == 0) throw Error("ERR_NO_CUDA", "no CUDA device: " + info.reason);
      report("# diffpo CUDA backend check on %s\n", info.name.c_str());
    }
#else
    if (!g_self_test) throw Error("ERR_NO_CUDA", "built without CUDA: only --self-test is available");
#endif
    if (g_self_test) report("# diffpo harness self-test: the reference loops stand in for the GPU\n");
    guarded("ops", op_parity);
    guarded("whole model", model_parity);
    guarded("decoding", decode_parity);
#ifdef DIFFPO_CUDA
    if (!g_self_test && !skip_timing) guarded("timing", [&] { timing(gen); });
#endif
  } catch (const std::exception& e) {
    report("\nerror: %s\n", e.what());
    g_failures++;
  }
  (void)skip_timing;
  (void)gen;
  report("\n%s: %d check(s) failed\n", g_failures ? "FAILED" : "PASSED", g_failures);
  if (!out.empty())
    if (FILE* f = std::fopen(out.c_str(), "w")) std::fputs(g_report.c_str(), f), std::fclose(f);
  return g_failures ? 1 : 0;
}
