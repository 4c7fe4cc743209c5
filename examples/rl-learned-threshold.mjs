// RL with DiFFPO and the learned per-prompt threshold, from the shipped arith base: a few steps of
// joint training (the model with the two-stage surrogate and truncated importance weights; the head
// with a group-relative policy gradient on reward - lambda * NFE / genLength), then the checkpoint
// (weights and head together) is saved, reloaded, and evaluated with the head against fixed thresholds
// on the first 64 held-out items.
// Run: node examples/rl-learned-threshold.mjs   (about 15 s on 2 cores)
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { CharTokenizer, DiffpoTrainer, DiffusionLM, arithTask, evaluate, loadTestSet } from 'diffpo';

const base = fileURLToPath(new URL('../models/arith-base', import.meta.url));
const task = arithTask();
const tokenizer = await CharTokenizer.fromFile(join(base, 'tokenizer.json'));
const genLength = JSON.parse(readFileSync(join(base, 'generation_config.json'), 'utf8')).gen_length;
const test = await loadTestSet(task); // arith's fixed held-out set: training never sees these items

const model = await DiffusionLM.fromPretrained(base);
const rl = new DiffpoTrainer({
  model, task, tokenizer, genLength,
  method: 'diffpo',
  promptsPerStep: 4, groupSize: 4, innerIterations: 1, lr: 1e-4, seed: 0,
  exclude: test.map((t) => task.key(t)),
  sampler: { mode: 'learned', grid: [0.5, 0.7, 0.9, 1.01], lambda: 0.5 },
});
await rl.train({
  steps: 8,
  onStep: (i) => console.log(`step ${i.step}: reward ${i.meanReward.toFixed(2)}, NFE ${i.meanNfe.toFixed(2)}, thresholds ${i.thresholdDistribution.map((d) => `${d.value}:${(100 * d.fraction).toFixed(0)}%`).join(' ')}`),
});
await rl.dispose();

// the head travels with the weights (diffpo.* tensors in model.safetensors)
const dir = mkdtempSync(join(tmpdir(), 'diffpo-rl-'));
await model.save(dir, { dtype: 'bf16' });
const loaded = await DiffusionLM.fromPretrained(dir);
const items = test.slice(0, 64);
const results = await evaluate(loaded, task, {
  items, tokenizer, genLength,
  strategies: [{ kind: 'learned' }, { kind: 'threshold', threshold: 0.5 }, { kind: 'threshold', threshold: 0.9 }],
});
for (const r of results)
  console.log(`${r.strategy.kind === 'learned' ? 'learned threshold' : `threshold ${r.strategy.threshold}`}: accuracy ${r.accuracy.toFixed(3)}, mean NFE ${r.meanNfe.toFixed(2)}`);
model.dispose();
loaded.dispose();
