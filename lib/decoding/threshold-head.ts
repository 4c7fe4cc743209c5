import { CheckpointError, InvalidArgumentError } from '../core/errors.js';
import { leftPad } from '../core/left-pad.js';
import type { Rng } from '../core/rng.js';
import { EXTRA_TENSOR_PREFIX, readCheckpointTensors, readExtraTensors, type ExtraTensor } from '../engine/checkpoint.js';
import type { DiffusionLM } from '../engine/model.js';

/**
 * DiFFPO's learned sampler (docs/algorithms.md, learned sampler) [ours, following the abstract]: a linear softmax head
 * on features of the prompt (its mean-pooled final hidden states, or statistics of the first
 * forward's confidences: HeadFeatures), choosing per prompt a decoding threshold
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

/** What the head reads: the prompt's mean-pooled hidden states, or statistics of the first forward's confidences. */
export type HeadFeatures = 'hidden' | 'confidence';

/**
 * The 'confidence' features, each in [0, 1]: over the masked completion of the first forward (the
 * one threshold decoding starts with), the mean, minimum and standard deviation of the confidence
 * (top probability), the fractions of positions at or above 0.9, 0.7 and 0.5, and the mean and
 * maximum entropy over ln(vocab). They say how hard this decoding will be, whatever the prompt's text.
 */
export const CONFIDENCE_FEATURES = 8;

/** calibrate()'s floor on a feature's standard deviation: a feature that barely varies stays near 0 instead of being amplified without bound. */
export const MIN_FEATURE_STD = 1e-3;

export class ThresholdHead {
  readonly kind: 'threshold' | 'entropy';
  readonly grid: number[];
  readonly features: HeadFeatures;
  /** The model width the head was made for ('hidden' features read d_model values). */
  readonly dModel: number;
  /** Values per feature vector: dModel for 'hidden', CONFIDENCE_FEATURES for 'confidence'. */
  readonly inputs: number;
  /** (grid x inputs) and (grid), float64 (the head is tiny and trained in JS). */
  readonly weight: Float64Array;
  readonly bias: Float64Array;
  /**
   * The head reads (features - featureMean) * featureScale (identity until calibrate()): prompts'
   * features differ in the second or third decimal, which plain SGD on raw values never separates.
   */
  readonly featureMean: Float64Array;
  readonly featureScale: Float64Array;

  /**
   * `init`: start with 80% of the probability on the grid value nearest it (e.g. the best fixed
   * threshold) instead of uniform, so early rollouts do not decode at values that wreck accuracy.
   */
  constructor(options: { grid: number[]; dModel: number; kind?: 'threshold' | 'entropy'; features?: HeadFeatures; init?: number }) {
    const { grid, dModel } = options;
    if (!Array.isArray(grid) || grid.length < 2 || grid.some((g) => !Number.isFinite(g) || g < 0))
      throw new InvalidArgumentError('the threshold grid needs at least two finite values >= 0');
    if (!Number.isInteger(dModel) || dModel < 1) throw new InvalidArgumentError(`dModel must be a positive integer, got ${dModel}`);
    const features = options.features ?? 'hidden';
    if (features !== 'hidden' && features !== 'confidence') throw new InvalidArgumentError(`features must be 'hidden' or 'confidence', got ${String(features)}`);
    this.kind = options.kind ?? 'threshold';
    this.grid = [...grid];
    this.features = features;
    this.dModel = dModel;
    this.inputs = features === 'hidden' ? dModel : CONFIDENCE_FEATURES;
    // zero weights: the head starts uniform over the grid (or peaked at init, through the bias)
    this.weight = new Float64Array(grid.length * this.inputs);
    this.bias = new Float64Array(grid.length);
    this.featureMean = new Float64Array(this.inputs);
    this.featureScale = new Float64Array(this.inputs).fill(1);
    if (options.init !== undefined) {
      if (!Number.isFinite(options.init)) throw new InvalidArgumentError(`init must be a finite grid value, got ${options.init}`);
      const k = grid.reduce((best, g, i) => (Math.abs(g - options.init!) < Math.abs(grid[best]! - options.init!) ? i : best), 0);
      this.bias[k] = Math.log((0.8 * (grid.length - 1)) / 0.2);
    }
  }

  /** Each prompt's feature vector, as this head reads them (`genLength`: the completion's length, for 'confidence'). */
  /** Refuses a model of another width than the head was made for. */
  checkModel(model: DiffusionLM): void {
    if (this.dModel !== model.config.d_model) throw new InvalidArgumentError(`the sampler head was made for d_model ${this.dModel} but the model's d_model is ${model.config.d_model}`);
  }

  async featuresOf(model: DiffusionLM, prompts: Int32Array[], options: { genLength: number; signal?: AbortSignal }): Promise<Float64Array[]> {
    this.checkModel(model);
    return this.features === 'hidden' ? ThresholdHead.hiddenFeatures(model, prompts, options.signal) : ThresholdHead.confidenceFeatures(model, prompts, options);
  }

  /** Mean-pooled final hidden states of each prompt (one forward, prompts left-padded). */
  static async hiddenFeatures(model: DiffusionLM, prompts: Int32Array[], signal?: AbortSignal): Promise<Float64Array[]> {
    const { tokens, attentionMask, positions, batch: B, seqLen: P } = leftPad(prompts);
    const D = model.config.d_model;
    const h = await model.hiddenStates(tokens, { batch: B, seqLen: P, attentionMask, positions, signal });
    return prompts.map((p, b) => {
      const f = new Float64Array(D);
      for (let t = P - p.length; t < P; t++) for (let d = 0; d < D; d++) f[d] += h[(b * P + t) * D + d]! / p.length;
      return f;
    });
  }

  /**
   * The CONFIDENCE_FEATURES of each prompt: one forward of the prompt and a fully masked completion
   * (a few sequences at a time, to bound the logits' memory). The reference of what the native
   * decoder computes from its own first forward (DecoderSession.firstForwardFeatures, which
   * generate() uses: no forward of its own), computed as it does: each position's confidence is the
   * softmax over the whole output row of the best id but the mask, its entropy that of the row.
   */
  static async confidenceFeatures(model: DiffusionLM, prompts: Int32Array[], options: { genLength: number; signal?: AbortSignal }): Promise<Float64Array[]> {
    const L = options.genLength,
      { vocab_size: V, embedding_size: E, mask_token_id: M } = model.config;
    if (!Number.isInteger(L) || L < 1) throw new InvalidArgumentError(`genLength must be a positive integer, got ${L}`);
    const out: Float64Array[] = [];
    const chunk = Math.max(1, Math.floor((1 << 24) / ((L + 64) * E)));
    for (let s = 0; s < prompts.length; s += chunk) {
      const part = prompts.slice(s, s + chunk).map((p) => {
        const x = new Int32Array(p.length + L).fill(M);
        x.set(p);
        return x;
      });
      const { tokens, attentionMask, positions, batch: B, seqLen: T } = leftPad(part);
      const logits = await model.logits(tokens, { batch: B, seqLen: T, attentionMask, positions, signal: options.signal });
      for (let b = 0; b < B; b++) {
        const conf: number[] = [],
          ent: number[] = [];
        for (let t = T - L; t < T; t++) {
          const row = logits.subarray((b * T + t) * E, (b * T + t + 1) * E);
          let m = -Infinity,
            best = -Infinity;
          for (let e = 0; e < E; e++) m = Math.max(m, row[e]!);
          for (let v = 0; v < V; v++) if (v !== M && row[v]! > best) best = row[v]!;
          let z = 0,
            zl = 0;
          for (let e = 0; e < E; e++) {
            const p = Math.exp(row[e]! - m);
            z += p;
            zl += p * (row[e]! - m);
          }
          // float32, as the decoder hands them over
          conf.push(Math.fround(Math.exp(best - m) / z));
          ent.push(Math.fround(Math.log(z) - zl / z) / Math.log(V - 1));
        }
        const mean = (xs: number[]) => xs.reduce((a, x) => a + x, 0) / xs.length;
        const mc = mean(conf);
        const frac = (t: number) => conf.filter((c) => c >= t).length / L;
        out.push(Float64Array.from([mc, Math.min(...conf), Math.sqrt(mean(conf.map((c) => (c - mc) ** 2))), frac(0.9), frac(0.7), frac(0.5), mean(ent), Math.max(...ent)]));
      }
    }
    return out;
  }

  /** Whether calibrate() has set the feature normalisation. */
  get calibrated(): boolean {
    return this.featureMean.some((m) => m !== 0) || this.featureScale.some((s) => s !== 1);
  }

  /**
   * Standardises the head's inputs on a sample of prompts' features (each feature's mean and standard
   * deviation, floored at MIN_FEATURE_STD so a constant feature is not blown up). The trainer calls it
   * once, before the first update, on prompts of the training stream.
   */
  calibrate(sample: Float64Array[]): void {
    if (!Array.isArray(sample) || sample.length < 2 || sample.some((f) => !(f instanceof Float64Array) || f.length !== this.inputs))
      throw new InvalidArgumentError(`calibrate needs at least two Float64Array feature vectors of length ${this.inputs}`);
    for (let d = 0; d < this.inputs; d++) {
      const mean = sample.reduce((a, f) => a + f[d]!, 0) / sample.length;
      const std = Math.sqrt(sample.reduce((a, f) => a + (f[d]! - mean) ** 2, 0) / sample.length);
      this.featureMean[d] = mean;
      this.featureScale[d] = 1 / Math.max(std, MIN_FEATURE_STD);
    }
  }

  /** The features as the head reads them (normalised). */
  #input(features: Float64Array): Float64Array {
    return features.map((v, d) => (v - this.featureMean[d]!) * this.featureScale[d]!);
  }

  /** The head's distribution over the grid for one prompt's features. */
  probs(features: Float64Array): Float64Array {
    const K = this.grid.length,
      D = this.inputs;
    const x = this.#input(features);
    const z = new Float64Array(K);
    for (let k = 0; k < K; k++) {
      let s = this.bias[k]!;
      for (let d = 0; d < D; d++) s += this.weight[k * D + d]! * x[d]!;
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
      D = this.inputs,
      n = features.length;
    const gw = new Float64Array(K * D),
      gb = new Float64Array(K);
    let loss = 0;
    features.forEach((f, i) => {
      const p = this.probs(f);
      const x = this.#input(f);
      const A = advantages[i]!;
      loss -= (A * Math.log(p[choices[i]!]!)) / n;
      for (let k = 0; k < K; k++) {
        const dz = (-A * ((k === choices[i] ? 1 : 0) - p[k]!)) / n; // d loss / d logit k
        gb[k] += dz;
        for (let d = 0; d < D; d++) gw[k * D + d] += dz * x[d]!;
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
      { name: p + 'weight', shape: [this.grid.length, this.inputs], data: this.weight },
      { name: p + 'bias', shape: [this.grid.length], data: this.bias },
      // 'hidden' heads have no such tensor (as saved before 'confidence' existed)
      ...(this.features === 'confidence' ? [{ name: p + 'confidence_features', shape: [1], data: Float64Array.from([this.dModel]) }] : []),
      // an uncalibrated head saves none (as saved before calibration existed)
      ...(this.calibrated
        ? [
            { name: p + 'feature_mean', shape: [this.inputs], data: this.featureMean },
            { name: p + 'feature_scale', shape: [this.inputs], data: this.featureScale },
          ]
        : []),
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
        // a 'confidence' head records the model width it was made for; a 'hidden' one reads d_model values
        const conf = extras.get(p + 'confidence_features');
        if (conf && (conf.data.length !== 1 || !Number.isInteger(conf.data[0]) || conf.data[0]! < 1 || weight.shape[1] !== CONFIDENCE_FEATURES))
          throw new InvalidArgumentError(`${p}confidence_features needs one positive integer and a weight of ${CONFIDENCE_FEATURES} columns`);
        const head = new ThresholdHead({ grid: Array.from(grid.data), dModel: conf ? conf.data[0]! : weight.shape[1]!, kind, features: conf ? 'confidence' : 'hidden' });
        head.weight.set(weight.data);
        head.bias.set(bias.data);
        const [mean, scale] = [extras.get(p + 'feature_mean'), extras.get(p + 'feature_scale')];
        if (!mean !== !scale) throw new InvalidArgumentError(`${p}feature_mean and ${p}feature_scale come together`);
        if (mean && scale) {
          if (mean.data.length !== head.inputs || scale.data.length !== head.inputs) throw new InvalidArgumentError(`${p}feature_mean and ${p}feature_scale need ${head.inputs} values`);
          if ([mean, scale].some((t) => t.data.some((v) => !Number.isFinite(v))) || scale.data.some((v) => v <= 0)) throw new InvalidArgumentError(`${p}feature_mean/scale need finite values and positive scales`);
          head.featureMean.set(mean.data);
          head.featureScale.set(scale.data);
        }
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
  if (head.dModel !== model.config.d_model) throw new CheckpointError(`the checkpoint's sampler head was made for d_model ${head.dModel} but d_model is ${model.config.d_model}`);
  model.extras = head;
  return head;
}

/** Sets (or with null removes) the head saved with the model's weights. */
export function setSamplerHead(model: DiffusionLM, head: ThresholdHead | null): void {
  if (head !== null && !(head instanceof ThresholdHead)) throw new InvalidArgumentError('samplerHead must be a ThresholdHead or null');
  if (head && head.dModel !== model.config.d_model) throw new InvalidArgumentError(`the sampler head was made for d_model ${head.dModel} but d_model is ${model.config.d_model}`);
  model.extras = head;
}
