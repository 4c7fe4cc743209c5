// The base checkpoints shipped in models/: they load from the package, and reach their model card's
// accuracy on a slice of the external test set (temperature 0, so the numbers are reproducible).
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { CharTokenizer, DiffusionLM, evaluate, getTask, loadTestSet, type TaskName } from 'diffpo';

const card = (name: string) => readFileSync(join('models', name, 'README.md'), 'utf8');
const cardAccuracy = (name: string) => Number(/\| threshold 0\.9 \| ([\d.]+) \|/.exec(card(name))![1]);

describe('shipped checkpoints', () => {
  const shipped: [string, TaskName, RegExp][] = [
    ['sudoku4-base', 'sudoku4', /npx diffpo sft --task/],
    ['countdown3-base', 'countdown3', /npx diffpo sft --task/],
    ['arith-base', 'arith', /npx diffpo sft --task/],
    ['sudoku4-diffpo', 'sudoku4', /npx diffpo train --task/],
    ['countdown3-diffpo', 'countdown3', /npx diffpo train --task/],
  ];
  for (const [name, task, made] of shipped) {
    it(`${name} loads, is small, and reaches its model-card accuracy on the first 64 test items`, async () => {
      const dir = join('models', name);
      const size = ['config.json', 'model.safetensors', 'tokenizer.json', 'generation_config.json', 'README.md'].reduce((a, f) => a + statSync(join(dir, f)).size, 0);
      expect(size).toBeLessThan(16 * 1024 * 1024); // the small preset (6.3M parameters) in BF16 is 12.7 MB
      const model = await DiffusionLM.fromPretrained(dir);
      const tokenizer = await CharTokenizer.fromFile(join(dir, 'tokenizer.json'));
      const genLength = JSON.parse(readFileSync(join(dir, 'generation_config.json'), 'utf8')).gen_length;
      const t = getTask(task);
      const items = (await loadTestSet(t)).slice(0, 64);
      const r = await evaluate(model, t, { items, tokenizer, genLength, sampler: { strategy: { kind: 'threshold', threshold: 0.9 } } });
      expect(card(name)).toMatch(made);
      expect(r.accuracy).toBeGreaterThanOrEqual(cardAccuracy(name) - 0.12);
      expect(r.accuracy).toBeLessThanOrEqual(cardAccuracy(name) + 0.12);
      model.dispose();
    });
  }

  it('countdown3-diffpo carries its learned threshold head, which decodes near its model-card point', async () => {
    const dir = join('models', 'countdown3-diffpo');
    const model = await DiffusionLM.fromPretrained(dir);
    expect(model.samplerHead?.grid).toEqual([0.7, 0.9]);
    const tokenizer = await CharTokenizer.fromFile(join(dir, 'tokenizer.json'));
    const t = getTask('countdown3');
    const items = (await loadTestSet(t)).slice(0, 64);
    const r = await evaluate(model, t, { items, tokenizer, genLength: 96, sampler: { strategy: { kind: 'learned' } } });
    const [, acc, nfe] = /\| learned threshold \| ([\d.]+) \| ([\d.]+) \|/.exec(card('countdown3-diffpo'))!.map(Number);
    expect(Math.abs(r.accuracy - acc!)).toBeLessThanOrEqual(0.12);
    expect(Math.abs(r.meanNfe - nfe!)).toBeLessThanOrEqual(1.5);
    model.dispose();
  });
});
