#!/usr/bin/env bash
# The RL experiment of the README's "Results": from the shipped bases, d1 vs DiFFPO (fixed threshold)
# vs DiFFPO with the learned threshold (joint), at equal steps and at an equal wall-clock budget,
# seeds 0 and 1, on sudoku4 and countdown3; then the tables and Pareto plots (scripts/experiment-table.mjs).
# Usage: bash scripts/experiment.sh [OUT=runs/experiment] [JOBS=1]   (about an hour on one core;
# runs that already have a result.json are kept, so an interrupted experiment continues)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/experiment}
jobs=${2:-1}
steps=${STEPS:-60}
budget=${BUDGET:-60}
mkdir -p "$out"
{
  for task in sudoku4 countdown3; do for seed in 0 1; do
    common="--task $task --seed $seed --threads 1"
    echo "$common --method d1     --sampler fixed   --steps $steps --out $out/steps-$task-d1-$seed"
    echo "$common --method diffpo --sampler fixed   --steps $steps --out $out/steps-$task-diffpo-$seed"
    echo "$common --method diffpo --sampler learned --lambda 0.1 --steps $steps --out $out/steps-$task-joint0.1-$seed"
    echo "$common --method diffpo --sampler learned --lambda 0.5 --steps $steps --out $out/steps-$task-joint0.5-$seed"
    echo "$common --method d1     --sampler fixed   --steps 100000 --time-budget $budget --out $out/time-$task-d1-$seed"
    echo "$common --method diffpo --sampler fixed   --steps 100000 --time-budget $budget --out $out/time-$task-diffpo-$seed"
    echo "$common --method diffpo --sampler learned --lambda 0.1 --steps 100000 --time-budget $budget --out $out/time-$task-joint0.1-$seed"
  done; done
} | xargs -P "$jobs" -L 1 sh -c 'eval "out=\${$#}"; test -f "$out/result.json" || node dist/esm/cli.js train "$@" > /dev/null 2>&1 || echo "failed: $*"' train
node scripts/experiment-table.mjs "$out" docs/results
