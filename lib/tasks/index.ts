import { existsSync } from 'node:fs';
import { join } from 'node:path';

import data from 'diffpo/data';

import { InvalidArgumentError } from '../core/errors.js';
import { readTextFile } from '../core/files.js';
import { arithTask } from './arith.js';
import { countdownTask } from './countdown.js';
import { gsm8kTask, type D1PromptStyle } from './gsm8k.js';
import { math500Task } from './math500.js';
import { sudoku4Task, type Sudoku4Solutions } from './sudoku4.js';
import type { Difficulty, Task } from './task.js';

export { arithReward, arithTask, parseArithAnswer, solveArith, type ArithItem } from './arith.js';
export { countdown3Task, countdownAnswer, countdownReward, countdownSolution, countdownTask, isSignedSum, type CountdownItem } from './countdown.js';
export { evaluateExpression, pyStrip, withinTolerance, type EvaluatedExpression, type PyNumber } from './expression.js';
export { countSudoku4Solutions, isSudoku4Solution, sudoku4Solutions, SUDOKU4_SOLUTIONS, sudoku4Task, sudokuReward, type Sudoku4Item, type Sudoku4Solutions } from './sudoku4.js';
export { difficultyRange, resolveGenLength, TaskMixture, trainingStream, type ChatMessage, type Difficulty, type Task, type TaskItem } from './task.js';
export { D1_EVAL_PREFIX, D1_EVAL_PROMPT, D1_FORMAT_PROMPT, gsm8kCorrect, gsm8kExtract, gsm8kGroundTruth, gsm8kReward, gsm8kTask, GSM8K_VALIDATION_SIZE, parseGsm8k, type D1PromptStyle, type Gsm8kItem } from './gsm8k.js';
export { D1_MATH_PROMPT, math500Correct, math500Extract, math500Reward, math500Task, parseMath500, type Math500Item } from './math500.js';
export { boxedAnswer, isEquivMath, lastBoxedOnlyString, removeBoxed } from './math-answer.js';

export type TaskName = 'sudoku4' | 'countdown3' | 'arith' | 'gsm8k' | 'math500';

/**
 * A task by name, with its default options or a difficulty: sudoku4's empty cells, countdown3's count
 * of numbers, arith's terms (a value or a range); `solutions`: which sudoku4 puzzles (unique, any,
 * or only those with several solutions, credited for any: see Sudoku4Solutions); `searchFraction`: the
 * fraction of countdown3's items that need a search (see countdownTask).
 */
export function getTask(name: TaskName, difficulty?: Difficulty, options: { solutions?: Sudoku4Solutions; searchFraction?: number; prompt?: D1PromptStyle } = {}): Task<unknown> {
  if (options.prompt !== undefined && name !== 'gsm8k' && name !== 'math500') throw new InvalidArgumentError(`prompt is an option of gsm8k and math500, not of task '${String(name)}'`);
  if (options.solutions !== undefined && name !== 'sudoku4') throw new InvalidArgumentError(`solutions is a sudoku4 option; task '${String(name)}' has one answer per item`);
  if (options.searchFraction !== undefined && name !== 'countdown3') throw new InvalidArgumentError(`searchFraction is a countdown3 option, not one of task '${String(name)}'`);
  switch (name) {
    case 'sudoku4':
      return sudoku4Task({ empty: difficulty, solutions: options.solutions }) as Task<unknown>;
    case 'countdown3':
      return countdownTask({ numbers: difficulty, searchFraction: options.searchFraction }) as Task<unknown>;
    case 'arith':
      return arithTask({ terms: difficulty }) as Task<unknown>;
    case 'gsm8k':
    case 'math500':
      if (difficulty !== undefined) throw new InvalidArgumentError(`task '${name}' has no difficulty knob`);
      return (name === 'gsm8k' ? gsm8kTask({ prompt: options.prompt }) : math500Task({ prompt: options.prompt })) as Task<unknown>;
    default:
      throw new InvalidArgumentError(`unknown task '${String(name)}' (one of sudoku4, countdown3, arith, gsm8k, math500)`);
  }
}

/**
 * Items of a test set: the given file, or the task's external test set (shipped in the package's
 * data/ folder), or (for a task without one, like arith) its fixed generated held-out set.
 */
export async function loadTestSet<Item>(task: Task<Item>, file?: string): Promise<Item[]> {
  if (!file && !task.testSetFile && task.heldOut) return task.heldOut();
  if (!file && !task.testSetFile) throw new InvalidArgumentError(`task '${task.name}' has no test set of its own: give a file`);
  return task.parseTestSet(await readTextFile(file ?? join(data.dir, task.testSetFile!), InvalidArgumentError));
}

/**
 * Items of a validation set: the given file (in the task's test-set format), or the task's own
 * (shipped in data/, or a slice of its data: gsm8k's is the last 256 rows of its train split). Fixed,
 * disjoint from the test set, excluded from training streams: choices (seeds, steps, recipes,
 * lambdas) are made on it, and a test set is scored once per finished run.
 */
export async function loadValidationSet<Item>(task: Task<Item>, file?: string): Promise<Item[]> {
  if (file || task.validationSetFile) return task.parseTestSet(await readTextFile(file ?? join(data.dir, task.validationSetFile!), InvalidArgumentError));
  if (task.validationSet) return task.validationSet();
  throw new InvalidArgumentError(`task '${task.name}' has no validation set of its own${task.name === 'math500' ? " (MATH500 is a test split and MATH's train split is not shipped)" : ''}: give a file`);
}

/**
 * The validation set that goes with a test-set file: its sibling named `*_validation.*` in place of
 * `*_test.*` when there is one (data/sudoku4_mixed_test.csv -> data/sudoku4_mixed_validation.csv),
 * else undefined (the task's own).
 */
export function siblingValidationFile(testFile: string | undefined): string | undefined {
  if (!testFile || !/_test(\.[^./\\]+)$/.test(testFile)) return undefined;
  const sibling = testFile.replace(/_test(\.[^./\\]+)$/, '_validation$1');
  return existsSync(sibling) ? sibling : undefined;
}
