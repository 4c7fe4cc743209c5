#!/usr/bin/env bash
# Everything the CUDA backend needs checked on a GPU, in one call of the device tool (under 8
# minutes on an H100/H200): builds the Node-free harness with CMake, runs every parity check (ops
# forward and backward, the whole model, decoding) and the timing table at LLaDA-8B's shapes, then
# PyTorch's GEMMs and decoding on the same GPU. Writes the tables to $OUT/gpu-check.md (or ./gpu-check.md).
# Usage: bash bench/gpu-check.sh [ARCH=90] [GEN=256]
set -uo pipefail
cd "$(dirname "$0")/.."
# nvcc is often installed without being on PATH
command -v nvcc > /dev/null || for d in /usr/local/cuda/bin /usr/local/cuda-*/bin; do [ -x "$d/nvcc" ] && export PATH="$d:$PATH" && break; done
arch=${1:-90}
gen=${2:-256}
out=${OUT:-.}/gpu-check.md
build=$(mktemp -d)
start=$(date +%s)
{
  echo "# bench/gpu-check.sh, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo '```'
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1
  nvcc --version 2>&1 | tail -1
  echo '```'
} > "$out"
if ! cmake -S native/cuda -B "$build" -DCMAKE_CUDA_ARCHITECTURES="$arch" -DCMAKE_BUILD_TYPE=Release > "$build/cmake.log" 2>&1 ||
   ! cmake --build "$build" --target gpu_check -j "$(nproc)" >> "$build/cmake.log" 2>&1; then
  { echo; echo "BUILD FAILED"; echo '```'; tail -40 "$build/cmake.log"; echo '```'; } >> "$out"
  cat "$out"
  exit 1
fi
echo "built in $(( $(date +%s) - start )) s" >> "$out"
# its lines go to a log as they come, so a run cut short still says how far it got
log=$(dirname "$out")/gpu-check-harness.log
timeout 240 "$build/gpu_check" --out "$build/harness.md" --gen "$gen" > "$log" 2>&1
status=$?
cat "$build/harness.md" >> "$out" 2>/dev/null || { echo "harness wrote no report (exit $status); its log:"; cat "$log"; } >> "$out"
[ $status -eq 124 ] && echo "harness TIMED OUT" >> "$out"
if command -v python3 > /dev/null && python3 -c 'import torch; assert torch.cuda.is_available()' 2> /dev/null; then
  timeout 100 python3 bench/gpu_llada_torch.py --gen "$gen" >> "$out" 2>&1 || echo "PyTorch part failed or timed out" >> "$out"
else
  echo "PyTorch with CUDA not found: no comparison" >> "$out"
fi
echo "total $(( $(date +%s) - start )) s" >> "$out"
cat "$out"
exit $status
