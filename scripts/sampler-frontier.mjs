// The learned sampler against every fixed threshold on the same final model (issue "the fast half"):
// for each run folder (a `diffpo train --sampler learned|sampler-only` run), the fine threshold sweep
// of its final model on the task's test set, its learned point, and paretoCompare's accuracy gained
// at equal NFE and NFE saved at equal accuracy; runs named NAME-seedK are grouped, mean ± std. Runs
// without a head (fixed-threshold training) contribute their frontier only, for the second table:
// each group's fixed frontier, threshold by threshold.
// Usage: node scripts/sampler-frontier.mjs TASK[:TEST_FILE] RUN_DIR...   (prints a Markdown table)
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { DiffusionLM, evaluate, getTask, loadTestSet, meanStd, paretoCompare, paretoSweep, readModelFolder } from '../dist/esm/index.js';

const FINE = [0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.99, 1.01];
const [taskArg, ...dirs] = process.argv.slice(2);
const [taskName, file] = taskArg.split(':');
const task = getTask(taskName);
const items = await loadTestSet(task, file);
const rows = new Map();
for (const dir of dirs) {
  const cache = join(dir, `sampler-frontier${file ? '-' + file.split('/').pop() : ''}.json`);
  let r;
  if (existsSync(cache)) r = JSON.parse(readFileSync(cache, 'utf8'));
  else {
    const model = await DiffusionLM.fromPretrained(dir);
    const { tokenizer, genLength } = await readModelFolder(dir);
    const fixed = await paretoSweep(model, task, { items, tokenizer, genLength, thresholds: FINE });
    if (model.samplerHead) {
      const l = await evaluate(model, task, { items, tokenizer, genLength, sampler: { strategy: { kind: 'learned' } } });
      const learned = { label: 'learned', strategy: { kind: 'learned' }, accuracy: l.accuracy, meanReward: l.meanReward, meanNfe: l.meanNfe };
      r = { fixed, learned, ...paretoCompare(fixed, [learned])[0] };
    } else r = { fixed, learned: null };
    model.dispose();
    writeFileSync(cache, JSON.stringify(r));
  }
  const name = dir.replace(/\/$/, '').split('/').pop().replace(/-seed\d+$/, '');
  rows.set(name, [...(rows.get(name) ?? []), r]);
}
const fmt = (xs, d) => {
  const v = xs.filter((x) => x !== null && x !== undefined);
  if (v.length === 0) return 'n/a';
  const { mean, std, n } = meanStd(v);
  return `${mean.toFixed(d)} ± ${std.toFixed(d)}${n < xs.length ? ` (${n} of ${xs.length})` : ''}`;
};
console.log('| run | seeds | learned accuracy | learned NFE | accuracy gain at equal NFE | NFE saved at equal accuracy | fixed 0.9 on the same model |');
console.log('|---|---|---|---|---|---|---|');
for (const [name, rs] of rows) {
  if (rs.some((r) => !r.learned)) continue;
  const at9 = rs.map((r) => r.fixed.find((p) => p.strategy.threshold === 0.9));
  console.log(`| ${name} | ${rs.length} | ${fmt(rs.map((r) => r.learned.accuracy), 3)} | ${fmt(rs.map((r) => r.learned.meanNfe), 2)} | ${fmt(rs.map((r) => r.accuracyGain), 3)} | ${fmt(rs.map((r) => r.nfeSaved), 2)} | ${fmt(at9.map((p) => p.accuracy), 3)} at ${fmt(at9.map((p) => p.meanNfe), 2)} |`);
}

console.log(`\n| run | seeds | ${FINE.map((t) => (t > 1 ? 'one token per step' : t)).join(' | ')} |\n|---|---|${FINE.map(() => '---|').join('')}`);
for (const [name, rs] of rows) {
  const cells = FINE.map((t) => {
    const ps = rs.map((r) => r.fixed.find((p) => p.strategy.threshold === t));
    return `${fmt(ps.map((p) => p.accuracy), 3)} @ ${meanStd(ps.map((p) => p.meanNfe)).mean.toFixed(2)}`;
  });
  console.log(`| ${name} | ${rs.length} | ${cells.join(' | ')} |`);
}
