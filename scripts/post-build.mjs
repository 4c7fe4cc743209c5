// The package is ESM ("type": "module"), so the CommonJS build must use .cjs/.d.cts names (a nested
// package.json would hide the package's own name, which the addon import resolves through).
import { chmodSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const cjs = new URL('../dist/cjs/', import.meta.url).pathname;
const relJs = /((?:require\(|from )["']\.{1,2}\/[^"']+)\.js(["'])/g;
for (const file of readdirSync(cjs)) {
  const path = join(cjs, file);
  let target;
  if (file.endsWith('.d.ts')) target = path.slice(0, -5) + '.d.cts';
  else if (file.endsWith('.js')) target = path.slice(0, -3) + '.cjs';
  else continue;
  writeFileSync(target, readFileSync(path, 'utf8').replace(relJs, '$1.cjs$2'));
  rmSync(path);
}
chmodSync(new URL('../dist/esm/cli.js', import.meta.url), 0o755);
