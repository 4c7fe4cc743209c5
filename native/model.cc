#include "model.h"

#include <cmath>
#include <random>

#include "common/dtype.h"
#include "common/errors.h"

namespace diffpo {

namespace {
constexpr int kLayerTensors = 9;

// Whether x holds no NaN or infinity: an integer OR over the exponent bits, which vectorises (the
// outputs are host memory on every backend).
bool all_finite(const float* x, size_t n) {
  const uint32_t* b = reinterpret_cast<const uint32_t*>(x);
  uint32_t bad = 0;
  for (size_t i = 0; i < n; i++) bad |= ((b[i] & 0x7f800000u) == 0x7f800000u);
  return bad == 0;
}
const char* kLayerNames[kLayerTensors] = {"attn_norm", "q_proj", "k_proj", "v_proj", "attn_out",
                                          "ff_norm",   "ff_proj", "up_proj", "ff_out"};
}  // namespace

void ModelConfig::validate() const {
  auto positive = [](int v, const char* key) { require_config(v > 0, key, "must be a positive integer, got " + std::to_string(v)); };
  positive(d_model, "d_model");
  positive(n_heads, "n_heads");
  positive(n_kv_heads, "n_kv_heads");
  positive(n_layers, "n_layers");
  positive(mlp_hidden_size, "mlp_hidden_size");
  positive(vocab_size, "vocab_size");
  positive(embedding_size, "embedding_size");
  require_config(d_model % n_heads == 0, "n_heads", "must divide d_model");
  require_config(n_heads % n_kv_heads == 0, "n_kv_heads", "must divide n_heads");
  require_config(head_dim() % 2 == 0, "n_heads", "must leave an even d_model / n_heads (RoPE)");
  require_config(embedding_size >= vocab_size, "embedding_size", "must be >= vocab_size");
  require_config(mask_token_id >= 0 && mask_token_id < vocab_size, "mask_token_id", "is out of range");
  require_config(rope_theta > 0 && std::isfinite(rope_theta), "rope_theta", "must be positive");
  require_config(rms_norm_eps > 0 && std::isfinite(rms_norm_eps), "rms_norm_eps", "must be positive");
}

struct Model::Acts {
  int B = 0, T = 0, S = 0;
  bool train = false;
  // per layer (train) or one shared set (inference)
  // qkv (N, D+2KVd) holds q | k | v per token and ab (N, 2F) holds ff_proj | up_proj: one GEMM each,
  // since q_proj, k_proj, v_proj (and ff_proj, up_proj) are adjacent in the parameter block.
  std::vector<float*> res, xmid, rstd1, h1, qkv, att, y, rstd2, h2, ab, g;
  // LoRA: u = (alpha/r) A x (N, r) per layer (or one shared set) and target, at [l * kLoraTargets + t];
  // lora_tmp (N, widest target) a target's output or output gradient, lora_du (N, r)
  std::vector<float*> lora_u;
  // lora_x (N, widest input) a target's dropped input (dropout in a training forward)
  float *lora_tmp = nullptr, *lora_du = nullptr, *lora_x = nullptr;
  float *rstdf, *hf, *lse, *dres, *dh, *dqkv, *dy, *dab, *dg, *dhf, *dlogp, *logits;
};

LayerWeights layer_view(const std::vector<TensorSpec>& t, float* base, int layer) {
  const size_t i = 1 + (size_t)layer * kLayerTensors;
  return {base + t[i].offset,     base + t[i + 1].offset, base + t[i + 4].offset,
          base + t[i + 5].offset, base + t[i + 6].offset, base + t[i + 8].offset};
}

std::vector<TensorSpec> Model::layout(const ModelConfig& cfg) {
  cfg.validate();
  const int64_t D = cfg.d_model, F = cfg.mlp_hidden_size, E = cfg.embedding_size;
  const int64_t KVd = (int64_t)cfg.n_kv_heads * cfg.head_dim();
  std::vector<TensorSpec> tensors;
  size_t offset = 0;
  auto add = [&](std::string name, std::vector<int64_t> shape) {
    size_t n = 1;
    for (auto s : shape) n *= (size_t)s;
    tensors.push_back({std::move(name), std::move(shape), offset, n});
    offset += n;  // no padding: q|k|v and ff_proj|up_proj must be adjacent (fused GEMMs)
  };
  add("model.transformer.wte.weight", {E, D});
  for (int l = 0; l < cfg.n_layers; l++) {
    const std::string p = "model.transformer.blocks." + std::to_string(l) + ".";
    const std::vector<int64_t> shapes[kLayerTensors] = {{D}, {D, D}, {KVd, D}, {KVd, D}, {D, D},
                                                        {D}, {F, D}, {F, D},   {D, F}};
    for (int j = 0; j < kLayerTensors; j++) add(p + kLayerNames[j] + ".weight", shapes[j]);
  }
  add("model.transformer.ln_f.weight", {D});
  if (!cfg.weight_tying) add("model.transformer.ff_out.weight", {E, D});
  return tensors;
}

Model::Model(const ModelConfig& cfg, std::unique_ptr<Backend> backend, DType weights)
    : cfg_(cfg), backend_(std::move(backend)), tensors_(layout(cfg)), arena_(backend_->memory()), wdtype_(weights),
      acts_(new Acts) {
  require(weights == DType::F32 || weights == DType::BF16, "ERR_INVALID_ARGUMENT", "weights must be F32 or BF16");
  const size_t elements = tensors_.back().offset + tensors_.back().numel;
  const size_t norm_index = 1 + (size_t)cfg_.n_layers * kLayerTensors;  // ln_f
  if (wdtype_ == DType::F32) {
    params_ = std::make_shared<Block>(elements, backend_->memory());
    wte_ = params_->data + tensors_[0].offset;
    for (int l = 0; l < cfg_.n_layers; l++) layers_.push_back(layer_view(tensors_, params_->data, l));
    ln_f_ = params_->data + tensors_[norm_index].offset;
    head_ = cfg_.weight_tying ? wte_ : params_->data + tensors_.back().offset;
    layers16_.assign(cfg_.n_layers, LayerWeights16{});
  } else {
    params_ = std::make_shared<Block>((elements + 1) / 2, backend_->memory());  // two BF16 elements a float
    const uint16_t* base = reinterpret_cast<const uint16_t*>(params_->data);
    norms_ = std::make_shared<Block>((size_t)(2 * cfg_.n_layers + 1) * cfg_.d_model, backend_->memory());
    wte16_ = base + tensors_[0].offset;
    head16_ = cfg_.weight_tying ? wte16_ : base + tensors_.back().offset;
    for (int l = 0; l < cfg_.n_layers; l++) {
      const size_t i = 1 + (size_t)l * kLayerTensors;
      float* n = norms_->data + (size_t)2 * l * cfg_.d_model;
      layers_.push_back({n, nullptr, nullptr, n + cfg_.d_model, nullptr, nullptr});
      layers16_.push_back({base + tensors_[i + 1].offset, base + tensors_[i + 4].offset, base + tensors_[i + 6].offset,
                           base + tensors_[i + 8].offset});
    }
    ln_f_ = norms_->data + (size_t)2 * cfg_.n_layers * cfg_.d_model;
  }
  // norms start at 1; matrices stay zero, their fresh pages untouched (a model created only to be
  // loaded costs no memory before the load)
  float* pf = params_->data;
  uint16_t* ph = reinterpret_cast<uint16_t*>(params_->data);
  for (const auto& t : tensors_)
    if (t.shape.size() == 1) {
      if (wdtype_ == DType::F32) std::fill(pf + t.offset, pf + t.offset + t.numel, 1.f);
      else std::fill(ph + t.offset, ph + t.offset + t.numel, f32_to_bf16(1.f));
    }
  params_changed();
}

void Model::params_changed() {
  if (wdtype_ != DType::BF16) return;
  const uint16_t* base = reinterpret_cast<const uint16_t*>(params_->data);
  float* n = norms_->data;
  for (const auto& t : tensors_)  // in layout order: attn_norm, ff_norm per layer, then ln_f
    if (t.shape.size() == 1)
      for (size_t i = 0; i < t.numel; i++) *n++ = bf16_to_f32(base[t.offset + i]);
}

void Model::require_trainable(const char* what) const {
  require(wdtype_ == DType::F32 || lora_, "ERR_INVALID_ARGUMENT",
          std::string(what) + " needs float32 weights: this model keeps its weights in BF16 for inference (load it with dtype 'f32' to train)");
}

Model::~Model() = default;

BlockPtr Model::grads() {
  require_trainable("a gradient");
  if (lora_) return lora_->grads();
  if (!grads_) grads_ = std::make_shared<Block>(params_->size, backend_->memory());
  return grads_;
}

BlockPtr Model::new_moment() const {
  require_trainable("an optimizer");
  return std::make_shared<Block>(lora_ ? lora_->params()->size : params_->size, backend_->memory());
}

void Model::zero_grad() {
  if (lora_) return backend_->zero(lora_->grads()->data, (long)lora_->grads()->size);
  if (grads_) backend_->zero(grads_->data, (long)grads_->size);
}

void Model::add_lora(const LoraSpec& spec, uint64_t seed) {
  auto adapters = std::make_unique<LoraAdapters>(cfg_, spec, backend_->memory());
  adapters->init(seed);
  lora_ = std::move(adapters);
  seed_dropout(seed);
  grads_.reset();  // the base is frozen: its gradients (if any were made) go
}

void Model::merge_lora() {
  require(lora_ != nullptr, "ERR_INVALID_ARGUMENT", "merge: this model has no LoRA adapters");
  const int r = lora_->spec().rank;
  const int base_index[kLoraTargets] = {1, 2, 3, 4, 6, 7, 8};  // a target's tensor within its block
  for (int l = 0; l < cfg_.n_layers; l++)
    for (int t = 0; t < kLoraTargets; t++) {
      if (!lora_->has(t)) continue;
      const LoraGeometry g = lora_geometry(cfg_, t);
      // delta (O, I) = (alpha/r) B A, as the gradient-shaped GEMM dw += dout^T inp with dout = (alpha/r) B^T (r, O)
      Block bt((size_t)r * g.out, backend_->memory()), delta((size_t)g.out * g.in, backend_->memory());
      const float* b = lora_->b(l, t);
      for (int o = 0; o < g.out; o++)
        for (int k = 0; k < r; k++) bt.data[(size_t)k * g.out + o] = b[(size_t)o * r + k] * lora_->scale();
      backend_->linear_backward(nullptr, false, delta.data, bt.data, lora_->a(l, t), nullptr, r, g.in, g.out);
      const TensorSpec& w = tensors_[1 + (size_t)l * kLayerTensors + base_index[t]];
      if (wdtype_ == DType::F32) {
        for (size_t i = 0; i < w.numel; i++) params_->data[w.offset + i] += delta.data[i];
      } else {
        uint16_t* w16 = reinterpret_cast<uint16_t*>(params_->data) + w.offset;
        for (size_t i = 0; i < w.numel; i++) w16[i] = f32_to_bf16(bf16_to_f32(w16[i]) + delta.data[i]);
      }
    }
  lora_.reset();
}

const float* Model::head_weight() const { return head_; }
float* Model::head_grad() { return lora_ ? nullptr : grads()->data + (head_ - params_->data); }

void Model::init_random(uint64_t seed, float std) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, std);
  float* pf = params_->data;
  uint16_t* ph = reinterpret_cast<uint16_t*>(params_->data);
  for (const auto& t : tensors_) {
    const bool norm = t.shape.size() == 1;
    if (!norm && std == 0.f) {  // normal_distribution needs a positive deviation
      if (wdtype_ == DType::F32) std::fill(pf + t.offset, pf + t.offset + t.numel, 0.f);
      else std::fill(ph + t.offset, ph + t.offset + t.numel, (uint16_t)0);
      continue;
    }
    for (size_t i = 0; i < t.numel; i++) {
      const float v = norm ? 1.f : (float)normal(rng);
      if (wdtype_ == DType::F32) pf[t.offset + i] = v;
      else ph[t.offset + i] = f32_to_bf16(v);
    }
  }
  params_changed();
}

void Model::check_cancel() {
  if (cancel.load(std::memory_order_relaxed)) throw Error("ABORT_ERR", "the operation was aborted");
}

void Model::validate_inputs(const int32_t* ids, const uint8_t* keymask, const int32_t* pos, int B, int T) {
  require(B > 0 && T > 0, "ERR_INVALID_ARGUMENT", "batch and seqLen must be positive");
  const long N = (long)B * T;
  int max_pos = T - 1;
  if (pos)
    for (long i = 0; i < N; i++) {
      require(pos[i] >= 0 && pos[i] < (1 << 24), "ERR_INVALID_ARGUMENT",
              "position " + std::to_string(pos[i]) + " at index " + std::to_string(i) + " is out of range");
      max_pos = std::max(max_pos, pos[i]);
    }
  rope_tables(max_pos + 1);
  for (long i = 0; i < N; i++)
    require(ids[i] >= 0 && ids[i] < cfg_.vocab_size, "ERR_INVALID_ARGUMENT",
            "token id " + std::to_string(ids[i]) + " at index " + std::to_string(i) + " is outside [0, vocab_size=" +
                std::to_string(cfg_.vocab_size) + ")");
  if (keymask)
    for (int b = 0; b < B; b++) {
      bool any = false;
      for (int t = 0; t < T && !any; t++) any = keymask[(long)b * T + t] != 0;
      require(any, "ERR_INVALID_ARGUMENT", "attention mask of sequence " + std::to_string(b) + " hides every token");
    }
}

void Model::rope_tables(int T) {
  if (rope_T_ >= T) return;
  T = std::max(T, 2 * rope_T_);  // grow geometrically
  const int half = cfg_.head_dim() / 2;
  auto cos = std::make_shared<Block>((size_t)T * half, backend_->memory());
  auto sin = std::make_shared<Block>((size_t)T * half, backend_->memory());
  for (int j = 0; j < half; j++) {
    // as LLaDA: inv_freq and the angle are float32, cos/sin of that angle
    const float inv_freq = (float)(1.0 / std::pow(cfg_.rope_theta, (double)(2 * j) / cfg_.head_dim()));
    for (int t = 0; t < T; t++) {
      const float angle = (float)t * inv_freq;
      cos->data[(size_t)t * half + j] = (float)std::cos((double)angle);
      sin->data[(size_t)t * half + j] = (float)std::sin((double)angle);
    }
  }
  rope_cos_ = cos, rope_sin_ = sin;
  rope_T_ = T;
}

void Model::plan(int B, int T, int S, bool train, int Tk, int logits_rows) {
  if (Tk == 0) Tk = T;
  Acts& A = *acts_;
  A.B = B, A.T = T, A.S = S, A.train = train;
  const size_t N = (size_t)B * T, D = cfg_.d_model, F = cfg_.mlp_hidden_size, H = cfg_.n_heads;
  const size_t QKV = D + 2 * (size_t)cfg_.n_kv_heads * cfg_.head_dim();
  // per-layer activations: every layer's when training, one shared set for inference and for
  // training with checkpointing (which keeps only each layer's input, res[l])
  const int L = cfg_.n_layers, sets = train && !checkpointing ? L : 1;
  arena_.begin();
  struct Slot {
    std::vector<float*>* v;
    size_t n;
  };
  const Slot per_layer[] = {{&A.xmid, N * D}, {&A.rstd1, N},         {&A.h1, N * D},    {&A.qkv, N * QKV},
                            {&A.att, backend_->attention_state_floats(B, (int)H, T, Tk)}, {&A.y, N * D}, {&A.rstd2, N},     {&A.h2, N * D},
                            {&A.ab, N * 2 * F},      {&A.g, N * F}};
  std::vector<size_t> res_off;
  for (int l = 0; l <= (train ? L : 0); l++) res_off.push_back(arena_.reserve(N * D));
  std::vector<std::vector<size_t>> layer_off(sizeof(per_layer) / sizeof(Slot));
  for (size_t s = 0; s < layer_off.size(); s++)
    for (int l = 0; l < sets; l++) layer_off[s].push_back(arena_.reserve(per_layer[s].n));
  const size_t o_rstdf = arena_.reserve(N), o_hf = arena_.reserve(N * D), o_lse = arena_.reserve(S);
  constexpr int kGrads = 7;
  size_t o_grad[kGrads] = {};
  const size_t grad_sizes[kGrads] = {N * D, N * D, N * QKV, N * D, N * 2 * F, N * F, N * D};
  if (train)
    for (int i = 0; i < kGrads; i++) o_grad[i] = arena_.reserve(grad_sizes[i]);
  const size_t o_dlogp = arena_.reserve(S);
  const size_t o_logits = arena_.reserve((size_t)logits_rows * cfg_.embedding_size);
  std::vector<size_t> o_lora_u;
  size_t o_lora_tmp = 0, o_lora_du = 0, o_lora_x = 0;
  if (adapters_on()) {
    const size_t r = lora_->spec().rank;
    for (int l = 0; l < sets; l++)
      for (int t = 0; t < kLoraTargets; t++) o_lora_u.push_back(lora_->has(t) ? arena_.reserve(N * r) : 0);
    o_lora_tmp = arena_.reserve(N * std::max(D, F));
    if (train) o_lora_du = arena_.reserve(N * r);
    if (dropping()) o_lora_x = arena_.reserve(N * std::max(D, F));
  }
  arena_.commit();

  A.res.assign(L + 1, nullptr);
  for (int l = 0; l <= L; l++) A.res[l] = arena_.at(res_off[train ? l : 0]);
  for (size_t s = 0; s < layer_off.size(); s++) {
    per_layer[s].v->assign(L, nullptr);
    for (int l = 0; l < L; l++) (*per_layer[s].v)[l] = arena_.at(layer_off[s][sets > 1 ? l : 0]);
  }
  if (!train) A.xmid.assign(L, A.res[0]);  // inference updates the residual stream in place
  A.rstdf = arena_.at(o_rstdf), A.hf = arena_.at(o_hf), A.lse = arena_.at(o_lse), A.dlogp = arena_.at(o_dlogp);
  A.logits = arena_.at(o_logits);
  float** grads[kGrads] = {&A.dres, &A.dh, &A.dqkv, &A.dy, &A.dab, &A.dg, &A.dhf};
  for (int i = 0; i < kGrads; i++) *grads[i] = train ? arena_.at(o_grad[i]) : nullptr;
  A.lora_u.assign((size_t)L * kLoraTargets, nullptr);
  A.lora_tmp = A.lora_du = A.lora_x = nullptr;
  if (adapters_on()) {
    for (int l = 0; l < L; l++)
      for (int t = 0; t < kLoraTargets; t++)
        if (lora_->has(t)) A.lora_u[(size_t)l * kLoraTargets + t] = arena_.at(o_lora_u[(size_t)(sets > 1 ? l : 0) * kLoraTargets + t]);
    A.lora_tmp = arena_.at(o_lora_tmp);
    if (train) A.lora_du = arena_.at(o_lora_du);
    if (dropping()) A.lora_x = arena_.at(o_lora_x);
  }
}

void Model::forward(const int32_t* ids, const uint8_t* keymask, const int32_t* pos, int B, int T,
                    const CacheUse* cache) {
  Acts& A = *acts_;
  Backend& be = *backend_;
  const int N = B * T, D = cfg_.d_model;
  const float emb_scale = cfg_.input_emb_norm ? std::sqrt((float)D) : 1.f;
  if (wte16_)
    be.embedding_forward_bf16(A.res[0], ids, wte16_, N, D, emb_scale);
  else
    be.embedding_forward(A.res[0], ids, wte_, N, D, emb_scale);
  for (int l = 0; l < cfg_.n_layers; l++) {
    check_cancel();
    forward_layer(l, keymask, pos, B, T, cache);
  }
  be.rmsnorm_forward(A.hf, A.rstdf, A.res[cfg_.n_layers], ln_f_, N, D, (float)cfg_.rms_norm_eps);
}

// res[l] -> res[l+1], keeping what the backward needs in layer l's activations (a shared set with
// checkpointing, recomputed there).
void Model::forward_layer(int l, const uint8_t* keymask, const int32_t* pos, int B, int T, const CacheUse* cache) {
  Acts& A = *acts_;
  Backend& be = *backend_;
  const int N = B * T, D = cfg_.d_model, F = cfg_.mlp_hidden_size, H = cfg_.n_heads, KV = cfg_.n_kv_heads;
  const int hd = cfg_.head_dim(), KVd = KV * hd, QKV = D + 2 * KVd;
  AttnShape shape{B, T, H, KV, hd, QKV, QKV};
  const bool read = cache && cache->mode == CacheUse::Read;
  if (read) shape.ldkv = KVd, shape.Tk = cache->cache->T, shape.kv_rows = cache->slots;
  const LayerWeights& w = layers_[l];
  const LayerWeights16& w16 = layers16_[l];
  // attention sub-block: xmid = res[l] + attn(RMSNorm(res[l])) Wo^T
  be.rmsnorm_forward(A.h1[l], A.rstd1[l], A.res[l], w.attn_norm, N, D, (float)cfg_.rms_norm_eps);
  float* qkv = A.qkv[l];
  linear(qkv, A.h1[l], w.qkv, w16.qkv, N, D, QKV, false);  // q_proj | k_proj | v_proj
  for (int t : {kQProj, kKProj, kVProj}) lora_forward(l, t, qkv, A.h1[l], N);
  be.rope_forward(qkv, rope_cos_->data, rope_sin_->data, pos, B, T, H, hd, QKV);
  be.rope_forward(qkv + D, rope_cos_->data, rope_sin_->data, pos, B, T, KV, hd, QKV);
  const float *keys = qkv + D, *values = qkv + D + KVd;
  if (cache) {
    // this forward's K/V go into the cache rows (all positions for Fill, the given range for Read)
    KVCache& c = *cache->cache;
    float* ck = c.k->data + (size_t)l * c.slots * c.T * KVd;
    float* cv = c.v->data + (size_t)l * c.slots * c.T * KVd;
    if (l == 0) {
      cache_rows_.resize((size_t)B * T);
      for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) cache_rows_[(size_t)b * T + t] = cache->slots[b] * c.T + (read ? cache->start[b] : 0) + t;
    }
    be.copy_rows(ck, KVd, cache_rows_.data(), qkv + D, QKV, nullptr, N, KVd, false);
    be.copy_rows(cv, KVd, cache_rows_.data(), qkv + D + KVd, QKV, nullptr, N, KVd, false);
    if (read) keys = ck, values = cv;
  }
  be.attention_forward(A.y[l], A.att[l], qkv, keys, values, keymask, shape);
  if (A.xmid[l] != A.res[l]) be.copy(A.xmid[l], A.res[l], (long)N * D);
  linear(A.xmid[l], A.y[l], w.attn_out, w16.attn_out, N, D, D, true);
  lora_forward(l, kAttnOut, A.xmid[l], A.y[l], N);
  // feed-forward sub-block: res[l+1] = xmid + (silu(h Wff^T) * h Wup^T) Wffout^T
  be.rmsnorm_forward(A.h2[l], A.rstd2[l], A.xmid[l], w.ff_norm, N, D, (float)cfg_.rms_norm_eps);
  linear(A.ab[l], A.h2[l], w.ff_up, w16.ff_up, N, D, 2 * F, false);  // ff_proj | up_proj
  for (int t : {kFfProj, kUpProj}) lora_forward(l, t, A.ab[l], A.h2[l], N);
  be.swiglu_forward(A.g[l], A.ab[l], N, F);
  if (A.res[l + 1] != A.xmid[l]) be.copy(A.res[l + 1], A.xmid[l], (long)N * D);
  linear(A.res[l + 1], A.g[l], w.ff_out, w16.ff_out, N, F, D, true);
  lora_forward(l, kFfOut, A.res[l + 1], A.g[l], N);
}

void Model::linear(float* out, const float* inp, const float* w, const uint16_t* w16, int N, int I, int O, bool acc) {
  if (w16)
    backend_->linear_forward_bf16(out, inp, w16, N, I, O, acc);
  else
    backend_->linear_forward(out, inp, w, N, I, O, acc);
}

void Model::linear_back(float* dinp, float* dw, const float* dout, const float* inp, const float* w, const uint16_t* w16,
                        int N, int I, int O) {
  if (w16)
    backend_->linear_backward_bf16(dinp, false, dout, w16, N, I, O);  // BF16 weights are frozen (dw null)
  else
    backend_->linear_backward(dinp, false, dw, dout, inp, w, N, I, O);
}

bool Model::dropping() const { return adapters_on() && acts_->train && lora_->spec().dropout > 0; }

// The dropped input of layer l's target t in this training forward: the same mask in the forward, a
// checkpointed recomputation and the backward (keyed by the forward, not stored)
const float* Model::lora_input(int l, int t, const float* x, int N) {
  if (!dropping()) return x;
  backend_->dropout(acts_->lora_x, x, N, lora_geometry(cfg_, t).in, (float)lora_->spec().dropout, dropout_seed_,
                    (uint32_t)(l * kLoraTargets + t), dropout_forward_, false);
  return acts_->lora_x;
}

void Model::lora_forward(int l, int t, float* out, const float* x, int N) {
  if (!adapters_on() || !lora_->has(t)) return;
  Acts& A = *acts_;
  const LoraGeometry g = lora_geometry(cfg_, t);
  const int r = lora_->spec().rank;
  float* u = A.lora_u[(size_t)l * kLoraTargets + t];
  backend_->linear_forward(u, lora_input(l, t, x, N), lora_->a(l, t), N, g.in, r, false);
  backend_->scale(u, (long)N * r, lora_->scale());
  if (g.ld == g.out) return backend_->linear_forward(out, u, lora_->b(l, t), N, r, g.out, true);
  backend_->linear_forward(A.lora_tmp, u, lora_->b(l, t), N, r, g.out, false);
  backend_->copy_rows(out + g.col, g.ld, nullptr, A.lora_tmp, g.out, nullptr, N, g.out, true);
}

void Model::lora_backward(int l, int t, float* dx, const float* dout, const float* x, int N) {
  if (!adapters_on() || !lora_->has(t)) return;
  Acts& A = *acts_;
  const LoraGeometry g = lora_geometry(cfg_, t);
  const int r = lora_->spec().rank;
  const float* d = dout + g.col;
  if (g.ld != g.out) {  // the target's columns of a fused gradient, made contiguous
    backend_->copy_rows(A.lora_tmp, g.out, nullptr, dout + g.col, g.ld, nullptr, N, g.out, false);
    d = A.lora_tmp;
  }
  // du = d B, dB += d^T u; then through the scale, dx += du A, dA += du^T x
  backend_->linear_backward(A.lora_du, false, lora_->grad_b(l, t), d, A.lora_u[(size_t)l * kLoraTargets + t], lora_->b(l, t), N,
                            r, g.out);
  backend_->scale(A.lora_du, (long)N * r, lora_->scale());
  if (!dropping()) return backend_->linear_backward(dx, true, lora_->grad_a(l, t), A.lora_du, x, lora_->a(l, t), N, g.in, r);
  // with dropout: dA += du^T drop(x), and dx += drop(du A) through the same mask (lora_tmp is free again)
  backend_->linear_backward(A.lora_tmp, false, lora_->grad_a(l, t), A.lora_du, lora_input(l, t, x, N), lora_->a(l, t), N,
                            g.in, r);
  backend_->dropout(dx, A.lora_tmp, N, g.in, (float)lora_->spec().dropout, dropout_seed_, (uint32_t)(l * kLoraTargets + t),
                    dropout_forward_, true);
}

void Model::backward(const int32_t* ids, const uint8_t* keymask, const int32_t* pos, int B, int T) {
  Acts& A = *acts_;
  Backend& be = *backend_;
  const int N = B * T, D = cfg_.d_model, F = cfg_.mlp_hidden_size, H = cfg_.n_heads, KV = cfg_.n_kv_heads;
  const int hd = cfg_.head_dim(), KVd = KV * hd, QKV = D + 2 * KVd;
  // with LoRA the base is frozen: no gradient of its own (null), the adapters' in lora_backward
  float* g = lora_ ? nullptr : grads()->data;
  const AttnShape shape{B, T, H, KV, hd, QKV, QKV};
  be.zero(A.dres, (long)N * D);
  be.rmsnorm_backward(A.dres, g ? g + (ln_f_ - params_->data) : nullptr, A.dhf, A.res[cfg_.n_layers], ln_f_, A.rstdf, N, D);
  for (int l = cfg_.n_layers - 1; l >= 0; l--) {
    check_cancel();
    // with checkpointing the layer's activations are recomputed from its kept input, the same bits
    if (checkpointing) forward_layer(l, keymask, pos, B, T, nullptr);
    const LayerWeights& w = layers_[l];
    const LayerWeights16& w16 = layers16_[l];
    const LayerWeights gw = g ? layer_view(tensors_, g, l) : LayerWeights{};
    // feed-forward sub-block; dres flows through the residual unchanged and gains the branch's grad
    linear_back(A.dg, gw.ff_out, A.dres, A.g[l], w.ff_out, w16.ff_out, N, F, D);
    lora_backward(l, kFfOut, A.dg, A.dres, A.g[l], N);
    be.swiglu_backward(A.dab, A.dg, A.ab[l], N, F);
    linear_back(A.dh, gw.ff_up, A.dab, A.h2[l], w.ff_up, w16.ff_up, N, D, 2 * F);
    for (int t : {kFfProj, kUpProj}) lora_backward(l, t, A.dh, A.dab, A.h2[l], N);
    be.rmsnorm_backward(A.dres, gw.ff_norm, A.dh, A.xmid[l], w.ff_norm, A.rstd2[l], N, D);
    // attention sub-block
    linear_back(A.dy, gw.attn_out, A.dres, A.y[l], w.attn_out, w16.attn_out, N, D, D);
    lora_backward(l, kAttnOut, A.dy, A.dres, A.y[l], N);
    const float* qkv = A.qkv[l];
    be.attention_backward(A.dqkv, A.dqkv + D, A.dqkv + D + KVd, A.dy, A.y[l], A.att[l], qkv, qkv + D, qkv + D + KVd,
                          shape);
    be.rope_backward(A.dqkv, rope_cos_->data, rope_sin_->data, pos, B, T, H, hd, QKV);
    be.rope_backward(A.dqkv + D, rope_cos_->data, rope_sin_->data, pos, B, T, KV, hd, QKV);
    linear_back(A.dh, gw.qkv, A.dqkv, A.h1[l], w.qkv, w16.qkv, N, D, QKV);
    for (int t : {kQProj, kKProj, kVProj}) lora_backward(l, t, A.dh, A.dqkv, A.h1[l], N);
    be.rmsnorm_backward(A.dres, gw.attn_norm, A.dh, A.res[l], w.attn_norm, A.rstd1[l], N, D);
  }
  const float emb_scale = cfg_.input_emb_norm ? std::sqrt((float)D) : 1.f;
  if (g) be.embedding_backward(g + tensors_[0].offset, A.dres, ids, N, D, emb_scale);
}

double Model::logprob_loss(const int32_t* ids, const uint8_t* keymask, const int32_t* pos, int B, int T,
                           const int32_t* rows, const int32_t* targets, const float* weights, int S, float* logp_out,
                           bool backward) {
  validate_inputs(ids, keymask, pos, B, T);
  const long N = (long)B * T;
  for (int s = 0; s < S; s++) {
    require(rows[s] >= 0 && rows[s] < N, "ERR_INVALID_ARGUMENT", "selected position " + std::to_string(rows[s]) + " out of range");
    require(targets[s] >= 0 && targets[s] < cfg_.vocab_size, "ERR_INVALID_ARGUMENT",
            "target token id " + std::to_string(targets[s]) + " is outside [0, vocab_size)");
  }
  require(!backward || !lora_ || use_adapters, "ERR_INVALID_ARGUMENT",
          "a backward with the LoRA adapters switched off has nothing to train (the base is frozen)");
  if (backward) grads();
  plan(B, T, S, backward);
  Acts& A = *acts_;
  forward(ids, keymask, pos, B, T);
  const float scale = cfg_.scale_logits ? 1.f / std::sqrt((float)cfg_.d_model) : 1.f;
  float* logp = logp_out ? logp_out : A.dlogp;
  if (head16_)  // a BF16 head is read as it is (widened while packed), frozen
    backend_->lmhead_logprob_forward_bf16(logp, A.lse, A.hf, head16_, rows, targets, S, cfg_.d_model, cfg_.embedding_size, scale);
  else
    backend_->lmhead_logprob_forward(logp, A.lse, A.hf, head_weight(), rows, targets, S, cfg_.d_model, cfg_.embedding_size, scale);
  double loss = 0;
  for (int s = 0; s < S; s++) loss -= (double)weights[s] * logp[s];
  require(std::isfinite(loss), "ERR_NON_FINITE", "loss is not finite (" + std::to_string(loss) + "); no gradient was accumulated");
  if (backward) {
    check_cancel();
    for (int s = 0; s < S; s++) A.dlogp[s] = -weights[s];
    backend_->zero(A.dhf, N * cfg_.d_model);
    if (head16_)
      backend_->lmhead_logprob_backward_bf16(A.dhf, A.dlogp, A.lse, A.hf, head16_, rows, targets, S, cfg_.d_model, cfg_.embedding_size,
                                             scale);
    else
      backend_->lmhead_logprob_backward(A.dhf, head_grad(), A.dlogp, A.lse, A.hf, head_weight(), rows, targets, S, cfg_.d_model,
                                        cfg_.embedding_size, scale);
    this->backward(ids, keymask, pos, B, T);
    if (dropping()) dropout_forward_++;  // the next training forward draws new masks
  }
  return loss;
}

void Model::logits(const int32_t* ids, const uint8_t* keymask, const int32_t* pos, int B, int T, float* out) {
  validate_inputs(ids, keymask, pos, B, T);
  plan(B, T, 0, false);
  forward(ids, keymask, pos, B, T);
  head(acts_->hf, B * T, out);
  // one pass over the logits, 1/d_model of the head's cost: an overflowing weight never passes silently
  require(all_finite(out, (size_t)B * T * cfg_.embedding_size), "ERR_NON_FINITE",
          "logits: the model's logits are not finite (a weight or activation overflows float32)");
}

void Model::resize_cache(KVCache& cache, int slots, int T) const {
  const size_t n = (size_t)cfg_.n_layers * slots * T * cfg_.n_kv_heads * cfg_.head_dim();
  cache.slots = slots, cache.T = T;
  cache.k = std::make_shared<Block>(n, backend_->memory());
  cache.v = std::make_shared<Block>(n, backend_->memory());
}

void Model::decode_scores(const int32_t* ids, const uint8_t* keymask, const int32_t* pos, int B, int T,
                          const int32_t* rows, int S, const CacheUse* cache, const NoiseRow* noise, uint64_t seed,
                          double temperature, int32_t* x0, float* conf, float* logp, float* entropy, bool plain) {
  const float* logits = forward_rows(ids, keymask, pos, B, T, rows, S, nullptr, cache);
  backend_->decode_score(x0, conf, logp, entropy, logits, noise, seed, S, cfg_.embedding_size, cfg_.vocab_size,
                         cfg_.mask_token_id, temperature);
  if (plain) {
    plain_x0_.resize(S), plain_conf_.resize(S), plain_logp_.resize(S), plain_entropy_.resize(S);
    backend_->decode_score(plain_x0_.data(), plain_conf_.data(), plain_logp_.data(), plain_entropy_.data(), logits, nullptr,
                           0, S, cfg_.embedding_size, cfg_.vocab_size, cfg_.mask_token_id, 0.0);
  }
  for (int s = 0; s < S; s++)
    require(std::isfinite(conf[s]) && std::isfinite(logp[s]) && x0[s] >= 0, "ERR_NON_FINITE",
            "generate: the model's scores are not finite (its logits overflow float32); no token was chosen");
}

float* Model::forward_rows(const int32_t* ids, const uint8_t* keymask, const int32_t* pos, int B, int T,
                           const int32_t* rows, int S, float* out, const CacheUse* cache) {
  const bool read = cache && cache->mode == CacheUse::Read;
  // a cached read's key mask covers the cache's positions, checked by the caller (the decoder)
  validate_inputs(ids, read ? nullptr : keymask, pos, B, T);
  for (int s = 0; s < S; s++)
    require(rows[s] >= 0 && rows[s] < B * T, "ERR_INVALID_ARGUMENT", "row " + std::to_string(rows[s]) + " out of range");
  plan(B, T, S, false, read ? cache->cache->T : T, out ? 0 : S);
  forward(ids, keymask, pos, B, T, cache);
  const int D = cfg_.d_model;
  float* h = acts_->h1[0];  // free after the forward: reused to gather the scored rows (S <= B*T)
  backend_->copy_rows(h, D, nullptr, acts_->hf, D, rows, S, D, false);
  if (!out) out = acts_->logits;
  head(h, S, out);
  return out;
}

void Model::hidden(const int32_t* ids, const uint8_t* keymask, const int32_t* pos, int B, int T, float* out) {
  validate_inputs(ids, keymask, pos, B, T);
  plan(B, T, 0, false);
  forward(ids, keymask, pos, B, T);
  backend_->copy(out, acts_->hf, (long)B * T * cfg_.d_model);
  require(all_finite(out, (size_t)B * T * cfg_.d_model), "ERR_NON_FINITE",
          "hidden: the model's hidden states are not finite (a weight or activation overflows float32)");
}

void Model::head(const float* h, int rows, float* out) {
  linear(out, h, head_weight(), head16_, rows, cfg_.d_model, cfg_.embedding_size, false);
  if (cfg_.scale_logits) backend_->scale(out, (long)rows * cfg_.embedding_size, 1.f / std::sqrt((float)cfg_.d_model));
}

double Model::adamw_step(AdamWStep step, float max_grad_norm, Block& m, Block& v) {
  float* p = lora_ ? lora_->params()->data : params_->data;
  const size_t n = lora_ ? lora_->params()->size : params_->size;
  require(m.size == n && v.size == n, "ERR_INVALID_ARGUMENT", "AdamW moments do not match this model's trainable tensors");
  float* g = grads()->data;
  double ss = 0;
  for (const auto& t : trainable_tensors()) ss += backend_->sum_squares(g + t.offset, (long)t.numel);
  const double norm = std::sqrt(ss) * step.grad_scale;
  require(std::isfinite(norm), "ERR_NON_FINITE", "gradient norm is not finite; the update was skipped");
  if (max_grad_norm > 0 && norm > max_grad_norm) step.grad_scale *= (float)(max_grad_norm / (norm + 1e-6));
  for (const auto& t : trainable_tensors()) {
    AdamWStep s = step;
    if (t.shape.size() < 2) s.weight_decay = 0.f;  // no decay on norm weights
    backend_->adamw_update(p + t.offset, g + t.offset, m.data + t.offset, v.data + t.offset, (long)t.numel, s);
  }
  return norm;
}

}  // namespace diffpo
