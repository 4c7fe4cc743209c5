// The learned sampler alone (model frozen) across prices of an NFE: for each lambda and seed, a
// per-prompt threshold head trained with `--sampler sampler-only` semantics on a shipped base, then its
// learned point against the base's fine fixed-threshold frontier on a held-out set (paretoCompare).
// Finished runs are cached in OUT/<lambda>-seed<k>.json, so the sweep resumes.
// TASK=sudoku4 (default: its base, trained on 4-12 empty cells, against data/sudoku4_mixed_test.csv) or
// TASK=countdown3 (its base on its own training stream, against the external test set).
// Usage: [TASK=...] node scripts/sampler-price-sweep.mjs OUT LAMBDAS SEEDS [STEPS] [GRID] [HEAD_LR]
//   e.g. node scripts/sampler-price-sweep.mjs runs/price 1,2,4 0,1,2 150 0.5,0.9 2
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { DiffpoTrainer, DiffusionLM, evaluate, getTask, loadTestSet, meanStd, paretoCompare, paretoSweep, readModelFolder } from '../dist/esm/index.js';

const [out, lambdasArg, seedsArg, stepsArg = '150', gridArg = '0.5,0.9', lrArg = '2'] = process.argv.slice(2);
const SETS = {
  sudoku4: { testFile: 'data/sudoku4_mixed_test.csv', trainTask: () => getTask('sudoku4', [4, 12], { solutions: 'unique' }) },
  countdown3: { testFile: undefined, trainTask: () => getTask('countdown3') },
};
const taskName = process.env.TASK ?? 'sudoku4';
if (!SETS[taskName]) throw new Error(`TASK must be one of ${Object.keys(SETS).join(', ')}, not '${taskName}'`);
const base = `models/${taskName}-base`;
const { testFile } = SETS[taskName];
const FINE = [0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.99, 1.01];
const task = getTask(taskName);
const trainTask = SETS[taskName].trainTask();
const items = await loadTestSet(task, testFile);
const { tokenizer, genLength } = await readModelFolder(base);
mkdirSync(out, { recursive: true });

const frontierFile = join(out, 'fixed.json');
if (!existsSync(frontierFile)) {
  const model = await DiffusionLM.fromPretrained(base, { threads: 1 });
  writeFileSync(frontierFile, JSON.stringify(await paretoSweep(model, task, { items, tokenizer, genLength, thresholds: FINE })));
  model.dispose();
}
const fixed = JSON.parse(readFileSync(frontierFile, 'utf8'));
const grid = gridArg.split(',').map(Number);
const rows = [];
for (const lambda of lambdasArg.split(',').map(Number))
  for (const seed of seedsArg.split(',').map(Number)) {
    const file = join(out, `${lambda}-seed${seed}.json`);
    if (!existsSync(file)) {
      const model = await DiffusionLM.fromPretrained(base, { threads: 1 });
      const rl = new DiffpoTrainer({
        model,
        task: trainTask,
        tokenizer,
        genLength,
        seed,
        exclude: items.map((x) => task.key(x)),
        sampler: { mode: 'sampler-only', grid, lambda, features: 'confidence', lr: Number(lrArg) },
      });
      const t0 = performance.now();
      await rl.train({ steps: Number(stepsArg) });
      const seconds = (performance.now() - t0) / 1000;
      const r = await evaluate(model, task, { items, tokenizer, genLength, sampler: { strategy: { kind: 'learned', head: rl.head } } });
      const features = await rl.head.featuresOf(model, items.map((x) => tokenizer.encode(task.prompt(x))), { genLength });
      const choices = features.map((f) => grid[rl.head.mostLikely(f)]);
      const learned = { label: 'learned', strategy: { kind: 'learned' }, accuracy: r.accuracy, meanReward: r.meanReward, meanNfe: r.meanNfe };
      writeFileSync(file, JSON.stringify({ lambda, seed, seconds, learned, choices: grid.map((g) => choices.filter((c) => c === g).length), ...paretoCompare(fixed, [learned])[0] }));
      await rl.dispose();
      model.dispose();
    }
    rows.push(JSON.parse(readFileSync(file, 'utf8')));
  }
const f = (xs, d) => {
  const { mean, std } = meanStd(xs);
  return `${mean.toFixed(d)} ± ${std.toFixed(d)}`;
};
console.log(`fixed frontier of the base on ${testFile ?? `${taskName}'s test set`}: ${fixed.map((p) => `${p.label.replace('threshold ', '')} ${p.accuracy.toFixed(3)}@${p.meanNfe.toFixed(2)}`).join(', ')}`);
console.log(`\n| lambda | seeds | learned accuracy | learned NFE | gain at equal NFE | NFE saved at equal accuracy | prompts per grid value (${grid.join(' / ')}) |\n|---|---|---|---|---|---|---|`);
for (const lambda of [...new Set(rows.map((r) => r.lambda))]) {
  const rs = rows.filter((r) => r.lambda === lambda);
  console.log(
    `| ${lambda} | ${rs.map((r) => r.seed).join(',')} | ${f(rs.map((r) => r.learned.accuracy), 3)} | ${f(rs.map((r) => r.learned.meanNfe), 2)} | ${f(rs.map((r) => r.accuracyGain ?? NaN), 3)} | ${f(rs.map((r) => r.nfeSaved ?? NaN), 2)} | ${rs.map((r) => r.choices.join(' / ')).join('; ')} |`,
  );
}
