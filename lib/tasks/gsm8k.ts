import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import data from 'diffpo/data';

import { InvalidArgumentError } from '../core/errors.js';
import type { Rng } from '../core/rng.js';
import { pyStrip } from './expression.js';
import { firstAnswerTag } from './math-answer.js';
import { intAnswerReward, softFormatReward, strictFormatReward, withoutStopTokens, xmlAnswer, xmlCountReward } from './reasoning-format.js';
import type { ChatMessage, Task } from './task.js';

/** A GSM8K problem: the question, the dataset's worked solution and its final answer. */
export interface Gsm8kItem {
  question: string;
  /** The dataset's full answer text (worked steps with <<calculator>> notes, then `#### answer`). */
  solution: string;
  /** The text after `####`, stripped: what d1's training reward compares the model's answer with. */
  answer: string;
  /** The answer as d1's evaluation reads it (a non-negative number; null for a negative one, which d1 never credits). */
  groundTruth: number | null;
}

/** d1's format instruction (its diffu-GRPO SYSTEM_PROMPT), prepended to every question. */
export const D1_FORMAT_PROMPT = '\nRespond in the following format:\n<reasoning>\n...\n</reasoning>\n<answer>\n...\n</answer>\n';

/**
 * d1's evaluation prompt (its eval scripts' system prompt, the same for GSM8K and MATH500), put before
 * the question; the answer then starts with `<reasoning>` (D1_EVAL_PREFIX), as d1's eval adds it.
 */
export const D1_EVAL_PROMPT =
  'You are a math expert. You will be given a question to solve. Solve it step by step. Wrap the final answer in a \\boxed{}. \nRespond in the following format:\n<reasoning>\nYour reasoning here\n</reasoning>\n<answer>\n\\boxed{...}\n</answer>';
export const D1_EVAL_PREFIX = '<reasoning>';

/**
 * Which of d1's prompts a math task uses: 'train' (diffu-GRPO's, what RL trains on; the default) or
 * 'eval' (d1's evaluation scripts': the math-expert prompt, the answer started with `<reasoning>`),
 * to compare with d1's published accuracies.
 */
export type D1PromptStyle = 'train' | 'eval';

export function checkPromptStyle(style: unknown): D1PromptStyle {
  if (style !== 'train' && style !== 'eval') throw new InvalidArgumentError(`prompt must be 'train' or 'eval', got ${JSON.stringify(style)}`);
  return style;
}

/** The final answer of a dataset answer text as d1's evaluation reads it: the number after `####` (commas dropped), or null. */
export function gsm8kGroundTruth(solution: string): number | null {
  const m = /####\s*\$?([\d,]+(?:\.\d+)?)/.exec(solution);
  return m ? Number(m[1]!.replaceAll(',', '')) : null;
}

/** Python's float() of a string: null where Python raises ValueError (ASCII digits only). */
function pyFloat(s: string): number | null {
  const t = pyStrip(s);
  const digits = '\\d(?:_?\\d)*';
  const number = new RegExp(`^[+-]?(?:(?:${digits})?\\.${digits}|${digits}\\.?)(?:[eE][+-]?${digits})?$`);
  if (number.test(t)) return Number(t.replaceAll('_', ''));
  const special = /^([+-]?)(inf|infinity|nan)$/i.exec(t);
  if (!special) return null;
  if (special[2]!.toLowerCase() === 'nan') return NaN;
  return special[1] === '-' ? -Infinity : Infinity;
}

const NUMBERS = /-?\d+\.?\d*/g;

/**
 * The number d1's evaluation reads from a generation: the first `\boxed{...}` (on one line) holding a
 * number (the whole content, else its first number), else the `<answer>` text (the whole, else its
 * last number); null when there is none.
 */
export function gsm8kExtract(generation: string): number | null {
  for (const m of generation.matchAll(/\\boxed\{([^\n]*?)\}/g)) {
    const content = pyStrip(m[1]!);
    if (!content || /^\.+$/.test(content)) continue;
    const whole = pyFloat(content);
    if (whole !== null) return whole;
    const first = content.match(NUMBERS)?.[0];
    if (first !== undefined) return pyFloat(first);
  }
  const text = firstAnswerTag(generation);
  if (!text) return null;
  const whole = pyFloat(text);
  if (whole !== null) return whole;
  const last = text.match(NUMBERS)?.at(-1);
  return last === undefined ? null : pyFloat(last);
}

/** d1's training reward of a completion: xmlcount + soft format + strict format + integer answer + exact answer (2). */
export function gsm8kReward(item: Gsm8kItem, completion: string): number {
  const text = withoutStopTokens(completion);
  return xmlCountReward(text) + softFormatReward(text) + strictFormatReward(text) + intAnswerReward(text) + (xmlAnswer(text) === item.answer ? 2.0 : 0.0);
}

/** d1's evaluation verdict: the extracted number equals the ground truth. */
export function gsm8kCorrect(item: Gsm8kItem, generation: string): boolean {
  const x = gsm8kExtract(generation);
  return x !== null && item.groundTruth !== null && x === item.groundTruth;
}

export function parseGsm8k(text: string, file = 'GSM8K'): Gsm8kItem[] {
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((line, i) => {
      let row: { question?: unknown; answer?: unknown };
      try {
        row = JSON.parse(line);
      } catch {
        throw new InvalidArgumentError(`${file}: line ${i + 1} is not JSON`);
      }
      if (typeof row?.question !== 'string' || typeof row.answer !== 'string' || !row.answer.includes('####'))
        throw new InvalidArgumentError(`${file}: line ${i + 1} needs a string question and an answer ending in '#### <answer>'`);
      return { question: row.question, solution: row.answer, answer: pyStrip(row.answer.split('####')[1]!), groundTruth: gsm8kGroundTruth(row.answer) };
    });
}

/** Items of GSM8K's train split kept out of training for choices (the last 256 of the file). */
export const GSM8K_VALIDATION_SIZE = 256;

let train: { stream: Gsm8kItem[]; validation: Gsm8kItem[] } | null = null;
function trainSplit(): { stream: Gsm8kItem[]; validation: Gsm8kItem[] } {
  if (!train) {
    const all = parseGsm8k(readFileSync(join(data.dir, 'gsm8k_train.jsonl'), 'utf8'), 'gsm8k_train.jsonl');
    train = { stream: all.slice(0, -GSM8K_VALIDATION_SIZE), validation: all.slice(-GSM8K_VALIDATION_SIZE) };
  }
  return train;
}

/** The dataset's worked solution in d1's format: the steps (calculator notes dropped) as reasoning, the final answer as the answer. */
function referenceResponse(item: Gsm8kItem): string {
  const steps = item.solution.split('####')[0]!.replace(/<<[^>]*>>/g, '').trim();
  return `<reasoning>\n${steps}\n</reasoning>\n<answer>\n${item.answer}\n</answer>\n`;
}

/**
 * GSM8K as d1 trains and evaluates on it: d1's prompt (its format instruction, then the question; with
 * `prompt: 'eval'`, its evaluation prompt) as one user turn of the model's chat template; `reward` is d1's training reward sum (at most 4),
 * `correct` d1's evaluation verdict. The test set is GSM8K's test split (1,319); training draws
 * from its train split less a fixed validation slice (`validationSet()`).
 */
export function gsm8kTask(options: { prompt?: D1PromptStyle } = {}): Task<Gsm8kItem> & { validationSet(): Gsm8kItem[] } {
  const style = checkPromptStyle(options.prompt ?? 'train');
  const content = (item: Gsm8kItem) => (style === 'train' ? `${D1_FORMAT_PROMPT}\n\n${item.question}` : `${D1_EVAL_PROMPT}\n\n${item.question}`);
  return {
    name: 'gsm8k',
    genLength: 256,
    blockLength: 32,
    testSetFile: 'gsm8k_test.jsonl',
    generate(rng: Rng) {
      const { stream } = trainSplit();
      return stream[rng.int(stream.length)]!;
    },
    prompt: content,
    chat: (item): ChatMessage[] => [{ role: 'user', content: content(item) }],
    generationPrefix: style === 'eval' ? D1_EVAL_PREFIX : undefined,
    response: referenceResponse,
    reward: gsm8kReward,
    correct: gsm8kCorrect,
    key: (item) => item.question,
    parseTestSet: (text) => parseGsm8k(text),
    validationSet: () => trainSplit().validation,
  };
}
