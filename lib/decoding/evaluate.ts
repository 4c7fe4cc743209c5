import { InvalidArgumentError } from '../core/errors.js';
import { gatherRows, shardRange, worldFromEnvironment, type Collective } from '../engine/collective.js';
import type { DiffusionLM } from '../engine/model.js';
import { generate, type GenerateOptions } from './sampler.js';
import { thresholdStrategy, type DecodingStrategy } from './strategy.js';
import { encodePrompts } from '../tasks/encode.js';
import type { Task } from '../tasks/task.js';
import type { TextTokenizer } from '../tasks/tokenizer.js';

export interface EvaluateOptions {
  items: unknown[];
  tokenizer: TextTokenizer;
  /** Tokens generated per item (the response length, including EOS). */
  genLength: number;
  /** Generation options (strategy, blockLength, cache, ...); default threshold decoding at DEFAULT_THRESHOLD, one block. */
  sampler?: Omit<GenerateOptions, 'genLength' | 'signal' | 'onStep'>;
  /** Items per generate call (default 32). */
  batchSize?: number;
  signal?: AbortSignal;
  /** Called after each generate call with the items done and the total (over every strategy). */
  onProgress?: (done: number, total: number) => void;
  /**
   * The data-parallel job (default worldFromEnvironment()): each process decodes its share of every
   * batch and every process returns the whole result, equal to one process's. Every process must call.
   */
  world?: Collective;
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
  const world = options.world ?? worldFromEnvironment();
  const L = options.genLength;
  const completions: string[] = [];
  let right = 0,
    reward = 0,
    nfe = 0;
  const t0 = performance.now();
  for (let start = 0; start < items.length; start += bs) {
    const chunk = items.slice(start, start + bs);
    // in a job, each process decodes its part of the batch (as rows firstSequence.. of it) and the parts are gathered
    const mine = shardRange(chunk.length, world);
    let tokens: Int32Array = new Int32Array(0),
      nfes: Int32Array = new Int32Array(0);
    if (mine.end > mine.start) {
      const r = await generate(model, encodePrompts(task, chunk.slice(mine.start, mine.end), options.tokenizer), {
        strategy: thresholdStrategy(),
        ...options.sampler,
        firstSequence: (options.sampler?.firstSequence ?? 0) + mine.start,
        genLength: L,
        signal: options.signal,
      });
      [tokens, nfes] = [r.tokens, r.nfe];
    }
    tokens = await gatherRows(world, tokens, mine, chunk.length, L);
    nfes = await gatherRows(world, nfes, mine, chunk.length, 1);
    chunk.forEach((item, b) => {
      const text = options.tokenizer.decode(tokens.subarray(b * L, (b + 1) * L));
      completions.push(text);
      if (task.correct(item, text)) right++;
      reward += task.reward(item, text);
      nfe += nfes[b]!;
    });
    options.onProgress?.(start + chunk.length, items.length);
  }
  const seconds = (performance.now() - t0) / 1000;
  return {
    items: items.length,
    accuracy: right / items.length,
    meanReward: reward / items.length,
    meanNfe: nfe / items.length,
    tokensPerS: (items.length * L) / seconds,
    completions,
  };
}
