// The LLaDA model (ALGORITHMS.md §1) written once against the Backend op list: parameters and
// gradients in shared Blocks laid out tensor by tensor in HF checkpoint order, activations in an
// Arena planned per call.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/block.h"
#include "lora.h"
#include "ops.h"
#include "tensor_io.h"

namespace diffpo {

struct ModelConfig {
  int d_model = 0, n_heads = 0, n_kv_heads = 0, n_layers = 0, mlp_hidden_size = 0;
  int vocab_size = 0, embedding_size = 0, mask_token_id = 0;
  double rope_theta = 10000.0, rms_norm_eps = 1e-5;
  bool weight_tying = false, scale_logits = false, input_emb_norm = false;
  void validate() const;  // throws Error("ERR_CONFIG", ...) naming the key
  int head_dim() const { return d_model / n_heads; }
};

struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  size_t offset, numel;  // in elements within the parameter (and gradient) Block
};

// Keys and values (after RoPE) of every layer for `slots` sequences of T positions, for decoding with
// Fast-dLLM's approximate caches: k, v (layers, slots, T, KVd).
struct KVCache {
  int slots = 0, T = 0;
  BlockPtr k, v;  // in the backend's memory
};

// How a forward uses a KV cache: Fill stores the K/V of every position; Read computes only the tokens
// given (T per row, starting at start[b] in the cached sequence), stores their K/V, and attends to all
// cache.T positions of the row's slot.
struct CacheUse {
  enum Mode { Fill, Read } mode;
  KVCache* cache;
  const int32_t* slots;  // (B) the cache row of each batch row
  const int32_t* start;  // (B) Read only
};

// A BF16-resident model's matrices (inference): the same layout as LayerWeights, two bytes an element.
struct LayerWeights16 {
  const uint16_t *qkv, *attn_out, *ff_up, *ff_out;
};

// One block's tensors (or their gradients). qkv points at q_proj, followed by k_proj and v_proj;
// ff_up at ff_proj, followed by up_proj: each pair or triple is used as one fused matrix.
struct LayerWeights {
  float *attn_norm, *qkv, *attn_out, *ff_norm, *ff_up, *ff_out;
};

class Model {
 public:
  // weights: F32 (trainable) or BF16 (inference only: the parameter Block holds BF16 elements at the
  // same element offsets, norms are widened into a small float32 copy, and the GEMMs widen matrices
  // while packing; gradients and the optimizer are refused).
  Model(const ModelConfig& cfg, std::unique_ptr<Backend> backend, DType weights = DType::F32);
  // The tensors of a config (validated) in LLaDA's names, with their offsets in the parameter Block:
  // what a Model would allocate, known before anything is.
  static std::vector<TensorSpec> layout(const ModelConfig& cfg);
  ~Model();

  const ModelConfig& config() const { return cfg_; }
  const std::vector<TensorSpec>& tensors() const { return tensors_; }
  Backend& backend() { return *backend_; }
  BlockPtr params() const { return params_; }
  DType weights_dtype() const { return wdtype_; }
  size_t element_bytes() const { return wdtype_ == DType::BF16 ? 2 : 4; }
  // After the parameter Block was written from outside (a checkpoint load): refreshes what is derived
  // from it (the float32 norms of a BF16 model).
  void params_changed();
  // The gradients of what trains: the parameters, or with LoRA the adapters alone (allocated on first
  // use; refused for BF16 weights without LoRA).
  BlockPtr grads();
  void zero_grad();
  // What trains, in the layout of grads(), the optimizer's moments and adamw_step: the parameter
  // tensors, or the adapters' (PEFT's names) once add_lora was called.
  const std::vector<TensorSpec>& trainable_tensors() const { return lora_ ? lora_->tensors() : tensors_; }

  // LoRA (lora.h): adapters on the spec's targets of every block, initialised from seed; the base
  // parameters are frozen from then on (no gradient, no moments), and may be BF16-resident.
  void add_lora(const LoraSpec& spec, uint64_t seed);
  LoraAdapters* lora() const { return lora_.get(); }
  // LoRA dropout's masks are keyed by (seed; layer and target, training forward since this call, row,
  // column) (common/philox.h): a trainer seeds each step so that a resumed run draws the same masks.
  // add_lora seeds it with its own seed.
  void seed_dropout(uint64_t seed) { dropout_seed_ = seed, dropout_forward_ = 0; }
  // Folds (alpha/r) B A into the base weights (rounded to BF16 for a BF16 model) and drops the adapters.
  void merge_lora();
  // Whether forwards apply the adapters (off: the base model, LoRA's reference policy, no copy).
  bool use_adapters = true;
  void init_random(uint64_t seed, float std);

  // Every call takes ids (B*T), an optional key-padding mask (B*T, 1 = real token) and optional RoPE
  // positions (B*T; default t), so that a left-padded sequence sees the positions it has alone.

  // Scores: logp[s] = log p(targets[s] | ids) at position rows[s] (flat index b*T+t), all in one
  // forward. With backward, gradients of loss = -sum_s weights[s]*logp[s] accumulate into grads().
  // Returns the loss; with a non-finite loss nothing is accumulated and Error ERR_NON_FINITE is thrown.
  double logprob_loss(const int32_t* ids, const uint8_t* keymask, const int32_t* pos, int B, int T, const int32_t* rows,
                      const int32_t* targets, const float* weights, int S, float* logp_out, bool backward);
  // Full logits (B*T, E) into out.
  void logits(const int32_t* ids, const uint8_t* keymask, const int32_t* pos, int B, int T, float* out);
  void resize_cache(KVCache& cache, int slots, int T) const;
  // Decoding: logits of the rows (flat b*T+t) only, scored by the backend's decode_score (see ops.h) without the logits
  // leaving it: x0, conf, logp, entropy (S) per row; noise (S) the rows' keys of the Gumbel noise, or null.
  // With `plain`, the rows are also scored at temperature 0, whose confidences (of the argmax)
  // plain_confidence() then holds: the learned sampler's features, whatever the sampling.
  void decode_scores(const int32_t* ids, const uint8_t* keymask, const int32_t* pos, int B, int T, const int32_t* rows,
                     int S, const CacheUse* cache, const NoiseRow* noise, uint64_t seed, double temperature, int32_t* x0,
                     float* conf, float* logp, float* entropy, bool plain = false);
  const float* plain_confidence() const { return plain_conf_.data(); }
  // Final hidden states (after ln_f), (B*T, D) into out: the features of the learned sampler head.
  void hidden(const int32_t* ids, const uint8_t* keymask, const int32_t* pos, int B, int T, float* out);

  // AdamW over every tensor (weight decay on matrices only) with the caller's moments m, v (each the
  // size of the parameters: an optimizer owns its state); returns the global gradient norm measured
  // after grad_scale and before clipping. max_grad_norm <= 0 disables clipping.
  double adamw_step(AdamWStep step, float max_grad_norm, Block& m, Block& v);
  BlockPtr new_moment() const;  // zeroed, parameter-sized, in the backend's memory

  // Checked between layers; a set flag aborts the current call with Error("ABORT_ERR").
  std::atomic<bool> cancel{false};
  // Gradient checkpointing by layer: a training forward keeps each layer's input only and the backward
  // recomputes the layer's activations from it (one more forward's work; activation memory of one
  // layer instead of all). Gradients are bit-identical to the stored-activation path.
  bool checkpointing = false;
  // Floats of the activation arena as the last call planned it.
  size_t arena_floats() const { return arena_.capacity(); }

 private:
  std::vector<int32_t> plain_x0_;  // decode_scores(plain): the temperature-0 scoring's outputs
  std::vector<float> plain_conf_, plain_logp_, plain_entropy_;
  struct Acts;
  void validate_inputs(const int32_t* ids, const uint8_t* keymask, const int32_t* pos, int B, int T);
  // Tk: keys per row when reading a cache; logits_rows: rows of logits kept in the arena (decoding)
  void plan(int B, int T, int S, bool train, int Tk = 0, int logits_rows = 0);
  float* forward_rows(const int32_t* ids, const uint8_t* keymask, const int32_t* pos, int B, int T, const int32_t* rows,
                      int S, float* out, const CacheUse* cache);  // logits of the rows into out, or the arena when out is null
  void forward(const int32_t* ids, const uint8_t* keymask, const int32_t* pos, int B, int T,
               const CacheUse* cache = nullptr);  // after plan()
  void forward_layer(int l, const uint8_t* keymask, const int32_t* pos, int B, int T, const CacheUse* cache);
  void backward(const int32_t* ids, const uint8_t* keymask, const int32_t* pos, int B, int T);
  void rope_tables(int P);  // cos/sin for positions [0, P)
  const float* head_weight() const;
  void head(const float* h, int rows, float* out);  // logits (rows, E) of final hidden states h (rows, D)
  float* head_grad();
  void require_trainable(const char* what) const;
  void linear(float* out, const float* inp, const float* w, const uint16_t* w16, int N, int I, int O, bool acc);
  // dinp from dout through a base weight; dw += its gradient unless null (frozen)
  void linear_back(float* dinp, float* dw, const float* dout, const float* inp, const float* w, const uint16_t* w16, int N,
                   int I, int O);
  bool adapters_on() const { return lora_ && use_adapters; }
  // whether this call's forward drops the adapters' inputs: a training forward (one with a backward)
  bool dropping() const;
  uint64_t dropout_seed_ = 0;
  uint32_t dropout_forward_ = 0;  // training forwards since seed_dropout: the masks' step
  // out (N, ld), target t's columns += (alpha/r) B (A drop(x)); keeps u = (alpha/r) A drop(x) for the backward
  void lora_forward(int l, int t, float* out, const float* x, int N);
  const float* lora_input(int l, int t, const float* x, int N);
  // dx (N, in) += the branch's input gradient, and A's and B's gradients from dout (N, ld)
  void lora_backward(int l, int t, float* dx, const float* dout, const float* x, int N);
  void check_cancel();

  ModelConfig cfg_;
  std::unique_ptr<Backend> backend_;
  std::vector<TensorSpec> tensors_;
  BlockPtr params_, grads_;
  float* wte_ = nullptr;
  float* ln_f_ = nullptr;
  float* head_ = nullptr;
  std::vector<LayerWeights> layers_;
  BlockPtr rope_cos_, rope_sin_;  // (positions, head_dim/2), in the backend's memory
  std::vector<int32_t> cache_rows_;  // per call: the cache row of each token (KV-cache fill/read)
  int rope_T_ = 0;
  Arena arena_;
  DType wdtype_;
  BlockPtr norms_;  // BF16 weights: the 1-D tensors widened (attn_norm, ff_norm per layer, then ln_f)
  const uint16_t *wte16_ = nullptr, *head16_ = nullptr;
  std::vector<LayerWeights16> layers16_;
  std::unique_ptr<LoraAdapters> lora_;
  std::unique_ptr<Acts> acts_;
};

LayerWeights layer_view(const std::vector<TensorSpec>& tensors, float* base, int layer);

}  // namespace diffpo
