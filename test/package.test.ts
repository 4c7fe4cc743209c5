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

  it('the loader takes a fresh local build over a prebuild, and of the prebuilds the one tagged for this libc', () => {
    const dir = mkdtempSync(join(tmpdir(), 'diffpo-loader-'));
    mkdirSync(join(dir, 'native'));
    copyFileSync(join(root, 'native', 'index.cjs'), join(dir, 'native', 'index.cjs'));
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'diffpo-loader-test' }));
    symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'));
    const env = { ...process.env, DIFFPO_NATIVE_PATH: '' };
    const which = () => execFileSync(process.execPath, ['-p', `require(${JSON.stringify(join(dir, 'native', 'index.cjs'))}).path`], { encoding: 'utf8', env }).trim();
    const failure = () => spawnSync(process.execPath, ['-e', `require(${JSON.stringify(join(dir, 'native', 'index.cjs'))})`], { encoding: 'utf8', env }).stderr;
    expect(failure()).toMatch(/diffpo: no native build for linux-x64 \(glibc [\d.]+, Node [\d.]+\)\. The npm package ships a prebuilt binary for linux-x64 with glibc >= 2\.28; elsewhere build from source with `npm run build:native`/);
    const prebuilds = join(dir, 'prebuilds', `${process.platform}-${process.arch}`);
    mkdirSync(prebuilds, { recursive: true });
    copyFileSync(native.path, join(prebuilds, 'diffpo.napi.musl.node'));
    copyFileSync(native.path, join(prebuilds, 'diffpo.napi.glibc.node'));
    expect(which()).toBe(join(prebuilds, 'diffpo.napi.glibc.node'));
    mkdirSync(join(dir, 'build', 'Release'), { recursive: true });
    copyFileSync(native.path, join(dir, 'build', 'Release', 'diffpo.node'));
    expect(which()).toBe(join(dir, 'build', 'Release', 'diffpo.node'));
  });

  it('the CUDA flavour is found as its own package (@diffpo/linux-x64-cuda), and a broken one is reported, not thrown', () => {
    const dir = mkdtempSync(join(tmpdir(), 'diffpo-cuda-pkg-'));
    mkdirSync(join(dir, 'native'));
    copyFileSync(join(root, 'native', 'index.cjs'), join(dir, 'native', 'index.cjs'));
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'diffpo-loader-test' }));
    mkdirSync(join(dir, 'node_modules', '@diffpo', 'linux-x64-cuda'), { recursive: true });
    symlinkSync(join(root, 'node_modules', 'node-gyp-build'), join(dir, 'node_modules', 'node-gyp-build'));
    const pkg = join(dir, 'node_modules', '@diffpo', 'linux-x64-cuda');
    writeFileSync(join(pkg, 'index.cjs'), "module.exports = { path: require('node:path').join(__dirname, 'diffpo_cuda.node') };");
    writeFileSync(join(pkg, 'package.json'), JSON.stringify({ name: '@diffpo/linux-x64-cuda', main: 'index.cjs' }));
    writeFileSync(join(pkg, 'diffpo_cuda.node'), 'not a shared library');
    const loader = JSON.stringify(join(dir, 'native', 'index.cjs'));
    const env = { ...process.env, DIFFPO_NATIVE_PATH: native.path, DIFFPO_CUDA_NATIVE_PATH: '' };
    const reason = execFileSync(process.execPath, ['-p', `require(${loader}).loadCuda().reason`], { encoding: 'utf8', env }).trim();
    expect(reason).toMatch(new RegExp(`^cannot load ${join(pkg, "diffpo_cuda.node")}: .*(file too short|invalid ELF header)`));
  });

  it('the addon needs at most glibc 2.28 and no libstdc++ version (RHEL/Alma/Rocky 8, Node 20 floor)', async () => {
    const { neededVersions, highest } = (await import(join(root, 'scripts', 'elf-versions.mjs'))) as {
      neededVersions: (f: string) => { file: string; version: string }[];
      highest: (v: { version: string }[], prefix: string) => number[] | null;
    };
    const versions = neededVersions(native.path);
    expect(versions.length).toBeGreaterThan(0);
    const glibc = highest(versions, 'GLIBC_')!;
    expect(glibc[0]! * 1000 + glibc[1]!, `needs GLIBC_${glibc.join('.')}`).toBeLessThanOrEqual(2028);
    expect(versions.filter((v) => v.version.startsWith('GLIBCXX_') || v.version.startsWith('CXXABI_'))).toEqual([]);
    const gcc = highest(versions, 'GCC_') ?? [0];
    expect(gcc[0]!, `needs GCC_${gcc.join('.')} of libgcc_s`).toBeLessThanOrEqual(7);
  });
});
