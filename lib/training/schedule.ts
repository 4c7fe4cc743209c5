import { InvalidArgumentError } from '../core/errors.js';

/**
 * A learning-rate schedule: linear warmup over `warmup` steps, then constant or cosine down to
 * COSINE_FLOOR * lr at the last step.
 */
export interface LrSchedule {
  lr: number;
  warmup: number;
  schedule: 'cosine' | 'constant';
}

/** Where the cosine schedule ends, as a fraction of the peak: a tenth, so the last steps still move the weights. */
export const COSINE_FLOOR = 0.1;

/** The learning rate at a 1-based step of a run of `total` steps. */
export function scheduledLr(s: LrSchedule, step: number, total: number): number {
  if (step <= s.warmup) return (s.lr * step) / Math.max(1, s.warmup);
  if (s.schedule === 'constant') return s.lr;
  const progress = (step - s.warmup) / Math.max(1, total - s.warmup);
  return s.lr * (COSINE_FLOOR + (1 - COSINE_FLOOR) * 0.5 * (1 + Math.cos(Math.PI * Math.min(1, progress))));
}

/** Throws naming the bad field of a schedule. */
export function checkSchedule(s: LrSchedule): void {
  if (!(s.lr > 0 && Number.isFinite(s.lr))) throw new InvalidArgumentError(`lr must be a finite number > 0, got ${s.lr}`);
  if (!Number.isInteger(s.warmup) || s.warmup < 0) throw new InvalidArgumentError(`warmup must be a non-negative integer, got ${s.warmup}`);
  if (s.schedule !== 'cosine' && s.schedule !== 'constant') throw new InvalidArgumentError(`schedule must be 'cosine' or 'constant', got ${String(s.schedule)}`);
}
