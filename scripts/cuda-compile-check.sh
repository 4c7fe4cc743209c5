#!/usr/bin/env bash
# Compiles the CUDA backend for one architecture, compile only (no GPU needed), so the sources never
# rot on machines without one; CI runs it through the test suite. Usage: cuda-compile-check.sh [ARCH=80]
set -euo pipefail
cd "$(dirname "$0")/.."
arch=${1:-80}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
pids=()
for f in native/cuda/*.cu; do
  nvcc -std=c++17 -O3 -arch=sm_$arch --expt-relaxed-constexpr -c "$f" -o "$out/$(basename "$f").o" &
  pids+=($!)
done
# the harness with the CUDA backend declared (plain C++: the CUDA headers stay inside the .cu files)
g++ -std=c++17 -fsyntax-only -DDIFFPO_CUDA native/cuda/gpu_check.cc &
pids+=($!)
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
[ $status -eq 0 ] && echo "CUDA sources compile for sm_$arch"
exit $status
