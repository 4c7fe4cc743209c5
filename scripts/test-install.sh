#!/usr/bin/env bash
# The install a new user does, checked in CI: pack the package (prepack builds the prebuilt binary and
# the TypeScript), install the tarball into an empty project with no compiler, make or python on
# PATH (with and without install scripts, as npm 12, pnpm and Bun run none), then use it:
# require, import, `npx diffpo --help` and a short `npx diffpo train`. Prints the binary's glibc floor.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
npm pack --pack-destination "$work" > "$work/pack.log" 2>&1 || { tail -30 "$work/pack.log"; exit 1; }
tarball=$(ls "$work"/diffpo-*.tgz)
echo "packed $(basename "$tarball"): $(du -k "$tarball" | cut -f1) KiB"
tar -tzf "$tarball" | grep -E '^package/prebuilds/.*\.node$'
# a PATH with node and a shell only: nothing that could compile the addon
mkdir -p "$work/bin"
for tool in node npm npx sh bash env; do ln -s "$(command -v $tool)" "$work/bin/$tool"; done
for mode in scripts ignore-scripts; do
  project="$work/project-$mode"
  mkdir -p "$project" && cd "$project"
  echo '{ "name": "try-diffpo", "version": "1.0.0", "private": true }' > package.json
  flag=$([ "$mode" = ignore-scripts ] && echo --ignore-scripts || true)
  start=$(date +%s)
  PATH="$work/bin" npm install --no-audit --no-fund $flag "$tarball" > install.log 2>&1 || { tail -30 install.log; exit 1; }
  echo "$mode: installed in $(( $(date +%s) - start )) s"
  test ! -d node_modules/diffpo/build || { echo "the install compiled the addon"; exit 1; }
  PATH="$work/bin" node -e "const d = require('diffpo'); const m = d.DiffusionLM.create('tiny'); console.log('require: ' + m.numParameters + ' parameters, addon ' + require('diffpo/native').path.split('node_modules/')[1]); m.dispose()"
  PATH="$work/bin" node --input-type=module -e "import { getTask, loadTestSet } from 'diffpo'; console.log('import: ' + (await loadTestSet(getTask('sudoku4'))).length + ' sudoku4 test items from the package')"
  PATH="$work/bin" npx diffpo --help | head -1
done
cd "$work/project-ignore-scripts"
PATH="$work/bin" npx diffpo train --task sudoku4 --steps 2 --limit 16 --threads 2 --out run > train.log 2>&1 || { tail -30 train.log; exit 1; }
grep -E '^\| (sudoku4-base|after 2 diffpo steps) \|' train.log
test -f run/report.html && test -f run/checkpoint.json
node "$root/scripts/elf-versions.mjs" node_modules/diffpo/prebuilds/linux-x64/*.node | tail -1
echo "install test passed"
