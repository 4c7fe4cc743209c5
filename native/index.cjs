'use strict';
// Loads the native addon. The CPU build is found by node-gyp-build's own rules: a local build
// (build/Release, fresh during development or built by the install script where no prebuild fits)
// first, then the prebuilds/<platform>-<arch>/ binary whose tags (napi, glibc or musl) match this
// machine. DIFFPO_NATIVE_PATH overrides both. The CUDA flavour is its own package
// (@diffpo/linux-x64-cuda, an optional dependency) or a local build-cuda/Release, or
// DIFFPO_CUDA_NATIVE_PATH; it is loaded on first request by loadCuda(), never at import.
const fs = require('node:fs');
const path = require('node:path');
const nodeGypBuild = require('node-gyp-build');

const root = path.join(__dirname, '..');

function libc() {
  const glibc = process.platform === 'linux' ? process.report?.getReport?.().header?.glibcVersionRuntime : undefined;
  return glibc ? `glibc ${glibc}` : process.platform === 'linux' ? 'not glibc' : process.platform;
}

function resolveCpu() {
  if (process.env.DIFFPO_NATIVE_PATH) return process.env.DIFFPO_NATIVE_PATH;
  // the local build by name: build/Release also holds the test addon of a checkout, and
  // node-gyp-build would take whichever .node file the directory lists first
  const local = path.join(root, 'build', 'Release', 'diffpo.node');
  if (!process.env.PREBUILDS_ONLY && fs.existsSync(local)) return local;
  try {
    return nodeGypBuild.resolve(root);
  } catch (err) {
    throw new Error(
      `diffpo: no native build for ${process.platform}-${process.arch} (${libc()}, Node ${process.versions.node}). ` +
        'The npm package ships a prebuilt binary for linux-x64 with glibc >= 2.28; elsewhere build from source with `npm run build:native` ' +
        `in the package folder (needs python3, make and a C++17 compiler). ${err.message.split('\n')[0]}`,
    );
  }
}

const file = resolveCpu();
module.exports = require(file);
module.exports.path = file;

const CUDA_PACKAGE = '@diffpo/linux-x64-cuda';

// { addon, reason }: the CUDA flavour, or null and why it is unavailable (not installed, cannot load).
let cuda;
module.exports.loadCuda = function loadCuda() {
  if (cuda) return cuda;
  let packaged;
  try {
    packaged = require(CUDA_PACKAGE).path;
  } catch {
    packaged = undefined;
  }
  const candidates = [process.env.DIFFPO_CUDA_NATIVE_PATH, packaged, path.join(root, 'build-cuda', 'Release', 'diffpo_cuda.node')].filter(Boolean);
  const found = candidates.find((f) => fs.existsSync(f));
  if (!found) return (cuda = { addon: null, reason: `the CUDA flavour is not installed (npm install ${CUDA_PACKAGE}, or npm run build:cuda from source)` });
  try {
    cuda = { addon: require(found), reason: '' };
    cuda.addon.path = found;
  } catch (err) {
    cuda = { addon: null, reason: `cannot load ${found}: ${err.message}` };
  }
  return cuda;
};
