// Single-precision GEMM, BLIS-style: pack A into MR-row panels and B into NR-column panels, then a
// register-blocked micro-kernel (AVX2/FMA 6x16 when the CPU has it, a portable one otherwise).
//   C[M,N] (+)= A[M,K] B[K,N]
// A and B are described by row and column strides, so transposed operands need no copies:
//   linear forward  out = inp W^T : A = inp (rs=I, cs=1), B[i,o] = W[o,i] (rs=1, cs=I)
#pragma once
#include <cstddef>
#include <cstdint>

namespace diffpo {

class ThreadPool;

struct MatView {
  const float* p;
  long rs, cs;  // element (r, c) is p[r*rs + c*cs]
  // B only: BF16 elements at bf16[r*rs + c*cs] instead of p (BF16-resident weights), widened exactly
  // while packing, as llama.cpp's CPU path does, so the micro-kernel is the float32 one.
  const uint16_t* bf16 = nullptr;
};

// pool may be null (single-threaded). accumulate: C += AB, else C = AB.
void sgemm(int M, int N, int K, MatView A, MatView B, float* C, long ldc, bool accumulate, ThreadPool* pool);

// The portable kernel alone, for tests and the benchmark (dispatch otherwise picks the fastest).
void sgemm_portable(int M, int N, int K, MatView A, MatView B, float* C, long ldc, bool accumulate);

const char* gemm_kernel_name();


}  // namespace diffpo
