// Redraws the plots of committed RL run reports from their committed files: `node scripts/rebuild-run-plots.mjs [ROOT]`
// (default docs/results). For each folder with report.md, result.json and metrics.jsonl, writes the
// pareto.svg, steps.svg and kl.svg that report.md links (the runs were committed without them), drawn
// by the same runReport as `diffpo train` from the frontiers in result.json and the per-step metrics.
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { runReport } from 'diffpo';

function* runFolders(dir) {
  const names = readdirSync(dir, { withFileTypes: true });
  if (['report.md', 'result.json', 'metrics.jsonl'].every((f) => names.some((e) => e.isFile() && e.name === f))) yield dir;
  for (const e of names) if (e.isDirectory()) yield* runFolders(join(dir, e.name));
}

const root = process.argv[2] ?? 'docs/results';
let n = 0;
for (const dir of runFolders(root)) {
  const result = JSON.parse(readFileSync(join(dir, 'result.json'), 'utf8'));
  const metrics = readFileSync(join(dir, 'metrics.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
  const title = /^# (.*)$/m.exec(readFileSync(join(dir, 'report.md'), 'utf8'))?.[1] ?? result.task;
  const report = runReport({ title, summary: '', before: result.before, after: result.after, learned: result.learned, metrics });
  for (const [file, svg] of [['pareto.svg', report.paretoSvg], ['steps.svg', report.stepsSvg], ['kl.svg', report.klSvg]])
    if (!existsSync(join(dir, file))) writeFileSync(join(dir, file), svg);
  n++;
}
console.log(`plots of ${n} run folders under ${root} checked; missing ones drawn`);
