import { InvalidArgumentError } from './errors.js';
import type { DiffusionLM } from './model.js';

export interface AdamWOptions {
  /** Learning rate (default 1e-3). */
  lr?: number;
  /** Moment decay rates (default [0.9, 0.999]). */
  betas?: [number, number];
  /** Denominator epsilon (default 1e-8). */
  eps?: number;
  /** Decoupled weight decay, applied to weight matrices but not to norm weights (default 0.01). */
  weightDecay?: number;
  /** Clip the global gradient norm to this value; 0 disables clipping (default 0). */
  maxGradNorm?: number;
  /** Backward passes accumulated per step: gradients are divided by this before the update (default 1). */
  accumulationSteps?: number;
}

export interface AdamWStepResult {
  /** Global gradient norm before clipping (after dividing by accumulationSteps). */
  gradNorm: number;
  /** The 1-based step just taken. */
  step: number;
  lr: number;
}

function check(name: string, v: number, ok: boolean): void {
  if (!ok || !Number.isFinite(v)) throw new InvalidArgumentError(`AdamW ${name} = ${v} is out of range`);
}

/** AdamW (decoupled weight decay, bias correction) with global grad-norm clipping, run natively. */
export class AdamW {
  readonly model: DiffusionLM;
  lr: number;
  readonly betas: [number, number];
  readonly eps: number;
  readonly weightDecay: number;
  readonly maxGradNorm: number;
  readonly accumulationSteps: number;
  #step = 0;

  constructor(model: DiffusionLM, options: AdamWOptions = {}) {
    this.model = model;
    this.lr = options.lr ?? 1e-3;
    this.betas = options.betas ?? [0.9, 0.999];
    this.eps = options.eps ?? 1e-8;
    this.weightDecay = options.weightDecay ?? 0.01;
    this.maxGradNorm = options.maxGradNorm ?? 0;
    this.accumulationSteps = options.accumulationSteps ?? 1;
    check('lr', this.lr, this.lr >= 0);
    check('betas[0]', this.betas[0], this.betas[0] >= 0 && this.betas[0] < 1);
    check('betas[1]', this.betas[1], this.betas[1] >= 0 && this.betas[1] < 1);
    check('eps', this.eps, this.eps > 0);
    check('weightDecay', this.weightDecay, this.weightDecay >= 0);
    check('maxGradNorm', this.maxGradNorm, this.maxGradNorm >= 0);
    check('accumulationSteps', this.accumulationSteps, Number.isInteger(this.accumulationSteps) && this.accumulationSteps >= 1);
  }

  /** Steps taken so far. */
  get stepCount(): number {
    return this.#step;
  }

  /** One update from the accumulated gradients (which it leaves in place: call zeroGrad()). */
  async step(options: { lr?: number; signal?: AbortSignal } = {}): Promise<AdamWStepResult> {
    const lr = options.lr ?? this.lr;
    check('lr', lr, lr >= 0);
    const t = this.#step + 1;
    const gradNorm = await this.model._run(options.signal, (m) =>
      m.adamwStep({
        lr,
        beta1: this.betas[0],
        beta2: this.betas[1],
        eps: this.eps,
        weightDecay: this.weightDecay,
        gradScale: 1 / this.accumulationSteps,
        t,
        maxGradNorm: this.maxGradNorm,
      }),
    );
    this.#step = t;
    return { gradNorm, step: t, lr };
  }

  /** The state to checkpoint: the step count and the moments (copies). */
  state(): { step: number; m: Float32Array; v: Float32Array } {
    const [m, v] = this.model._optimizerState();
    return { step: this.#step, m: m.slice(), v: v.slice() };
  }

  /** Restores a state from state(). */
  loadState(state: { step: number; m: Float32Array; v: Float32Array }): void {
    const [m, v] = this.model._optimizerState();
    if (state.m.length !== m.length || state.v.length !== v.length) throw new InvalidArgumentError('optimizer state does not match this model');
    m.set(state.m);
    v.set(state.v);
    this.#step = state.step;
  }

  /** Zeroes the model's gradients. */
  zeroGrad(): Promise<void> {
    return this.model.zeroGrad();
  }
}

/** A learning-rate schedule: linear warmup over `warmup` steps, then constant or cosine down to lr/10 at the last step. */
export interface LrSchedule {
  lr: number;
  warmup: number;
  schedule: 'cosine' | 'constant';
}

/** The learning rate at a 1-based step of a run of `total` steps. */
export function scheduledLr(s: LrSchedule, step: number, total: number): number {
  if (step <= s.warmup) return (s.lr * step) / Math.max(1, s.warmup);
  if (s.schedule === 'constant') return s.lr;
  const progress = (step - s.warmup) / Math.max(1, total - s.warmup);
  return s.lr * (0.1 + 0.9 * 0.5 * (1 + Math.cos(Math.PI * Math.min(1, progress))));
}

/** Throws naming the bad field of a schedule. */
export function checkSchedule(s: LrSchedule): void {
  if (!(s.lr > 0 && Number.isFinite(s.lr))) throw new InvalidArgumentError(`lr must be a finite number > 0, got ${s.lr}`);
  if (!Number.isInteger(s.warmup) || s.warmup < 0) throw new InvalidArgumentError(`warmup must be a non-negative integer, got ${s.warmup}`);
  if (s.schedule !== 'cosine' && s.schedule !== 'constant') throw new InvalidArgumentError(`schedule must be 'cosine' or 'constant', got ${String(s.schedule)}`);
}
