'use strict';
// The CUDA flavour's binary; diffpo's loader (native/index.cjs loadCuda) requires it on request.
module.exports = { path: require('node:path').join(__dirname, 'diffpo_cuda.node') };
