import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';

import { InvalidArgumentError } from '../core/errors.js';
import { arithTask } from './arith.js';
import { countdown3Task } from './countdown3.js';
import { sudoku4Task } from './sudoku4.js';
import type { Task } from './task.js';

export { arithReward, arithTask, parseArithAnswer, solveArith, type ArithItem } from './arith.js';
export { countdown3Task, countdownReward, type Countdown3Item } from './countdown3.js';
export { evaluateExpression, pyStrip, withinTolerance, type EvaluatedExpression, type PyNumber } from './expression.js';
export { countSudoku4Solutions, isSudoku4Solution, sudoku4Task, sudokuReward, type Sudoku4Item } from './sudoku4.js';
export { TaskMixture, trainingStream, type Task, type TaskItem } from './task.js';

export type TaskName = 'sudoku4' | 'countdown3' | 'arith';

/** A task by name, with its default options. */
export function getTask(name: TaskName): Task<unknown> {
  switch (name) {
    case 'sudoku4':
      return sudoku4Task() as Task<unknown>;
    case 'countdown3':
      return countdown3Task() as Task<unknown>;
    case 'arith':
      return arithTask() as Task<unknown>;
    default:
      throw new InvalidArgumentError(`unknown task '${String(name)}' (one of sudoku4, countdown3, arith)`);
  }
}

/** The shared/benchmarks folder beside the repository, found from the working directory upwards. */
export function findBenchmarksDir(from = process.cwd()): string | null {
  for (let dir = from; ; dir = dirname(dir)) {
    const candidate = join(dir, '..', 'shared', 'benchmarks');
    if (existsSync(candidate)) return candidate;
    if (dirname(dir) === dir) return null;
  }
}

/**
 * Items of a test set: the given file, or the task's external test set in shared/benchmarks/, or
 * (for a task without one, like arith) its fixed generated held-out set.
 */
export async function loadTestSet<Item>(task: Task<Item>, file?: string): Promise<Item[]> {
  let path = file;
  if (!path && !task.testSetFile && task.heldOut) return task.heldOut();
  if (!path) {
    const dir = findBenchmarksDir();
    if (!task.testSetFile || !dir) throw new InvalidArgumentError(`no test set file given and none found for task '${task.name}' (looked for ../shared/benchmarks/)`);
    path = join(dir, task.testSetFile);
  }
  return task.parseTestSet(await readFile(path, 'utf8'));
}
