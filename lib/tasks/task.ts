import { InvalidArgumentError } from '../core/errors.js';
import type { Rng } from '../core/rng.js';

/** One turn of a conversation, as chat templates take it. */
export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | (string & {});
  content: string;
}

/**
 * A reasoning task with exact verification (docs/rewards.md): a seeded generator, a text format
 * over the shared character vocabulary, the reward and the accuracy metric, and a parser for its
 * external test-set format.
 */
export interface Task<Item> {
  readonly name: string;
  /** One generated item. */
  generate(rng: Rng): Item;
  /** The prompt text (task marker, problem, newline). */
  prompt(item: Item): string;
  /**
   * The prompt as a conversation, for a tokenizer with a chat template (the generation prompt is
   * added after it); without one, or without a template, prompt() is used as it is.
   */
  chat?(item: Item): ChatMessage[];
  /** Text the answer starts with, appended after the prompt (d1's evaluation prompts start it with `<reasoning>`). */
  readonly generationPrefix?: string;
  /** A reference response text (the answer the model is trained to write; no EOS). */
  response(item: Item): string;
  /** The reward of a completion's text (everything the model wrote before EOS); see docs/rewards.md. */
  reward(item: Item, completion: string): number;
  /** Whether the completion solves the item (the accuracy metric). */
  correct(item: Item, completion: string): boolean;
  /** Identity used to keep test items out of training streams. */
  key(item: Item): string;
  /** Items of a file in the task's external test-set format. */
  parseTestSet(text: string): Item[];
  /** File name of the task's external test set in the package's data/ folder, if it has one. */
  readonly testSetFile?: string;
  /** For a task without an external test set: a fixed generated evaluation set (from its own seed). */
  heldOut?(): Item[];
  /**
   * File name of the task's validation set in the package's data/ folder: fixed, generated like the
   * test set but disjoint from it (scripts/make-validation-sets.mjs). Choices are made on it.
   */
  readonly validationSetFile?: string;
  /** For a task whose validation set is a slice of its own data (gsm8k: the last 256 rows of its train split). */
  validationSet?(): Item[];
  /** Tokens to generate per answer when neither the command nor the model folder says (gsm8k, math500: d1's 256). */
  readonly genLength?: number;
  /** The semi-autoregressive block length to decode answers with by default (gsm8k, math500: d1's 32). */
  readonly blockLength?: number;
  /** The item's value of the task's difficulty knob (sudoku4: empty cells, arith: terms, countdown: numbers), for reports by difficulty. */
  readonly difficulty?: { name: string; of(item: Item): number };
}

/**
 * Tokens per answer: the caller's value, else the model folder's (diffpo's own models record the
 * response length they were trained at), else the task's; an InvalidArgumentError naming the task
 * when none says.
 */
export function resolveGenLength(task: Task<unknown>, given: number | undefined, folder: number | undefined): number {
  const n = given ?? folder ?? task.genLength;
  if (n === undefined) throw new InvalidArgumentError(`task '${task.name}' has no default answer length and the model folder records none: give a generation length (--gen-length)`);
  return n;
}

/** A difficulty knob: one value, or a range [min, max] from which each generated item draws uniformly. */
export type Difficulty = number | readonly [number, number];

/** Checks a difficulty knob against its allowed integer range, naming it; returns [min, max]. */
export function difficultyRange(name: string, value: Difficulty, lo: number, hi: number): [number, number] {
  const [a, b] = typeof value === 'number' ? [value, value] : Array.isArray(value) && value.length === 2 ? value : [NaN, NaN];
  if (!Number.isInteger(a) || !Number.isInteger(b) || a < lo || b > hi || a > b)
    throw new InvalidArgumentError(`${name} = ${JSON.stringify(value)} must be an integer in [${lo}, ${hi}] or a range [min, max] within it`);
  return [a, b];
}

/** One draw from a range (no draw, so the RNG stream stays as it was, when the range is one value). */
export const drawIn = ([a, b]: [number, number], rng: Rng): number => (a === b ? a : a + rng.int(b - a + 1));

/** Generated items that never coincide with an item of `exclude` (keys from Task.key). */
export function* trainingStream<Item>(task: Task<Item>, rng: Rng, exclude: ReadonlySet<string> = new Set()): Generator<Item> {
  for (;;) {
    const item = task.generate(rng);
    if (!exclude.has(task.key(item))) yield item;
  }
}

/** One item and the task it belongs to. */
export interface TaskItem {
  task: Task<unknown>;
  item: unknown;
}

/**
 * Training items from one task or several in turn, from one seeded RNG and one exclusion set: item i
 * of the batch of n at step s comes from task (s*n + i) mod (number of tasks), so a resumed trainer
 * (same RNG state and step) draws the same items.
 */
export class TaskMixture {
  readonly tasks: Task<unknown>[];
  readonly #streams: Generator<unknown>[];

  /** `who` names the trainer in the error when neither or both of task and tasks are given. */
  constructor(options: { task?: Task<unknown>; tasks?: Task<unknown>[] }, rng: Rng, exclude: ReadonlySet<string>, who: string) {
    this.tasks = options.tasks ?? (options.task ? [options.task] : []);
    if (this.tasks.length === 0 || (options.task && options.tasks)) throw new InvalidArgumentError(`${who} needs either a task or a non-empty tasks array`);
    this.#streams = this.tasks.map((task) => trainingStream(task, rng, exclude));
  }

  batch(n: number, step: number): TaskItem[] {
    return Array.from({ length: n }, (_, i) => {
      const k = (step * n + i) % this.tasks.length;
      return { task: this.tasks[k]!, item: this.#streams[k]!.next().value };
    });
  }

  /** A fresh item for each of `like`, from the stream of its task (the mixture's tasks stay as they were). */
  redraw(like: readonly TaskItem[]): TaskItem[] {
    return like.map(({ task }) => {
      const k = this.tasks.indexOf(task);
      if (k < 0) throw new InvalidArgumentError(`redraw: task '${task.name}' is not one of this mixture's`);
      return { task, item: this.#streams[k]!.next().value };
    });
  }
}
