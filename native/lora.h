// LoRA adapters (Hu et al. 2021, as Hugging Face PEFT lays them out) on LLaDA's linear layers: for a
// target W (O, I) of every block, A (r, I) and B (O, r), and the layer computes
//   out = W x + (alpha / r) B (A drop(x)),
// drop PEFT's lora_dropout on the adapter's input in forwards that train (identity elsewhere).
// The base stays frozen (float32 or BF16-resident); only A and B have gradients and optimizer moments.
// A starts as PEFT's kaiming_uniform(a = sqrt(5)), i.e. U(-1/sqrt(I), 1/sqrt(I)), and B at zero, so a
// fresh adapter changes nothing.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "common/block.h"

namespace diffpo {

struct ModelConfig;
struct TensorSpec;

// LLaDA's names of its linear layers, in the order of the parameter block.
enum LoraTarget { kQProj, kKProj, kVProj, kAttnOut, kFfProj, kUpProj, kFfOut, kLoraTargets };
const char* lora_target_name(int target);

// Where a target's output lands: O of the `ld` columns of the GEMM output that holds it, from column
// `col` (q_proj, k_proj, v_proj share one fused GEMM, as do ff_proj and up_proj).
struct LoraGeometry {
  int in, out, col, ld;
};
LoraGeometry lora_geometry(const ModelConfig& cfg, int target);

struct LoraSpec {
  int rank = 0;
  double alpha = 0;
  uint32_t targets = 0;  // bit t set: target t (LoraTarget) gets adapters in every block
  double dropout = 0;    // in [0, 1)
};

class LoraAdapters {
 public:
  // Validates the spec against the config (Error ERR_INVALID_ARGUMENT naming the bad value).
  LoraAdapters(const ModelConfig& cfg, const LoraSpec& spec, Memory& memory);
  const LoraSpec& spec() const { return spec_; }
  float scale() const { return (float)(spec_.alpha / spec_.rank); }
  // PEFT's names (base_model.model.model.transformer.blocks.{l}.{target}.lora_A.weight, then lora_B),
  // layer by layer, targets in LoraTarget order, A before B; offsets in params()/grads().
  const std::vector<TensorSpec>& tensors() const { return tensors_; }
  BlockPtr params() const { return params_; }
  BlockPtr grads();  // allocated on first use
  // A and B of one layer's target, or null when the target has no adapter.
  float* a(int layer, int target) const { return ptr(params_->data, layer, target, 0); }
  float* b(int layer, int target) const { return ptr(params_->data, layer, target, 1); }
  float* grad_a(int layer, int target) { return ptr(grads()->data, layer, target, 0); }
  float* grad_b(int layer, int target) { return ptr(grads()->data, layer, target, 1); }
  bool has(int target) const { return (spec_.targets >> target) & 1u; }
  // PEFT's initialisation from a seed: A uniform, B zero.
  void init(uint64_t seed);

 private:
  float* ptr(float* base, int layer, int target, int which) const;
  LoraSpec spec_;
  std::vector<TensorSpec> tensors_;
  std::vector<std::array<int, kLoraTargets>> index_;  // per layer: the target's A in tensors_, or -1
  BlockPtr params_, grads_;
  Memory& memory_;
};

}  // namespace diffpo
