#include "sampler.h"

#include <algorithm>
#include <cmath>

#include "common/errors.h"

namespace diffpo {

Decoder::Decoder(const ModelConfig& cfg, const std::vector<std::vector<int32_t>>& prompts, SamplerOptions options)
    : cfg_(cfg), opt_(std::move(options)) {
  B_ = (int)prompts.size();
  L_ = opt_.gen_length;
  require(B_ > 0, "ERR_INVALID_ARGUMENT", "no prompts");
  require(L_ > 0 && opt_.block_length > 0 && L_ % opt_.block_length == 0, "ERR_INVALID_ARGUMENT",
          "genLength must be a positive multiple of blockLength");
  blocks_ = L_ / opt_.block_length;
  if (opt_.strategy == Strategy::Steps)
    require(opt_.steps > 0 && opt_.steps % blocks_ == 0, "ERR_INVALID_ARGUMENT",
            "steps must be a positive multiple of the number of blocks");
  require((int)opt_.threshold.size() == B_ || opt_.strategy == Strategy::Steps || opt_.strategy == Strategy::Factor,
          "ERR_INVALID_ARGUMENT", "one threshold per sequence is required");
  require((int)opt_.max_nfe.size() == B_, "ERR_INVALID_ARGUMENT", "one NFE budget per sequence is required");
  P_ = 0;
  for (const auto& p : prompts) {
    require(!p.empty(), "ERR_INVALID_ARGUMENT", "empty prompt");
    P_ = std::max(P_, (int)p.size());
  }
  T_ = P_ + L_;
  canvas_.assign((size_t)B_ * T_, cfg_.mask_token_id);
  keymask_.assign((size_t)B_ * T_, 1);
  positions_.assign((size_t)B_ * T_, 0);
  for (int b = 0; b < B_; b++) {
    const int pad = P_ - (int)prompts[b].size();
    for (int t = 0; t < T_; t++) {
      const size_t i = (size_t)b * T_ + t;
      if (t < pad) {
        canvas_[i] = 0;  // hidden from every position by the key mask
        keymask_[i] = 0;
      } else if (t < P_) {
        const int32_t id = prompts[b][t - pad];
        require(id >= 0 && id < cfg_.vocab_size, "ERR_INVALID_ARGUMENT",
                "prompt " + std::to_string(b) + " has token id " + std::to_string(id) + " outside [0, vocab_size)");
        canvas_[i] = id;
      }
      positions_[i] = std::max(0, t - pad);
    }
  }
  nfe_.assign(B_, 0);
  block_.assign(B_, 0);
  steps_in_block_.assign(B_, 0);
  finished_.assign(B_, 0);
  hit_.assign(B_, 0);
  decode_step_.assign((size_t)B_ * L_, 0);
  logp_.assign((size_t)B_ * L_, 0.f);
  refresh_.assign(B_, 1);
}

int Decoder::active_count() const {
  return (int)std::count(finished_.begin(), finished_.end(), 0);
}

std::vector<int32_t> Decoder::tokens() const {
  std::vector<int32_t> out((size_t)B_ * L_);
  for (int b = 0; b < B_; b++)
    std::copy(canvas_.begin() + (size_t)b * T_ + P_, canvas_.begin() + (size_t)(b + 1) * T_, out.begin() + (size_t)b * L_);
  return out;
}

bool Decoder::block_has_mask(int b, int block) const {
  const int32_t* row = canvas_.data() + (size_t)b * T_ + P_ + (size_t)block * opt_.block_length;
  return std::find(row, row + opt_.block_length, cfg_.mask_token_id) != row + opt_.block_length;
}

// Chooses which candidates (masked positions of the current block) to unmask and writes them.
void Decoder::select(int b, std::vector<Candidate>& cands, bool fill_all) {
  size_t take = cands.size();
  if (!fill_all && !cands.empty()) {
    auto by_score = [](const Candidate& x, const Candidate& y) { return x.score > y.score || (x.score == y.score && x.g < y.g); };
    switch (opt_.strategy) {
      case Strategy::Steps: {
        // LLaDA's schedule over a block that starts fully masked (n tokens in s steps)
        const int s = opt_.steps / blocks_, i = steps_in_block_[b], n = opt_.block_length;
        take = std::min(cands.size(), (size_t)(n / s + (i < n % s ? 1 : 0)));
        std::stable_sort(cands.begin(), cands.end(), by_score);
        break;
      }
      case Strategy::Threshold: {
        const float tau = opt_.threshold[b];
        std::stable_sort(cands.begin(), cands.end(), by_score);
        take = 1;
        while (take < cands.size() && cands[take].conf >= tau) take++;
        break;
      }
      case Strategy::Factor: {
        std::stable_sort(cands.begin(), cands.end(), by_score);
        take = 1;
        while (take < cands.size() && cands[take].conf >= 1.f - opt_.factor / (float)(take + 2)) take++;
        break;
      }
      case Strategy::Entropy: {
        const float gamma = opt_.threshold[b];
        std::stable_sort(cands.begin(), cands.end(), [](const Candidate& x, const Candidate& y) {
          return x.entropy < y.entropy || (x.entropy == y.entropy && x.g < y.g);
        });
        // ascending entropies: the prefix of k has sum - max = (sum of the first k-1), so k+1 fits
        // while the sum of the first k stays within gamma
        double sum = 0;
        take = 0;
        while (take < cands.size() && sum <= gamma) sum += cands[take++].entropy;
        break;
      }
    }
  }
  for (size_t i = 0; i < take; i++) {
    const Candidate& c = cands[i];
    canvas_[(size_t)b * T_ + P_ + c.g] = c.x0;
    decode_step_[(size_t)b * L_ + c.g] = nfe_[b];
    logp_[(size_t)b * L_ + c.g] = c.logp;
    trace_.sequence.push_back(b);
    trace_.position.push_back(c.g);
    trace_.token.push_back(c.x0);
    trace_.confidence.push_back(c.conf);
  }
}

void Decoder::advance(int b) {
  if (opt_.strategy == Strategy::Steps) {
    // LLaDA's schedule spends exactly steps/blocks forwards per block
    if (++steps_in_block_[b] == opt_.steps / blocks_) {
      block_[b]++;
      steps_in_block_[b] = 0;
    }
  }
  while (block_[b] < blocks_ && !block_has_mask(b, block_[b])) {
    block_[b]++;
    steps_in_block_[b] = 0;
  }
  if (block_[b] >= blocks_) finished_[b] = 1;
}

void Decoder::forward_group(Model& model, const std::vector<int>& seqs, const std::vector<int>& q0, int Tq,
                            CacheUse::Mode mode, bool cached, const std::vector<uint8_t>& fill_all,
                            std::vector<std::vector<Candidate>>& cands) {
  const int R = (int)seqs.size();
  ids_.resize((size_t)R * Tq);
  pos_.resize((size_t)R * Tq);
  mask_.resize((size_t)R * T_);  // keys: the whole row (cached or not)
  slots_.assign(seqs.begin(), seqs.end());
  starts_.assign(q0.begin(), q0.end());
  rows_.clear();
  struct Owner {
    int b, g;
    bool candidate;  // false: scored only for first_forward_features
  };
  std::vector<Owner> owner;  // per scored row
  for (int r = 0; r < R; r++) {
    const int b = seqs[r];
    std::copy_n(canvas_.begin() + (size_t)b * T_ + q0[r], Tq, ids_.begin() + (size_t)r * Tq);
    std::copy_n(positions_.begin() + (size_t)b * T_ + q0[r], Tq, pos_.begin() + (size_t)r * Tq);
    std::copy_n(keymask_.begin() + (size_t)b * T_, T_, mask_.begin() + (size_t)r * T_);
    if (finished_[b]) continue;
    // the last forward a budget allows fills every masked position
    const int lo = fill_all[b] ? 0 : block_[b] * opt_.block_length;
    const int hi = fill_all[b] ? L_ : lo + opt_.block_length;
    for (int g = score_all_ ? 0 : lo; g < (score_all_ ? L_ : hi); g++)
      if (canvas_[(size_t)b * T_ + P_ + g] == cfg_.mask_token_id) {
        rows_.push_back(r * Tq + P_ + g - q0[r]);
        owner.push_back({b, g, g >= lo && g < hi});
      }
  }
  const int S = (int)rows_.size();
  // each row's draws are keyed by (seed; sequence in the whole batch, its forward count, position):
  // the Gumbel noise is made by the backend beside the logits, the random-remasking score here
  const bool gumbel = opt_.temperature > 0, remask = opt_.strategy == Strategy::Steps && opt_.random_remasking;
  noise_rows_.resize(S);
  std::vector<float> remask_score(S);
  for (int s = 0; s < S; s++) {
    const int b = owner[s].b;
    noise_rows_[s] = {(uint32_t)(opt_.first_sequence + (uint64_t)b), (uint32_t)nfe_[b], (uint32_t)owner[s].g};
    if (remask) remask_score[s] = (float)philox_uniform(opt_.seed, noise_rows_[s], kRemaskSlot);
  }
  x0_.resize(S), conf_.resize(S), logp_row_.resize(S), entropy_.resize(S);
  const CacheUse use{mode, &cache_, slots_.data(), starts_.data()};
  model.decode_scores(ids_.data(), mask_.data(), pos_.data(), R, Tq, rows_.data(), S, cached ? &use : nullptr,
                      gumbel ? noise_rows_.data() : nullptr, opt_.seed, opt_.temperature, x0_.data(), conf_.data(), logp_row_.data(),
                      entropy_.data(), score_all_ && gumbel);
  // with sampling, the features' confidences are those of the argmax, as at temperature 0
  const float* plain_conf = score_all_ && gumbel ? model.plain_confidence() : conf_.data();
  for (int s = 0; s < S; s++) {
    const Owner& o = owner[s];
    if (score_all_) {
      all_conf_[o.b].push_back(plain_conf[s]);
      all_entropy_[o.b].push_back(entropy_[s]);
    }
    if (o.candidate)
      cands[o.b].push_back({o.g, x0_[s], conf_[s], logp_row_[s], entropy_[s], remask ? remask_score[s] : conf_[s]});
  }
}

void Decoder::forward_step(Model& model, const std::vector<uint8_t>& fill_all, std::vector<std::vector<Candidate>>& cands) {
  const bool cached = opt_.cache != CacheMode::None;
  if (cached && cache_.slots == 0) model.resize_cache(cache_, B_, T_);
  // Whole rows: every sequence without a cache; with one, those starting a block (they fill it) and
  // those filling every position (they need all logits). Finished rows stay only without compaction.
  std::vector<int> full, q0;
  for (int b = 0; b < B_; b++)
    if (finished_[b] ? !opt_.compact && !cached : !cached || refresh_[b] || fill_all[b]) full.push_back(b);
  if (!full.empty()) {
    q0.assign(full.size(), 0);
    forward_group(model, full, q0, T_, CacheUse::Fill, cached, fill_all, cands);
    for (int b : full) refresh_[b] = 0;
  }
  if (cached) {
    // The others read the cache: Dual computes the current block only (one forward for all); Prefix
    // the block and everything after it, so sequences in different blocks go in separate forwards.
    std::vector<int> rest;
    for (int b = 0; b < B_; b++)
      if (!finished_[b] && std::find(full.begin(), full.end(), b) == full.end()) rest.push_back(b);
    while (!rest.empty()) {
      const int block = block_[rest[0]];
      std::vector<int> group, later;
      for (int b : rest) (opt_.cache == CacheMode::Dual || block_[b] == block ? group : later).push_back(b);
      q0.clear();
      for (int b : group) q0.push_back(P_ + block_[b] * opt_.block_length);
      const int Tq = opt_.cache == CacheMode::Dual ? opt_.block_length : T_ - q0[0];
      forward_group(model, group, q0, Tq, CacheUse::Read, true, fill_all, cands);
      rest.swap(later);
    }
  }
}

std::vector<float> Decoder::first_forward_features(Model& model) {
  require(!pending_ && std::all_of(nfe_.begin(), nfe_.end(), [](int n) { return n == 0; }), "ERR_INVALID_ARGUMENT",
          "the head's features come from the first forward: ask for them once, before any step");
  std::vector<uint8_t> fill_all(B_, 0);
  for (int b = 0; b < B_; b++) fill_all[b] = opt_.max_nfe[b] == 1;
  std::vector<std::vector<Candidate>> cands(B_);
  all_conf_.assign(B_, {});
  all_entropy_.assign(B_, {});
  score_all_ = true;
  try {
    forward_step(model, fill_all, cands);
  } catch (...) {
    score_all_ = false;
    throw;
  }
  score_all_ = false;
  pending_cands_ = std::move(cands);
  pending_fill_all_ = std::move(fill_all);
  pending_ = true;
  const double ln_v = std::log((double)cfg_.vocab_size - 1);
  std::vector<float> out((size_t)B_ * kHeadFeatures);
  for (int b = 0; b < B_; b++) {
    const auto &c = all_conf_[b], &e = all_entropy_[b];
    const double n = (double)c.size();
    double mean = 0, lo = INFINITY, var = 0, f9 = 0, f7 = 0, f5 = 0, ment = 0, xent = 0;
    for (float x : c) mean += x / n, lo = std::min(lo, (double)x), f9 += x >= 0.9, f7 += x >= 0.7, f5 += x >= 0.5;
    for (float x : c) var += ((double)x - mean) * ((double)x - mean) / n;
    for (float x : e) ment += x / ln_v / n, xent = std::max(xent, x / ln_v);
    const double f[kHeadFeatures] = {mean, lo, std::sqrt(var), f9 / n, f7 / n, f5 / n, ment, xent};
    std::copy(f, f + kHeadFeatures, out.begin() + (size_t)b * kHeadFeatures);
  }
  return out;
}

void Decoder::set_thresholds(const std::vector<float>& threshold) {
  require((int)threshold.size() == B_, "ERR_INVALID_ARGUMENT", "one threshold per sequence is required");
  opt_.threshold = threshold;
}

bool Decoder::step(Model& model) {
  trace_ = StepTrace();
  if (active_count() == 0) return true;
  std::vector<uint8_t> fill_all(B_, 0);
  std::vector<std::vector<Candidate>> cands(B_);
  if (pending_) {
    // the features' forward was this step's
    fill_all.swap(pending_fill_all_);
    cands.swap(pending_cands_);
    pending_ = false;
  } else {
    for (int b = 0; b < B_; b++)
      fill_all[b] = !finished_[b] && opt_.max_nfe[b] > 0 && nfe_[b] + 1 >= opt_.max_nfe[b];
    forward_step(model, fill_all, cands);
  }
  for (int b = 0; b < B_; b++) {
    if (finished_[b]) continue;
    nfe_[b]++;
    select(b, cands[b], fill_all[b]);
    const int block = block_[b];
    if (fill_all[b]) {
      hit_[b] = 1;
      finished_[b] = 1;
    } else {
      advance(b);
    }
    if (block_[b] != block) refresh_[b] = 1;
  }
  return active_count() == 0;
}

}  // namespace diffpo
