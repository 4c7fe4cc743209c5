import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { AbortError, DiffusionLM, evaluate, Rng, SftTrainer, sudoku4Task, type Task } from 'diffpo';

import { copy4, reverse4, TINY } from './helpers/copy-task.js';

describe('SftTrainer', () => {
  it('drives the SFT loss down on sudoku4', async () => {
    const model = DiffusionLM.create(TINY, { seed: 1 });
    const trainer = new SftTrainer(model, { task: sudoku4Task() as Task<unknown>, batchSize: 16, lr: 3e-3, warmup: 5, seed: 2 });
    expect(trainer.responseLength).toBe(17); // 16 digits + EOS
    const losses: number[] = [];
    await trainer.train({ steps: 60, onStep: (i) => void losses.push(i.loss) });
    const mean = (xs: number[]) => xs.reduce((a, v) => a + v, 0) / xs.length;
    expect(mean(losses.slice(-10))).toBeLessThan(0.7 * mean(losses.slice(0, 10)));
    model.dispose();
  });

  it('teaches a tiny model a trivial task in seconds (measured by evaluate)', async () => {
    const model = DiffusionLM.create(TINY, { seed: 3 });
    const trainer = new SftTrainer(model, { task: copy4 as Task<unknown>, batchSize: 32, lr: 5e-3, warmup: 10, seed: 4 });
    await trainer.train({ steps: 150 });
    const rng = new Rng(99);
    const items = Array.from({ length: 32 }, () => copy4.generate(rng));
    const r = await evaluate(model, copy4, { items, tokenizer: trainer.tokenizer, genLength: trainer.responseLength });
    expect(r.accuracy).toBeGreaterThanOrEqual(0.9);
    expect(r.meanNfe).toBeLessThanOrEqual(trainer.responseLength);
    model.dispose();
  });

  it('multi-task SFT: one model learns two tasks from mixed batches', async () => {
    const model = DiffusionLM.create(TINY, { seed: 3 });
    // both tasks reach 1.0 with seeds 4-7 at this size; batches of 32 at lr 5e-3 often learn only one
    const trainer = new SftTrainer(model, { tasks: [copy4, reverse4] as Task<unknown>[], batchSize: 64, lr: 2e-3, warmup: 10, seed: 4 });
    await trainer.train({ steps: 300 });
    const rng = new Rng(98);
    const items = Array.from({ length: 32 }, () => copy4.generate(rng));
    for (const task of [copy4, reverse4]) {
      const r = await evaluate(model, task, { items, tokenizer: trainer.tokenizer, genLength: trainer.responseLength });
      expect(r.accuracy, task.name).toBeGreaterThanOrEqual(0.8);
    }
    expect(() => new SftTrainer(model, { tasks: [] })).toThrow(/task/);
    expect(() => new SftTrainer(model, { task: copy4 as Task<unknown>, tasks: [copy4 as Task<unknown>] })).toThrow(/either/);
    model.dispose();
  });

  it('resumes bit-exactly: weights, optimizer moments and data stream', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'diffpo-sft-'));
    const options = { task: sudoku4Task() as Task<unknown>, batchSize: 8, lr: 2e-3, warmup: 2, seed: 6, outDir: dir, checkpointEvery: 3 };
    // interrupted after step 3 (its checkpoint is written before onStep runs)
    const a = DiffusionLM.create(TINY, { seed: 7 });
    const ac = new AbortController();
    await expect(new SftTrainer(a, options).train({ steps: 6, signal: ac.signal, onStep: (i) => void (i.step === 3 && ac.abort()) })).rejects.toBeInstanceOf(AbortError);
    const resumed = await SftTrainer.resume(dir, options);
    expect(resumed.step).toBe(3);
    await resumed.train({ steps: 6 });
    // straight through, in another directory
    const b = DiffusionLM.create(TINY, { seed: 7 });
    await new SftTrainer(b, { ...options, outDir: mkdtempSync(join(tmpdir(), 'diffpo-sft-')) }).train({ steps: 6 });
    const pb = b.parameters();
    for (const [name, t] of resumed.model.parameters()) expect(new Uint32Array(t.slice().buffer), name).toEqual(new Uint32Array(pb.get(name)!.slice().buffer));
    for (const m of [a, b, resumed.model]) m.dispose();
  });

  it('trains to the same bits on 1, 2 and 3 threads (reductions split by rows, not by threads), so a resume on another machine is exact', async () => {
    const weights: Uint32Array[] = [];
    for (const threads of [1, 2, 3]) {
      const model = DiffusionLM.create(TINY, { seed: 3, threads });
      await new SftTrainer(model, { task: sudoku4Task() as Task<unknown>, batchSize: 32, lr: 2e-3, warmup: 2, seed: 1 }).train({ steps: 20 });
      const all = [...model.parameters().values()];
      weights.push(new Uint32Array(all[0]!.buffer.slice(0))); // one block holds every parameter
      model.dispose();
    }
    expect(weights[1]).toEqual(weights[0]);
    expect(weights[2]).toEqual(weights[0]);
  });

  it('rejects a tokenizer that does not match the model and bad options', () => {
    const model = DiffusionLM.create({ ...TINY, vocab_size: 40 });
    expect(() => new SftTrainer(model, { task: copy4 as Task<unknown> })).toThrow(/does not fit the model's embedding/);
    const ok = DiffusionLM.create(TINY);
    expect(() => new SftTrainer(ok, { task: copy4 as Task<unknown>, batchSize: 0 })).toThrow(/batchSize/);
    expect(() => new SftTrainer(ok, { task: copy4 as Task<unknown>, evalEvery: 5 })).toThrow(/evalItems/);
    model.dispose();
    ok.dispose();
  });
});
