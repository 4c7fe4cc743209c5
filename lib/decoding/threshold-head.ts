import { CheckpointError, InvalidArgumentError } from '../core/errors.js';
import { leftPad } from '../core/left-pad.js';
import type { Rng } from '../core/rng.js';
import { EXTRA_TENSOR_PREFIX, readCheckpointTensors, readExtraTensors, type ExtraTensor } from '../engine/checkpoint.js';
import type { DiffusionLM } from '../engine/model.js';

/**
 * DiFFPO's learned sampler (docs/algorithms.md, learned sampler) [ours, following the abstract]: a linear softmax head
 * on the mean-pooled final hidden states of the prompt, choosing per prompt a decoding threshold
 * (tau for threshold decoding, or gamma for the entropy-bounded sampler) from a grid. Trained by a
 * group-relative policy gradient on r - lambda * NFE / L; at inference the most likely grid value is
 * used for each prompt.
 */
/**
 * The head's default SGD rate: its logits are a linear map of hidden states of order 1 and the
 * advantages are rewards minus a group mean (order 0.1-1), so 0.5 moves a grid probability by a few
 * percent per step: visible within tens of steps, without collapsing onto one value in a few.
 */
export const DEFAULT_HEAD_LR = 0.5;

export class ThresholdHead {
  readonly kind: 'threshold' | 'entropy';
  readonly grid: number[];
  readonly dModel: number;
  /** (grid x dModel) and (grid), float64 (the head is tiny and trained in JS). */
  readonly weight: Float64Array;
  readonly bias: Float64Array;

  constructor(options: { grid: number[]; dModel: number; kind?: 'threshold' | 'entropy' }) {
    const { grid, dModel } = options;
    if (!Array.isArray(grid) || grid.length < 2 || grid.some((g) => !Number.isFinite(g) || g < 0))
      throw new InvalidArgumentError('the threshold grid needs at least two finite values >= 0');
    if (!Number.isInteger(dModel) || dModel < 1) throw new InvalidArgumentError(`dModel must be a positive integer, got ${dModel}`);
    this.kind = options.kind ?? 'threshold';
    this.grid = [...grid];
    this.dModel = dModel;
    // zero weights: the head starts uniform over the grid
    this.weight = new Float64Array(grid.length * dModel);
    this.bias = new Float64Array(grid.length);
  }

  /** Mean-pooled final hidden states of each prompt (one forward, prompts left-padded). */
  static async features(model: DiffusionLM, prompts: Int32Array[], signal?: AbortSignal): Promise<Float64Array[]> {
    const { tokens, attentionMask, positions, batch: B, seqLen: P } = leftPad(prompts);
    const D = model.config.d_model;
    const h = await model.hiddenStates(tokens, { batch: B, seqLen: P, attentionMask, positions, signal });
    return prompts.map((p, b) => {
      const f = new Float64Array(D);
      for (let t = P - p.length; t < P; t++) for (let d = 0; d < D; d++) f[d] += h[(b * P + t) * D + d]! / p.length;
      return f;
    });
  }

  /** The head's distribution over the grid for one prompt's features. */
  probs(features: Float64Array): Float64Array {
    const K = this.grid.length,
      D = this.dModel;
    const z = new Float64Array(K);
    for (let k = 0; k < K; k++) {
      let s = this.bias[k]!;
      for (let d = 0; d < D; d++) s += this.weight[k * D + d]! * features[d]!;
      z[k] = s;
    }
    const m = Math.max(...z);
    let sum = 0;
    for (let k = 0; k < K; k++) sum += (z[k] = Math.exp(z[k]! - m));
    return z.map((v) => v / sum);
  }

  sample(features: Float64Array, rng: Rng): number {
    const p = this.probs(features);
    let u = rng.random();
    for (let k = 0; k < p.length; k++) if ((u -= p[k]!) < 0) return k;
    return p.length - 1;
  }

  mostLikely(features: Float64Array): number {
    const p = this.probs(features);
    return p.indexOf(Math.max(...p));
  }

  /** The decoding strategy with each prompt's chosen grid value. */
  strategy(choices: number[]): { kind: 'threshold'; threshold: Float32Array } | { kind: 'entropy'; gamma: Float32Array } {
    const values = Float32Array.from(choices, (k) => this.grid[k]!);
    return this.kind === 'entropy' ? { kind: 'entropy', gamma: values } : { kind: 'threshold', threshold: values };
  }

  /**
   * One gradient step on -(1/n) sum_i A_i log pi(choice_i | prompt_i) (plain SGD at rate lr);
   * returns that loss before the step.
   */
  update(features: Float64Array[], choices: number[], advantages: ArrayLike<number>, lr: number): number {
    const K = this.grid.length,
      D = this.dModel,
      n = features.length;
    const gw = new Float64Array(K * D),
      gb = new Float64Array(K);
    let loss = 0;
    features.forEach((f, i) => {
      const p = this.probs(f);
      const A = advantages[i]!;
      loss -= (A * Math.log(p[choices[i]!]!)) / n;
      for (let k = 0; k < K; k++) {
        const dz = (-A * ((k === choices[i] ? 1 : 0) - p[k]!)) / n; // d loss / d logit k
        gb[k] += dz;
        for (let d = 0; d < D; d++) gw[k * D + d] += dz * f[d]!;
      }
    });
    for (let i = 0; i < gw.length; i++) this.weight[i] -= lr * gw[i]!;
    for (let k = 0; k < K; k++) this.bias[k] -= lr * gb[k]!;
    return loss;
  }

  /** The head as checkpoint extras: `diffpo.{threshold,entropy}_head.{grid,weight,bias}`, float64 (exact). */
  toTensors(): ExtraTensor[] {
    const p = `${EXTRA_TENSOR_PREFIX}${this.kind}_head.`;
    return [
      { name: p + 'grid', shape: [this.grid.length], data: Float64Array.from(this.grid) },
      { name: p + 'weight', shape: [this.grid.length, this.dModel], data: this.weight },
      { name: p + 'bias', shape: [this.grid.length], data: this.bias },
    ];
  }

  /** The head stored among a checkpoint's extras, or null when there is none. */
  static fromTensors(extras: Map<string, ExtraTensor>, where = 'the checkpoint'): ThresholdHead | null {
    for (const kind of ['threshold', 'entropy'] as const) {
      const p = `${EXTRA_TENSOR_PREFIX}${kind}_head.`;
      const grid = extras.get(p + 'grid'),
        weight = extras.get(p + 'weight'),
        bias = extras.get(p + 'bias');
      if (!grid && !weight && !bias) continue;
      const K = grid?.data.length ?? 0;
      if (!grid || !weight || !bias || weight.shape.length !== 2 || weight.shape[0] !== K || bias.data.length !== K)
        throw new CheckpointError(`${where}: the ${kind} head needs ${p}grid (K), ${p}weight (K, d_model) and ${p}bias (K)`);
      try {
        const bad = [grid, weight, bias].find((t) => t.data.some((v) => !Number.isFinite(v)));
        if (bad) throw new InvalidArgumentError(`${bad.name} holds a non-finite value`);
        const head = new ThresholdHead({ grid: Array.from(grid.data), dModel: weight.shape[1]!, kind });
        head.weight.set(weight.data);
        head.bias.set(bias.data);
        return head;
      } catch (err) {
        throw new CheckpointError(`${where}: invalid ${kind} head: ${(err as Error).message}`, { cause: err });
      }
    }
    return null;
  }

  /** The head saved in a checkpoint directory's model.safetensors (see DiffusionLM.samplerHead). */
  static async load(dir: string): Promise<ThresholdHead> {
    const head = ThresholdHead.fromTensors(await readExtraTensors(await readCheckpointTensors(dir)), dir);
    if (!head) throw new CheckpointError(`${dir} holds no sampler head (no ${EXTRA_TENSOR_PREFIX}threshold_head.* or ${EXTRA_TENSOR_PREFIX}entropy_head.* tensors)`);
    return head;
  }
}

/**
 * The learned sampler head that travels with a model's weights (model.samplerHead): the head set on
 * it, or the one its checkpoint held, parsed on first use (a malformed one is a CheckpointError).
 */
export function samplerHeadOf(model: DiffusionLM): ThresholdHead | null {
  const extras = model.extras;
  if (extras === null || extras instanceof ThresholdHead) return extras;
  const head = ThresholdHead.fromTensors(new Map(extras.toTensors().map((t) => [t.name, t])), 'the checkpoint');
  if (head === null) return null;
  if (head.dModel !== model.config.d_model) throw new CheckpointError(`the checkpoint's sampler head reads ${head.dModel} features but d_model is ${model.config.d_model}`);
  model.extras = head;
  return head;
}

/** Sets (or with null removes) the head saved with the model's weights. */
export function setSamplerHead(model: DiffusionLM, head: ThresholdHead | null): void {
  if (head !== null && !(head instanceof ThresholdHead)) throw new InvalidArgumentError('samplerHead must be a ThresholdHead or null');
  if (head && head.dModel !== model.config.d_model) throw new InvalidArgumentError(`the sampler head reads ${head.dModel} features but d_model is ${model.config.d_model}`);
  model.extras = head;
}
