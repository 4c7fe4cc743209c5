import { objectArg, positiveInt } from '../core/checks.js';
import { InvalidArgumentError } from '../core/errors.js';
import type { DecoderOptions, DiffusionLM } from '../engine/model.js';
import { thresholdStrategy, type DecodingStrategy } from './strategy.js';
import { CONFIDENCE_FEATURES, samplerHeadOf, ThresholdHead } from './threshold-head.js';

export interface GenerateOptions {
  /** Tokens to generate after each prompt. */
  genLength: number;
  /** Semi-autoregressive block length (divides genLength; default genLength: one block). */
  blockLength?: number;
  /** Default threshold decoding at DEFAULT_THRESHOLD (0.9). */
  strategy?: DecodingStrategy;
  /** 0 (default) = argmax; else Gumbel-max sampling of logits / temperature with float64 noise. */
  temperature?: number;
  /** Seed of the sampling noise; each sequence draws from its own stream (seed and index in the batch). Default 0. */
  seed?: number;
  /**
   * Index of prompts[0] in a larger batch (default 0): sequence b draws stream firstSequence + b, so a
   * data-parallel process decoding its share gets what the whole batch's decode gives those rows.
   */
  firstSequence?: number;
  /**
   * NFE budget (one number or one per sequence): a sequence's last allowed forward fills all its
   * remaining masked positions, and `hitBudget` reports it. Default none.
   */
  maxNfe?: number | ArrayLike<number>;
  /** Drop finished sequences from the batch (default true; false only for tests and comparisons; ignored with a cache). */
  compact?: boolean;
  /**
   * Fast-dLLM's approximate KV caches (default 'none'): 'prefix' reuses the keys/values of the
   * positions before the current block, computed by a full forward at the block's start; 'dual' also
   * reuses those after it, so each step computes only the block.
   */
  cache?: 'none' | 'prefix' | 'dual';
  signal?: AbortSignal;
  /** Called after every forward with what it unmasked and the partial canvas. */
  onStep?: (event: StepEvent) => void | Promise<void>;
}

export interface StepEvent {
  /** 1-based forward count of this generate call. */
  step: number;
  /** What this forward unmasked: sequence index, position in the generated region, token, confidence. */
  unmasked: { sequence: Int32Array; position: Int32Array; token: Int32Array; confidence: Float32Array };
  /** The generated region so far (batch x genLength), mask_token_id where still masked. */
  tokens: Int32Array;
  /** NFE so far per sequence. */
  nfe: Int32Array;
}

export interface GenerateResult {
  /** Generated tokens (batch x genLength). */
  tokens: Int32Array;
  /** Forwards each sequence took part in (with strategy 'learned', plus the head's one forward for its features). */
  nfe: Int32Array;
  /** (batch x genLength) the 1-based NFE at which each token was unmasked. */
  decodeStep: Int32Array;
  /** (batch x genLength) log softmax(logits / temperature)[token] at that step (plain log-softmax at temperature 0). */
  behaviourLogProb: Float32Array;
  /** 1 where the sequence reached its maxNfe budget. */
  hitBudget: Uint8Array;
}

const CACHES = ['none', 'prefix', 'dual'] as const;
/** The largest NFE budget (the native decoder counts in int32). */
const MAX_NFE_BUDGET = 2 ** 31 - 1;

function perSequence(name: string, value: number | Float32Array, B: number, ok: (v: number) => boolean, what: string): Float32Array {
  const arr = typeof value === 'number' ? new Float32Array(B).fill(value) : value;
  if (!(arr instanceof Float32Array) || arr.length !== B) throw new InvalidArgumentError(`${name} must be a number or a Float32Array with one entry per prompt (${B})`);
  arr.forEach((v, i) => {
    if (!ok(v)) throw new InvalidArgumentError(`${name}${typeof value === 'number' ? '' : `[${i}]`} = ${v} must be ${what}`);
  });
  return arr;
}

/** Validates generate()'s arguments into the native decoder's options. */
export function samplerOptions(model: DiffusionLM, prompts: Int32Array[], options: GenerateOptions): DecoderOptions {
  if (!Array.isArray(prompts) || prompts.length === 0) throw new InvalidArgumentError('prompts must be a non-empty array of Int32Array');
  const B = prompts.length;
  const { vocab_size: V, max_sequence_length: maxLen } = model.config;
  const genLength = positiveInt('genLength', options.genLength);
  const blockLength = positiveInt('blockLength', options.blockLength ?? genLength);
  if (genLength % blockLength !== 0) throw new InvalidArgumentError(`genLength ${genLength} is not a multiple of blockLength ${blockLength}`);
  prompts.forEach((p, b) => {
    if (!(p instanceof Int32Array)) throw new InvalidArgumentError(`prompts[${b}] must be an Int32Array`);
    if (p.length === 0) throw new InvalidArgumentError(`prompts[${b}] is empty`);
    const bad = p.findIndex((t) => t < 0 || t >= V);
    if (bad >= 0) throw new InvalidArgumentError(`prompts[${b}][${bad}] = ${p[bad]} is outside [0, vocab_size=${V})`);
    if (p.length + genLength > maxLen) throw new InvalidArgumentError(`prompts[${b}] length ${p.length} + genLength ${genLength} exceeds max_sequence_length ${maxLen}`);
  });
  const temperature = options.temperature ?? 0;
  if (!(Number.isFinite(temperature) && temperature >= 0)) throw new InvalidArgumentError(`temperature must be a finite number >= 0, got ${temperature}`);
  const seed = options.seed ?? 0;
  if (!(Number.isSafeInteger(seed) && seed >= 0)) throw new InvalidArgumentError(`seed must be a non-negative integer, got ${seed}`);
  const firstSequence = options.firstSequence ?? 0;
  if (!(Number.isSafeInteger(firstSequence) && firstSequence >= 0)) throw new InvalidArgumentError(`firstSequence must be a non-negative integer, got ${firstSequence}`);
  const strategy = options.strategy ?? thresholdStrategy();
  const blocks = genLength / blockLength;
  let steps = 0,
    factor = 0,
    randomRemasking = false,
    threshold: Float32Array = new Float32Array(B);
  switch (strategy?.kind) {
    case 'steps':
      steps = positiveInt('strategy.steps', strategy.steps);
      if (steps % blocks !== 0) throw new InvalidArgumentError(`strategy.steps ${steps} is not a multiple of the number of blocks (${blocks})`);
      if (strategy.remasking !== undefined && strategy.remasking !== 'low_confidence' && strategy.remasking !== 'random')
        throw new InvalidArgumentError(`strategy.remasking must be 'low_confidence' or 'random', got ${String(strategy.remasking)}`);
      randomRemasking = strategy.remasking === 'random';
      break;
    case 'threshold':
      threshold = perSequence('strategy.threshold', strategy.threshold, B, (v) => Number.isFinite(v), 'a finite number');
      break;
    case 'factor':
      factor = strategy.factor;
      if (!(Number.isFinite(factor) && factor > 0)) throw new InvalidArgumentError(`strategy.factor must be a finite number > 0, got ${factor}`);
      break;
    case 'entropy':
      threshold = perSequence('strategy.gamma', strategy.gamma, B, (v) => Number.isFinite(v) && v >= 0, 'a finite number >= 0');
      break;
    case 'learned':
      throw new InvalidArgumentError("strategy 'learned' is resolved by generate(), not by samplerOptions()");
    default:
      throw new InvalidArgumentError(`strategy.kind must be 'steps', 'threshold', 'factor' or 'entropy', got ${String((strategy as { kind?: unknown })?.kind)}`);
  }
  // checked before the Int32 conversion, which would turn NaN into 0 (no budget) and 2^32 + 1 into 1
  const budget = options.maxNfe ?? 0;
  const budgets = typeof budget === 'number' ? new Array<number>(B).fill(budget) : Array.from(budget as ArrayLike<number>);
  if (budgets.length !== B) throw new InvalidArgumentError(`maxNfe must be a number or one entry per prompt (${B})`);
  budgets.forEach((v, i) => {
    if (!Number.isInteger(v) || v < 0 || v > MAX_NFE_BUDGET)
      throw new InvalidArgumentError(`maxNfe${typeof budget === 'number' ? '' : `[${i}]`} = ${v} must be an integer in [0, ${MAX_NFE_BUDGET}] (0 = no budget)`);
  });
  const maxNfe = Int32Array.from(budgets);
  const cache = options.cache ?? 'none';
  if (!CACHES.includes(cache)) throw new InvalidArgumentError(`cache must be 'none', 'prefix' or 'dual', got ${String(cache)}`);
  return {
    genLength,
    blockLength,
    temperature,
    seed,
    firstSequence,
    strategy: strategy.kind,
    steps,
    randomRemasking,
    threshold,
    factor,
    maxNfe,
    compact: options.compact ?? true,
    cache,
  };
}

/** The decoding loop: one native step (a forward plus the selection, off the JS thread) per iteration. */
export async function generate(model: DiffusionLM, prompts: Int32Array[], options: GenerateOptions): Promise<GenerateResult> {
  objectArg('generate options', options);
  let head: ThresholdHead | undefined;
  // the 'hidden' features need a forward of their own (the prompt alone), counted in the NFE
  let featureForwards = 0;
  if (options.strategy?.kind === 'learned') {
    const given = options.strategy.head ?? samplerHeadOf(model);
    if (!(given instanceof ThresholdHead)) throw new InvalidArgumentError("strategy 'learned' needs a ThresholdHead: pass one as head, or load a checkpoint that has one (model.samplerHead)");
    if (!Array.isArray(prompts) || prompts.length === 0) throw new InvalidArgumentError('prompts must be a non-empty array of Int32Array');
    given.checkModel(model);
    if (given.features === 'hidden') {
      const features = await given.featuresOf(model, prompts, { genLength: options.genLength, signal: options.signal });
      options = { ...options, strategy: given.strategy(features.map((f) => given.mostLikely(f))) };
      featureForwards = 1;
    } else {
      // the confidence features come from the decoder's own first forward: thresholds are set after it
      head = given;
      options = { ...options, strategy: given.strategy(prompts.map(() => 0)) };
    }
  }
  const decoder = await model.createDecoder(prompts, samplerOptions(model, prompts, options), options.signal);
  try {
    if (head) {
      const flat = await decoder.firstForwardFeatures(options.signal);
      const n = CONFIDENCE_FEATURES;
      const chosen = head.strategy(prompts.map((_, b) => head.mostLikely(Float64Array.from(flat.subarray(b * n, (b + 1) * n)))));
      await decoder.setThresholds(chosen.kind === 'threshold' ? chosen.threshold : chosen.gamma);
    }
    for (let step = 1; ; step++) {
      const done = await decoder.step(options.signal);
      if (options.onStep) {
        const [unmasked, r] = [await decoder.trace(), await decoder.result()];
        await options.onStep({ step, unmasked, tokens: r.tokens, nfe: r.nfe });
      }
      if (done) break;
    }
    const r = await decoder.result();
    for (let b = 0; b < r.nfe.length; b++) r.nfe[b] += featureForwards;
    return r;
  } finally {
    await decoder.free().catch(() => undefined);
  }
}
