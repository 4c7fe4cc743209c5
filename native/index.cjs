'use strict';
// Loads the native addon: a prebuilt binary from prebuilds/<platform>-<arch>/ when one is shipped,
// otherwise the local build (build/Release) through node-gyp-build. DIFFPO_NATIVE_PATH overrides both.
// The CUDA flavour (diffpo_cuda.node: prebuilds/<platform>-<arch>/ or build-cuda/Release, or
// DIFFPO_CUDA_NATIVE_PATH) is loaded on first request by loadCuda(), never at import.
const fs = require('node:fs');
const path = require('node:path');
const nodeGypBuild = require('node-gyp-build');

const root = path.join(__dirname, '..');

function prebuildPath() {
  const dir = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);
  let files;
  try {
    files = fs.readdirSync(dir);
  } catch {
    return null;
  }
  // prebuildify names N-API builds '<name>.node' or '<name>.napi.node'; prefer an explicit napi tag
  const builds = files.filter((f) => f.endsWith('.node') && !f.includes('cuda')).sort((a, b) => Number(b.includes('napi')) - Number(a.includes('napi')));
  return builds.length ? path.join(dir, builds[0]) : null;
}

const file = process.env.DIFFPO_NATIVE_PATH || prebuildPath() || nodeGypBuild.resolve(root);
module.exports = require(file);
module.exports.path = file;

// { addon, reason }: the CUDA flavour, or null and why it is unavailable (not built, cannot load).
let cuda;
module.exports.loadCuda = function loadCuda() {
  if (cuda) return cuda;
  const candidates = [
    process.env.DIFFPO_CUDA_NATIVE_PATH,
    path.join(root, 'prebuilds', `${process.platform}-${process.arch}`, 'diffpo_cuda.node'),
    path.join(root, 'build-cuda', 'Release', 'diffpo_cuda.node'),
  ].filter(Boolean);
  const found = candidates.find((f) => fs.existsSync(f));
  if (!found) return (cuda = { addon: null, reason: 'the CUDA flavour is not installed (npm run build:cuda builds it)' });
  try {
    cuda = { addon: require(found), reason: '' };
    cuda.addon.path = found;
  } catch (err) {
    cuda = { addon: null, reason: `cannot load ${found}: ${err.message}` };
  }
  return cuda;
};
