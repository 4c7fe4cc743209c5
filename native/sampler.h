// Semi-autoregressive decoding of masked-diffusion LMs (ALGORITHMS.md §3): LLaDA's fixed-step
// schedule, Fast-dLLM's confidence threshold and factor rules, and the entropy-bounded (EB) sampler,
// batched, with per-sequence thresholds, per-sequence NFE and budgets, and the trajectory (decode step
// and behaviour log-probability of every token) that the RL estimators need. One step() is one forward
// over the sequences still decoding; the selection runs here, not in JS.
#pragma once
#include <cstdint>
#include <vector>

#include "model.h"

namespace diffpo {

enum class Strategy { Steps = 0, Threshold = 1, Factor = 2, Entropy = 3 };

// Fast-dLLM's approximate block caches: a full forward at the start of each block fills a KV cache;
// the block's later steps recompute only the block and what follows it (Prefix) or only the block (Dual),
// attending to the cached keys and values of the other positions.
enum class CacheMode { None = 0, Prefix = 1, Dual = 2 };

struct SamplerOptions {
  int gen_length = 0, block_length = 0;
  double temperature = 0;  // 0: argmax; else Gumbel-max on logits / temperature (Philox noise, common/philox.h)
  uint64_t seed = 0;
  uint64_t first_sequence = 0;  // the batch's first sequence's index in a larger batch (its noise stream)
  Strategy strategy = Strategy::Threshold;
  int steps = 0;                    // Steps: total over all blocks
  bool random_remasking = false;    // Steps: uniform scores instead of confidence
  std::vector<float> threshold;     // Threshold: tau per sequence; Entropy: gamma per sequence
  float factor = 1;                 // Factor
  std::vector<int> max_nfe;         // per sequence, 0 = no budget
  bool compact = true;              // drop finished sequences from the batch (always, with a cache)
  CacheMode cache = CacheMode::None;
};

// What one step did, for progress displays and traces.
struct StepTrace {
  std::vector<int32_t> sequence, position, token;  // position within the generated region
  std::vector<float> confidence;
};

class Decoder {
 public:
  Decoder(const ModelConfig& cfg, const std::vector<std::vector<int32_t>>& prompts, SamplerOptions options);

  // One forward over the unfinished sequences and one selection each; returns true when all are done.
  bool step(Model& model);

  // The learned sampler's inputs without a forward of their own (kHeadFeatures per sequence, B x 8):
  // the first forward, scoring every position of the fully masked completion, summarised per
  // sequence as the mean, minimum and standard deviation of the confidence, the fractions at or above
  // 0.9, 0.7 and 0.5, and the mean and maximum entropy over ln(V - 1), all at temperature 0. The first
  // step() then selects from this forward (one NFE in all). Call once, before any step; the caller
  // then sets the thresholds the features chose.
  std::vector<float> first_forward_features(Model& model);
  void set_thresholds(const std::vector<float>& threshold);
  static constexpr int kHeadFeatures = 8;

  const StepTrace& last_step() const { return trace_; }
  // Generated tokens (B, L) so far (mask id where still masked).
  std::vector<int32_t> tokens() const;
  const std::vector<int32_t>& decode_step() const { return decode_step_; }  // (B, L), 1-based NFE; 0 = not yet
  const std::vector<float>& behaviour_logprob() const { return logp_; }      // (B, L)
  const std::vector<int32_t>& nfe() const { return nfe_; }
  const std::vector<uint8_t>& hit_budget() const { return hit_; }

 private:
  struct Candidate {
    int g;  // position in the generated region
    int32_t x0;
    float conf, logp, entropy, score;
  };
  // One forward over `seqs`, each computing canvas positions [q0[i], q0[i] + Tq) (with a cache: filling
  // it, or reading it for the other positions), scoring each sequence's candidates into cands[b].
  void forward_group(Model& model, const std::vector<int>& seqs, const std::vector<int>& q0, int Tq,
                     CacheUse::Mode mode, bool cached, const std::vector<uint8_t>& fill_all,
                     std::vector<std::vector<Candidate>>& cands);
  // The forwards of one step (whole rows, and cached reads), scoring each sequence's candidates.
  void forward_step(Model& model, const std::vector<uint8_t>& fill_all, std::vector<std::vector<Candidate>>& cands);
  int active_count() const;
  bool block_has_mask(int b, int block) const;
  void select(int b, std::vector<Candidate>& cands, bool fill_all);
  void advance(int b);

  ModelConfig cfg_;
  SamplerOptions opt_;
  int B_, L_, P_, T_, blocks_;  // P_: longest prompt (left padding), T_ = P_ + L_
  std::vector<int32_t> canvas_;       // (B, T)
  std::vector<uint8_t> keymask_;      // (B, T)
  std::vector<int32_t> positions_;    // (B, T)
  std::vector<int32_t> nfe_, block_, steps_in_block_;
  std::vector<uint8_t> finished_, hit_, refresh_;  // refresh_: the next forward must fill the cache
  KVCache cache_;
  std::vector<int32_t> decode_step_;
  std::vector<float> logp_;
  StepTrace trace_;
  // per-step buffers, reused
  std::vector<int32_t> ids_, pos_, rows_, slots_, starts_;
  std::vector<uint8_t> mask_;
  std::vector<NoiseRow> noise_rows_;
  std::vector<int32_t> x0_;
  std::vector<float> conf_, logp_row_, entropy_;
  // first_forward_features: score every masked position (not only the candidates') and keep, per
  // sequence, the confidences and entropies at temperature 0; the forward's candidates wait for step()
  bool score_all_ = false, pending_ = false;
  std::vector<std::vector<float>> all_conf_, all_entropy_;
  std::vector<std::vector<Candidate>> pending_cands_;
  std::vector<uint8_t> pending_fill_all_;
};

}  // namespace diffpo
