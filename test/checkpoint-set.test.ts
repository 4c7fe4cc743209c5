import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { CHECKPOINT_MANIFEST, CheckpointError, commitCheckpoint, DiffpoTrainer, DiffusionLM, openCheckpoint, SftTrainer, sudoku4Task, truncateStepLog, type Task } from 'diffpo';

import { TINY } from './helpers/copy-task.js';

const fresh = () => mkdtempSync(join(tmpdir(), 'diffpo-ckpt-'));
const write = (files: Record<string, string>) => async (staging: string) => {
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(join(staging, name, '..'), { recursive: true });
    writeFileSync(join(staging, name), text);
  }
};
const read = (dir: string, name: string) => readFileSync(join(dir, name), 'utf8');

describe('training checkpoints are one unit', () => {
  it('commits a set, verifies it on open, and refuses a file that does not match the manifest', async () => {
    const dir = fresh();
    await commitCheckpoint(dir, 1, write({ 'a.bin': 'A1', 'sub/b.bin': 'B1' }));
    await commitCheckpoint(dir, 2, write({ 'a.bin': 'A2', 'sub/b.bin': 'B2' }));
    expect(await openCheckpoint(dir)).toEqual({ step: 2 });
    expect([read(dir, 'a.bin'), read(dir, 'sub/b.bin')]).toEqual(['A2', 'B2']);
    expect(readdirSync(dir).sort()).toEqual(['a.bin', CHECKPOINT_MANIFEST, 'sub']); // no staging left
    writeFileSync(join(dir, 'sub/b.bin'), 'B1'); // an older step's file: same size, other bytes
    await expect(openCheckpoint(dir)).rejects.toThrow(/sub\/b.bin does not match checkpoint.json \(step 2\)/);
    await expect(openCheckpoint(fresh())).rejects.toBeInstanceOf(CheckpointError);
    writeFileSync(join(dir, CHECKPOINT_MANIFEST), '{"format":"diffpo-checkpoint","step":1,"staging":"../x","files":[]}');
    await expect(openCheckpoint(dir)).rejects.toThrow(/not a diffpo checkpoint manifest/);
  });

  it('a crash before the commit point leaves the previous set, and its leftovers are removed', async () => {
    const dir = fresh();
    await commitCheckpoint(dir, 1, write({ 'a.bin': 'A1', 'b.bin': 'B1' }));
    await expect(
      commitCheckpoint(dir, 2, async (staging) => {
        await write({ 'a.bin': 'A2' })(staging);
        throw new Error('disk full');
      }),
    ).rejects.toThrow('disk full');
    // what a kill leaves: a staging folder and a temp file of an interrupted single-file write
    mkdirSync(join(dir, '.staging-1-deadbeef'));
    writeFileSync(join(dir, '.staging-1-deadbeef', 'a.bin'), 'A3');
    writeFileSync(join(dir, 'model.safetensors.tmp-123-0badf00d'), 'partial');
    expect(await openCheckpoint(dir)).toEqual({ step: 1 });
    expect([read(dir, 'a.bin'), read(dir, 'b.bin')]).toEqual(['A1', 'B1']);
    expect(readdirSync(dir).sort()).toEqual(['a.bin', 'b.bin', CHECKPOINT_MANIFEST]);
  });

  it('a crash after the commit point is rolled forward: the new set, whole', async () => {
    const dir = fresh();
    await commitCheckpoint(dir, 1, write({ 'a.bin': 'A1', 'b.bin': 'B1', 'c/d.bin': 'D1' }));
    await commitCheckpoint(dir, 2, write({ 'a.bin': 'A2', 'b.bin': 'B2', 'c/d.bin': 'D2' }));
    // rebuild the state of a kill in the middle of the moves: a.bin moved, b.bin and c/d.bin not yet
    const m = JSON.parse(read(dir, CHECKPOINT_MANIFEST));
    const staging = join(dir, '.staging-9-00000001');
    mkdirSync(join(staging, 'c'), { recursive: true });
    renameSync(join(dir, 'b.bin'), join(staging, 'b.bin'));
    renameSync(join(dir, 'c/d.bin'), join(staging, 'c/d.bin'));
    writeFileSync(join(dir, 'b.bin'), 'B1');
    writeFileSync(join(dir, 'c/d.bin'), 'D1');
    writeFileSync(join(dir, CHECKPOINT_MANIFEST), JSON.stringify({ ...m, staging: '.staging-9-00000001' }));
    expect(await openCheckpoint(dir)).toEqual({ step: 2 });
    expect([read(dir, 'a.bin'), read(dir, 'b.bin'), read(dir, 'c/d.bin')]).toEqual(['A2', 'B2', 'D2']);
    expect(existsSync(staging)).toBe(false);
  });

  it('a resumed run cuts metrics.jsonl back to its checkpoint (no repeated steps)', async () => {
    const dir = fresh();
    const path = join(dir, 'metrics.jsonl');
    writeFileSync(path, [1, 2, 3, 4].map((step) => JSON.stringify({ step })).join('\n') + '\n{"step": 5, "lo');
    await truncateStepLog(path, 2);
    expect(read(dir, 'metrics.jsonl')).toBe('{"step":1}\n{"step":2}\n');
    const options = { task: sudoku4Task() as Task<unknown>, batchSize: 4, lr: 2e-3, warmup: 1, seed: 1, outDir: fresh(), checkpointEvery: 2 };
    const ac = new AbortController();
    const model = DiffusionLM.create(TINY, { seed: 1 });
    await expect(new SftTrainer(model, options).train({ steps: 6, signal: ac.signal, onStep: (i) => void (i.step === 3 && ac.abort()) })).rejects.toThrow();
    const resumed = await SftTrainer.resume(options.outDir, options);
    await resumed.train({ steps: 6 });
    const steps = read(options.outDir, 'metrics.jsonl').trim().split('\n').map((l) => JSON.parse(l).step);
    expect(steps).toEqual([1, 2, 3, 4, 5, 6]);
    model.dispose();
    resumed.model.dispose();
  });

  it('kill -9 during SFT checkpointing never leaves a mixed set: every resume loads one step whole', async () => {
    const dir = fresh();
    const child = fileURLToPath(new URL('./fixtures/sft-forever.mjs', import.meta.url));
    const digest = (m: DiffusionLM) => {
      const h = createHash('sha256');
      for (const [, t] of [...m.parameters()].sort(([a], [b]) => (a < b ? -1 : 1))) h.update(new Uint8Array(t.buffer, t.byteOffset, t.byteLength));
      return h.digest('hex');
    };
    const options = { task: sudoku4Task() as Task<unknown>, batchSize: 4, lr: 2e-3, warmup: 2, seed: 6, checkpointEvery: 1, threads: 1 };
    const seen: { step: number; weights: string; optimizerStep: number }[] = [];
    const kills = 24;
    for (let k = 0; k < kills; k++) {
      const p = spawn(process.execPath, [child, dir, JSON.stringify(TINY)], { stdio: ['ignore', 'pipe', 'inherit'] });
      await new Promise<void>((resolve) => p.stdout.once('data', () => resolve()));
      await new Promise((r) => setTimeout(r, 20 + ((k * 37) % 120))); // kills land in every phase of a save
      p.kill('SIGKILL');
      await new Promise((r) => p.once('exit', r));
      const t = await SftTrainer.resume(dir, { ...options, outDir: dir });
      seen.push({ step: t.step, weights: digest(t.model), optimizerStep: t.optimizer.state().step });
      t.model.dispose();
    }
    // the same run straight through: the weights every step must have
    const ref = new SftTrainer(DiffusionLM.create(TINY, { seed: 7, threads: 1 }), { ...options, checkpointEvery: 0 });
    const want = new Map<number, string>();
    const last = Math.max(...seen.map((s) => s.step));
    const stop = new AbortController(); // the child's run is 1e6 steps long, and the schedule depends on that
    await expect(ref.train({ steps: 1_000_000, signal: stop.signal, onStep: (i) => void (want.set(i.step, digest(ref.model)), i.step === last && stop.abort()) })).rejects.toThrow();
    ref.model.dispose();
    const mixed = seen.filter((s) => s.weights !== want.get(s.step) || s.optimizerStep !== s.step);
    expect(seen.length).toBe(kills);
    expect(last).toBeGreaterThan(kills); // progress across kills
    expect(mixed).toEqual([]);
    expect(readdirSync(dir).filter((n) => n.includes('.tmp-') || n.startsWith('.staging-'))).toEqual([]);
  }, 120_000);

  it('kill -9 during DiFFPO checkpointing (weights, optimizer, state, frozen reference) never leaves a mixed set', async () => {
    const dir = fresh();
    const child = fileURLToPath(new URL('./fixtures/rl-forever.mjs', import.meta.url));
    const { rlOptions } = (await import('./fixtures/rl-options.mjs')) as { rlOptions: Record<string, unknown> };
    const digest = (m: DiffusionLM) => {
      const h = createHash('sha256');
      for (const [, t] of [...m.parameters()].sort(([a], [b]) => (a < b ? -1 : 1))) h.update(new Uint8Array(t.buffer, t.byteOffset, t.byteLength));
      return h.digest('hex');
    };
    const seen: { step: number; weights: string; optimizerStep: number }[] = [];
    const kills = 20;
    for (let k = 0; k < kills; k++) {
      const p = spawn(process.execPath, [child, dir, JSON.stringify(TINY)], { stdio: ['ignore', 'pipe', 'inherit'] });
      await new Promise<void>((resolve) => p.stdout.once('data', () => resolve()));
      await new Promise((r) => setTimeout(r, 20 + ((k * 53) % 150)));
      p.kill('SIGKILL');
      await new Promise((r) => p.once('exit', r));
      const t = await DiffpoTrainer.resume(dir, { ...(rlOptions as object), threads: 1 } as never);
      seen.push({ step: t.step, weights: digest(t.model), optimizerStep: t.optimizer.state().step });
      await t.dispose();
      t.model.dispose();
    }
    const ref = new DiffpoTrainer({ ...(rlOptions as object), model: DiffusionLM.create(TINY, { seed: 7, threads: 1, initStd: 0.05 }) } as never);
    const want = new Map<number, { weights: string; optimizerStep: number }>();
    const last = Math.max(...seen.map((s) => s.step));
    const stop = new AbortController();
    const record = (step: number) => want.set(step, { weights: digest(ref.model), optimizerStep: ref.optimizer.state().step });
    await expect(ref.train({ steps: 1_000_000, signal: stop.signal, onStep: (i) => void (record(i.step), i.step === last && stop.abort()) })).rejects.toThrow();
    await ref.dispose();
    ref.model.dispose();
    expect(seen.filter((s) => s.weights !== want.get(s.step)?.weights || s.optimizerStep !== want.get(s.step)?.optimizerStep)).toEqual([]);
    expect(new Set(seen.map((s) => s.weights)).size).toBeGreaterThan(3); // the weights did move between the kills
    expect(last).toBeGreaterThan(kills);
  }, 180_000);
});
