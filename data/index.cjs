'use strict';
// Where the shipped test sets are (the library reads them through this path, in ESM and CommonJS alike).
module.exports = { dir: __dirname };
