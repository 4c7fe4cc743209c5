import { objectArg } from '../core/checks.js';
import { InvalidArgumentError } from '../core/errors.js';
import { Rng } from '../core/rng.js';
import type { SequenceRange } from '../engine/collective.js';
import type { LLaDAConfig } from '../engine/config.js';
import type { BackwardOption, DiffusionLM } from '../engine/model.js';

/** Inputs of LLaDA's masked-diffusion loss (docs/algorithms.md, masked diffusion). */
export interface MaskedDiffusionInput {
  /** Clean tokens (batch*seqLen). */
  tokens: Int32Array;
  batch: number;
  seqLen: number;
  /** 'pretrain': every position eligible, sum(CE/p)/(B*T). 'sft': prompts never masked, per-sequence mean over the response. */
  normalization: 'pretrain' | 'sft';
  /** Prompt length per sequence (required for 'sft'). */
  promptLengths?: Int32Array | number[];
  /** Explicit mask (batch*seqLen, 1 = masked), for exact tests; needs pMask. */
  mask?: Uint8Array;
  /** Mask ratio per sequence; drawn as p = (1-eps) t + eps, t ~ U(0,1), eps = 1e-3 when absent. */
  pMask?: Float32Array;
  /** (batch*seqLen) key-padding mask, as in logits(). */
  attentionMask?: Uint8Array;
  /** (batch*seqLen) RoPE positions, as in logits(). */
  positions?: Int32Array;
  /** Seed for this call's mask sampling (default: the model's own RNG stream). */
  seed?: number;
}

export interface MaskedDiffusionBatch {
  noisy: Int32Array;
  rows: Int32Array;
  targets: Int32Array;
  weights: Float32Array;
  pMask: Float32Array;
}

const EPS = 1e-3;

/** Draws (or checks) the masks and builds the scored positions and their weights. */
export function buildMaskedDiffusionBatch(input: MaskedDiffusionInput, config: LLaDAConfig, rng: Rng): MaskedDiffusionBatch {
  const { tokens, batch: B, seqLen: T, normalization } = input;
  if (normalization !== 'pretrain' && normalization !== 'sft')
    throw new InvalidArgumentError(`normalization must be 'pretrain' or 'sft', got ${String(normalization)}`);
  const prompt = new Int32Array(B);
  if (normalization === 'sft') {
    if (!input.promptLengths || input.promptLengths.length !== B)
      throw new InvalidArgumentError(`'sft' normalization needs promptLengths with one entry per sequence (${B})`);
    for (let b = 0; b < B; b++) {
      const p = input.promptLengths[b]!;
      if (!Number.isInteger(p) || p < 0 || p >= T)
        throw new InvalidArgumentError(`promptLengths[${b}] = ${p} must be an integer in [0, seqLen=${T})`);
      prompt[b] = p;
    }
  }
  for (let i = 0; i < tokens.length; i++)
    if (tokens[i] === config.mask_token_id)
      throw new InvalidArgumentError(`tokens[${i}] is the mask token (${config.mask_token_id}); clean sequences must not contain it`);
  if (input.mask && !input.pMask) throw new InvalidArgumentError('an explicit mask needs pMask (the ratio each sequence was masked with)');
  let pMask: Float32Array;
  if (input.pMask) {
    if (!(input.pMask instanceof Float32Array) || input.pMask.length !== B)
      throw new InvalidArgumentError(`pMask must be a Float32Array of length batch (${B})`);
    input.pMask.forEach((p, b) => {
      if (!(p > 0 && p <= 1)) throw new InvalidArgumentError(`pMask[${b}] = ${p} must be in (0, 1]`);
    });
    pMask = input.pMask;
  } else {
    pMask = new Float32Array(B);
    for (let b = 0; b < B; b++) pMask[b] = (1 - EPS) * rng.random() + EPS;
  }
  if (input.mask && (!(input.mask instanceof Uint8Array) || input.mask.length !== B * T))
    throw new InvalidArgumentError(`mask must be a Uint8Array of length batch*seqLen (${B * T})`);
  const noisy = Int32Array.from(tokens);
  const rows: number[] = [];
  const weights: number[] = [];
  for (let b = 0; b < B; b++) {
    const norm = normalization === 'pretrain' ? B * T : B * (T - prompt[b]!);
    const w = 1 / (pMask[b]! * norm);
    for (let t = 0; t < T; t++) {
      const i = b * T + t;
      const masked = input.mask ? input.mask[i] !== 0 : t >= prompt[b]! && rng.random() < pMask[b]!;
      if (!masked) continue;
      if (t < prompt[b]!) throw new InvalidArgumentError(`mask[${i}] masks a prompt token of sequence ${b} ('sft' never masks prompts)`);
      noisy[i] = config.mask_token_id;
      rows.push(i);
      weights.push(w);
    }
  }
  const targets = new Int32Array(rows.length);
  rows.forEach((r, s) => (targets[s] = tokens[r]!));
  return { noisy, rows: Int32Array.from(rows), targets, weights: Float32Array.from(weights), pMask };
}

export interface MaskedDiffusionResult {
  loss: number;
  /** Number of positions that were masked and scored. */
  maskedTokens: number;
  /** The mask ratio p used per sequence. */
  pMask: Float32Array;
}

/**
 * LLaDA's masked-diffusion loss, 'pretrain' or 'sft' normalisation, as one selectedLogProbs call (with
 * backward, its gradient). Masks and ratios are drawn from `input.seed` or else the model's own
 * random stream, unless given (`mask` needs `pMask`). With `sequences`, the masks are drawn for the
 * whole batch (as one process would) but only those sequences are computed: the loss and gradient
 * are their share of the batch's, normalised by the whole batch, so the shares of a data-parallel
 * job sum to the one-process values.
 */
export async function maskedDiffusionLoss(model: DiffusionLM, input: MaskedDiffusionInput, options: BackwardOption & { sequences?: SequenceRange } = {}): Promise<MaskedDiffusionResult> {
  objectArg('maskedDiffusionLoss input', input);
  model.checkTokens(input.tokens, input.batch, input.seqLen, input.attentionMask);
  const rng = input.seed !== undefined ? new Rng(input.seed) : model.rng;
  const b = buildMaskedDiffusionBatch(input, model.config, rng);
  const T = input.seqLen;
  const { start, end } = options.sequences ?? { start: 0, end: input.batch };
  if (!(Number.isInteger(start) && Number.isInteger(end) && start >= 0 && start < end && end <= input.batch))
    throw new InvalidArgumentError(`sequences [${start}, ${end}) is not a non-empty range of the batch's ${input.batch} sequences`);
  const rows = (a: Int32Array) => a.subarray(start * T, end * T);
  const own = b.rows.map((r) => (r >= start * T && r < end * T ? 1 : 0));
  const pick = <A extends Int32Array | Float32Array>(a: A) => a.filter((_, s) => own[s] === 1) as A;
  const { loss } = await model.selectedLogProbs(
    {
      tokens: rows(b.noisy),
      batch: end - start,
      seqLen: T,
      attentionMask: input.attentionMask?.subarray(start * T, end * T),
      positions: input.positions ? rows(input.positions) : undefined,
      rows: pick(b.rows).map((r) => r - start * T),
      targets: pick(b.targets),
      weights: pick(b.weights),
    },
    options,
  );
  return { loss, maskedTokens: own.reduce((a, x) => a + x, 0), pMask: b.pMask };
}
