import { objectArg } from '../core/checks.js';
import { InvalidArgumentError } from '../core/errors.js';
import { runPlan, type BatchShard, type CompletionBatch, type EstimatorPlan } from './estimators.js';
import type { DiffusionLM } from '../engine/model.js';

/** Inputs of the RL objective (docs/algorithms.md, RL objective) for one batch of completions. */
export interface PolicyLossInput extends CompletionBatch {
  /** (batch) advantage of each completion. */
  advantages: Float32Array;
  /** (batch x genLength) the surrogate's log-probs under the old weights, from the same plan. */
  logpOld: Float32Array;
  /** (batch x genLength) the sampler's behaviour log-probs: with them, the truncated importance weight min(isCap, exp(old - behaviour)) (DiFFPO); without, weight 1 (d1). */
  logpBehaviour?: Float32Array;
  /** (batch x genLength) log-probs under the frozen reference model, for the k3 KL (needed when beta > 0). */
  logpRef?: Float32Array;
  /** (batch x genLength) 1 for the tokens in the token mean (default all). */
  tokenMask?: Uint8Array;
  /** Clip range epsilon of the ratio (default 0.5, as d1). */
  clipEps?: number;
  /** Truncation C of the importance weight (default 2). */
  isCap?: number;
  /** KL coefficient (default 0). */
  beta?: number;
}

export interface PolicyLossResult {
  loss: number;
  /** (batch x genLength) the surrogate's log-probs under the current weights. */
  logProbs: Float32Array;
  clipFraction: number;
  isWeightMean: number;
  isWeightMax: number;
  truncatedFraction: number;
  klMean: number;
}

function lengthCheck(name: string, a: ArrayLike<number> | undefined, n: number, ctor: Function): void {
  if (a === undefined) return;
  if (!(a instanceof ctor) || a.length !== n) throw new InvalidArgumentError(`${name} must be a ${ctor.name} of length ${n}`);
}

/** The objective and its gradient with respect to each token's log-prob (token mean over the mask). */
export function policyObjective(input: PolicyLossInput, logp: ArrayLike<number>, L: number) {
  const B = input.advantages.length;
  const eps = input.clipEps ?? 0.5,
    cap = input.isCap ?? 2,
    beta = input.beta ?? 0;
  const grad = new Float32Array(B * L);
  let loss = 0,
    n = 0,
    clipped = 0,
    wSum = 0,
    wMax = 0,
    truncated = 0,
    klSum = 0;
  for (let i = 0; i < B * L; i++) {
    if (input.tokenMask && !input.tokenMask[i]) continue;
    n++;
    const A = input.advantages[Math.floor(i / L)]!;
    const rho = Math.exp(logp[i]! - input.logpOld[i]!);
    let w = 1;
    if (input.logpBehaviour) {
      const raw = Math.exp(input.logpOld[i]! - input.logpBehaviour[i]!);
      if (raw > cap) truncated++;
      w = Math.min(cap, raw);
    }
    wSum += w;
    wMax = Math.max(wMax, w);
    const unclipped = rho * A,
      clip = Math.min(1 + eps, Math.max(1 - eps, rho)) * A;
    let l = -w * Math.min(unclipped, clip);
    let g = unclipped <= clip ? -w * A * rho : 0;
    if (unclipped > clip) clipped++;
    if (beta > 0) {
      const d = input.logpRef![i]! - logp[i]!;
      const kl = Math.exp(d) - d - 1;
      klSum += kl;
      l += beta * kl;
      g += beta * (1 - Math.exp(d));
    }
    loss += l;
    grad[i] = g;
  }
  if (n === 0) throw new InvalidArgumentError('tokenMask selects no token');
  for (let i = 0; i < grad.length; i++) grad[i] = grad[i]! / n;
  return { loss: loss / n, grad, clipFraction: clipped / n, isWeightMean: wSum / n, isWeightMax: wMax, truncatedFraction: truncated / n, klMean: klSum / n };
}

/**
 * The clipped, importance-weighted policy loss (docs/algorithms.md, RL objective) with the given estimator's
 * log-probs as the surrogate, and (with backward) its gradient through the estimator's passes into
 * the model. Pass the plan that produced logpOld so both see the same masks and tau. With `shard`, the
 * loss and statistics are the whole batch's and the gradient is this process's share (the job's
 * shares sum to the one-process gradient).
 */
export async function policyLoss(
  model: DiffusionLM,
  input: PolicyLossInput,
  plan: EstimatorPlan,
  options: { backward?: boolean; maxTokensPerForward?: number; signal?: AbortSignal; shard?: BatchShard } = {},
): Promise<PolicyLossResult> {
  objectArg('policyLoss input', input);
  if (!Array.isArray(input.prompts)) throw new InvalidArgumentError('policyLoss input.prompts must be an array of Int32Array');
  const B = input.prompts.length,
    L = objectArg('policyLoss plan', plan).genLength;
  if (plan.batch !== B) throw new InvalidArgumentError(`the plan is for ${plan.batch} sequences, the input has ${B}`);
  lengthCheck('advantages', input.advantages, B, Float32Array);
  lengthCheck('logpOld', input.logpOld, B * L, Float32Array);
  lengthCheck('logpBehaviour', input.logpBehaviour, B * L, Float32Array);
  lengthCheck('logpRef', input.logpRef, B * L, Float32Array);
  lengthCheck('tokenMask', input.tokenMask, B * L, Uint8Array);
  input.advantages.forEach((a, b) => {
    if (!Number.isFinite(a)) throw new InvalidArgumentError(`advantages[${b}] = ${a} is not finite`);
  });
  const beta = input.beta ?? 0;
  if (!(beta >= 0)) throw new InvalidArgumentError(`beta = ${beta} must be >= 0`);
  if (beta > 0 && !input.logpRef) throw new InvalidArgumentError('beta > 0 needs logpRef');
  if (!((input.clipEps ?? 0.5) > 0) || !((input.isCap ?? 2) > 0)) throw new InvalidArgumentError('clipEps and isCap must be > 0');
  // sharded: this process's passes only; the objective (a token mean over the whole batch) sees every sequence
  const run = { maxTokensPerForward: options.maxTokensPerForward, signal: options.signal, shard: options.shard };
  const logProbs = await runPlan(model, input, plan, run);
  const o = policyObjective(input, logProbs, L);
  // the native loss is -sum(w * logp), so w = -dloss/dlogp accumulates exactly our gradient
  if (options.backward) await runPlan(model, input, plan, { ...run, backward: true, tokenWeights: o.grad.map((g) => -g) });
  return { loss: o.loss, logProbs, clipFraction: o.clipFraction, isWeightMean: o.isWeightMean, isWeightMax: o.isWeightMax, truncatedFraction: o.truncatedFraction, klMean: o.klMean };
}
