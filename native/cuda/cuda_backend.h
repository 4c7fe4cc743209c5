// The CUDA backend: the op list of ops.h on an NVIDIA GPU (kernels in this folder). Tensors live in
// managed memory, so the same Blocks back JS views and kernels; host index arrays and outputs are
// staged through device buffers. Plain C++: bindings and the test harness include it without CUDA.
#pragma once
#include <memory>
#include <string>

#include "../ops.h"

namespace diffpo {

struct CudaInfo {
  int devices = 0;
  std::string name;    // of the device used (the first one)
  std::string reason;  // why there is none (no driver, no device, ...)
};
CudaInfo cuda_info();

// bf16_gemm: tensor-core GEMMs (bf16 inputs, fp32 accumulation); false: the fp32 reference kernels.
// The environment variable DIFFPO_CUDA_GEMM=fp32 also selects the fp32 kernels.
std::unique_ptr<Backend> make_cuda_backend(int device = 0, bool bf16_gemm = true);

}  // namespace diffpo
