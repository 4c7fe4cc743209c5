// The mixed-difficulty held-out sets of the learned-sampler evaluation, from fixed seeds: 500
// generated 4x4 Sudoku puzzles with 4 to 12 empty cells (uniform), one solution each, written to
// data/sudoku4_mixed_test.csv in the external set's format; and 500 distinct arith expressions of 2 to
// 4 terms, data/arith_mixed_test.jsonl in arith's test-set format. A per-prompt threshold can only
// beat a fixed one where prompts differ; the external sudoku set has 8 empty cells everywhere.
// Usage: node scripts/make-mixed-sets.mjs   (rewrites the same file: the seed fixes it)
import { writeFileSync } from 'node:fs';

import { arithTask, Rng, sudoku4Task } from '../dist/esm/index.js';

const task = sudoku4Task({ empty: [4, 12] });
const rng = new Rng(20261130);
const seen = new Set();
const rows = [];
while (rows.length < 500) {
  const item = task.generate(rng);
  if (seen.has(item.puzzle)) continue;
  seen.add(item.puzzle);
  rows.push(`${item.puzzle},${item.solution}`);
}
writeFileSync('data/sudoku4_mixed_test.csv', ['Puzzle,Solution', ...rows].join('\n') + '\n');
console.log(`data/sudoku4_mixed_test.csv: ${rows.length} puzzles`);

const arith = arithTask({ terms: [2, 4] });
const arithRng = new Rng(20261130);
const expressions = new Map();
while (expressions.size < 500) {
  const item = arith.generate(arithRng);
  expressions.set(item.expression, item.answer);
}
writeFileSync('data/arith_mixed_test.jsonl', [...expressions].map(([input, answer]) => JSON.stringify({ input, output: String(answer) })).join('\n') + '\n');
console.log(`data/arith_mixed_test.jsonl: ${expressions.size} expressions`);
