#!/usr/bin/env bash
# Builds the CUDA flavour (native/cuda/CMakeLists.txt) and places it in packages/linux-x64-cuda, the
# package users add next to diffpo (`npm install @diffpo/linux-x64-cuda`). ARCHS (CMake's
# CUDA_ARCHITECTURES, default: SASS for sm 75, 80, 86, 89 and 90 plus PTX of sm 90) picks the GPUs.
# Usage: scripts/build-cuda-package.sh [ARCHS]   (the package's prepack runs it)
set -euo pipefail
cd "$(dirname "$0")/.."
archs=${1:-"75-real;80-real;86-real;89-real;90"}
npx cmake-js compile -d native/cuda -O build-cuda --CDCMAKE_CUDA_ARCHITECTURES="$archs"
cp build-cuda/Release/diffpo_cuda.node packages/linux-x64-cuda/diffpo_cuda.node
echo "packages/linux-x64-cuda/diffpo_cuda.node ($archs)"
