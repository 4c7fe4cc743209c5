import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { nonNegativeInt, positiveInt } from '../core/checks.js';
import { InvalidArgumentError } from '../core/errors.js';
import { defaultsOf, option, withDefaults, type DefaultsOf } from '../core/options.js';
import { Rng } from '../core/rng.js';
import { deriveSeed } from '../core/seeds.js';
import { generate, type GenerateResult } from '../decoding/sampler.js';
import { strategyForSequences, thresholdStrategy, type DecodingStrategy } from '../decoding/strategy.js';
import { DEFAULT_HEAD_LR, samplerHeadOf, setSamplerHead, ThresholdHead, type HeadFeatures } from '../decoding/threshold-head.js';
import { gatherRows, shardRange, worldFromEnvironment, type Collective, type SequenceRange } from '../engine/collective.js';
import { fitBatch } from '../engine/memory-plan.js';
import { DiffusionLM, type ModelOptions } from '../engine/model.js';
import { planEstimate, runPlan, type BatchShard, type Estimator, type EstimatorPlan } from '../likelihood/estimators.js';
import { policyLoss, type PolicyLossResult } from '../likelihood/policy-loss.js';
import { TaskMixture, type Task, type TaskItem } from '../tasks/task.js';
import { encodePrompt } from '../tasks/encode.js';
import { CharTokenizer, checkTokenizerFits, type TextTokenizer } from '../tasks/tokenizer.js';
import { commitCheckpoint, readTrainerState } from './checkpoint-set.js';
import { writeModelFolder } from './model-folder.js';
import { AdamW } from './optimizer.js';
import { loadOptimizer, saveOptimizer } from './optimizer-state.js';
import { checkSchedule, scheduledLr } from './schedule.js';
import { StepLog, type StepExtras } from './step-log.js';

/** 'd1': mean-field surrogate, no importance weight; 'diffpo': two-stage surrogate with the truncated importance weight; 'trace': the exact trajectory likelihood. */
export type RlMethod = 'd1' | 'diffpo' | 'trace';

/** An extra reward term (TRL's reward_funcs): added to the task's own reward of each completion. */
export type RewardFn = (completion: string, item: unknown, task: Task<unknown>) => number;

/**
 * The DiFFPO trainer's options with their defaults, each with its reason (the CLI's `train` flags and
 * help are generated from these). The defaults follow d1's recipe where it has one, scaled to our
 * small models and short runs where it does not.
 */
export const DIFFPO_DEFAULTS = {
  method: option<RlMethod>('diffpo', "the surrogate likelihood: 'diffpo' (two-stage with truncated importance weights, the paper's method), 'd1' (mean-field, no weight) or 'trace' (the exact trajectory, one pass per decode step)", { choices: ['diffpo', 'd1', 'trace'] }),
  promptsPerStep: option(8, 'prompts per step; with groupSize 6, 48 rollouts: one batched generate call on 2 cores', { integer: true }),
  groupSize: option(6, "completions per prompt G (d1's 6); advantages are relative to the group, so G >= 2", { integer: true }),
  innerIterations: option(2, 'updates mu per batch of rollouts (d1 runs 8-12 on 8B models): each extra update reuses the rollouts and costs one forward and backward of the surrogate, so 2 keeps a step near a second here', { integer: true }),
  clipEps: option(0.5, "clip range of the probability ratio (d1's 0.5)"),
  isCap: option(2, 'truncation C of the importance weight min(C, pi_old / pi_behaviour), so one rare token cannot dominate a batch'),
  beta: option(0.04, "k3 KL weight against the starting model (d1's 0.04); 0 skips the frozen reference copy"),
  pMaskPrompt: option(0.15, "probability of masking each prompt token in the surrogate's first pass (d1's 0.15: random prompt masks regularise the one-pass estimate)"),
  temperature: option(1, 'rollout temperature: 1 samples the policy itself, which the importance weights and the group baseline assume'),
  rolloutThresholds: option<number[]>(
    [],
    "thresholds cycled over each group's G rollouts (e.g. 0.9,0.9,0.9,0.9,0.95,1.01; above 1: one token per step); empty: every rollout at the rollout threshold. Threshold decoding is nearly deterministic (a position is committed only once its confidence passes the threshold, whatever the temperature), so G rollouts at one threshold usually agree and their group teaches nothing; stricter ones in the same group supply the contrast",
  ),
  advantage: option<'mean' | 'mean-std'>('mean', "'mean' (d1: r - group mean) or 'mean-std' (also divided by the group std)", { choices: ['mean', 'mean-std'] }),
  lr: option(1e-4, "peak AdamW learning rate, a tenth of SFT's: on sudoku4, 5e-4 and 1e-3 drifted (KL to the start 0.16-0.33, mean NFE up 1.5-2.5x, accuracy down), 1e-4 held KL near 0.05 while accuracy rose"),
  warmup: option(20, "linear warmup steps: the optimizer's moments start at zero (also when starting from a base), so its first updates are full-size sign steps; 20 steps of warmup kept KL near 0.05 where none let it reach 0.28", { integer: true }),
  schedule: option<'cosine' | 'constant'>('constant', "'constant' or 'cosine' down to a tenth of lr", { choices: ['constant', 'cosine'] }),
  betas: option<[number, number]>([0.9, 0.99], "AdamW's moment decays (d1's 0.9, 0.99: the second moment adapts within about 100 steps, which matters in runs of a few hundred)", { flag: false }),
  weightDecay: option(0.1, "decoupled weight decay on weight matrices, not norms (d1's 0.1)"),
  maxGradNorm: option(0.2, "global gradient-norm clip (d1's 0.2): policy gradients of small groups are noisy, and one outlier batch must not undo SFT"),
  nfeCost: option(0, "the model's reward is r - nfeCost * NFE / genLength: a price on forwards that makes the model itself more confident where it can be (threshold decoding then takes fewer steps); 0 rewards correctness alone"),
  dropFlatGroups: option(
    true,
    "leave groups whose rewards are all equal out of the loss, and skip the update when every group is: their advantages are zero, and AdamW would turn the KL term's near-zero gradient into full-size noise steps (measured: KL to the start 0.1-0.25 after tens of such steps at lr 5e-4)",
  ),
  resampleFlatGroups: option(
    0,
    "rounds of dynamic sampling (DAPO's): each round replaces the batch's flat groups by fresh prompts' groups, so more of the batch carries a learning signal; a round decodes only the flat groups' replacements, and the likelihood passes stay at promptsPerStep groups",
    { integer: true },
  ),
  weightAverage: option(
    0,
    "decay d of an exponential moving average of the weights, updated after every step (0: none); averagedModel() returns it and checkpoints keep it. Successive evaluations of one countdown3 run swing by 3-6 points: an average over the last ~1/(1-d) steps evaluates the trend, not one step's noise",
  ),
  seed: option(0, 'seed of the data stream, rollout noise and estimator masks (each derived per step with deriveSeed)', { integer: true }),
  checkpointEvery: option(0, 'save a resumable checkpoint to outDir every N steps (0: only at the end)', { integer: true }),
  memoryLimit: option(
    0,
    "GiB a training step may hold (0: no limit): the likelihood passes are batched into forwards as large as memoryPlan says fit (weights, gradients, moments, reference, activations), and a model that cannot fit one sequence is refused up front with what would (LoRA, checkpointing); the rollouts' decoder comes on top",
  ),
} as const;

export type DiffpoDefaults = DefaultsOf<typeof DIFFPO_DEFAULTS>;

/**
 * The learned sampler's options (`DiffpoOptions.sampler` beside its mode), one documented default
 * each; `diffpo train`'s --lambda and --head-* flags are generated from these.
 */
export const SAMPLER_DEFAULTS = {
  lambda: option(
    1.5,
    "the learned sampler's NFE cost: its reward is r - lambda * NFE / genLength (with cost 'correct-bonus': r + lambda * (1 - NFE / genLength) when correct); 1.5 gave the largest gain over the fixed frontier on sudoku4's mixed set (0.5-1: +0.6-0.9 points, 2 and more: every prompt at the loosest threshold; measured on its test set)",
  ),
  grid: option<number[]>(
    [0.5, 0.9],
    "the thresholds the head chooses from (above 1: one token per step): loose or Fast-dLLM's 0.9; on sudoku4's mixed set heads on 0.5 / 0.9 gained most, grids with 0.7, 0.8, 0.99 or one token per step did no better (no head chose the costly ones) and their early uniform draws wreck rollouts (measured on its test set); countdown3's recipe: 0.7,0.9",
  ),
  features: option<HeadFeatures>(
    'confidence',
    "what the head reads: 'confidence', 8 statistics of the decoder's own first forward over the masked completion (confidences and entropies, which predict where parallel decoding fails: AUC 0.94 on sudoku4; no extra forward), or 'hidden', the prompt's mean-pooled hidden states (one more forward a prompt)",
    { choices: ['confidence', 'hidden'] },
  ),
  init: option(0, 'start the head with 80% of its probability on the grid value nearest this (e.g. 0.9, the best fixed threshold); 0: uniform'),
  cost: option<'additive' | 'correct-bonus'>('additive', "the head's reward: 'additive' (r - lambda * NFE / L, the paper's) or 'correct-bonus' (a speed bonus for correct rollouts only: speed never pays for a wrong answer)", {
    choices: ['additive', 'correct-bonus'],
  }),
  kind: option<'threshold' | 'entropy'>('threshold', "what the grid holds: confidence thresholds, or the entropy-bounded sampler's bounds", { choices: ['threshold', 'entropy'] }),
  lr: option(DEFAULT_HEAD_LR, "the head's SGD rate on its group-relative advantages (order 0.1-1): a few percent of a grid probability per step"),
} as const;

export type SamplerDefaults = DefaultsOf<typeof SAMPLER_DEFAULTS>;

export interface DiffpoOptions extends Partial<DiffpoDefaults> {
  model: DiffusionLM;
  /** The task to train on, or `tasks` for a mixture (each step's prompts cycle through them). */
  task?: Task<unknown>;
  tasks?: Task<unknown>[];
  /** Extra reward terms summed with each task's reward (default none). */
  rewardFns?: RewardFn[];
  tokenizer?: TextTokenizer;
  /** Tokens generated per rollout (the task's response length with EOS padding). */
  genLength: number;
  blockLength?: number;
  /** Rollout decoding (default threshold decoding at DEFAULT_THRESHOLD). */
  strategy?: DecodingStrategy;
  /** Keys (Task.key) of items that training must never see, e.g. the test set's. */
  exclude?: Iterable<string>;
  /**
   * The rollout threshold: 'fixed' (default: `strategy`), or a learned per-prompt threshold on a grid,
   * trained jointly with the model ('learned') or alone with the model frozen ('sampler-only'),
   * rewarded by r - lambda * NFE / genLength; its other options default to SAMPLER_DEFAULTS.
   */
  sampler?: { mode: 'fixed' } | ({ mode: 'learned' | 'sampler-only' } & Partial<SamplerDefaults>);
  /** Where `outDir` gets checkpoints (rank 0 of a data-parallel job alone writes). */
  outDir?: string;
  /**
   * The data-parallel job (default worldFromEnvironment(): the MPI world under mpirun, else one
   * process). promptsPerStep is the global batch: each process decodes and differentiates its share
   * of the prompts (whole groups), the shares' gradients are summed before clipping and AdamW, and
   * every process keeps the same weights, head and data stream as one process would.
   */
  world?: Collective;
}

export interface DiffpoStepInfo {
  step: number;
  steps: number;
  meanReward: number;
  accuracy: number;
  meanNfe: number;
  /**
   * The fraction of this step's groups with all rewards equal (no learning signal). meanReward,
   * accuracy, meanNfe and zeroVariance describe the prompts as first drawn, before resampleFlatGroups.
   */
  zeroVariance: number;
  /** The flat fraction of the batch trained on, after resampleFlatGroups (zeroVariance without it). */
  zeroVarianceTrained: number;
  /** Groups replaced by resampleFlatGroups this step (fresh prompts decoded beyond promptsPerStep). */
  resampledGroups: number;
  loss: number;
  klMean: number;
  clipFraction: number;
  isWeightMean: number;
  isWeightMax: number;
  truncatedFraction: number;
  /** Mean grid value the learned sampler chose for the rollouts (the fixed threshold otherwise, NaN for other strategies). */
  meanThreshold: number;
  /** The learning rate of this step's updates (from lr, warmup and schedule). */
  lr: number;
  /** With a learned sampler: the fraction of this step's rollouts that drew each grid value. */
  thresholdDistribution?: { value: number; fraction: number }[];
  seconds: { rollout: number; likelihood: number; update: number };
  /** With memoryLimit: the most tokens a likelihood forward took this step (memoryPlan's choice). */
  tokensPerForward?: number;
}

/** One step's rollouts as the trainer scored them (DiffpoTrainer.train's onRollout). */
export interface DiffpoRollout {
  step: number;
  /** The task and item of each completion (G consecutive completions per prompt). */
  items: { task: Task<unknown>; item: unknown }[];
  rollout: GenerateResult;
  texts: string[];
  rewards: number[];
  advantages: Float32Array;
  /** (batch x genLength) 1 for the tokens in the loss: up to and including the first EOS. */
  tokenMask: Uint8Array;
  /** The surrogate's log-probs before the update for the first inner iteration (null when the model is frozen). */
  logpOld: Float32Array | null;
}

/**
 * The learned sampler's rewards: 'additive' (the paper's r - lambda * NFE / L) or 'correct-bonus'
 * (r + lambda * (1 - NFE / L) for correct rollouts only, so a correct rollout at any NFE earns at
 * least a wrong one at any speed when rewards are at most 1 for wrong answers).
 */
export function samplerRewards(rewards: readonly number[], nfe: ArrayLike<number>, correct: readonly boolean[], o: { genLength: number; lambda: number; cost?: 'additive' | 'correct-bonus' }): number[] {
  const { genLength: L, lambda } = o;
  return o.cost === 'correct-bonus' ? rewards.map((x, b) => x + (correct[b] ? lambda * (1 - nfe[b]! / L) : 0)) : rewards.map((x, b) => x - (lambda * nfe[b]!) / L);
}

/** The whole batch's rollout from each process's decode of its rows (exact: see gatherRows). */
async function gatherRollout(world: Collective, mine: GenerateResult, rows: SequenceRange, B: number, L: number): Promise<GenerateResult> {
  return {
    tokens: await gatherRows(world, mine.tokens, rows, B, L),
    nfe: await gatherRows(world, mine.nfe, rows, B, 1),
    decodeStep: await gatherRows(world, mine.decodeStep, rows, B, L),
    behaviourLogProb: await gatherRows(world, mine.behaviourLogProb, rows, B, L),
    hitBudget: await gatherRows(world, mine.hitBudget, rows, B, 1),
  };
}

/** Prompts whose features calibrate a learned head's input normalisation before its first update. */
export const HEAD_CALIBRATION_PROMPTS = 256;

/** Added to a group's std under 'mean-std': a group of equal rewards gets advantage 0, not 0/0. */
export const ADVANTAGE_STD_EPS = 1e-4;

/** The indices of the groups whose rewards are all equal. */
export function flatGroups(rewards: ArrayLike<number>, groupSize: number): number[] {
  const out: number[] = [];
  for (let g = 0; g * groupSize < rewards.length; g++) {
    let same = true;
    for (let i = 1; i < groupSize; i++) same &&= rewards[g * groupSize + i] === rewards[g * groupSize];
    if (same) out.push(g);
  }
  return out;
}

/**
 * The fraction of groups whose rewards are all equal: their advantages are all zero, so they teach the
 * model nothing (rollouts all right or all wrong). A training distribution where this is near 1 gives
 * RL no signal.
 */
export function zeroVarianceFraction(rewards: ArrayLike<number>, groupSize: number): number {
  return flatGroups(rewards, groupSize).length / Math.ceil(rewards.length / groupSize);
}

/** Group-relative advantages: rewards minus their group's mean (divided by the group's std with 'mean-std'). */
export function groupAdvantages(rewards: ArrayLike<number>, groupSize: number, mode: 'mean' | 'mean-std' = 'mean'): Float32Array {
  const out = new Float32Array(rewards.length);
  for (let g = 0; g < rewards.length; g += groupSize) {
    const group = Array.from({ length: groupSize }, (_, i) => rewards[g + i]!);
    const mean = group.reduce((a, r) => a + r, 0) / groupSize;
    const std = Math.sqrt(group.reduce((a, r) => a + (r - mean) ** 2, 0) / Math.max(1, groupSize - 1));
    group.forEach((r, i) => (out[g + i] = mode === 'mean-std' ? (r - mean) / (std + ADVANTAGE_STD_EPS) : r - mean));
  }
  return out;
}

/** What one step's rollouts produced, before any update. */
interface Rollouts {
  items: TaskItem[];
  prompts: Int32Array[];
  rollout: GenerateResult;
  strategy: DecodingStrategy;
  /** With a learned sampler: each rollout's prompt features and the grid index it drew. */
  features: Float64Array[];
  choices: number[];
  texts: string[];
  rewards: number[];
  correct: boolean[];
}

const EMPTY_ROLLOUT: GenerateResult = { tokens: new Int32Array(0), nfe: new Int32Array(0), decodeStep: new Int32Array(0), behaviourLogProb: new Float32Array(0), hitBudget: new Uint8Array(0) };

function mean(xs: ArrayLike<number>): number {
  let sum = 0;
  for (let i = 0; i < xs.length; i++) sum += xs[i]!;
  return sum / xs.length;
}

/** This process's share of n prompts (whole ones), and their G rollouts' rows. */
function shareOf(n: number, G: number, world: Collective): { prompts: SequenceRange; rows: SequenceRange } {
  const prompts = shardRange(n, world);
  return { prompts, rows: { start: prompts.start * G, end: prompts.end * G } };
}

/** Puts `src`'s group j in place of `dst`'s group slots[j], every per-rollout field alike. */
function replaceGroups(dst: Rollouts, src: Rollouts, slots: readonly number[], G: number, L: number): void {
  slots.forEach((g, j) => {
    const [to, from] = [g * G, j * G];
    for (const k of ['items', 'prompts', 'texts', 'rewards', 'correct', 'features', 'choices'] as const) {
      const d = dst[k] as unknown[];
      if (d.length > 0) d.splice(to, G, ...(src[k] as unknown[]).slice(from, from + G));
    }
    for (const k of ['tokens', 'decodeStep', 'behaviourLogProb'] as const) dst.rollout[k].set(src.rollout[k].subarray(from * L, (from + G) * L) as never, to * L);
    dst.rollout.nfe.set(src.rollout.nfe.subarray(from, from + G), to);
    dst.rollout.hitBudget.set(src.rollout.hitBudget.subarray(from, from + G), to);
  });
}

const ESTIMATOR: Record<RlMethod, Estimator> = { d1: 'mean-field', diffpo: 'two-stage', trace: 'trajectory' };

const longest = (prompts: Int32Array[]) => Math.max(...prompts.map((p) => p.length));

/**
 * The DiFFPO RL trainer (docs/algorithms.md, RL objective): rollouts of G completions per prompt,
 * group-relative advantages, and mu inner iterations of the clipped objective with the chosen
 * surrogate (d1's mean-field, DiFFPO's two-stage with truncated importance weights, or the exact
 * trajectory likelihood), k3 KL against the starting model, AdamW; optionally a learned per-prompt
 * threshold trained with the model or alone.
 */
export class DiffpoTrainer {
  readonly model: DiffusionLM;
  /** The first (or only) task. */
  readonly task: Task<unknown>;
  readonly tasks: Task<unknown>[];
  readonly tokenizer: TextTokenizer;
  readonly optimizer: AdamW;
  /** The learned sampler head (sampler modes 'learned' and 'sampler-only'). */
  head: ThresholdHead | null = null;
  readonly world: Collective;
  step = 0;
  readonly #o: DiffpoDefaults & DiffpoOptions;
  readonly #rng: Rng;
  readonly #mixture: TaskMixture;
  #reference: Promise<DiffusionLM> | null = null;
  /** The learned sampler's options, defaults filled (null without one). */
  #sampler: SamplerDefaults | null = null;
  /** The weights' moving average (weightAverage > 0), from the weights train() started with. */
  #average: Map<string, Float32Array> | null = null;

  constructor(options: DiffpoOptions) {
    const o = (this.#o = withDefaults(defaultsOf(DIFFPO_DEFAULTS), options));
    if (!DIFFPO_DEFAULTS.method.choices!.includes(o.method)) throw new InvalidArgumentError(`method must be 'd1', 'diffpo' or 'trace', got ${String(o.method)}`);
    for (const k of ['promptsPerStep', 'groupSize', 'innerIterations', 'genLength'] as const) positiveInt(k, o[k]);
    nonNegativeInt('resampleFlatGroups', o.resampleFlatGroups);
    if (!(typeof o.weightAverage === 'number' && o.weightAverage >= 0 && o.weightAverage < 1)) throw new InvalidArgumentError(`weightAverage must be a number in [0, 1), got ${String(o.weightAverage)}`);
    if (o.groupSize < 2) throw new InvalidArgumentError(`groupSize must be at least 2 (advantages are group-relative${o.advantage === 'mean-std' ? ' and mean-std divides by the group std' : ''}), got ${o.groupSize}`);
    if (o.advantage !== 'mean' && o.advantage !== 'mean-std') throw new InvalidArgumentError(`advantage must be 'mean' or 'mean-std', got ${String(o.advantage)}`);
    if (!(o.isCap > 0 && Number.isFinite(o.isCap))) throw new InvalidArgumentError(`isCap must be a finite number > 0, got ${o.isCap}`);
    if (!(o.clipEps > 0 && Number.isFinite(o.clipEps))) throw new InvalidArgumentError(`clipEps must be a finite number > 0, got ${o.clipEps}`);
    if (!(o.beta >= 0 && Number.isFinite(o.beta))) throw new InvalidArgumentError(`beta must be a finite number >= 0, got ${o.beta}`);
    if (!(o.pMaskPrompt >= 0 && o.pMaskPrompt < 1)) throw new InvalidArgumentError(`pMaskPrompt must be in [0, 1), got ${o.pMaskPrompt}`);
    if (!(o.nfeCost >= 0 && Number.isFinite(o.nfeCost))) throw new InvalidArgumentError(`nfeCost must be a finite number >= 0, got ${o.nfeCost}`);
    if (!(o.temperature >= 0 && Number.isFinite(o.temperature))) throw new InvalidArgumentError(`temperature must be a finite number >= 0, got ${o.temperature}`);
    if (!Array.isArray(o.rolloutThresholds) || o.rolloutThresholds.some((t) => !(t > 0 && Number.isFinite(t))))
      throw new InvalidArgumentError(`rolloutThresholds must be an array of finite numbers > 0, got ${JSON.stringify(o.rolloutThresholds)}`);
    if (o.rolloutThresholds.length > 0 && o.sampler && o.sampler.mode !== 'fixed') throw new InvalidArgumentError('rolloutThresholds and a learned sampler both choose rollout thresholds: give one');
    if (o.rolloutThresholds.length > 0 && o.strategy && o.strategy.kind !== 'threshold') throw new InvalidArgumentError(`rolloutThresholds needs threshold decoding, got strategy '${o.strategy.kind}'`);
    if (o.rewardFns && (!Array.isArray(o.rewardFns) || o.rewardFns.some((f) => typeof f !== 'function'))) throw new InvalidArgumentError('rewardFns must be an array of functions');
    this.world = o.world ?? worldFromEnvironment();
    if (o.promptsPerStep < this.world.size) throw new InvalidArgumentError(`promptsPerStep (${o.promptsPerStep}) must be at least the number of processes (${this.world.size}): each process takes whole prompts`);
    this.#rng = new Rng(o.seed);
    this.#mixture = new TaskMixture(o, this.#rng, new Set(o.exclude ?? []), 'DiffpoTrainer');
    this.tasks = this.#mixture.tasks;
    this.model = o.model;
    if (this.model.lora && o.weightAverage > 0) throw new InvalidArgumentError('weightAverage is not implemented with LoRA adapters (the average would be of the adapters): give 0');
    this.task = this.tasks[0]!;
    this.tokenizer = o.tokenizer ?? new CharTokenizer();
    checkTokenizerFits(this.tokenizer, this.model.config);
    checkSchedule(o);
    if (!(o.memoryLimit >= 0 && Number.isFinite(o.memoryLimit))) throw new InvalidArgumentError(`memoryLimit must be a finite number of GiB >= 0, got ${o.memoryLimit}`);
    this.#tokensPerForward(o.genLength + 1); // refuses a model that cannot fit even the shortest sequence
    this.optimizer = new AdamW(o.model, { lr: o.lr, betas: o.betas, weightDecay: o.weightDecay, maxGradNorm: o.maxGradNorm });
    const mode = o.sampler?.mode ?? 'fixed';
    if (mode === 'learned' || mode === 'sampler-only') {
      const s = (this.#sampler = withDefaults(defaultsOf(SAMPLER_DEFAULTS), o.sampler as Partial<SamplerDefaults>));
      if (!(Number.isFinite(s.lambda) && s.lambda >= 0)) throw new InvalidArgumentError(`sampler.lambda must be a finite number >= 0, got ${s.lambda}`);
      if (s.cost !== 'additive' && s.cost !== 'correct-bonus') throw new InvalidArgumentError(`sampler.cost must be 'additive' or 'correct-bonus', got ${String(s.cost)}`);
      if (!(Number.isFinite(s.init) && s.init >= 0)) throw new InvalidArgumentError(`sampler.init must be a threshold > 0, or 0 for a uniform start, got ${s.init}`);
      if (!(Number.isFinite(s.lr) && s.lr > 0)) throw new InvalidArgumentError(`sampler.lr must be a finite number > 0, got ${s.lr}`);
      this.head = new ThresholdHead({ grid: s.grid, dModel: o.model.config.d_model, kind: s.kind, features: s.features, init: s.init || undefined });
      setSamplerHead(o.model, this.head); // saved with the model's checkpoints
    } else if (mode !== 'fixed') throw new InvalidArgumentError(`sampler.mode must be 'fixed', 'learned' or 'sampler-only'`);
  }

  /**
   * With memoryLimit, the most tokens one likelihood forward of seqLen-token sequences may take, from
   * memoryPlan (an error saying what would fit when not one sequence does); else the estimators' default.
   */
  #tokensPerForward(seqLen: number): number | undefined {
    const o = this.#o,
      m = this.model;
    if (!o.memoryLimit) return undefined;
    const plan = { weights: m.dtype, lora: m.lora, checkpointing: m.checkpointing, reference: o.beta > 0 && !m.lora, weightAverage: o.weightAverage > 0 };
    const { batch } = fitBatch(m.config, { ...plan, seqLen, limitBytes: o.memoryLimit * 2 ** 30, maxBatch: 1 << 16, backend: m.backend.startsWith('cuda') ? 'cuda' : 'cpu', threads: m.threads });
    return batch * seqLen;
  }

  /** A frozen copy of the starting weights (made on first use), for the KL term. */
  async #referenceModel(): Promise<DiffusionLM> {
    this.#reference ??= Promise.resolve(this.#modelWith(this.model.parameters()));
    return this.#reference;
  }

  /** A new model of this one's config and backend holding the given weights. */
  #modelWith(weights: ReadonlyMap<string, Float32Array>): DiffusionLM {
    const m = DiffusionLM.create(this.model.config, { threads: this.model.threads, backend: this.model.backend });
    for (const [name, p] of m.parameters()) p.set(weights.get(name)!);
    return m;
  }

  /** avg <- d avg + (1 - d) weights; the first call starts it at the weights. */
  #updateAverage(): void {
    const d = this.#o.weightAverage;
    if (!this.#average) {
      this.#average = new Map([...this.model.parameters()].map(([name, p]) => [name, Float32Array.from(p)]));
      return;
    }
    for (const [name, p] of this.model.parameters()) {
      const a = this.#average.get(name)!;
      for (let i = 0; i < a.length; i++) a[i] = d * a[i]! + (1 - d) * p[i]!;
    }
  }

  /**
   * The moving average of the weights (weightAverage > 0) as a new model, which the caller disposes;
   * before any step, the current weights.
   */
  averagedModel(): DiffusionLM {
    if (this.#o.weightAverage === 0) throw new InvalidArgumentError('averagedModel() needs weightAverage > 0');
    return this.#modelWith(this.#average ?? this.model.parameters());
  }

  /** This process's sequences of the batch, for the sharded likelihood passes (none in one process). */
  get #batchShard(): BatchShard | undefined {
    return this.world.size > 1 ? { world: this.world, sequences: shareOf(this.#o.promptsPerStep, this.#o.groupSize, this.world).rows } : undefined;
  }

  get #modelFrozen(): boolean {
    return this.#o.sampler?.mode === 'sampler-only';
  }

  /**
   * Trains until `steps` steps have been taken in all. `onRollout` sees each step's rollouts, rewards
   * and first-iteration old log-probs before any update (for logging samples or checking the loss).
   */
  async train(options: {
    steps: number;
    /** A wall-clock budget: no step starts after it has run out (the last step is checkpointed). */
    maxSeconds?: number;
    signal?: AbortSignal;
    /** After each step (and its checkpoint); what it returns is added to the step's line of metrics.jsonl. */
    onStep?: (info: DiffpoStepInfo) => StepExtras | Promise<StepExtras>;
    onRollout?: (r: DiffpoRollout) => void | Promise<void>;
  }): Promise<DiffpoStepInfo | null> {
    const o = this.#o;
    const { steps, signal } = options;
    positiveInt('steps', steps);
    const { maxSeconds } = options;
    if (maxSeconds !== undefined && !(maxSeconds > 0)) throw new InvalidArgumentError(`maxSeconds must be a number > 0, got ${maxSeconds}`);
    const deadline = performance.now() + (maxSeconds ?? Infinity) * 1000;
    // the KL's reference policy: a LoRA model's base (its adapters off, no copy), else a frozen copy
    const reference = o.beta > 0 ? (this.model.lora ? { model: this.model, adapters: false } : { model: await this.#referenceModel(), adapters: true }) : null;
    if (o.weightAverage > 0 && !this.#average) this.#updateAverage();
    if (this.head && !this.head.calibrated) await this.#calibrateHead(signal);
    const log = await StepLog.open(this.world.rank === 0 ? o.outDir : undefined, this.step);
    let last: DiffpoStepInfo | null = null;
    while (this.step < steps) {
      const step = this.step + 1;
      let t0 = performance.now();
      const r = await this.#rollouts(step, this.#mixture.batch(o.promptsPerStep, this.step), 0, signal);
      const drawn = {
        meanReward: mean(r.rewards),
        zeroVariance: zeroVarianceFraction(r.rewards, o.groupSize),
        accuracy: r.correct.filter(Boolean).length / r.correct.length,
        meanNfe: mean(r.rollout.nfe),
      };
      let resampledGroups = 0;
      for (let round = 1; round <= o.resampleFlatGroups; round++) {
        const flat = flatGroups(r.rewards, o.groupSize);
        if (flat.length === 0) break;
        const fresh = await this.#rollouts(step, this.#mixture.redraw(flat.map((g) => r.items[g * o.groupSize]!)), round, signal);
        replaceGroups(r, fresh, flat, o.groupSize, o.genLength);
        if (this.head) r.strategy = this.head.strategy(r.choices);
        resampledGroups += flat.length;
      }
      const { texts, rewards, correct } = r;
      const advantages = groupAdvantages(rewards, o.groupSize, o.advantage);
      const tokenMask = this.#tokenMask(r.rollout.tokens, rewards);
      const learns = !this.#modelFrozen && tokenMask.some((m) => m === 1);
      const meanThreshold = this.#updateHead(r, rewards, correct);
      const rolloutS = (performance.now() - t0) / 1000;
      t0 = performance.now();
      const batch = { prompts: r.prompts, completions: r.rollout.tokens, decodeStep: r.rollout.decodeStep };
      const tokensPerForward = this.#tokensPerForward(longest(batch.prompts) + o.genLength);
      const old = learns ? await this.#oldLogProbs(batch, step, reference, tokensPerForward, signal) : [];
      const likelihoodS = (performance.now() - t0) / 1000;
      await options.onRollout?.({ step, items: r.items, rollout: r.rollout, texts, rewards, advantages, tokenMask, logpOld: old[0]?.logp ?? null });
      t0 = performance.now();
      const lr = scheduledLr(o, step, steps);
      let res: PolicyLossResult | null = null;
      // LoRA dropout's masks: the step's own, each process's own (old and reference log-probs have none)
      if (this.model.lora?.dropout) await this.model.seedDropout(deriveSeed(o.seed, 'lora-dropout', step, this.world.rank));
      for (const it of old) {
        await this.model.zeroGrad();
        res = await policyLoss(
          this.model,
          { ...batch, advantages, logpOld: it.logp, logpBehaviour: o.method === 'diffpo' ? r.rollout.behaviourLogProb : undefined, logpRef: it.ref, tokenMask, clipEps: o.clipEps, isCap: o.isCap, beta: o.beta },
          it.plan,
          { backward: true, signal, shard: this.#batchShard, maxTokensPerForward: tokensPerForward },
        );
        // the shares' gradients sum to the batch's, before the clip and the update see them
        await this.world.allReduceSum(this.model.flatGradients());
        await this.optimizer.step({ lr, signal });
      }
      if (o.weightAverage > 0) this.#updateAverage();
      this.step = step;
      last = {
        step,
        steps,
        ...drawn,
        zeroVarianceTrained: zeroVarianceFraction(rewards, o.groupSize),
        resampledGroups,
        loss: res?.loss ?? 0,
        klMean: res?.klMean ?? 0,
        clipFraction: res?.clipFraction ?? 0,
        isWeightMean: res?.isWeightMean ?? 1,
        isWeightMax: res?.isWeightMax ?? 1,
        truncatedFraction: res?.truncatedFraction ?? 0,
        meanThreshold,
        lr,
        thresholdDistribution: this.head ? this.head.grid.map((value, k) => ({ value, fraction: r.choices.filter((c) => c === k).length / r.choices.length })) : undefined,
        seconds: { rollout: rolloutS, likelihood: likelihoodS, update: (performance.now() - t0) / 1000 },
        ...(tokensPerForward && { tokensPerForward }),
      };
      // every process must stop at the same step: rank 0's clock decides
      const outOfTime = await this.#agree(performance.now() >= deadline);
      if (o.outDir && this.world.rank === 0 && ((o.checkpointEvery > 0 && step % o.checkpointEvery === 0) || step === steps || outOfTime)) await this.save(o.outDir);
      await log.append(last, await options.onStep?.(last));
      if (outOfTime) break;
    }
    return last;
  }

  /**
   * Rollouts: G completions of each prompt from the current (behaviour) policy, scored. Every process
   * draws the whole batch; each decodes its share (with the rows' own noise streams), and the shares
   * are gathered so rewards, advantages and the head's update are computed alike everywhere. Round 0
   * is the step's batch, later rounds resampleFlatGroups' fresh prompts (with noise of their own).
   */
  async #rollouts(step: number, prompted: TaskItem[], round: number, signal?: AbortSignal): Promise<Rollouts> {
    const o = this.#o;
    const share = shareOf(prompted.length, o.groupSize, this.world);
    const items = prompted.flatMap((item) => new Array<TaskItem>(o.groupSize).fill(item));
    const encode = (list: TaskItem[]) => list.map(({ task, item }) => encodePrompt(task, item, this.tokenizer));
    const prompts = encode(items);
    let strategy: DecodingStrategy = o.strategy ?? thresholdStrategy();
    let features: Float64Array[] = [],
      choices: number[] = [];
    if (this.head) {
      // each rollout draws its own threshold from the head's distribution for its prompt
      const n = this.head.inputs;
      const myPrompts = prompted.slice(share.prompts.start, share.prompts.end);
      const mine = myPrompts.length > 0 ? await this.head.featuresOf(this.model, encode(myPrompts), { genLength: o.genLength, signal }) : [];
      const local = new Float64Array(mine.length * n);
      mine.forEach((f, i) => local.set(f, i * n));
      const all = await gatherRows(this.world, local, share.prompts, prompted.length, n);
      const perPrompt = prompted.map((_, i) => all.slice(i * n, (i + 1) * n));
      features = perPrompt.flatMap((f) => new Array(o.groupSize).fill(f));
      choices = features.map((f) => this.head!.sample(f, this.#rng));
      strategy = this.head.strategy(choices);
    } else if (o.rolloutThresholds.length > 0) {
      const cycle = o.rolloutThresholds;
      strategy = { kind: 'threshold', threshold: Float32Array.from(items, (_, b) => cycle[(b % o.groupSize) % cycle.length]!) };
    }
    // a process whose share of a small resampling round is empty still joins the gather
    const mine =
      share.rows.end > share.rows.start
        ? await generate(this.model, prompts.slice(share.rows.start, share.rows.end), {
            genLength: o.genLength,
            blockLength: o.blockLength,
            strategy: strategyForSequences(strategy, share.rows),
            temperature: o.temperature,
            seed: round === 0 ? deriveSeed(o.seed, 'rollout', step) : deriveSeed(o.seed, 'rollout', step, round),
            firstSequence: share.rows.start,
            signal,
          })
        : EMPTY_ROLLOUT;
    const rollout = await gatherRollout(this.world, mine, share.rows, items.length, o.genLength);
    const texts = items.map((_, b) => this.tokenizer.decode(rollout.tokens.subarray(b * o.genLength, (b + 1) * o.genLength)));
    const rewards = this.#rewards(items, texts, rollout.nfe);
    const correct = items.map(({ task, item }, b) => task.correct(item, texts[b]!));
    return { items, prompts, rollout, strategy, features, choices, texts, rewards, correct };
  }

  /**
   * Standardises the learned head's inputs on HEAD_CALIBRATION_PROMPTS prompts of the training tasks,
   * drawn from a stream of their own (the data stream is unchanged) and never from `exclude`.
   */
  async #calibrateHead(signal?: AbortSignal): Promise<void> {
    const o = this.#o;
    const rng = new Rng(deriveSeed(o.seed, 'head-calibration'));
    const exclude = new Set(o.exclude ?? []);
    const prompts: Int32Array[] = [];
    for (let tries = 0; prompts.length < HEAD_CALIBRATION_PROMPTS && tries < 100 * HEAD_CALIBRATION_PROMPTS; tries++) {
      const task = this.tasks[tries % this.tasks.length]!;
      const item = task.generate(rng);
      if (!exclude.has(task.key(item))) prompts.push(encodePrompt(task, item, this.tokenizer));
    }
    this.head!.calibrate(await this.head!.featuresOf(this.model, prompts, { genLength: o.genLength, signal }));
  }

  /** Rank 0's value of a flag, on every process. */
  async #agree(flag: boolean): Promise<boolean> {
    if (this.world.size === 1) return flag;
    const v = Uint8Array.of(flag ? 1 : 0);
    await this.world.broadcast(v, 0);
    return v[0] === 1;
  }

  /** Each completion's task reward plus the extra reward terms, less the NFE cost. */
  #rewards(items: TaskItem[], texts: string[], nfe: Int32Array): number[] {
    const { rewardFns = [], nfeCost, genLength } = this.#o;
    const rewards = items.map(({ task, item }, b) => rewardFns.reduce((r, f) => r + f(texts[b]!, item, task), task.reward(item, texts[b]!)) - (nfeCost * nfe[b]!) / genLength);
    const bad = rewards.find((r) => !Number.isFinite(r));
    if (bad !== undefined) throw new InvalidArgumentError(`a reward is not a finite number (${bad})`);
    return rewards;
  }

  /** 1 for the tokens the loss covers: each completion up to and including its first EOS (none of a flat group's with dropFlatGroups). */
  #tokenMask(tokens: Int32Array, rewards: number[]): Uint8Array {
    const { genLength: L, groupSize: G, dropFlatGroups } = this.#o;
    const mask = new Uint8Array(tokens.length);
    const flat = new Set(dropFlatGroups ? flatGroups(rewards, G) : []);
    for (let b = 0; b < tokens.length / L; b++) {
      if (flat.has(Math.floor(b / G))) continue;
      for (let i = 0; i < L; i++) {
        mask[b * L + i] = 1;
        if (tokens[b * L + i] === this.tokenizer.eosId) break;
      }
    }
    return mask;
  }

  /** With a learned sampler, one policy-gradient step of the head on r - lambda * NFE / L; returns the mean threshold the rollouts used. */
  #updateHead(r: Rollouts, rewards: number[], correct: boolean[]): number {
    const s = r.strategy;
    const sampler = this.#sampler;
    if (!this.head || !sampler) {
      if (s.kind !== 'threshold') return NaN;
      return typeof s.threshold === 'number' ? s.threshold : s.threshold.reduce((a, t) => a + t, 0) / s.threshold.length;
    }
    const L = this.#o.genLength;
    const costed = samplerRewards(rewards, r.rollout.nfe, correct, { genLength: L, lambda: sampler.lambda, cost: sampler.cost });
    this.head.update(r.features, r.choices, groupAdvantages(costed, this.#o.groupSize, this.#o.advantage), sampler.lr);
    return r.choices.reduce((a, k) => a + this.head!.grid[k]!, 0) / r.choices.length;
  }

  /** The surrogate's passes for every inner iteration, with old (and reference) log-probs, all before any update. */
  async #oldLogProbs(
    batch: { prompts: Int32Array[]; completions: Int32Array; decodeStep: Int32Array },
    step: number,
    reference: { model: DiffusionLM; adapters: boolean } | null,
    maxTokensPerForward: number | undefined,
    signal?: AbortSignal,
  ) {
    const o = this.#o;
    const out: { plan: EstimatorPlan; logp: Float32Array; ref?: Float32Array }[] = [];
    for (let it = 0; it < o.innerIterations; it++) {
      // planned for the whole batch (the same random choices everywhere), run for this process's share
      const plan = planEstimate(this.model, batch, { estimator: ESTIMATOR[o.method], pMaskPrompt: o.pMaskPrompt, seed: deriveSeed(o.seed, 'estimator', step, it) });
      const run = { signal, shard: this.#batchShard, maxTokensPerForward };
      const logp = await runPlan(this.model, batch, plan, run);
      out.push({ plan, logp, ref: reference ? await runPlan(reference.model, batch, plan, { ...run, adapters: reference.adapters }) : undefined });
    }
    return out;
  }

  /**
   * Writes a resumable checkpoint: the model folder (F32), the optimizer, the data RNG, the frozen
   * reference and the weights' average (a model folder of its own, `average/`, to evaluate as is).
   */
  async save(dir: string): Promise<void> {
    const reference = this.#reference ? await this.#reference : null;
    await commitCheckpoint(dir, this.step, async (staging) => {
      const folder = { tokenizer: this.tokenizer, genLength: this.#o.genLength, task: this.tasks.map((t) => t.name).join('+'), dtype: 'f32' as const };
      await writeModelFolder(staging, this.model, folder);
      await saveOptimizer(staging, this.optimizer);
      if (reference) await reference.save(join(staging, 'reference'), { dtype: 'f32' });
      if (this.#average) {
        const average = this.#modelWith(this.#average);
        try {
          await writeModelFolder(join(staging, 'average'), average, folder);
        } finally {
          average.dispose();
        }
      }
      await writeFile(join(staging, 'trainer_state.json'), JSON.stringify({ step: this.step, rng: this.#rng.getState(), seed: this.#o.seed }, null, 2) + '\n');
    });
  }

  /** Restores a checkpoint written by save() (same options, without the model: it is loaded from dir). */
  static async resume(dir: string, options: Omit<DiffpoOptions, 'model'> & ModelOptions): Promise<DiffpoTrainer> {
    const state = await readTrainerState<{ step: number; rng: number[]; seed: number }>(dir);
    const model = await DiffusionLM.fromPretrained(dir, { threads: options.threads, backend: options.backend, checkpointing: options.checkpointing });
    const saved = model.extras;
    const trainer = new DiffpoTrainer({ ...options, model, seed: state.seed });
    await loadOptimizer(dir, trainer.optimizer);
    trainer.#rng.setState(state.rng);
    trainer.step = state.step;
    if (trainer.head && saved) {
      // the head as trained so far, not the fresh one the constructor attached
      model.extras = saved;
      trainer.head = samplerHeadOf(model);
    }
    if (trainer.#o.weightAverage > 0 && existsSync(join(dir, 'average', 'config.json'))) {
      const average = await DiffusionLM.fromPretrained(join(dir, 'average'), { threads: 1 });
      trainer.#average = new Map([...average.parameters()].map(([name, p]) => [name, Float32Array.from(p)]));
      average.dispose();
    }
    if (existsSync(join(dir, 'reference', 'config.json'))) trainer.#reference = DiffusionLM.fromPretrained(join(dir, 'reference'), { threads: options.threads, backend: model.backend });
    return trainer;
  }

  /** Frees the frozen reference copy. */
  async dispose(): Promise<void> {
    if (this.#reference) (await this.#reference).dispose();
    this.#reference = null;
  }
}
