// The mixed-difficulty held-out set of the learned-sampler evaluation: 500 generated 4x4 Sudoku
// puzzles with 4 to 12 empty cells (uniform), one solution each, from a fixed seed, written to
// data/sudoku4_mixed_test.csv in the external set's format. A per-prompt threshold can only beat a
// fixed one where prompts differ; the external set has 8 empty cells everywhere.
// Usage: node scripts/make-mixed-sets.mjs   (rewrites the same file: the seed fixes it)
import { writeFileSync } from 'node:fs';

import { Rng, sudoku4Task } from '../dist/esm/index.js';

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
