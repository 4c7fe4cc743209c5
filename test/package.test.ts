// The package as a user gets it: ESM and CommonJS entry points, type declarations, the addon loader,
// and a build free of fast-math (which would switch the whole Node process to flush-to-zero).
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import native from 'diffpo/native';
import { describe, expect, it } from 'vitest';

const root = process.cwd();

describe('package', () => {
  it('has no set_fast_math symbol and leaves subnormals alone in this process', () => {
    const binary = readFileSync(native.path);
    expect(binary.includes('set_fast_math')).toBe(false);
    const nm = spawnSync('nm', ['-D', '--defined-only', native.path], { encoding: 'utf8' });
    if (nm.status === 0) expect(nm.stdout).not.toMatch(/set_fast_math/);
    const tiny = 2 ** -1070;
    expect(tiny / 2).toBeGreaterThan(0);
    expect(new Float32Array([1e-40])[0]).toBeGreaterThan(0);
  });

  it('is importable from ES modules and CommonJS, by its own name', () => {
    const esm = execFileSync(process.execPath, ['--input-type=module', '-e', "import { DiffusionLM } from 'diffpo'; console.log(typeof DiffusionLM.create)"], { encoding: 'utf8' });
    expect(esm.trim()).toBe('function');
    const cjs = execFileSync(process.execPath, ['-e', "const d = require('diffpo'); const m = d.DiffusionLM.create('tiny'); console.log(m.numParameters); m.dispose()"], { encoding: 'utf8' });
    expect(Number(cjs.trim())).toBeGreaterThan(1e5);
  });

  it('ships TypeScript declarations for both entry points', () => {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
    expect(existsSync(join(root, pkg.exports['.'].import.types))).toBe(true);
    expect(existsSync(join(root, pkg.exports['.'].require.types))).toBe(true);
    expect(readFileSync(join(root, pkg.exports['.'].import.types), 'utf8')).toMatch(/DiffusionLM/);
    expect(pkg.bin.diffpo).toBe('./dist/esm/app/cli.js');
  });

  it('the loader prefers a prebuilt binary over the local build', () => {
    const dir = mkdtempSync(join(tmpdir(), 'diffpo-loader-'));
    mkdirSync(join(dir, 'native'));
    mkdirSync(join(dir, 'build', 'Release'), { recursive: true });
    copyFileSync(join(root, 'native', 'index.cjs'), join(dir, 'native', 'index.cjs'));
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'diffpo-loader-test' }));
    symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'));
    const built = join(root, 'build', 'Release', 'diffpo.node');
    copyFileSync(existsSync(built) ? built : native.path, join(dir, 'build', 'Release', 'diffpo.node'));
    const which = () => execFileSync(process.execPath, ['-p', `require(${JSON.stringify(join(dir, 'native', 'index.cjs'))}).path`], { encoding: 'utf8', env: { ...process.env, DIFFPO_NATIVE_PATH: '' } }).trim();
    expect(which()).toBe(join(dir, 'build', 'Release', 'diffpo.node'));
    const prebuilds = join(dir, 'prebuilds', `${process.platform}-${process.arch}`);
    mkdirSync(prebuilds, { recursive: true });
    copyFileSync(native.path, join(prebuilds, 'diffpo.napi.node'));
    expect(which()).toBe(join(prebuilds, 'diffpo.napi.node'));
  });
});
