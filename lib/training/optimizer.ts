import { InvalidArgumentError } from '../core/errors.js';
import type { DiffusionLM, OptimizerMoments } from '../engine/model.js';

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

/**
 * AdamW (decoupled weight decay, bias correction) with global grad-norm clipping, run natively. Each
 * optimizer owns its moments (allocated in the model's memory), so two optimizers on one model never
 * share state.
 */
export class AdamW {
  readonly model: DiffusionLM;
  lr: number;
  readonly betas: [number, number];
  readonly eps: number;
  readonly weightDecay: number;
  readonly maxGradNorm: number;
  readonly accumulationSteps: number;
  readonly #moments: OptimizerMoments;
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
    this.#moments = model.createMoments();
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
    const gradNorm = await this.model.adamwStep(
      this.#moments,
      { lr, beta1: this.betas[0], beta2: this.betas[1], eps: this.eps, weightDecay: this.weightDecay, gradScale: 1 / this.accumulationSteps, t, maxGradNorm: this.maxGradNorm },
      options.signal,
    );
    this.#step = t;
    return { gradNorm, step: t, lr };
  }

  /** The state to checkpoint: the step count and the moments (copies). */
  state(): { step: number; m: Float32Array; v: Float32Array } {
    return { step: this.#step, m: this.#moments.m.slice(), v: this.#moments.v.slice() };
  }

  /** Restores a state from state(). */
  loadState(state: { step: number; m: Float32Array; v: Float32Array }): void {
    const { m, v } = this.#moments;
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
