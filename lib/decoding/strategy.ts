import type { ThresholdHead } from './threshold-head.js';

/** How many masked positions each forward unmasks (docs/algorithms.md, decoding). */
export type DecodingStrategy =
  /** LLaDA's schedule: `steps` forwards in all (a multiple of the block count), the most confident (or random) first. */
  | { kind: 'steps'; steps: number; remasking?: 'low_confidence' | 'random' }
  /** Fast-dLLM: every position with confidence >= threshold, at least the most confident; one threshold per sequence allowed. */
  | { kind: 'threshold'; threshold: number | Float32Array }
  /** Fast-dLLM's dynamic rule: the largest n with c(r) >= 1 - factor/(r+1) for all r <= n. */
  | { kind: 'factor'; factor: number }
  /** Entropy-bounded (EB) sampler: the lowest-entropy prefix with sum(H) - max(H) <= gamma; one gamma per sequence allowed. */
  | { kind: 'entropy'; gamma: number | Float32Array }
  /** DiFFPO's learned sampler: each prompt gets the head's most likely threshold (or gamma); default head: model.samplerHead. */
  | { kind: 'learned'; head?: ThresholdHead };

/** The threshold every command and trainer decodes with unless told otherwise: Fast-dLLM's 0.9. */
export const DEFAULT_THRESHOLD = 0.9;

/**
 * A threshold above any confidence: no position passes, so each forward unmasks only the most
 * confident one, i.e. one token per step (the sequential baseline of every accuracy-vs-NFE table).
 */
export const ONE_TOKEN_PER_STEP = 1.01;

/** Threshold decoding at `threshold` (default DEFAULT_THRESHOLD). */
export const thresholdStrategy = (threshold: number = DEFAULT_THRESHOLD): DecodingStrategy => ({ kind: 'threshold', threshold });

/** The thresholds of the accuracy-vs-NFE sweeps: parallel decoding from loose to strict, then one token per step. */
export const SWEEP_THRESHOLDS: readonly number[] = [0.5, 0.7, 0.8, 0.9, 0.95, ONE_TOKEN_PER_STEP];

/** A label for a strategy in tables and plots. */
export function strategyLabel(s: DecodingStrategy): string {
  switch (s.kind) {
    case 'threshold':
      return typeof s.threshold === 'number' && s.threshold > 1 ? 'one token per step' : `threshold ${typeof s.threshold === 'number' ? s.threshold : 'per prompt'}`;
    case 'entropy':
      return `gamma ${typeof s.gamma === 'number' ? s.gamma : 'per prompt'}`;
    case 'steps':
      return `${s.steps} steps`;
    case 'factor':
      return `factor ${s.factor}`;
    case 'learned':
      return 'learned threshold';
  }
}

/** The strategy for a range of a batch's sequences (per-sequence thresholds or gammas sliced to it). */
export function strategyForSequences(s: DecodingStrategy, range: { start: number; end: number }): DecodingStrategy {
  if (s.kind === 'threshold' && typeof s.threshold !== 'number') return { kind: 'threshold', threshold: s.threshold.subarray(range.start, range.end) };
  if (s.kind === 'entropy' && typeof s.gamma !== 'number') return { kind: 'entropy', gamma: s.gamma.subarray(range.start, range.end) };
  return s;
}
