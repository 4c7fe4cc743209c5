'use strict';
// Loads the native addon: a prebuilt binary from prebuilds/<platform>-<arch>/ when one is shipped,
// otherwise the local build (build/Release) through node-gyp-build. DIFFPO_NATIVE_PATH overrides both.
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
  const builds = files.filter((f) => f.endsWith('.node')).sort((a, b) => Number(b.includes('napi')) - Number(a.includes('napi')));
  return builds.length ? path.join(dir, builds[0]) : null;
}

const file = process.env.DIFFPO_NATIVE_PATH || prebuildPath() || nodeGypBuild.resolve(root);
module.exports = require(file);
module.exports.path = file;
