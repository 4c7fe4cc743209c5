#!/usr/bin/env bash
# Builds the CUDA harness without CUDA (g++ only) and runs `gpu_check --self-test`: every parity check
# of bench/gpu-check.sh, with the reference loops standing in for the GPU. Usage: gpu-check-self-test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
flags=(-std=c++17 -O2 -fopenmp-simd -fno-math-errno -fno-trapping-math)
pids=()
for f in native/cpu/gemm_avx2.cc native/cpu/row_kernels_avx2.cc; do
  g++ "${flags[@]}" -mavx2 -mfma -c "$f" -o "$out/$(basename "$f").o" & pids+=($!)
done
for f in native/cuda/gpu_check.cc native/op_cases.cc native/model.cc native/lora.cc native/ops.cc native/sampler.cc native/common/threadpool.cc \
  native/cpu/cpu_backend.cc native/cpu/gemm.cc native/cpu/row_kernels_portable.cc; do
  g++ "${flags[@]}" -c "$f" -o "$out/$(basename "$f").o" & pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
g++ -o "$out/gpu_check" "$out"/*.o -pthread
"$out/gpu_check" --self-test "$@"
