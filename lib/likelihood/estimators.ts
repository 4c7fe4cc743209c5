import { objectArg, positiveInt } from '../core/checks.js';
import { InvalidArgumentError } from '../core/errors.js';
import { leftPad } from '../core/left-pad.js';
import type { Collective, SequenceRange } from '../engine/collective.js';
import type { DiffusionLM } from '../engine/model.js';
import { Rng } from '../core/rng.js';

/** Per-token log-likelihood estimators of a completion under a masked-diffusion LM (docs/algorithms.md, likelihoods). */
export type Estimator = 'mean-field' | 'two-stage' | 'trajectory' | 'elbo';

/** Completions to score: one per prompt, all genLength long. */
export interface CompletionBatch {
  prompts: Int32Array[];
  /** (batch x genLength) */
  completions: Int32Array;
  /** (batch x genLength) the 1-based step at which the sampler unmasked each token (two-stage, trajectory). */
  decodeStep?: Int32Array;
}

export interface EstimatorOptions {
  estimator: Estimator;
  /** mean-field and two-stage: probability of masking each prompt token in the (first) pass (default 0; d1 uses 0.15). */
  pMaskPrompt?: number;
  /** two-stage: the step tau per sequence (default: drawn uniformly from the sequence's decode steps). */
  tau?: Int32Array;
  /** trajectory: consecutive decode steps merged into one pass (default 1: exact). */
  shrink?: number;
  /** elbo: Monte Carlo samples per sequence (default 1). */
  mcSamples?: number;
  /** elbo: explicit masks (mcSamples x batch x genLength, 1 = masked), instead of sampling. */
  masks?: Uint8Array;
  /** Seed for the random choices (prompt masks, tau, ELBO masks); default 0. */
  seed?: number;
  /** Upper bound on tokens per forward when batching the passes (default 65536). */
  maxTokensPerForward?: number;
  signal?: AbortSignal;
}

/** One scored row: its tokens (prompt part then completion part) and the completion tokens it scores. */
interface Pass {
  sequence: number;
  prompt: Int32Array;
  canvas: Int32Array; // genLength
  scored: number[]; // positions in the completion
  factor: number; // weight of each scored log-prob in the estimate (ELBO's L/l / samples, else 1)
}

/** The random choices of one estimate, reusable so that logp_old and logp_theta see the same passes. */
export interface EstimatorPlan {
  estimator: Estimator;
  genLength: number;
  batch: number;
  passes: Pass[];
}

function checkBatch(model: DiffusionLM, batch: CompletionBatch): { B: number; L: number } {
  const { prompts, completions } = objectArg('the completion batch', batch);
  if (!Array.isArray(prompts) || prompts.length === 0) throw new InvalidArgumentError('prompts must be a non-empty array of Int32Array');
  const B = prompts.length;
  if (!(completions instanceof Int32Array) || completions.length % B !== 0 || completions.length === 0)
    throw new InvalidArgumentError(`completions.length (${completions?.length}) must be a positive multiple of the number of prompts (${B})`);
  const L = completions.length / B;
  const V = model.config.vocab_size;
  prompts.forEach((p, b) => {
    if (!(p instanceof Int32Array) || p.length === 0) throw new InvalidArgumentError(`prompts[${b}] must be a non-empty Int32Array`);
    const bad = p.findIndex((t) => t < 0 || t >= V);
    if (bad >= 0) throw new InvalidArgumentError(`prompts[${b}][${bad}] = ${p[bad]} is outside [0, vocab_size)`);
  });
  const bad = completions.findIndex((t) => t < 0 || t >= V || t === model.config.mask_token_id);
  if (bad >= 0) throw new InvalidArgumentError(`completions[${bad}] = ${completions[bad]} is not a token id (or is the mask token)`);
  if (batch.decodeStep !== undefined) {
    if (!(batch.decodeStep instanceof Int32Array) || batch.decodeStep.length !== completions.length)
      throw new InvalidArgumentError(`decodeStep must be an Int32Array of length ${completions.length}`);
    const z = batch.decodeStep.findIndex((s) => !(s >= 1));
    if (z >= 0) throw new InvalidArgumentError(`decodeStep[${z}] = ${batch.decodeStep[z]} must be >= 1 (every token decoded)`);
  }
  return { B, L };
}

function maskPrompt(prompt: Int32Array, p: number, rng: Rng, mask: number): Int32Array {
  return p > 0 ? prompt.map((t) => (rng.random() < p ? mask : t)) : prompt;
}

/** Draws the passes of an estimate (prompt masks, tau, ELBO masks) as the estimator defines them. */
export function planEstimate(model: DiffusionLM, batch: CompletionBatch, options: EstimatorOptions): EstimatorPlan {
  const { B, L } = checkBatch(model, batch);
  const M = model.config.mask_token_id;
  const rng = new Rng(options.seed ?? 0);
  const pMaskPrompt = options.pMaskPrompt ?? 0;
  if (!(pMaskPrompt >= 0 && pMaskPrompt <= 1)) throw new InvalidArgumentError(`pMaskPrompt = ${pMaskPrompt} must be in [0, 1]`);
  const completion = (b: number) => batch.completions.subarray(b * L, (b + 1) * L);
  const steps = (b: number) => {
    if (!batch.decodeStep) throw new InvalidArgumentError(`the '${options.estimator}' estimator needs decodeStep from the sampler`);
    return batch.decodeStep.subarray(b * L, (b + 1) * L);
  };
  const all = Array.from({ length: L }, (_, i) => i);
  const passes: Pass[] = [];
  switch (options.estimator) {
    case 'mean-field':
      for (let b = 0; b < B; b++)
        passes.push({ sequence: b, prompt: maskPrompt(batch.prompts[b]!, pMaskPrompt, rng, M), canvas: new Int32Array(L).fill(M), scored: all, factor: 1 });
      break;
    case 'two-stage': {
      if (options.tau && (!(options.tau instanceof Int32Array) || options.tau.length !== B))
        throw new InvalidArgumentError(`tau must be an Int32Array with one step per sequence (${B})`);
      for (let b = 0; b < B; b++) {
        const s = steps(b);
        const distinct = [...new Set(s)].sort((x, y) => x - y);
        const tau = options.tau ? options.tau[b]! : distinct[rng.int(distinct.length)]!;
        if (!distinct.includes(tau)) throw new InvalidArgumentError(`tau[${b}] = ${tau} is not one of sequence ${b}'s decode steps (${distinct.join(', ')})`);
        const early = all.filter((i) => s[i]! <= tau),
          late = all.filter((i) => s[i]! > tau);
        // first pass: mean-field (prompt masking only here); second: the rollout's state after tau
        passes.push({ sequence: b, prompt: maskPrompt(batch.prompts[b]!, pMaskPrompt, rng, M), canvas: new Int32Array(L).fill(M), scored: early, factor: 1 });
        if (late.length > 0) {
          const z = completion(b).map((t, i) => (s[i]! <= tau ? t : M));
          passes.push({ sequence: b, prompt: batch.prompts[b]!, canvas: z, scored: late, factor: 1 });
        }
      }
      break;
    }
    case 'trajectory': {
      const shrink = options.shrink ?? 1;
      positiveInt('shrink', shrink);
      for (let b = 0; b < B; b++) {
        const s = steps(b);
        const distinct = [...new Set(s)].sort((x, y) => x - y);
        for (let g = 0; g < distinct.length; g += shrink) {
          const first = distinct[g]!,
            last = distinct[Math.min(g + shrink, distinct.length) - 1]!;
          // the state before step `first`: tokens decoded earlier are shown, the rest masked
          const z = completion(b).map((t, i) => (s[i]! < first ? t : M));
          passes.push({ sequence: b, prompt: batch.prompts[b]!, canvas: z, scored: all.filter((i) => s[i]! >= first && s[i]! <= last), factor: 1 });
        }
      }
      break;
    }
    case 'elbo': {
      const samples = options.mcSamples ?? 1;
      positiveInt('mcSamples', samples);
      if (options.masks && (!(options.masks instanceof Uint8Array) || options.masks.length !== samples * B * L))
        throw new InvalidArgumentError(`masks must be a Uint8Array of length mcSamples * batch * genLength (${samples * B * L})`);
      for (let k = 0; k < samples; k++)
        for (let b = 0; b < B; b++) {
          let masked: number[];
          if (options.masks) {
            masked = all.filter((i) => options.masks![(k * B + b) * L + i] !== 0);
            if (masked.length === 0) throw new InvalidArgumentError(`masks of sample ${k}, sequence ${b} mask nothing (l must be >= 1)`);
          } else {
            // stratified mask counts across the batch, as LLaDA's get_log_likelihood
            const l = 1 + Math.floor(((k * B + b + rng.random()) / (samples * B)) * L);
            const order = [...all];
            for (let i = L - 1; i > 0; i--) {
              const j = rng.int(i + 1);
              [order[i], order[j]] = [order[j]!, order[i]!];
            }
            masked = order.slice(0, Math.min(L, l)).sort((x, y) => x - y);
          }
          const canvas = completion(b).map((t, i) => (masked.includes(i) ? M : t));
          passes.push({ sequence: b, prompt: batch.prompts[b]!, canvas, scored: masked, factor: L / masked.length / samples });
        }
      break;
    }
    default:
      throw new InvalidArgumentError(`estimator must be 'mean-field', 'two-stage', 'trajectory' or 'elbo', got ${String(options.estimator)}`);
  }
  return { estimator: options.estimator, genLength: L, batch: B, passes };
}

/** The forwards of a plan: rows of passes (prompts left-padded, positions shifted) and what each scores. */
export interface PassBatch {
  tokens: Int32Array;
  attentionMask: Uint8Array;
  positions: Int32Array;
  batch: number;
  seqLen: number;
  rows: Int32Array;
  targets: Int32Array;
  /** Per scored row: the token (sequence * genLength + position) it estimates, and its factor. */
  slots: Int32Array;
  factors: Float32Array;
}

/**
 * The plan's passes as forwards of at most maxTokensPerForward tokens; with `sequences`, only the passes
 * of those sequences (a data-parallel share), padded as in the whole plan so every row computes what
 * it would in one process.
 */
export function passBatches(batch: CompletionBatch, plan: EstimatorPlan, maxTokensPerForward = 65536, sequences?: SequenceRange): PassBatch[] {
  const L = plan.genLength;
  const P = Math.max(...plan.passes.map((p) => p.prompt.length));
  const T = P + L;
  const rowsPerForward = Math.max(1, Math.floor(maxTokensPerForward / T));
  const passes = sequences ? plan.passes.filter((p) => p.sequence >= sequences.start && p.sequence < sequences.end) : plan.passes;
  const out: PassBatch[] = [];
  for (let start = 0; start < passes.length; start += rowsPerForward) {
    const group = passes.slice(start, start + rowsPerForward);
    const { tokens, attentionMask, positions } = leftPad(
      group.map((p) => p.prompt),
      group.map((p) => p.canvas),
      { prefixLength: P, suffixLength: L },
    );
    const rows: number[] = [],
      targets: number[] = [],
      slots: number[] = [],
      factors: number[] = [];
    group.forEach((pass, r) => {
      for (const g of pass.scored) {
        rows.push(r * T + P + g);
        targets.push(batch.completions[pass.sequence * L + g]!);
        slots.push(pass.sequence * L + g);
        factors.push(pass.factor);
      }
    });
    out.push({ tokens, attentionMask, positions, batch: group.length, seqLen: T, rows: Int32Array.from(rows), targets: Int32Array.from(targets), slots: Int32Array.from(slots), factors: Float32Array.from(factors) });
  }
  return out;
}

/** A data-parallel share of a batch: the job, and the sequences this process computes. */
export interface BatchShard {
  world: Collective;
  sequences: SequenceRange;
}

/**
 * Runs the plan's passes, batched into forwards of at most maxTokensPerForward tokens. Returns
 * per-token estimates (batch x genLength): each token's log-probability from its pass, or for the
 * ELBO the sum over samples of factor * log p. With `tokenWeights` (batch x genLength) and backward,
 * accumulates the gradient of -sum(tokenWeights * estimate) into the model. With `shard`, this
 * process runs only its sequences' passes (gradients: its share) and the estimates of all
 * sequences are gathered from the job. `adapters: false` scores a LoRA model's base (its reference policy).
 */
export async function runPlan(
  model: DiffusionLM,
  batch: CompletionBatch,
  plan: EstimatorPlan,
  options: { tokenWeights?: Float32Array; backward?: boolean; maxTokensPerForward?: number; signal?: AbortSignal; shard?: BatchShard; adapters?: boolean } = {},
): Promise<Float32Array> {
  const out = new Float32Array(plan.batch * plan.genLength);
  const shard = options.shard;
  for (const b of passBatches(batch, plan, options.maxTokensPerForward, shard?.sequences)) {
    const weights = options.tokenWeights ? b.factors.map((f, s) => f * options.tokenWeights![b.slots[s]!]!) : new Float32Array(b.rows.length);
    const { logProbs } = await model.selectedLogProbs(
      { tokens: b.tokens, batch: b.batch, seqLen: b.seqLen, attentionMask: b.attentionMask, positions: b.positions, rows: b.rows, targets: b.targets, weights, adapters: options.adapters },
      { backward: options.backward ?? false, signal: options.signal },
    );
    b.slots.forEach((slot, s) => (out[slot] = out[slot]! + b.factors[s]! * logProbs[s]!));
  }
  // every slot outside this process's sequences is 0: the sum over processes is the gather, exactly
  if (shard) await shard.world.allReduceSum(out);
  return out;
}

/** Plans an estimate and runs it: per-token log-probs (batch x genLength) and the plan to reuse. */
export async function tokenLogProbs(model: DiffusionLM, batch: CompletionBatch, options: EstimatorOptions): Promise<{ logProbs: Float32Array; plan: EstimatorPlan }> {
  const plan = planEstimate(model, batch, objectArg('tokenLogProbs options', options));
  const logProbs = await runPlan(model, batch, plan, { maxTokensPerForward: options.maxTokensPerForward, signal: options.signal });
  return { logProbs, plan };
}
