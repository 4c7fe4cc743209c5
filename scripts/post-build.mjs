// The package is ESM ("type": "module"), so the CommonJS build must use .cjs/.d.cts names (a nested
// package.json would hide the package's own name, which the addon import resolves through).
import { chmodSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const relJs = /((?:require\(|from )["']\.{1,2}\/[^"']+)\.js(["'])/g;
function convert(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      convert(path);
      continue;
    }
    let target;
    if (entry.name.endsWith('.d.ts')) target = path.slice(0, -5) + '.d.cts';
    else if (entry.name.endsWith('.js')) target = path.slice(0, -3) + '.cjs';
    else continue;
    writeFileSync(target, readFileSync(path, 'utf8').replace(relJs, '$1.cjs$2'));
    rmSync(path);
  }
}
convert(new URL('../dist/cjs/', import.meta.url).pathname);
chmodSync(new URL('../dist/esm/app/cli.js', import.meta.url), 0o755);
