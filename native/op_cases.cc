#include "op_cases.h"

#include <cmath>
#include <memory>

namespace diffpo {

void Ref64::decode_score(int32_t* x0, double* conf, double* logp, double* entropy, const double* logits, const NoiseRow* noise,
                         uint64_t seed, int S, int E, int V, int mask_id, double temperature) {
  for (int s = 0; s < S; s++) {
    const double* l = logits + (size_t)s * E;
    int32_t best = -1;
    for (int v = 0; v < V; v++) {
      if (v == mask_id) continue;
      const auto score = [&](int i) { return temperature > 0 ? l[i] / temperature + gumbel_noise(seed, noise[s], (uint32_t)i) : l[i]; };
      if (best < 0 || score(v) > score(best)) best = v;
    }
    double z = 0, zt = 0, h = 0;
    for (int e = 0; e < E; e++) z += std::exp(l[e]), zt += temperature > 0 ? std::exp(l[e] / temperature) : 0;
    for (int e = 0; e < E; e++) h -= std::exp(l[e]) / z * (l[e] - std::log(z));
    x0[s] = best;
    conf[s] = std::exp(l[best]) / z;
    logp[s] = temperature > 0 ? l[best] / temperature - std::log(zt) : l[best] - std::log(z);
    entropy[s] = h;
  }
}

std::vector<double> fill(const ArraySpec& spec, std::mt19937_64& rng) {
  if (!spec.values.empty()) return spec.values;
  std::vector<double> v(spec.n, 0.0);
  std::normal_distribution<double> normal(0.0, spec.scale > 0 ? spec.scale : 1.0);
  if (spec.scale > 0)
    for (auto& x : v) x = normal(rng);
  return v;
}

namespace {

// cos/sin tables (P positions, hd/2 frequencies) as RoPE uses them
std::pair<std::vector<double>, std::vector<double>> rope_tables(int P, int hd) {
  std::vector<double> c((size_t)P * hd / 2), s(c.size());
  for (int t = 0; t < P; t++)
    for (int j = 0; j < hd / 2; j++) {
      const double a = t * std::pow(10000.0, -2.0 * j / hd);
      c[(size_t)t * hd / 2 + j] = std::cos(a), s[(size_t)t * hd / 2 + j] = std::sin(a);
    }
  return {c, s};
}

template <typename V>
std::shared_ptr<const V> shared(V v) {
  return std::make_shared<const V>(std::move(v));
}

// The scalar type of a body's arrays (float on backends, double on Ref64).
template <typename A>
using Scalar = std::remove_pointer_t<typename A::value_type>;

OpCase embedding(int N, int D, int E) {
  std::vector<int32_t> v(N);
  for (int n = 0; n < N; n++) v[n] = (n * 7) % E;  // repeated ids: the backward's scatter adds
  auto ids = shared(v);
  const double sc = 1.7;
  OpCase c("embedding repeated ids", {"embedding_forward", "embedding_backward"},
           {{"wte", (size_t)E * D}, {"out", (size_t)N * D, 0}, {"dout", (size_t)N * D}, {"dwte", (size_t)E * D, 0}});
  c.forward = body([=](auto& ops, auto& a) { ops.embedding_forward(a[1], ids->data(), a[0], N, D, sc); });
  c.backward = body([=](auto& ops, auto& a) { ops.embedding_backward(a[3], a[2], ids->data(), N, D, sc); });
  c.outputs = {1, 3}, c.out = 1, c.dout = 2, c.grads = {{0, 3}};
  c.tolerance = 1e-6;
  return c;
}

// frozen: a weight without gradient (dw null), as LoRA's base has
OpCase rmsnorm(int N, int D, bool frozen) {
  OpCase c(frozen ? "rmsnorm frozen weight" : "rmsnorm", {"rmsnorm_forward", "rmsnorm_backward"},
           {{"inp", (size_t)N * D}, {"weight", (size_t)D}, {"out", (size_t)N * D, 0}, {"rstd", (size_t)N, 0},
            {"dout", (size_t)N * D}, {"dinp", (size_t)N * D, 0}, {"dweight", (size_t)D, 0}});
  c.forward = body([=](auto& ops, auto& a) { ops.rmsnorm_forward(a[2], a[3], a[0], a[1], N, D, 1e-5); });
  c.backward = body([=](auto& ops, auto& a) { ops.rmsnorm_backward(a[5], frozen ? nullptr : a[6], a[4], a[0], a[1], a[3], N, D); });
  c.outputs = {2, 3, 5, 6}, c.out = 2, c.dout = 4, c.grads = {{0, 5}, {1, 6}};
  if (frozen) c.grads = {{0, 5}};  // dweight stays 0 on every implementation
  return c;
}

// out (+)= inp w^T; with `accumulate`, the forward adds to out and the backward to dinp; frozen: no
// weight gradient (dw null)
OpCase linear(int N, int I, int O, bool accumulate, bool fd, bool frozen = false) {
  OpCase c(std::string("linear ") + std::to_string(N) + "x" + std::to_string(I) + "x" + std::to_string(O) + (accumulate ? " accumulating" : "") + (frozen ? " frozen weight" : ""),
           {"linear_forward", "linear_backward"},
           {{"inp", (size_t)N * I}, {"weight", (size_t)O * I, 0.1}, {"out", (size_t)N * O, accumulate ? 1.0 : 0.0}, {"dout", (size_t)N * O},
            {"dinp", (size_t)N * I, accumulate ? 1.0 : 0.0}, {"dweight", (size_t)O * I, 0}});
  c.forward = body([=](auto& ops, auto& a) { ops.linear_forward(a[2], a[0], a[1], N, I, O, accumulate); });
  c.backward = body([=](auto& ops, auto& a) { ops.linear_backward(a[4], accumulate, frozen ? nullptr : a[5], a[3], a[0], a[1], N, I, O); });
  c.outputs = {2, 4, 5}, c.out = 2, c.dout = 3, c.grads = {{0, 4}, {1, 5}};
  if (frozen) c.grads = {{0, 4}};
  c.finite_differences = fd;
  c.tolerance_bf16 = 3e-2;
  return c;
}

// An array's values rounded to BF16 bits (the same bits from a float backend's copy and Ref64's).
template <typename T>
std::vector<uint16_t> bf16_bits(const T* x, size_t n) {
  std::vector<uint16_t> h(n);
  for (size_t i = 0; i < n; i++) h[i] = f32_to_bf16((float)x[i]);
  return h;
}

// BF16-resident weights: out (+)= inp widen(w)^T, and the input gradient through the frozen weight
// (LoRA on a BF16 base); out = widen(wte[ids]) * scale
OpCase linear_bf16(int N, int I, int O, bool accumulate) {
  OpCase c(std::string("linear_bf16 ") + std::to_string(N) + "x" + std::to_string(I) + "x" + std::to_string(O) + (accumulate ? " accumulating" : ""),
           {"linear_forward_bf16", "linear_backward_bf16"},
           {{"inp", (size_t)N * I}, {"weight", (size_t)O * I, 0.1}, {"out", (size_t)N * O, accumulate ? 1.0 : 0.0}, {"dout", (size_t)N * O},
            {"dinp", (size_t)N * I, accumulate ? 1.0 : 0.0}});
  c.forward = body([=](auto& ops, auto& a) {
    const auto w = bf16_bits(a[1], (size_t)O * I);
    ops.linear_forward_bf16(a[2], a[0], w.data(), N, I, O, accumulate);
  });
  c.backward = body([=](auto& ops, auto& a) {
    const auto w = bf16_bits(a[1], (size_t)O * I);
    ops.linear_backward_bf16(a[4], accumulate, a[3], w.data(), N, I, O);
  });
  c.outputs = {2, 4}, c.out = 2, c.dout = 3, c.grads = {{0, 4}};
  c.tolerance_bf16 = 3e-2;
  return c;
}

OpCase embedding_bf16(int N, int D, int E) {
  std::vector<int32_t> v(N);
  for (int n = 0; n < N; n++) v[n] = (n * 5) % E;
  auto ids = shared(v);
  OpCase c("embedding_bf16", {"embedding_forward_bf16"}, {{"wte", (size_t)E * D}, {"out", (size_t)N * D, 0}});
  c.forward = body([=](auto& ops, auto& a) {
    const auto w = bf16_bits(a[0], (size_t)E * D);
    ops.embedding_forward_bf16(a[1], ids->data(), w.data(), N, D, 1.5);
  });
  c.outputs = {1}, c.out = 1;
  c.tolerance = 1e-7;
  return c;
}

// token rows wider than the heads (as in the fused q|k|v buffer): the other columns pass through; the
// second sequence's positions are shifted, as a left-padded prompt's
OpCase rope(int B, int T, int nh, int hd) {
  const long ld = nh * hd + 5;
  const size_t n = (size_t)B * T * ld;
  std::vector<int32_t> p(B * T);
  for (int t = 0; t < T; t++) p[t] = t, p[T + t] = std::max(0, t - 3);
  auto pos = shared(p);
  auto [cs, sn] = rope_tables(T, hd);
  OpCase c("rope shifted positions", {"copy", "rope_forward", "rope_backward"},
           {{"x", n}, {"cos", cs.size(), 1, cs}, {"sin", sn.size(), 1, sn}, {"out", n, 0}, {"dout", n}, {"dx", n, 0}});
  c.forward = body([=](auto& ops, auto& a) {
    ops.copy(a[3], a[0], (long)n);
    ops.rope_forward(a[3], a[1], a[2], pos->data(), B, T, nh, hd, ld);
  });
  c.backward = body([=](auto& ops, auto& a) {
    ops.copy(a[5], a[4], (long)n);
    ops.rope_backward(a[5], a[1], a[2], pos->data(), B, T, nh, hd, ld);
  });
  c.outputs = {3, 5}, c.out = 3, c.dout = 4, c.grads = {{0, 5}};
  c.tolerance = 1e-6;
  return c;
}

// GQA over a fused q|k|v buffer (rows QKV wide) with left padding in the second sequence
OpCase attention(int B, int T, int H, int KV, int hd, int pad, bool fd) {
  const int D = H * hd, KVd = KV * hd, QKV = D + 2 * KVd;
  std::vector<uint8_t> m((size_t)B * T, 1);
  for (int t = 0; t < pad; t++) m[(size_t)(B - 1) * T + t] = 0;
  auto mask = shared(m);
  const AttnShape s{B, T, H, KV, hd, QKV, QKV};
  // the backward's state: the CPU keeps probabilities, a flash-style kernel log-sum-exps
  const size_t state = (size_t)B * H * T * T + (size_t)B * H * T + (size_t)B * T;
  OpCase c("attention GQA hd " + std::to_string(hd) + " T " + std::to_string(T) + ", key padding", {"attention_forward", "attention_backward"},
           {{"qkv", (size_t)B * T * QKV}, {"out", (size_t)B * T * D, 0}, {"state", state, 0}, {"dout", (size_t)B * T * D},
            {"dqkv", (size_t)B * T * QKV, 0}});
  c.forward = body([=](auto& ops, auto& a) { ops.attention_forward(a[1], a[2], a[0], a[0] + D, a[0] + D + KVd, mask->data(), s); });
  c.backward = body([=](auto& ops, auto& a) {
    ops.attention_backward(a[4], a[4] + D, a[4] + D + KVd, a[3], a[1], a[2], a[0], a[0] + D, a[0] + D + KVd, s);
  });
  c.outputs = {1, 4}, c.out = 1, c.dout = 3, c.grads = {{0, 4}};
  c.finite_differences = fd;
  c.tolerance = 2e-5;
  return c;
}

OpCase swiglu(int N, int F) {
  OpCase c("swiglu", {"swiglu_forward", "swiglu_backward"},
           {{"ab", (size_t)N * 2 * F, 3.0}, {"out", (size_t)N * F, 0}, {"dout", (size_t)N * F}, {"dab", (size_t)N * 2 * F, 0}});
  c.forward = body([=](auto& ops, auto& a) { ops.swiglu_forward(a[1], a[0], N, F); });
  c.backward = body([=](auto& ops, auto& a) { ops.swiglu_backward(a[3], a[2], a[0], N, F); });
  c.outputs = {1, 3}, c.out = 1, c.dout = 2, c.grads = {{0, 3}};
  return c;
}

// rows repeat (a position scored twice) and the logits are scaled, as with scale_logits
OpCase lmhead(int N, int S, int D, int E, bool fd, bool frozen = false) {
  std::vector<int32_t> r(S), t(S);
  for (int s = 0; s < S; s++) r[s] = (s * 3) % N, t[s] = (s * 37 + 1) % E;
  auto rows = shared(r), targets = shared(t);
  const double sc = 0.7;
  OpCase c("lmhead logprob E " + std::to_string(E) + (frozen ? " frozen weight" : ""), {"lmhead_logprob_forward", "lmhead_logprob_backward"},
           {{"h", (size_t)N * D}, {"weight", (size_t)E * D, fd ? 1.0 : 0.2}, {"logp", (size_t)S, 0}, {"lse", (size_t)S, 0}, {"dlogp", (size_t)S},
            {"dh", (size_t)N * D, 0}, {"dweight", (size_t)E * D, 0}});
  c.forward = body([=](auto& ops, auto& a) { ops.lmhead_logprob_forward(a[2], a[3], a[0], a[1], rows->data(), targets->data(), S, D, E, sc); });
  c.backward = body([=](auto& ops, auto& a) {
    ops.lmhead_logprob_backward(a[5], frozen ? nullptr : a[6], a[4], a[3], a[0], a[1], rows->data(), targets->data(), S, D, E, sc);
  });
  c.outputs = {2, 3, 5, 6}, c.out = 2, c.dout = 4, c.grads = {{0, 5}, {1, 6}};
  if (frozen) c.grads = {{0, 5}};
  c.finite_differences = fd;
  c.tolerance_bf16 = 3e-2;
  return c;
}

// a BF16-resident head, frozen: logp and the gradient of h through it
OpCase lmhead_bf16(int N, int S, int D, int E) {
  std::vector<int32_t> r(S), t(S);
  for (int s = 0; s < S; s++) r[s] = (s * 5) % N, t[s] = (s * 31 + 2) % E;
  auto rows = shared(r), targets = shared(t);
  OpCase c("lmhead logprob bf16 E " + std::to_string(E), {"lmhead_logprob_forward_bf16", "lmhead_logprob_backward_bf16"},
           {{"h", (size_t)N * D}, {"weight", (size_t)E * D}, {"logp", (size_t)S, 0}, {"lse", (size_t)S, 0}, {"dlogp", (size_t)S},
            {"dh", (size_t)N * D, 0}});
  c.forward = body([=](auto& ops, auto& a) {
    const auto w = bf16_bits(a[1], (size_t)E * D);
    ops.lmhead_logprob_forward_bf16(a[2], a[3], a[0], w.data(), rows->data(), targets->data(), S, D, E, 0.9);
  });
  c.backward = body([=](auto& ops, auto& a) {
    const auto w = bf16_bits(a[1], (size_t)E * D);
    ops.lmhead_logprob_backward_bf16(a[5], a[4], a[3], a[0], w.data(), rows->data(), targets->data(), S, D, E, 0.9);
  });
  c.outputs = {2, 3, 5}, c.out = 2, c.dout = 4, c.grads = {{0, 5}};
  c.tolerance_bf16 = 3e-2;
  return c;
}

OpCase scale_and_norm(long n) {
  OpCase c("scale, sum_squares", {"scale", "sum_squares"}, {{"x", (size_t)n}, {"sum of squares", 1, 0}});
  c.forward = body([=](auto& ops, auto& a) {
    ops.scale(a[0], n, 0.5);
    a[1][0] = ops.sum_squares(a[0], n);
  });
  c.outputs = {0, 1};
  c.tolerance = 1e-6;
  return c;
}

// three steps of AdamW with gradient scaling and weight decay; v starts positive, as after a step
OpCase adamw(long n) {
  OpCase c("adamw", {"adamw_update"}, {{"p", (size_t)n}, {"g", (size_t)n}, {"m", (size_t)n, 0.1}, {"v", (size_t)n, 1, std::vector<double>(n, 0.01)}});
  c.forward = body([=](auto& ops, auto& a) {
    for (int t = 1; t <= 3; t++) ops.adamw_update(a[0], a[1], a[2], a[3], n, AdamWStep{1e-2f, 0.9f, 0.99f, 1e-8f, 0.1f, 0.5f, t});
  });
  c.outputs = {0, 2, 3};
  c.tolerance = 1e-6;
  return c;
}

// a row gather, a row scatter, a zero fill
OpCase rows(int R, int n) {
  std::vector<int32_t> d(R), s(R);
  for (int i = 0; i < R; i++) d[i] = (i * 5) % 17, s[i] = 16 - i;
  auto dst_rows = shared(d), src_rows = shared(s);
  OpCase c("copy_rows gather/scatter, zero", {"copy_rows", "zero"},
           {{"src", 17 * 50}, {"gathered", (size_t)R * n, 0}, {"scattered", 17 * 60, 0}, {"zeroed", 100}});
  c.forward = body([=](auto& ops, auto& a) {
    ops.copy_rows(a[1], n, nullptr, a[0], 50, src_rows->data(), R, n, false);
    ops.copy_rows(a[2], 60, dst_rows->data(), a[1], n, nullptr, R, n, false);
    ops.zero(a[3], 100);
  });
  c.outputs = {1, 2, 3};
  c.tolerance = 0;
  return c;
}

// rows added into columns [7, 7+n) of wider rows (a LoRA branch into its part of a fused projection)
OpCase rows_accumulate(int R, int n) {
  OpCase c("copy_rows accumulate into columns", {"copy_rows"}, {{"src", (size_t)R * n}, {"dst", (size_t)R * 70}});
  c.forward = body([=](auto& ops, auto& a) { ops.copy_rows(a[1] + 7, 70, nullptr, a[0], n, nullptr, R, n, true); });
  c.outputs = {1};
  c.tolerance = 1e-7;
  return c;
}

// inverted dropout keyed by (seed; stream, step, row, column): a fresh mask, and the same mask added
// into an output (the backward's use); another step's mask differs
OpCase dropout(int N, int C, double p) {
  OpCase c("dropout p " + std::to_string(p).substr(0, 4), {"dropout"},
           {{"x", (size_t)N * C}, {"y", (size_t)N * C, 0}, {"dx", (size_t)N * C}, {"other step", (size_t)N * C, 0}});
  c.forward = body([=](auto& ops, auto& a) {
    const uint64_t seed = 0xC0FFEE12345ull;
    ops.dropout(a[1], a[0], N, C, p, seed, 9, 4, false);
    ops.dropout(a[2], a[0], N, C, p, seed, 9, 4, true);
    ops.dropout(a[3], a[0], N, C, p, seed, 9, 5, false);
  });
  c.outputs = {1, 2, 3};
  c.tolerance = 1e-6;
  return c;
}

// the sampler's scores: argmax (Gumbel-max at T > 0) over the vocabulary but the mask id, and the
// confidence, log-probability and entropy of each row; tokens out as numbers
OpCase decode_score(double temperature) {
  const int S = 21, E = 300, V = 290, mask_id = 289;
  std::vector<NoiseRow> rows(S);
  for (int s = 0; s < S; s++) rows[s] = {(uint32_t)(s % 4), (uint32_t)(s / 4), (uint32_t)(3 * s)};
  auto noise = shared(rows);
  const uint64_t seed = 0x123456789ull;
  OpCase c("decode_score T " + std::to_string(temperature).substr(0, 3), {"decode_score"},
           {{"logits", (size_t)S * E, 3.0}, {"tokens", (size_t)S, 0}, {"conf", (size_t)S, 0}, {"logp", (size_t)S, 0}, {"entropy", (size_t)S, 0}});
  c.forward = body([=](auto& ops, auto& a) {
    using T = Scalar<std::decay_t<decltype(a)>>;
    std::vector<int32_t> x0(S);
    std::vector<T> conf(S), logp(S), ent(S);  // small outputs: host memory on any backend
    ops.decode_score(x0.data(), conf.data(), logp.data(), ent.data(), a[0], noise->data(), seed, S, E, V, mask_id, temperature);
    for (int s = 0; s < S; s++) a[1][s] = (T)x0[s], a[2][s] = conf[s], a[3][s] = logp[s], a[4][s] = ent[s];
  });
  c.outputs = {1, 2, 3, 4};
  c.tolerance = 1e-6;
  return c;
}

}  // namespace

std::vector<OpCase> op_cases() {
  return {
      embedding(37, 48, 20),
      rmsnorm(33, 200, false),
      rmsnorm(33, 200, true),
      // odd sizes exercise the micro-kernels' edge tiles; I > 256 crosses a K block
      linear(13, 300, 35, false, true),
      linear(77, 129, 300, true, false),
      linear(13, 300, 35, true, true, true),
      linear_bf16(13, 300, 35, false),
      linear_bf16(7, 129, 300, true),
      embedding_bf16(21, 40, 9),
      rope(2, 19, 3, 16),
      attention(2, 6, 4, 2, 8, 2, true),
      attention(2, 45, 4, 2, 32, 6, false),
      attention(2, 45, 4, 2, 128, 6, false),
      swiglu(29, 71),
      lmhead(6, 5, 12, 11, true),
      lmhead(25, 30, 64, 1000, false),
      lmhead(6, 5, 12, 11, true, true),
      lmhead_bf16(7, 6, 12, 13),
      scale_and_norm(100003),
      adamw(100003),
      rows(13, 40),
      rows_accumulate(13, 40),
      dropout(37, 50, 0.05),
      dropout(9, 300, 0.5),
      decode_score(0.0),
      decode_score(0.7),
  };
}

}  // namespace diffpo
