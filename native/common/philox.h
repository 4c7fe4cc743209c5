// Counter-based random numbers (Philox4x32-10, Salmon et al., SC'11): every draw is a pure function of
// its key. Decoding keys by (seed; sequence, step, position, vocabulary id), so the Gumbel noise of a
// row is made where its logits are (host or device) instead of in a host buffer of rows x vocabulary,
// and a sequence's draws never depend on which others share its batch; LoRA dropout keys by (seed;
// layer and target, forward, row, column), so its mask is remade, not stored. The same code runs on
// the CPU and in CUDA kernels.
#pragma once
#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define DIFFPO_HD __host__ __device__ inline
#else
#define DIFFPO_HD inline
#endif

namespace diffpo {

// What a decoding draw is keyed by besides the seed: the sequence's index in the whole batch, the
// sequence's own forward count (0-based), the position in the generated region.
struct NoiseRow {
  uint32_t sequence, step, position;
};

// The vocabulary-id slot of the random-remasking score (no id reaches it).
constexpr uint32_t kRemaskSlot = 0xFFFFFFFFu;

DIFFPO_HD void philox4x32_10(uint32_t c[4], uint32_t k0, uint32_t k1) {
  for (int r = 0; r < 10; r++) {
    if (r > 0) k0 += 0x9E3779B9u, k1 += 0xBB67AE85u;
    const uint64_t p0 = (uint64_t)0xD2511F53u * c[0], p1 = (uint64_t)0xCD9E8D57u * c[2];
    const uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0, hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
    const uint32_t n0 = hi1 ^ c[1] ^ k0, n2 = hi0 ^ c[3] ^ k1;
    c[0] = n0, c[1] = lo1, c[2] = n2, c[3] = lo0;
  }
}

// The four 32-bit words of the Philox block keyed by (seed; row, slot).
DIFFPO_HD void philox_block(uint32_t c[4], uint64_t seed, NoiseRow row, uint32_t slot) {
  c[0] = slot, c[1] = row.position, c[2] = row.step, c[3] = row.sequence;
  philox4x32_10(c, (uint32_t)seed, (uint32_t)(seed >> 32));
}

// A uniform double in (0, 1) with 53 random bits: (k + 1/2) / 2^53, never 0 or 1.
DIFFPO_HD double philox_uniform(uint64_t seed, NoiseRow row, uint32_t slot) {
  uint32_t c[4];
  philox_block(c, seed, row, slot);
  const uint64_t k = ((uint64_t)(c[0] >> 5) << 26) | (c[1] >> 6);
  return ((double)k + 0.5) / 9007199254740992.0;
}

// Gumbel(0, 1) noise of vocabulary id v for a row: -log(-log(u)).
DIFFPO_HD double gumbel_noise(uint64_t seed, NoiseRow row, uint32_t v) {
  return -log(-log(philox_uniform(seed, row, v)));
}

// Inverted dropout's factor from one 32-bit word w: 0 when (w + 1/2) / 2^32 < p, else 1 / (1 - p).
DIFFPO_HD float dropout_keep(uint32_t w, float p) { return ((double)w + 0.5) / 4294967296.0 < (double)p ? 0.f : 1.f / (1.f - p); }

// The factor of element (row, column) of a stream: word column % 4 of the block keyed by column / 4
// (one Philox block serves four columns). The mask is a function of its key, so a backward (or a
// recomputed forward) remakes it.
DIFFPO_HD float dropout_factor(uint64_t seed, NoiseRow row, uint32_t column, float p) {
  uint32_t c[4];
  philox_block(c, seed, row, column / 4);
  return dropout_keep(c[column % 4], p);
}

// Rows [lo, hi) of Backend::dropout (ops.h), the loop every host implementation runs: dropout_factor
// a block of four columns at a time.
inline void dropout_rows(float* y, const float* x, long lo, long hi, int C, float p, uint64_t seed, uint32_t stream,
                         uint32_t step, bool accumulate) {
  for (long n = lo; n < hi; n++)
    for (int c0 = 0; c0 < C; c0 += 4) {
      uint32_t w[4];
      philox_block(w, seed, {stream, step, (uint32_t)n}, (uint32_t)c0 / 4);
      for (int j = 0; j < 4 && c0 + j < C; j++) {
        const long i = n * C + c0 + j;
        const float v = x[i] * dropout_keep(w[j], p);
        y[i] = accumulate ? y[i] + v : v;
      }
    }
}

}  // namespace diffpo
