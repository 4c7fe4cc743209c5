// How much can any per-prompt threshold gain over the fixed-threshold frontier, on a model and a
// held-out set? Decodes every item at each threshold, then prints: per number of empty cells, accuracy
// and NFE at each threshold; the best per-difficulty policy at several prices of an NFE (an oracle that
// knows each puzzle's empties); the per-item oracle (the cheapest threshold that gets each item
// right); and what the learned head's confidence features can see: a 5-fold cross-validated logistic
// model of "wrong at the loose threshold", sending the riskiest fraction q of prompts to the strict
// threshold. Difficulty: sudoku4's empty cells; countdown3's kind of solution (a signed sum of the
// numbers, or one that needs a search). Usage: node scripts/sampler-oracle.mjs [MODEL_DIR] [TEST_FILE] [TASK]
// (TEST_FILE '' = the task's own test set)
import { DiffusionLM, encodePrompts, generate, getTask, isSignedSum, loadTestSet, readModelFolder, ThresholdHead } from '../dist/esm/index.js';

const [dir = 'models/sudoku4-base', file = 'data/sudoku4_mixed_test.csv', taskName = 'sudoku4'] = process.argv.slice(2);
const task = getTask(taskName);
const items = await loadTestSet(task, file || undefined);
const difficulty =
  taskName === 'countdown3'
    ? (item) => (isSignedSum(item.numbers, item.target) ? 'signed sum' : 'search')
    : (item) => `empties ${(task.prompt(item).match(/0/g) ?? []).length}`;
const model = await DiffusionLM.fromPretrained(dir, { threads: 1 });
const { tokenizer, genLength } = await readModelFolder(dir);
const THRESHOLDS = [0.5, 0.7, 0.8, 0.9, 0.95, 0.99];
const ok = {},
  nfe = {};
for (const t of THRESHOLDS) {
  [ok[t], nfe[t]] = [[], []];
  for (let s = 0; s < items.length; s += 100) {
    const chunk = items.slice(s, s + 100);
    const r = await generate(model, encodePrompts(task, chunk, tokenizer), { genLength, strategy: { kind: 'threshold', threshold: t } });
    chunk.forEach((item, b) => {
      ok[t].push(task.correct(item, tokenizer.decode(r.tokens.subarray(b * genLength, (b + 1) * genLength))) ? 1 : 0);
      nfe[t].push(r.nfe[b]);
    });
  }
}
const all = items.map((_, i) => i);
const stat = (t, idx) => [idx.reduce((a, i) => a + ok[t][i], 0) / idx.length, idx.reduce((a, i) => a + nfe[t][i], 0) / idx.length];
const point = ([a, n]) => `${a.toFixed(3)}@${n.toFixed(2)}`;
const kinds = items.map(difficulty);
const groups = [...new Set(kinds)].sort((a, b) => a.localeCompare(b, undefined, { numeric: true })).map((e) => ({ e, idx: all.filter((i) => kinds[i] === e) }));
for (const { e, idx } of groups) console.log(`${e} (${idx.length}): ${THRESHOLDS.map((t) => `${t} ${point(stat(t, idx))}`).join('  ')}`);
console.log(`fixed: ${THRESHOLDS.map((t) => `${t} ${point(stat(t, all))}`).join('  ')}`);
for (const mu of [0.02, 0.05, 0.1, 0.2]) {
  let a = 0,
    n = 0;
  const pick = groups.map(({ e, idx }) => {
    const best = THRESHOLDS.map((t) => ({ t, s: stat(t, idx) })).reduce((x, y) => (y.s[0] - mu * y.s[1] > x.s[0] - mu * x.s[1] ? y : x));
    a += best.s[0] * idx.length;
    n += best.s[1] * idx.length;
    return `${e}:${best.t}`;
  });
  console.log(`per-difficulty oracle at ${mu} per NFE: ${point([a / items.length, n / items.length])}  (${pick.join(' ')})`);
}
let a = 0,
  n = 0;
for (const i of all) {
  const t = THRESHOLDS.find((t) => ok[t][i]) ?? THRESHOLDS[0];
  a += ok[t][i];
  n += nfe[t][i];
}
console.log(`per-item oracle: ${point([a / items.length, n / items.length])}`);

const feats = await ThresholdHead.confidenceFeatures(model, encodePrompts(task, items, tokenizer), { genLength });
const D = feats[0].length;
const mean = Array.from({ length: D }, (_, d) => feats.reduce((s, f) => s + f[d], 0) / feats.length);
const sd = Array.from({ length: D }, (_, d) => Math.sqrt(feats.reduce((s, f) => s + (f[d] - mean[d]) ** 2, 0) / feats.length) || 1);
const X = feats.map((f) => Array.from(f, (v, d) => (v - mean[d]) / sd[d]));
for (const [loose, strict] of [[0.5, 0.9], [0.7, 0.9], [0.7, 0.99], [0.9, 0.99]]) {
  const y = all.map((i) => 1 - ok[loose][i]);
  const score = new Array(items.length).fill(0);
  for (let fold = 0; fold < 5; fold++) {
    const train = all.filter((i) => i % 5 !== fold);
    const w = new Array(D + 1).fill(0);
    for (let it = 0; it < 2000; it++) {
      const g = new Array(D + 1).fill(0);
      for (const i of train) {
        const e = 1 / (1 + Math.exp(-(w[D] + X[i].reduce((s, x, d) => s + x * w[d], 0)))) - y[i];
        X[i].forEach((x, d) => (g[d] += e * x));
        g[D] += e;
      }
      g.forEach((v, d) => (w[d] -= (0.5 * v) / train.length));
    }
    for (const i of all.filter((i) => i % 5 === fold)) score[i] = w[D] + X[i].reduce((s, x, d) => s + x * w[d], 0);
  }
  const pos = all.filter((i) => y[i]),
    neg = all.filter((i) => !y[i]);
  let auc = 0;
  for (const p of pos) for (const q of neg) auc += score[p] > score[q] ? 1 : score[p] === score[q] ? 0.5 : 0;
  const order = [...all].sort((i, j) => score[j] - score[i]);
  const pts = [0.1, 0.2, 0.3, 0.5].map((q) => {
    const risky = new Set(order.slice(0, Math.round(q * items.length)));
    let a = 0,
      n = 0;
    for (const i of all) {
      const t = risky.has(i) ? strict : loose;
      a += ok[t][i];
      n += nfe[t][i];
    }
    return `q ${q}: ${point([a / items.length, n / items.length])}`;
  });
  console.log(`features, ${loose} / ${strict}: ${pos.length} wrong at ${loose}, AUC ${(auc / (pos.length * neg.length)).toFixed(3)}; ${pts.join('  ')}`);
}
model.dispose();
