#!/usr/bin/env bash
# The sanitizer run (`npm run test:asan`): the product and test addons built with AddressSanitizer and
# UndefinedBehaviorSanitizer (in a copy of the sources, so build/ is left alone), then the tests that
# drive the native core run against them, with the sanitizer runtimes preloaded into node (which is
# not itself instrumented). Any report aborts the process, which fails its test.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r binding.gyp package.json native "$work"/
ln -s "$root/node_modules" "$work/node_modules"
flags="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g -O1"
(cd "$work" && CFLAGS="$flags" CXXFLAGS="$flags" LDFLAGS="-fsanitize=address,undefined" npm run --silent build:native > build.log 2>&1) || { tail -30 "$work/build.log"; exit 1; }
mkdir -p build-asan
cp "$work/build/Release/diffpo.node" "$work/build/Release/testing/diffpo_testing.node" build-asan/
export LD_PRELOAD="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1
export DIFFPO_NATIVE_PATH=$root/build-asan/diffpo.node DIFFPO_TESTING_NATIVE_PATH=$root/build-asan/diffpo_testing.node
npx vitest run test/ops.test.ts test/model.test.ts test/checkpoint.test.ts test/checkpoint-corpus.test.ts test/sampler.test.ts test/likelihood.test.ts test/engine.test.ts test/real-checkpoint.test.ts test/lora.test.ts "$@"
