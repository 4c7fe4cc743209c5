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

// A uniform double in (0, 1) with 53 random bits: (k + 1/2) / 2^53, never 0 or 1.
DIFFPO_HD double philox_uniform(uint64_t seed, NoiseRow row, uint32_t slot) {
  uint32_t c[4] = {slot, row.position, row.step, row.sequence};
  philox4x32_10(c, (uint32_t)seed, (uint32_t)(seed >> 32));
  const uint64_t k = ((uint64_t)(c[0] >> 5) << 26) | (c[1] >> 6);
  return ((double)k + 0.5) / 9007199254740992.0;
}

// Gumbel(0, 1) noise of vocabulary id v for a row: -log(-log(u)).
DIFFPO_HD double gumbel_noise(uint64_t seed, NoiseRow row, uint32_t v) {
  return -log(-log(philox_uniform(seed, row, v)));
}

// Inverted dropout's factor for element (row, column) of a stream: 0 with probability p, else
// 1 / (1 - p). The mask is a function of its key, so a backward (or a recomputed forward) remakes it.
DIFFPO_HD float dropout_factor(uint64_t seed, NoiseRow row, uint32_t column, float p) {
  return philox_uniform(seed, row, column) < (double)p ? 0.f : 1.f / (1.f - p);
}

// Rows [lo, hi) of Backend::dropout (ops.h), the loop every host implementation runs.
inline void dropout_rows(float* y, const float* x, long lo, long hi, int C, float p, uint64_t seed, uint32_t stream,
                         uint32_t step, bool accumulate) {
  for (long n = lo; n < hi; n++)
    for (int c = 0; c < C; c++) {
      const float v = x[n * C + c] * dropout_factor(seed, {stream, step, (uint32_t)n}, (uint32_t)c, p);
      y[n * C + c] = accumulate ? y[n * C + c] + v : v;
    }
}

}  // namespace diffpo
