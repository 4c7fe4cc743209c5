import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { AbortError, DiffpoTrainer, DiffusionLM, evaluate, groupAdvantages, InvalidArgumentError, Rng, SftTrainer, type DiffpoStepInfo, type Task } from 'diffpo';

import { copy4, TINY } from './helpers/copy-task.js';

describe('DiffpoTrainer', () => {
  it('group-relative advantages: r - mean, or (r - mean) / std', () => {
    expect(Array.from(groupAdvantages([1, 0, 0, 1, 0.5, 0.5], 2))).toEqual([0.5, -0.5, -0.5, 0.5, 0, 0]);
    const a = groupAdvantages([3, 1, 2], 3, 'mean-std');
    [1, -1, 0].forEach((v, i) => expect(a[i]).toBeCloseTo(v / (1 + 1e-4), 5));
  });

  for (const method of ['d1', 'diffpo', 'trace'] as const) {
    it(`${method}: RL lifts greedy accuracy of a half-trained model on a copy task`, async () => {
      const model = DiffusionLM.create(TINY, { seed: 3 });
      const sft = new SftTrainer(model, { task: copy4 as Task<unknown>, batchSize: 32, lr: 5e-3, warmup: 10, seed: 4 });
      await sft.train({ steps: 40 });
      const rng = new Rng(99);
      const items = Array.from({ length: 128 }, () => copy4.generate(rng));
      const before = await evaluate(model, copy4, { items, tokenizer: sft.tokenizer, genLength: 5 });
      const rl = new DiffpoTrainer({ model, task: copy4 as Task<unknown>, method, genLength: 5, promptsPerStep: 8, groupSize: 4, lr: 2e-3, beta: 0.01, seed: 1 });
      const infos: DiffpoStepInfo[] = [];
      await rl.train({ steps: 30, onStep: (i) => void infos.push(i) });
      const after = await evaluate(model, copy4, { items, tokenizer: sft.tokenizer, genLength: 5 });
      expect(after.accuracy).toBeGreaterThan(before.accuracy + 0.2);
      for (const i of infos) {
        expect(i.isWeightMax).toBeLessThanOrEqual(2 + 1e-6);
        expect(i.klMean).toBeGreaterThanOrEqual(0);
        expect(i.meanNfe).toBeGreaterThanOrEqual(1);
        if (method !== 'diffpo') expect(i.isWeightMean).toBe(1); // only DiFFPO weights by the behaviour policy
      }
      expect(infos[0]!.klMean).toBeLessThan(0.05); // the reference starts equal to the model: one update away
      await rl.dispose();
      model.dispose();
    });
  }

  it('resumes bit-exactly: weights, optimizer, data RNG and the frozen reference', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'diffpo-rl-'));
    const start = DiffusionLM.create(TINY, { seed: 8, initStd: 0.05 });
    const common = { task: copy4 as Task<unknown>, method: 'diffpo' as const, genLength: 5, promptsPerStep: 4, groupSize: 3, lr: 1e-3, beta: 0.05, seed: 3 };
    const a = DiffusionLM.create(TINY, { seed: 8, initStd: 0.05 });
    const ac = new AbortController();
    const first = new DiffpoTrainer({ ...common, model: a, outDir: dir, checkpointEvery: 2 });
    await expect(first.train({ steps: 4, signal: ac.signal, onStep: (i) => void (i.step === 2 && ac.abort()) })).rejects.toBeInstanceOf(AbortError);
    await first.dispose();
    const resumed = await DiffpoTrainer.resume(dir, common);
    expect(resumed.step).toBe(2);
    await resumed.train({ steps: 4 });
    const straight = new DiffpoTrainer({ ...common, model: start });
    await straight.train({ steps: 4 });
    const want = start.parameters();
    for (const [name, t] of resumed.model.parameters()) expect(new Uint32Array(t.slice().buffer), name).toEqual(new Uint32Array(want.get(name)!.slice().buffer));
    await resumed.dispose();
    await straight.dispose();
    for (const m of [a, start, resumed.model]) m.dispose();
  });

  it('rejects bad options by name', () => {
    const model = DiffusionLM.create(TINY);
    expect(() => new DiffpoTrainer({ model, task: copy4 as Task<unknown>, genLength: 5, method: 'ppo' as 'd1' })).toThrow(InvalidArgumentError);
    expect(() => new DiffpoTrainer({ model, task: copy4 as Task<unknown>, genLength: 5, groupSize: 1 })).toThrow(/groupSize/);
    expect(() => new DiffpoTrainer({ model, task: copy4 as Task<unknown>, genLength: 0 })).toThrow(/genLength/);
    model.dispose();
  });
});
