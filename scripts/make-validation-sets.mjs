// The validation sets: fixed generated items, disjoint from the test sets, in the test sets' formats.
// Choices (seeds, steps, recipes, lambdas) are made on them; a test set is scored once per finished
// run. Each follows its test set's distribution: countdown3 256 problems of three numbers in 1..100
// and a target in 1..100, 27 of them needing a search (as d1's test set: 229 signed sums, 27 not);
// sudoku4 500 puzzles with 8 empty cells, any number of solutions, scored against the grid they were
// cut from (as d1's, where a quarter have several); arith 500 expressions as its held-out set; and the
// learned sampler's mixed sets, as data/*_mixed_test.*. Training streams exclude every item here.
// Usage: node scripts/make-validation-sets.mjs   (rewrites the same files: the seeds fix them)
import { readFileSync, writeFileSync } from 'node:fs';

import { arithTask, countdownTask, loadTestSet, Rng, sudoku4Task } from '../dist/esm/index.js';

const SEED = 20261205;

/** `n` distinct items of `task` (by key) drawn from `draw`, none of whose keys are in `exclude`. */
function distinct(task, n, draw, exclude) {
  const seen = new Set(exclude);
  const items = [];
  while (items.length < n) {
    const item = draw();
    const key = task.key(item);
    if (seen.has(key)) continue;
    seen.add(key);
    items.push(item);
  }
  return items;
}
const keysOf = (task, items) => items.map((item) => task.key(item));
const write = (file, lines) => {
  writeFileSync(`data/${file}`, lines.join('\n') + '\n');
  console.log(`data/${file}: ${lines.length - (file.endsWith('.csv') ? 1 : 0)} items`);
};

// countdown3: 229 signed sums and 27 that need a search, in a seeded order
const countdown = countdownTask();
const cdTest = keysOf(countdown, await loadTestSet(countdown));
const rng = new Rng(SEED);
const sums = countdownTask({ searchFraction: 0 }),
  searches = countdownTask({ searchFraction: 1 });
const both = distinct(countdown, 229, () => sums.generate(rng), cdTest);
const hard = distinct(countdown, 27, () => searches.generate(rng), [...cdTest, ...keysOf(countdown, both)]);
const countdownItems = rng.shuffle([...both, ...hard]);
write('countdown3_validation.jsonl', countdownItems.map((x) => JSON.stringify({ input: x.numbers.join(','), output: String(x.target) })));

const sudokuRows = (items) => ['Puzzle,Solution', ...items.map((x) => `${x.puzzle},${x.solution}`)];
const sudoku = sudoku4Task();
const sudokuAny = sudoku4Task({ solutions: 'any' });
const sdRng = new Rng(SEED);
write('sudoku4_validation.csv', sudokuRows(distinct(sudoku, 500, () => sudokuAny.generate(sdRng), keysOf(sudoku, await loadTestSet(sudoku)))));
const sudokuMixed = sudoku4Task({ empty: [4, 12] });
const mixedTest = keysOf(sudoku, sudoku.parseTestSet(readFileSync('data/sudoku4_mixed_test.csv', 'utf8')));
const smRng = new Rng(SEED + 1);
write('sudoku4_mixed_validation.csv', sudokuRows(distinct(sudoku, 500, () => sudokuMixed.generate(smRng), mixedTest)));

const arithRows = (items) => items.map((x) => JSON.stringify({ input: x.expression, output: String(x.answer) }));
const arith = arithTask();
const arRng = new Rng(SEED);
write('arith_validation.jsonl', arithRows(distinct(arith, 500, () => arith.generate(arRng), keysOf(arith, arith.heldOut()))));
const arithMixed = arithTask({ terms: [2, 4] });
const amTest = keysOf(arith, arith.parseTestSet(readFileSync('data/arith_mixed_test.jsonl', 'utf8')));
const amRng = new Rng(SEED + 1);
write('arith_mixed_validation.jsonl', arithRows(distinct(arith, 500, () => arithMixed.generate(amRng), amTest)));
