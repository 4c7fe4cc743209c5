#!/usr/bin/env bash
# The library itself on a GPU, through Node.js (the second half of the GPU check; bench/gpu-check.sh is
# the first): the CUDA flavour loaded by the loader, the shipped sudoku4 base evaluated on CPU and on
# CUDA (bf16 and fp32 GEMMs: accuracy and NFE must agree), training-step times of the presets on both,
# and a short RL run of the main job on CUDA. Appends its tables to $OUT/gpu-check.md (or ./gpu-check.md).
# Needs the built library here (dist/, build/Release/diffpo.node, build-cuda/Release/diffpo_cuda.node
# for the GPU's architecture). Usage: NODE=/path/to/node bash bench/gpu-node-check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
node=${NODE:-node}
out=${OUT:-.}/gpu-check.md
threads=$(nproc)
say() { echo "$@" | tee -a "$out"; }
# runs a command under a time limit, its output into the report as a code block
section() {
  local title=$1 limit=$2
  shift 2
  say
  say "### $title"
  say '```'
  local t0=$(date +%s)
  timeout "$limit" "$@" 2>&1 | tail -25 | tee -a "$out"
  local rc=${PIPESTATUS[0]}
  say "(exit $rc, $(( $(date +%s) - t0 )) s)"
  say '```'
}
say
say "## The library through Node.js ($("$node" --version), $threads CPU threads)"
section "backendStatus()" 30 "$node" -e "import('diffpo').then((d) => console.log(JSON.stringify(d.backendStatus())))"
for backend in cpu cuda cuda-fp32; do
  section "eval models/sudoku4-base, threshold 0.9, 500 test items, --backend $backend" 60 \
    "$node" dist/esm/app/cli.js eval --model models/sudoku4-base --task sudoku4 --threshold 0.9 --json --threads "$threads" --backend "$backend"
done
for config in tiny small medium; do
  for backend in cpu cuda; do
    section "one training step (masked-diffusion loss, backward, AdamW), $config, $backend" 45 \
      "$node" bench/run.mjs step --config "$config" --iters 5 --threads "$threads" --backend "$backend"
  done
done
section "the main job on CUDA: diffpo train --task sudoku4 --backend cuda" 120 \
  "$node" dist/esm/app/cli.js train --task sudoku4 --backend cuda --threads "$threads" --out "$(mktemp -d)/run"
