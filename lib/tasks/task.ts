import type { Rng } from '../rng.js';

/**
 * A reasoning task with exact verification (ALGORITHMS.md §7): a seeded generator, a text format
 * over the shared character vocabulary, the reward and the accuracy metric, and a parser for its
 * external test-set format.
 */
export interface Task<Item> {
  readonly name: string;
  /** One generated item. */
  generate(rng: Rng): Item;
  /** The prompt text (task marker, problem, newline). */
  prompt(item: Item): string;
  /** A reference response text (the answer the model is trained to write; no EOS). */
  response(item: Item): string;
  /** The reward of §7 for a completion's text (everything the model wrote before EOS). */
  reward(item: Item, completion: string): number;
  /** Whether the completion solves the item (the accuracy metric). */
  correct(item: Item, completion: string): boolean;
  /** Identity used to keep test items out of training streams. */
  key(item: Item): string;
  /** Items of a file in the task's external test-set format. */
  parseTestSet(text: string): Item[];
  /** File name of the task's external test set in shared/benchmarks/, if it has one. */
  readonly testSetFile?: string;
  /** For a task without an external test set: a fixed generated evaluation set (from its own seed). */
  heldOut?(): Item[];
}

/** Generated items that never coincide with an item of `exclude` (keys from Task.key). */
export function* trainingStream<Item>(task: Task<Item>, rng: Rng, exclude: ReadonlySet<string> = new Set()): Generator<Item> {
  for (;;) {
    const item = task.generate(rng);
    if (!exclude.has(task.key(item))) yield item;
  }
}
