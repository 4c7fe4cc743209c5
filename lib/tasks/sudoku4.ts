import { InvalidArgumentError } from '../core/errors.js';
import { difficultyRange, drawIn, type Difficulty, type Task } from './task.js';

/** A 4x4 Sudoku: 16 characters row-major, '0' = empty. */
export interface Sudoku4Item {
  puzzle: string;
  solution: string;
}

const BOXES = (r: number, c: number) => Math.floor(r / 2) * 2 + Math.floor(c / 2);

/** Number of solutions of a puzzle, counting up to `limit`. */
export function countSudoku4Solutions(puzzle: string, limit = 2): number {
  return sudoku4Solutions(puzzle, limit).length;
}

/** The solutions of a puzzle (up to `limit`; a 4x4 Sudoku has 288 grids in all). */
export function sudoku4Solutions(puzzle: string, limit = 288): string[] {
  const grid = [...puzzle].map(Number);
  const found: string[] = [];
  const ok = (i: number, d: number) => {
    const r = Math.floor(i / 4),
      c = i % 4;
    for (let j = 0; j < 16; j++) {
      if (j === i || grid[j] !== d) continue;
      const rj = Math.floor(j / 4),
        cj = j % 4;
      if (rj === r || cj === c || BOXES(rj, cj) === BOXES(r, c)) return false;
    }
    return true;
  };
  const solve = (i: number): void => {
    if (found.length >= limit) return;
    if (i === 16) {
      found.push(grid.join(''));
      return;
    }
    if (grid[i] !== 0) return solve(i + 1);
    for (let d = 1; d <= 4; d++)
      if (ok(i, d)) {
        grid[i] = d;
        solve(i + 1);
        grid[i] = 0;
      }
  };
  // the givens must not already conflict
  for (let i = 0; i < 16; i++) if (grid[i] !== 0 && !ok(i, grid[i]!)) return [];
  solve(0);
  return found;
}

/**
 * Every valid 4x4 grid (288), in a fixed order: generated puzzles draw their solution uniformly from
 * these. (Symmetries of one base grid, which this replaced, reach only 96 of them: one of the two
 * essentially different grids, and 119 of the 500 test puzzles' solutions.)
 */
const ALL_GRIDS: readonly string[] = sudoku4Solutions('0'.repeat(16));

/** Whether a 16-digit grid is a complete, valid 4x4 Sudoku. */
export function isSudoku4Solution(grid: string): boolean {
  return /^[1-4]{16}$/.test(grid) && countSudoku4Solutions(grid, 1) === 1;
}

/**
 * The characters of an answer that Python's str.isdigit() accepts, in order, as d1 reads a Sudoku
 * answer: the decimal digits of every script plus the digit-only characters (superscripts, circled
 * digits, ...). A non-ASCII digit never matches a cell, but it keeps its place in the grid.
 */
const PY_DIGIT = /[\p{Nd}\u{b2}-\u{b3}\u{b9}\u{1369}-\u{1371}\u{19da}\u{2070}\u{2074}-\u{2079}\u{2080}-\u{2089}\u{2460}-\u{2468}\u{2474}-\u{247c}\u{2488}-\u{2490}\u{24ea}\u{24f5}-\u{24fd}\u{24ff}\u{2776}-\u{277e}\u{2780}-\u{2788}\u{278a}-\u{2792}\u{10a40}-\u{10a43}\u{10e60}-\u{10e68}\u{11052}-\u{1105a}\u{1f100}-\u{1f10a}]/gu;
const answerDigits = (text: string): string[] => text.match(PY_DIGIT) ?? [];

/**
 * d1's Sudoku reward: the answer's digits, padded with '0' or cut to 16, scored by the fraction of the
 * puzzle's empty cells they fill correctly; 0 for an answer without digits and for a puzzle with no
 * empty cell (nothing to solve).
 */
export function sudokuReward(item: Sudoku4Item, answer: string): number {
  const digits = answerDigits(answer);
  if (digits.length === 0) return 0;
  let holes = 0,
    right = 0;
  for (let i = 0; i < 16; i++)
    if (item.puzzle[i] === '0') {
      holes++;
      if ((digits[i] ?? '0') === item.solution[i]) right++;
    }
  return holes ? right / holes : 0;
}

/**
 * Which generated puzzles a sudoku4 task draws: `unique` (one solution), `any` (any holes in a random
 * grid: a quarter of the test set's puzzles have several solutions too) or `several` (only puzzles
 * with two or more solutions: where parallel decoding mixes solutions, so where RL has signal).
 * Unless `unique`, a completion is credited against whichever solution it matches best (the same as
 * d1's reward on a unique puzzle). For training streams; test sets score d1's way.
 */
export type Sudoku4Solutions = 'unique' | 'any' | 'several';
export const SUDOKU4_SOLUTIONS: readonly Sudoku4Solutions[] = ['unique', 'any', 'several'];

/**
 * 4x4 Sudoku with `empty` empty cells: 8 by default, as the external test set; a range such as
 * [4, 12] mixes difficulties (each puzzle draws its count). `solutions` (default `unique`): see
 * {@link Sudoku4Solutions}.
 */
export function sudoku4Task(options: { empty?: Difficulty; solutions?: Sudoku4Solutions } = {}): Task<Sudoku4Item> {
  const kind = options.solutions ?? 'unique';
  if (!SUDOKU4_SOLUTIONS.includes(kind)) throw new InvalidArgumentError(`solutions must be one of ${SUDOKU4_SOLUTIONS.join(', ')}, got ${JSON.stringify(kind)}`);
  // several solutions need at least 4 holes (two pairs of cells that can swap digits)
  const empty = difficultyRange('empty', options.empty ?? 8, kind === 'several' ? 4 : 1, 12);
  const solutions = (item: Sudoku4Item) => (kind === 'unique' ? [item.solution] : sudoku4Solutions(item.puzzle));
  const accept = (puzzle: string) => kind === 'any' || (countSudoku4Solutions(puzzle) === 1) === (kind === 'unique');
  return {
    name: 'sudoku4',
    testSetFile: 'sudoku4_test.csv',
    validationSetFile: 'sudoku4_validation.csv',
    difficulty: { name: 'empty cells', of: (item) => [...item.puzzle].filter((c) => c === '0').length },
    generate(rng) {
      const solution = ALL_GRIDS[rng.int(ALL_GRIDS.length)]!;
      const count = drawIn(empty, rng); // once per item: redrawing on a retry would favour easy puzzles
      for (;;) {
        const holes = new Set(rng.shuffle([...Array(16).keys()]).slice(0, count));
        const puzzle = [...solution].map((d, i) => (holes.has(i) ? '0' : d)).join('');
        if (accept(puzzle)) return { puzzle, solution };
      }
    },
    prompt: (item) => `S${item.puzzle}\n`,
    response: (item) => item.solution,
    reward: (item, completion) => Math.max(...solutions(item).map((solution) => sudokuReward({ puzzle: item.puzzle, solution }, completion))),
    correct: (item, completion) => solutions(item).includes(answerDigits(completion).slice(0, 16).join('')),
    key: (item) => item.puzzle,
    parseTestSet(text) {
      const lines = text.split(/\r?\n/).filter((l) => l.trim() !== '');
      if (lines[0]?.trim() !== 'Puzzle,Solution') throw new InvalidArgumentError('a Sudoku test set is a CSV with the header "Puzzle,Solution"');
      return lines.slice(1).map((line, i) => {
        const [puzzle, solution] = line.trim().split(',');
        if (!/^[0-4]{16}$/.test(puzzle ?? '') || !/^[1-4]{16}$/.test(solution ?? ''))
          throw new InvalidArgumentError(`line ${i + 2}: expected two 16-digit grids, got ${JSON.stringify(line)}`);
        return { puzzle: puzzle!, solution: solution! };
      });
    },
  };
}
