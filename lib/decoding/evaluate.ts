import { InvalidArgumentError } from '../core/errors.js';
import type { DiffusionLM } from '../engine/model.js';
import { generate, type GenerateOptions } from './sampler.js';
import { thresholdStrategy, type DecodingStrategy } from './strategy.js';
import { encodePrompts } from '../tasks/encode.js';
import type { Task } from '../tasks/task.js';
import type { CharTokenizer } from '../tasks/tokenizer.js';

export interface EvaluateOptions {
  items: unknown[];
  tokenizer: CharTokenizer;
  /** Tokens generated per item (the response length, including EOS). */
  genLength: number;
  /** Generation options (strategy, blockLength, cache, ...); default threshold decoding at DEFAULT_THRESHOLD, one block. */
  sampler?: Omit<GenerateOptions, 'genLength' | 'signal' | 'onStep'>;
  /** Items per generate call (default 32). */
  batchSize?: number;
  signal?: AbortSignal;
  /** Called after each generate call with the items done and the total (over every strategy). */
  onProgress?: (done: number, total: number) => void;
}

export interface EvaluateResult {
  items: number;
  accuracy: number;
  meanReward: number;
  meanNfe: number;
  /** Generated tokens per second of wall time. */
  tokensPerS: number;
  completions: string[];
}

/**
 * Accuracy, mean reward and mean NFE of a model on a task's items, with the given sampler; with
 * `strategies`, one result per decoding strategy (the rest of `sampler` shared).
 */
export async function evaluate<Item>(model: DiffusionLM, task: Task<Item>, options: EvaluateOptions & { strategies: DecodingStrategy[] }): Promise<(EvaluateResult & { strategy: DecodingStrategy })[]>;
export async function evaluate<Item>(model: DiffusionLM, task: Task<Item>, options: EvaluateOptions): Promise<EvaluateResult>;
export async function evaluate<Item>(
  model: DiffusionLM,
  task: Task<Item>,
  options: EvaluateOptions & { strategies?: DecodingStrategy[] },
): Promise<EvaluateResult | (EvaluateResult & { strategy: DecodingStrategy })[]> {
  const { strategies } = options;
  if (strategies === undefined) return evaluateOne(model, task, options);
  if (!Array.isArray(strategies) || strategies.length === 0) throw new InvalidArgumentError('strategies must be a non-empty array of decoding strategies');
  const out = [];
  const n = options.items.length,
    total = n * strategies.length;
  for (const [k, strategy] of strategies.entries()) {
    const onProgress = options.onProgress && ((done: number) => options.onProgress!(k * n + done, total));
    out.push({ strategy, ...(await evaluateOne(model, task, { ...options, sampler: { ...options.sampler, strategy }, onProgress })) });
  }
  return out;
}

async function evaluateOne<Item>(model: DiffusionLM, task: Task<Item>, options: EvaluateOptions): Promise<EvaluateResult> {
  const items = options.items as Item[];
  if (!Array.isArray(items) || items.length === 0) throw new InvalidArgumentError('evaluate needs a non-empty items array');
  const bs = options.batchSize ?? 32;
  const completions: string[] = [];
  let right = 0,
    reward = 0,
    nfe = 0;
  const t0 = performance.now();
  for (let start = 0; start < items.length; start += bs) {
    const chunk = items.slice(start, start + bs);
    const prompts = encodePrompts(task, chunk, options.tokenizer);
    const r = await generate(model, prompts, {
      strategy: thresholdStrategy(),
      ...options.sampler,
      genLength: options.genLength,
      signal: options.signal,
    });
    chunk.forEach((item, b) => {
      const text = options.tokenizer.decode(r.tokens.subarray(b * options.genLength, (b + 1) * options.genLength));
      completions.push(text);
      if (task.correct(item, text)) right++;
      reward += task.reward(item, text);
      nfe += r.nfe[b]!;
    });
    options.onProgress?.(start + chunk.length, items.length);
  }
  const seconds = (performance.now() - t0) / 1000;
  return {
    items: items.length,
    accuracy: right / items.length,
    meanReward: reward / items.length,
    meanNfe: nfe / items.length,
    tokensPerS: (items.length * options.genLength) / seconds,
    completions,
  };
}
