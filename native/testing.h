// Self-checks run by the test suite (like llm.c's test_gpt2): each op's fast version against the
// reference loop, and every backward against central finite differences in double precision.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "model.h"

namespace diffpo {

struct CheckResult {
  double forward_error = 0;                     // every output, fast vs float64 reference, normalised max error
  std::map<std::string, double> backward_error;  // fast backward vs finite differences, per input
  std::map<std::string, double> reference_backward_error;  // the reference backward vs finite differences
};

// The op case table's names (native/op_cases.h), and "gemm": the CPU's GEMM kernels on every transpose.
std::vector<std::string> op_check_names();
// The op-list methods a case calls.
std::vector<std::string> op_case_covers(const std::string& name);
CheckResult op_check(const std::string& name, uint64_t seed);

// A tiny model: fast-backend logits and gradients against a double-precision reference model built from
// the reference loops, with finite differences over every parameter.
CheckResult model_check(const ModelConfig& cfg, uint64_t seed);

// log p(targets[s]) at rows[s] under a float64 reference model with the given parameters (laid out
// like Model's parameter block), for finite-difference checks of anything built on the log-probs.
std::vector<double> reference_logprobs(const ModelConfig& cfg, const double* params, const int32_t* ids,
                                       const uint8_t* keymask, const int32_t* pos, int B, int T,
                                       const std::vector<int32_t>& rows, const std::vector<int32_t>& targets);

// Measures this machine's FP32 FMA peak with a register-only FMA loop (GFLOP/s on `threads` threads).
double measure_fma_peak_gflops(int threads, double seconds);

}  // namespace diffpo
