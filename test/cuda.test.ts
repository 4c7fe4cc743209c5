import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { BackendUnavailableError, DiffusionLM, backendStatus } from 'diffpo';

const hasNvcc = spawnSync('nvcc', ['--version']).status === 0;

describe('CUDA backend', () => {
  it("'auto' runs on the CPU without a usable device, and 'cuda' says why it cannot run", () => {
    const status = backendStatus();
    const m = DiffusionLM.create('tiny', { backend: 'auto', threads: 1 });
    expect(m.backend).toBe(status.cuda.available ? 'cuda' : 'cpu');
    m.dispose();
    if (!status.cuda.available) {
      expect(status.cuda.reason.length).toBeGreaterThan(0);
      expect(() => DiffusionLM.create('tiny', { backend: 'cuda' })).toThrow(BackendUnavailableError);
      expect(() => DiffusionLM.create('tiny', { backend: 'cuda' })).toThrow(status.cuda.reason);
    }
    expect(() => DiffusionLM.create('tiny', { backend: 'tpu' as 'cpu' })).toThrow(/backend must be/);
  });

  it('a CUDA flavour that cannot load (no driver, wrong file) leaves the CPU flavour working', () => {
    const bogus = join(mkdtempSync(join(tmpdir(), 'diffpo-cuda-')), 'diffpo_cuda.node');
    writeFileSync(bogus, 'not a shared library');
    const script = `
      const { DiffusionLM, backendStatus } = await import('diffpo');
      const m = DiffusionLM.create('tiny', { backend: 'auto', threads: 1 });
      let err = null;
      try { DiffusionLM.create('tiny', { backend: 'cuda' }); } catch (e) { err = e.code + ': ' + e.message; }
      console.log(JSON.stringify({ backend: m.backend, logits: (await m.logits(new Int32Array([1, 2]), { batch: 1, seqLen: 2 })).length, err, status: backendStatus() }));`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', env: { ...process.env, DIFFPO_CUDA_NATIVE_PATH: bogus } });
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.backend).toBe('cpu');
    expect(out.logits).toBe(2 * 64);
    expect(out.err).toMatch(/^ERR_NO_CUDA: backend 'cuda' is not available: cannot load .*diffpo_cuda\.node/);
    expect(out.status.cuda.available).toBe(false);
  });

  it.runIf(hasNvcc)('its sources compile for sm_80 with nvcc (compile only)', () => {
    const r = spawnSync('bash', ['scripts/cuda-compile-check.sh', '80'], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain('CUDA sources compile for sm_80');
  }, 600_000);

  it("the GPU harness's parity checks pass with the reference loops standing in for the GPU", () => {
    const r = spawnSync('bash', ['scripts/gpu-check-self-test.sh'], { encoding: 'utf8' });
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/PASSED: 0 check\(s\) failed/);
    expect(r.stdout.match(/\| ok \|/g)!.length).toBeGreaterThan(60);
  }, 300_000);
});
