// Branch-free float exp that compilers vectorise (Cephes-style range reduction, degree-6 polynomial;
// relative error below 2e-7 on [-87, 88]). std::exp would cost ~20 ns per call in softmax loops.
#pragma once
#include <cstdint>
#include <cstring>

namespace diffpo {

inline float fast_expf(float x) {
  x = x < -87.3f ? -87.3f : (x > 88.3f ? 88.3f : x);
  const float n = __builtin_floorf(x * 1.44269504088896341f + 0.5f);
  float r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  int32_t bits = ((int32_t)n + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define DIFFPO_VECTORIZE __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define DIFFPO_VECTORIZE
#endif

}  // namespace diffpo
