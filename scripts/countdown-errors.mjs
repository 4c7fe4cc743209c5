// Where a countdown3 model goes wrong on the external test set: each completion against the worked
// solution (countdownSolution), counted by the first step that differs (the running sum's additions,
// S - target, the halving, S - h), completions whose steps are all right but whose expression is not,
// and items only a search solves (the signed-sum format cannot reach them).
// Usage: node scripts/countdown-errors.mjs MODEL_DIR [THRESHOLD=0.9] [SHOW=category prefix]
import { DiffusionLM, countdownSolution, evaluate, getTask, isSignedSum, loadTestSet, readModelFolder } from '../dist/esm/index.js';

const [dir, threshold = '0.9', show] = process.argv.slice(2);
if (!dir) throw new Error('usage: node scripts/countdown-errors.mjs MODEL_DIR [THRESHOLD] [SHOW]');
const task = getTask('countdown3');
const items = await loadTestSet(task);
const model = await DiffusionLM.fromPretrained(dir);
const { tokenizer, genLength } = await readModelFolder(dir);
const r = await evaluate(model, task, { items, tokenizer, genLength, sampler: { strategy: { kind: 'threshold', threshold: Number(threshold) } } });
model.dispose();
const STEPS = ['first addition', 'second addition', 'S - target', 'halving', 'S - h'];
const counts = {};
items.forEach((item, i) => {
  const text = r.completions[i];
  let kind;
  if (task.correct(item, text)) kind = 'right';
  else if (!isSignedSum(item.numbers, item.target)) kind = 'needs a search';
  else {
    const want = countdownSolution(item.numbers, item.target).steps;
    const got = text.split('#')[0].split(';');
    const k = want.findIndex((s, j) => s !== got[j]);
    kind = k < 0 ? 'steps right, expression wrong' : `wrong at the ${STEPS[k]}`;
    if (show && kind.startsWith(show)) console.log(`${JSON.stringify(item)}\n  want ${task.response({ ...item, ...countdownSolution(item.numbers, item.target) })}\n  got  ${text}`);
  }
  counts[kind] = (counts[kind] ?? 0) + 1;
});
console.log(`${dir} at threshold ${threshold}: accuracy ${r.accuracy.toFixed(3)}, mean NFE ${r.meanNfe.toFixed(2)}`);
for (const [kind, n] of Object.entries(counts).sort((a, b) => b[1] - a[1])) console.log(`  ${kind}: ${n}`);
