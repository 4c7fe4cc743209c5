import { leftPad } from '../core/left-pad.js';
import type { TextTokenizer } from './tokenizer.js';
import type { Task } from './task.js';

/** A batch of prompts (left-padded to the longest, positions shifted) and responses padded with EOS. */
export interface EncodedBatch {
  tokens: Int32Array;
  attentionMask: Uint8Array;
  positions: Int32Array;
  batch: number;
  seqLen: number;
  /** Padded prompt length: the response region starts here in every row. */
  promptLength: number;
}

/**
 * The ids of an item's prompt: its conversation through the tokenizer's chat template (with the
 * generation prompt) when the task has one and the tokenizer a template, else its prompt text; then
 * the task's generation prefix, if any.
 */
export function encodePrompt<Item>(task: Task<Item>, item: Item, tokenizer: TextTokenizer): Int32Array {
  const chat = task.chat ? tokenizer.applyChatTemplate(task.chat(item), { addGenerationPrompt: true }) : null;
  return tokenizer.encode((chat ?? task.prompt(item)) + (task.generationPrefix ?? ''));
}

export function encodePrompts<Item>(task: Task<Item>, items: Item[], tokenizer: TextTokenizer): Int32Array[] {
  return items.map((item) => encodePrompt(task, item, tokenizer));
}

/** Prompt + response + EOS padding up to responseLength, one row per item. */
export function encodeSftBatch<Item>(task: Task<Item>, items: Item[], tokenizer: TextTokenizer, responseLength: number): EncodedBatch {
  return encodeSftPairs(items.map((item) => ({ task: task as Task<unknown>, item })), tokenizer, responseLength);
}

/** encodeSftBatch for items of several tasks (a multi-task batch): each row uses its own task's format. */
export function encodeSftPairs(pairs: { task: Task<unknown>; item: unknown }[], tokenizer: TextTokenizer, responseLength: number): EncodedBatch {
  const prompts = pairs.map(({ task, item }) => encodePrompt(task, item, tokenizer));
  const responses = pairs.map(({ task, item }) => tokenizer.encode(task.response(item)).subarray(0, responseLength));
  const { prefixLength, ...batch } = leftPad(prompts, responses, { padId: tokenizer.eosId, suffixLength: responseLength });
  return { ...batch, promptLength: prefixLength };
}

/** Longest response of `samples` generated items, plus one for EOS. */
export function responseLengthOf<Item>(task: Task<Item>, sample: Item[], tokenizer: TextTokenizer): number {
  return 1 + Math.max(...sample.map((item) => tokenizer.encode(task.response(item)).length));
}
