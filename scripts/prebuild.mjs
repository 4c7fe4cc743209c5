// The prebuilt binary of the package (npm pack's prepack): build/Release/diffpo.node, as built by
// `npm run build:native` (libstdc++ linked in, glibc 2.28 floor), stripped and copied to
// prebuilds/<platform>-<arch>/diffpo.napi.<libc>.node, the tags node-gyp-build selects by.
// (prebuildify would move the file out of build/Release, leaving the checkout without its build.)
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

const libc = process.platform !== 'linux' ? null : process.report.getReport().header.glibcVersionRuntime ? 'glibc' : 'musl';
const dir = join('prebuilds', `${process.platform}-${process.arch}`);
rmSync(dir, { recursive: true, force: true });
mkdirSync(dir, { recursive: true });
const file = join(dir, ['diffpo', 'napi', libc, 'node'].filter(Boolean).join('.'));
copyFileSync(join('build', 'Release', 'diffpo.node'), file);
const strip = spawnSync('strip', ['--strip-all', file], { stdio: 'inherit' });
console.log(`${file}${strip.status === 0 ? ' (stripped)' : ' (not stripped: no strip on PATH)'}`);
