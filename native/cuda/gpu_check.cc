// The CUDA backend's harness, without Node.js: every case of the op table (native/op_cases.h) against the
// CPU backend by normalised max error (forward and backward, bf16 and fp32 GEMMs), a whole-model
// forward/backward, the decoding step and a decoding run, then a timing table at LLaDA-8B's shapes. `gpu_check --self-test` runs the same parity
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
#include "../op_cases.h"
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

// the error measure of every check: normalised max error, as the op case table's
double nerr(const Vec& got, const Vec& want) { return normalised_error(got, want, want.size()); }

void expect(const std::string& what, double err, double tol) {
  const bool ok = err <= tol && std::isfinite(err);
  if (!ok) g_failures++;
  report("| %s | %.2e | %.0e | %s |\n", what.c_str(), err, tol, ok ? "ok" : "FAIL");
}

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

// Every case of the op table (native/op_cases.h) on the device backend against the CPU backend, with
// bf16 and with fp32 GEMMs where the case has a GEMM: each output array by normalised max error.
void op_parity() {
  report("\n## Ops: the op case table, device vs CPU backend (normalised max error)\n\n| case [output] | error | tolerance | |\n|---|---|---|---|\n");
  for (const OpCase& c : op_cases()) {
    for (const bool bf16 : {false, true}) {
      if (bf16 && c.tolerance_bf16 == 0) continue;
      const std::string name = c.name + (c.tolerance_bf16 > 0 ? (bf16 ? " (bf16 GEMMs)" : " (fp32 GEMMs)") : "");
      guarded(name, [&] {
        std::mt19937_64 rng(1);
        CpuBackend cpu(2);
        auto dev = make_device(bf16);
        std::vector<Vec> host;
        for (const auto& spec : c.arrays) {
          const std::vector<double> v = fill(spec, rng);
          host.emplace_back(v.begin(), v.end());
        }
        std::vector<DevArray> device;
        for (const auto& h : host) device.emplace_back(*dev, h);
        Arrays<float> hp, dp;
        for (auto& h : host) hp.push_back(h.data());
        for (auto& d : device) dp.push_back(d.data());
        c.forward.f32(cpu, hp);
        c.forward.f32(*dev, dp);
        if (c.backward) {
          c.backward.f32(cpu, hp);
          c.backward.f32(*dev, dp);
        }
        for (int o : c.outputs)
          expect(name + " [" + c.arrays[o].name + "]", normalised_error(device[o].host(host[o].size()), host[o], host[o].size()),
                 bf16 ? c.tolerance_bf16 : c.tolerance);
      });
    }
  }
}

ModelConfig small_config() {
  ModelConfig c;
  c.d_model = 256, c.n_heads = 8, c.n_kv_heads = 4, c.n_layers = 2, c.mlp_hidden_size = 512;
  c.vocab_size = 500, c.embedding_size = 512, c.mask_token_id = 499;
  return c;
}

// Two sequences (the second left-padded by 5) with every third position scored, weighted.
struct ScoredBatch {
  int B = 2, T = 48, S = 0;
  std::vector<int32_t> ids, pos, rows, targets;
  std::vector<uint8_t> mask;
  Vec weights;
  explicit ScoredBatch(const ModelConfig& cfg) : ids(B * T), pos(B * T), mask(B * T, 1) {
    std::mt19937_64 rng(7);
    for (int i = 0; i < B * T; i++) ids[i] = (int)(rng() % cfg.vocab_size);
    for (int t = 0; t < 5; t++) mask[T + t] = 0;
    for (int b = 0; b < B; b++)
      for (int t = 0; t < T; t++) pos[b * T + t] = std::max(0, t - (b ? 5 : 0));
    for (int i = 0; i < B * T; i += 3) rows.push_back(i), targets.push_back((int)(rng() % cfg.vocab_size)), weights.push_back(0.5f + (i % 7) * 0.1f);
    S = (int)rows.size();
  }
  double loss(Model& m, float* logp, bool backward) const {
    return m.logprob_loss(ids.data(), mask.data(), pos.data(), B, T, rows.data(), targets.data(), weights.data(), S, logp, backward);
  }
};

void model_parity() {
  report("\n## Whole model: logprob loss, forward and backward, device vs CPU\n\n| check | error | tolerance | |\n|---|---|---|---|\n");
  const ModelConfig cfg = small_config();
  const ScoredBatch batch(cfg);
  const auto& [B, T, S, ids, pos, rows, targets, mask, weights] = batch;
  for (const bool bf16 : {false, true}) {
    Model cpu(cfg, std::unique_ptr<Backend>(new CpuBackend(2)));
    Model dev(cfg, make_device(bf16));
    cpu.init_random(3, 0.05f);
    std::memcpy(dev.params()->data, cpu.params()->data, sizeof(float) * cpu.params()->size);
    Vec lp_cpu(S), lp_dev(S);
    const double loss_cpu = batch.loss(cpu, lp_cpu.data(), true), loss_dev = batch.loss(dev, lp_dev.data(), true);
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
    // max-norm: one parameter whose tiny gradient flips sign moves by 2 lr, hence the gradients' tolerance
    expect("grad norm + AdamW step" + tag, std::abs(n_dev - n_cpu) / n_cpu + nerr(Vec(dev.params()->data, dev.params()->data + P), Vec(cpu.params()->data, cpu.params()->data + P)), tol * 3);
  }
}

// LoRA (all seven targets, dropout 0.1) on a BF16-resident base: the training loss, log-probs, the
// adapters' gradients (through the same Philox dropout masks on both) and an AdamW step, then the
// base's scores with the adapters off (the RL reference), device vs CPU
void lora_parity() {
  report("\n## LoRA: rank 8, dropout 0.1, BF16-resident base, device vs CPU\n\n| check | error | tolerance | |\n|---|---|---|---|\n");
  const ModelConfig cfg = small_config();
  const ScoredBatch batch(cfg);
  const LoraSpec spec{8, 16.0, (1u << kLoraTargets) - 1, 0.1};
  for (const bool bf16 : {false, true}) {
    Model cpu(cfg, std::unique_ptr<Backend>(new CpuBackend(2)), DType::BF16);
    Model dev(cfg, make_device(bf16), DType::BF16);
    for (Model* m : {&cpu, &dev}) {
      m->init_random(3, 0.05f);
      m->add_lora(spec, 5);
      for (const auto& t : m->lora()->tensors())  // B off zero, so that every adapter acts
        if (t.name.find("lora_B") != std::string::npos)
          for (size_t i = 0; i < t.numel; i++) m->lora()->params()->data[t.offset + i] = 0.02f * std::sin(0.7f * (float)i + (float)t.offset);
    }
    Vec lp_cpu(batch.S), lp_dev(batch.S);
    const double loss_cpu = batch.loss(cpu, lp_cpu.data(), true), loss_dev = batch.loss(dev, lp_dev.data(), true);
    const double tol = bf16 ? 3e-2 : 1e-4;
    const std::string tag = bf16 ? " (bf16 GEMMs)" : " (fp32 GEMMs)";
    expect("loss" + tag, std::abs(loss_dev - loss_cpu) / std::abs(loss_cpu), tol);
    expect("log-probs" + tag, nerr(lp_dev, lp_cpu), tol);
    const size_t P = cpu.lora()->params()->size;
    const float *g_dev = dev.grads()->data, *g_cpu = cpu.grads()->data;
    expect("adapter gradients" + tag, nerr(Vec(g_dev, g_dev + P), Vec(g_cpu, g_cpu + P)), tol * 3);
    // eps 1e-6: at 1e-8 an adapter gradient of that size, zero within the backends' rounding, would move
    // its parameter by half a step on one backend and not on the other (Adam's first step is lr g / (|g| + eps))
    const AdamWStep st{1e-3f, 0.9f, 0.99f, 1e-6f, 0.1f, 1.f, 1};
    BlockPtr m_cpu = cpu.new_moment(), v_cpu = cpu.new_moment(), m_dev = dev.new_moment(), v_dev = dev.new_moment();
    const double n_cpu = cpu.adamw_step(st, 1.f, *m_cpu, *v_cpu), n_dev = dev.adamw_step(st, 1.f, *m_dev, *v_dev);
    const float *p_dev = dev.lora()->params()->data, *p_cpu = cpu.lora()->params()->data;
    expect("grad norm + AdamW step on the adapters" + tag, std::abs(n_dev - n_cpu) / n_cpu + nerr(Vec(p_dev, p_dev + P), Vec(p_cpu, p_cpu + P)), tol * 3);
    cpu.use_adapters = dev.use_adapters = false;
    batch.loss(cpu, lp_cpu.data(), false), batch.loss(dev, lp_dev.data(), false);
    expect("log-probs with the adapters off" + tag, nerr(lp_dev, lp_cpu), tol);
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
  report("\n## Timing (LLaDA-8B shapes: D 4096, F 12288, 4096 tokens per GEMM; each bf16 result checked against the fp32 kernel's)\n\n"
         "| kernel | shape (M x N x K) | ms | TFLOP/s | error vs fp32 |\n|---|---|---|---|---|\n");
  const int N = 4096, D = 4096, F = 12288;
  struct Shape {
    const char* name;
    int I, O;
  } shapes[] = {{"q|k|v projection", D, 3 * D}, {"attn_out", D, D}, {"ff_proj|up_proj", D, 2 * F}, {"ff_out", F, D}};
  auto fast = make_cuda_backend(0, true), ref = make_cuda_backend(0, false);
  auto row = [&](const std::string& what, const char* shape, double sec, double flop, double err) {
    const bool ok = err <= 3e-2 && std::isfinite(err);
    if (!ok) g_failures++;
    report("| %s | %s | %.3f | %.1f | %.1e%s |\n", what.c_str(), shape, sec * 1e3, flop / sec / 1e12, err, ok ? "" : " FAIL");
  };
  for (const auto& s : shapes) {
    Block x((size_t)N * s.I, fast->memory()), w((size_t)s.O * s.I, fast->memory()), y((size_t)N * s.O, fast->memory()),
        y_ref((size_t)N * s.O, fast->memory());
    cuda::fill_normal(x.data, x.size, 1.f, 1);
    cuda::fill_normal(w.data, w.size, 0.02f, 2);
    char shape[64];
    std::snprintf(shape, sizeof shape, "%d x %d x %d", N, s.O, s.I);
    const double t_ref = seconds_of([&] { ref->linear_forward(y_ref.data, x.data, w.data, N, s.I, s.O, false); }, 2);
    const double t = seconds_of([&] { fast->linear_forward(y.data, x.data, w.data, N, s.I, s.O, false); }, 10);
    const double err = nerr(Vec(y.data, y.data + y.size), Vec(y_ref.data, y_ref.data + y.size));
    row(std::string("bf16 tensor-core ") + s.name + " forward", shape, t, 2.0 * N * s.O * s.I, err);
    report("| fp32 reference %s forward | %s | %.3f | %.1f | |\n", s.name, shape, t_ref * 1e3, 2.0 * N * s.O * s.I / t_ref / 1e12);
    if (s.O == 2 * F) {  // the backward of the widest layer: dinp and dw
      Block dx((size_t)N * s.I, fast->memory()), dw((size_t)s.O * s.I, fast->memory()), dx_ref(dx.size, fast->memory()),
          dw_ref(dw.size, fast->memory());
      ref->linear_backward(dx_ref.data, false, dw_ref.data, y.data, x.data, w.data, N, s.I, s.O);
      const double tb = seconds_of([&] { fast->linear_backward(dx.data, false, dw.data, y.data, x.data, w.data, N, s.I, s.O); }, 5);
      // dw accumulates: 6 calls (warm-up + 5) of the same product against one
      fast->zero(dw.data, (long)dw.size);
      fast->linear_backward(dx.data, false, dw.data, y.data, x.data, w.data, N, s.I, s.O);
      const double err_b = std::max(nerr(Vec(dx.data, dx.data + dx.size), Vec(dx_ref.data, dx_ref.data + dx.size)),
                                    nerr(Vec(dw.data, dw.data + dw.size), Vec(dw_ref.data, dw_ref.data + dw.size)));
      std::snprintf(shape, sizeof shape, "2 x %d x %d x %d", N, s.O, s.I);
      row(std::string("bf16 tensor-core ") + s.name + " backward (dinp + dw)", shape, tb, 4.0 * N * s.O * s.I, err_b);
    }
  }
  {  // one layer's attention at the decoding shape below (64 + 256 tokens, 32 heads of 128)
    auto be = make_cuda_backend(0, true);
    const int T = 320, H = 32, hd = 128;
    Block qkv((size_t)T * 3 * H * hd, be->memory()), out((size_t)T * H * hd, be->memory()),
        att(be->attention_state_floats(1, H, T, T), be->memory());
    cuda::fill_normal(qkv.data, qkv.size, 1.f, 3);
    AttnShape s{1, T, H, H, hd, 3L * H * hd, 3L * H * hd};
    const double sec = seconds_of([&] { be->attention_forward(out.data, att.data, qkv.data, qkv.data + H * hd, qkv.data + 2 * H * hd, nullptr, s); }, 10);
    report("| attention forward, one layer | B 1, T %d, %d heads of %d | %.3f | %.2f | |\n", T, H, hd, sec * 1e3, 4.0 * T * T * H * hd / sec / 1e12);
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
    guarded("LoRA", lora_parity);
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
