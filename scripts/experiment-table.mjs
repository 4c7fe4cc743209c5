// Gathers the result.json of every run under DIR (scripts/experiment.sh) into the README's tables and
// one accuracy-vs-NFE plot per task (curves: the base and each fixed-threshold arm's sweep over a fine
// threshold grid, averaged over seeds; squares: the learned threshold), and checks the learned
// threshold against the fixed ones, and each fixed arm's seeds against the base's frontier. Usage: node scripts/experiment-table.mjs DIR OUTDIR
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { DiffusionLM, getTask, loadTestSet, paretoCompare, paretoSvg, paretoSweep, readModelFolder } from '../dist/esm/index.js';

// A finer threshold grid than the runs' own sweeps, for the frontier the learned threshold is judged
// against (computed once per checkpoint and cached beside it).
const FINE = [0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.01];
async function fineSweep(dir, taskName, cache = join(dir, 'fine-sweep.json')) {
  if (existsSync(cache)) return JSON.parse(readFileSync(cache, 'utf8'));
  const task = getTask(taskName);
  const model = await DiffusionLM.fromPretrained(dir);
  const { tokenizer, genLength } = await readModelFolder(dir);
  const points = await paretoSweep(model, task, { items: await loadTestSet(task), tokenizer, genLength, thresholds: FINE });
  model.dispose();
  writeFileSync(cache, JSON.stringify(points));
  return points;
}

const [dir = 'runs/experiment', outDir = 'docs/results'] = process.argv.slice(2);
const runs = readdirSync(dir)
  .filter((d) => existsSync(join(dir, d, 'result.json')))
  .map((d) => ({ name: d, ...JSON.parse(readFileSync(join(dir, d, 'result.json'), 'utf8')) }));
if (runs.length === 0) throw new Error(`no result.json under ${dir}`);

const armOf = (r) => r.name.split('-')[2];
const ARMS = Object.fromEntries(
  [...new Set(['d1', 'diffpo', 'trace', ...runs.map(armOf).sort()])].map((arm) => [
    arm,
    arm === 'd1' ? 'd1 (mean-field, no IS), threshold 0.9' : arm === 'diffpo' ? 'DiFFPO (two-stage + IS), threshold 0.9' : arm === 'trace' ? 'exact trajectory likelihood, threshold 0.9' : `DiFFPO + learned threshold (joint, lambda ${arm.slice(5)})`,
  ]),
);
const mean = (xs) => xs.reduce((a, x) => a + x, 0) / xs.length;
// sample standard deviation over seeds (0 for one seed)
const std = (xs) => (xs.length < 2 ? 0 : Math.sqrt(xs.reduce((a, x) => a + (x - mean(xs)) ** 2, 0) / (xs.length - 1)));
const at = (points, t) => points.find((p) => p.strategy.kind === 'threshold' && p.strategy.threshold === t);
// a run's headline point: the learned threshold when it has one, else its fixed threshold
const headline = (r) => r.learned ?? at(r.after, r.threshold);

const lines = [];
const notes = [];
const summary = {};
mkdirSync(outDir, { recursive: true });
for (const task of [...new Set(runs.map((r) => r.task))]) {
  const mine = runs.filter((r) => r.task === task);
  const base = await fineSweep(join('models', `${task}-base`), task, join(dir, `base-${task}-fine-sweep.json`));
  lines.push(`| ${task} | base, threshold 0.9 | - | ${at(base, 0.9).accuracy.toFixed(3)} | ${at(base, 0.9).accuracy.toFixed(3)} | ${at(base, 0.9).meanNfe.toFixed(2)} | - | - |`);
  lines.push(`| ${task} | base, one token per step | - | ${at(base, 1.01).accuracy.toFixed(3)} | ${at(base, 1.01).accuracy.toFixed(3)} | ${at(base, 1.01).meanNfe.toFixed(2)} | - | - |`);
  const curves = [{ name: 'base', points: base }];
  const extra = [];
  for (const budget of ['steps', 'time']) {
    for (const [arm, label] of Object.entries(ARMS)) {
      const group = mine.filter((r) => r.name.startsWith(budget + '-') && armOf(r) === arm).sort((a, b) => a.seed - b.seed);
      if (!group.length) continue;
      const pts = group.map(headline);
      const row = {
        accuracy: mean(pts.map((p) => p.accuracy)),
        meanNfe: mean(pts.map((p) => p.meanNfe)),
        steps: mean(group.map((r) => r.steps)),
        seconds: mean(group.map((r) => r.seconds)),
      };
      summary[`${task}/${budget}/${arm}`] = { ...row, seeds: group.map((r) => r.seed), accuracies: pts.map((p) => p.accuracy) };
      const budgetText = budget === 'steps' ? `${group[0].steps} steps` : `${Math.round(row.seconds)} s`;
      const spread = (xs, digits) => `${mean(xs).toFixed(digits)} ± ${std(xs).toFixed(digits)}`;
      lines.push(`| ${task} | ${label} | ${budgetText} | ${pts.map((p) => p.accuracy.toFixed(3)).join(', ')} | ${spread(pts.map((p) => p.accuracy), 3)} | ${spread(pts.map((p) => p.meanNfe), 2)} | ${row.steps.toFixed(0)} | ${row.seconds.toFixed(0)} |`);
      if (arm.startsWith('joint')) {
        // the claim to test: the learned threshold beats every fixed threshold at no more NFE
        const fixed = mine.filter((r) => r.name.startsWith(budget + '-') && armOf(r) === 'diffpo');
        const sweeps = await Promise.all(fixed.map((r) => fineSweep(join(dir, r.name), task)));
        const cheaper = sweeps.length ? sweeps[0].map((p, i) => ({ label: p.label, accuracy: mean(sweeps.map((sw) => sw[i].accuracy)), meanNfe: mean(sweeps.map((sw) => sw[i].meanNfe)) })).filter((p) => p.meanNfe <= row.meanNfe) : [];
        const best = cheaper.sort((a, b) => b.accuracy - a.accuracy)[0];
        notes.push(`${task}, ${budgetText}, ${label}: ${row.accuracy.toFixed(3)} at ${row.meanNfe.toFixed(2)} NFE; ` + (best ? `the best fixed threshold of DiFFPO (fixed) at no more NFE: ${best.label}, ${best.accuracy.toFixed(3)} at ${best.meanNfe.toFixed(2)}` : 'no fixed threshold of DiFFPO (fixed) is that cheap'));
      }
      if (budget !== 'steps') continue;
      // the seed-averaged (fine) threshold sweep of the trained models, and the learned threshold's point
      const sweeps = arm.startsWith('joint') ? [] : await Promise.all(group.map((r) => fineSweep(join(dir, r.name), task)));
      const sweep = sweeps.length ? sweeps[0].map((p, i) => ({ ...p, accuracy: mean(sweeps.map((sw) => sw[i].accuracy)), meanNfe: mean(sweeps.map((sw) => sw[i].meanNfe)) })) : [];
      if (!arm.startsWith('joint')) {
        curves.push({ name: `${arm}, ${group[0].steps} steps`, points: sweep });
        // each seed's points against the base's frontier: accuracy gained at no more NFE than the base needs for it
        const gains = [0.9, 0.95].map((t) => {
          const g = sweeps.map((sw) => 100 * paretoCompare(base, [at(sw, t)])[0].accuracyGain);
          return `threshold ${t} ${mean(g) >= 0 ? '+' : ''}${mean(g).toFixed(1)} ± ${std(g).toFixed(1)} (${g.map((x) => x.toFixed(1)).join(', ')})`;
        });
        notes.push(`${task}, ${group[0].steps} steps, ${label.replace(/, threshold 0.9$/, '')}: points over the base's fine frontier at equal NFE, per seed: ${gains.join('; ')}`);
      }
      if (group.every((r) => r.learned))
        extra.push({ name: `learned, lambda ${arm.slice(5)}`, point: { label: 'learned', strategy: { kind: 'learned' }, accuracy: row.accuracy, meanReward: 0, meanNfe: row.meanNfe } });
    }
  }
  writeFileSync(join(outDir, `${task}-pareto.svg`), paretoSvg(curves, extra, `${task}: accuracy vs mean NFE (test set, mean of seeds)`));
}
const table = [
  '| task | model | budget | accuracy per seed (threshold 0.9) | accuracy, mean ± std | mean NFE, mean ± std | steps | seconds |',
  '|---|---|---|---|---|---|---|---|',
  ...lines,
].join('\n');
writeFileSync(join(outDir, 'experiment.md'), table + '\n\n' + notes.map((n) => `- ${n}`).join('\n') + '\n');
writeFileSync(join(outDir, 'experiment.json'), JSON.stringify(summary, null, 2) + '\n');
process.stdout.write(table + '\n\n' + notes.map((n) => `- ${n}`).join('\n') + '\n');
