#include "lora.h"

#include <cmath>
#include <random>

#include "common/errors.h"
#include "model.h"

namespace diffpo {

const char* lora_target_name(int target) {
  static const char* names[kLoraTargets] = {"q_proj", "k_proj", "v_proj", "attn_out", "ff_proj", "up_proj", "ff_out"};
  return names[target];
}

LoraGeometry lora_geometry(const ModelConfig& cfg, int target) {
  const int D = cfg.d_model, F = cfg.mlp_hidden_size, KVd = cfg.n_kv_heads * cfg.head_dim(), QKV = D + 2 * KVd;
  switch (target) {
    case kQProj: return {D, D, 0, QKV};
    case kKProj: return {D, KVd, D, QKV};
    case kVProj: return {D, KVd, D + KVd, QKV};
    case kAttnOut: return {D, D, 0, D};
    case kFfProj: return {D, F, 0, 2 * F};
    case kUpProj: return {D, F, F, 2 * F};
    default: return {F, D, 0, D};  // ff_out
  }
}

LoraAdapters::LoraAdapters(const ModelConfig& cfg, const LoraSpec& spec, Memory& memory) : spec_(spec), memory_(memory) {
  require(spec.targets != 0 && spec.targets < (1u << kLoraTargets), "ERR_INVALID_ARGUMENT", "LoRA needs at least one target layer");
  require(std::isfinite(spec.alpha) && spec.alpha > 0, "ERR_INVALID_ARGUMENT",
          "LoRA alpha must be a finite number > 0, got " + std::to_string(spec.alpha));
  require(spec.dropout >= 0 && spec.dropout < 1, "ERR_INVALID_ARGUMENT",
          "LoRA dropout must be in [0, 1), got " + std::to_string(spec.dropout));
  for (int t = 0; t < kLoraTargets; t++) {
    if (!has(t)) continue;
    const LoraGeometry g = lora_geometry(cfg, t);
    require(spec.rank >= 1 && spec.rank <= std::min(g.in, g.out), "ERR_INVALID_ARGUMENT",
            "LoRA rank must be in [1, " + std::to_string(std::min(g.in, g.out)) + "] for " + lora_target_name(t) + " (" +
                std::to_string(g.out) + " x " + std::to_string(g.in) + "), got " + std::to_string(spec.rank));
  }
  size_t offset = 0;
  index_.assign(cfg.n_layers, {});
  for (int l = 0; l < cfg.n_layers; l++)
    for (int t = 0; t < kLoraTargets; t++) {
      index_[l][t] = -1;
      if (!has(t)) continue;
      const LoraGeometry g = lora_geometry(cfg, t);
      const std::string p = "base_model.model.model.transformer.blocks." + std::to_string(l) + "." + lora_target_name(t);
      index_[l][t] = (int)tensors_.size();
      const size_t na = (size_t)spec.rank * g.in, nb = (size_t)g.out * spec.rank;
      tensors_.push_back({p + ".lora_A.weight", {spec.rank, g.in}, offset, na});
      tensors_.push_back({p + ".lora_B.weight", {g.out, spec.rank}, offset + na, nb});
      offset += na + nb;
    }
  params_ = std::make_shared<Block>(offset, memory_);
}

BlockPtr LoraAdapters::grads() {
  if (!grads_) grads_ = std::make_shared<Block>(params_->size, memory_);
  return grads_;
}

float* LoraAdapters::ptr(float* base, int layer, int target, int which) const {
  const int i = index_[layer][target];
  return i < 0 ? nullptr : base + tensors_[i + which].offset;
}

void LoraAdapters::init(uint64_t seed) {
  std::mt19937_64 rng(seed);
  for (size_t i = 0; i < tensors_.size(); i += 2) {
    const TensorSpec& a = tensors_[i];
    const double bound = 1.0 / std::sqrt((double)a.shape[1]);
    std::uniform_real_distribution<double> u(-bound, bound);
    for (size_t k = 0; k < a.numel; k++) params_->data[a.offset + k] = (float)u(rng);
    const TensorSpec& b = tensors_[i + 1];
    std::fill(params_->data + b.offset, params_->data + b.offset + b.numel, 0.f);
  }
}

}  // namespace diffpo
