import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';

import { writeFileAtomic } from '../checkpoint.js';
import type { BackendName } from '../backend.js';
import { CheckpointError, InvalidArgumentError } from '../errors.js';
import type { EstimatorOptions } from '../likelihood.js';
import { planEstimate, runPlan } from '../likelihood.js';
import { DiffusionLM } from '../model.js';
import { AdamW, checkSchedule, scheduledLr } from '../optim.js';
import { Rng } from '../rng.js';
import type { DecodingStrategy, GenerateResult } from '../sampler.js';
import { TaskMixture, type Task } from '../tasks/task.js';
import { ThresholdHead } from '../threshold-head.js';
import { CharTokenizer } from '../tokenizer.js';
import { loadOptimizer, saveOptimizer } from './state.js';

/** 'd1': mean-field surrogate, no importance weight; 'diffpo': two-stage surrogate with the truncated importance weight; 'trace': the exact trajectory likelihood. */
export type RlMethod = 'd1' | 'diffpo' | 'trace';

/** An extra reward term (TRL's reward_funcs): added to the task's own reward of each completion. */
export type RewardFn = (completion: string, item: unknown, task: Task<unknown>) => number;

export interface DiffpoOptions {
  model: DiffusionLM;
  /** The task to train on, or `tasks` for a mixture (each step's prompts cycle through them). */
  task?: Task<unknown>;
  tasks?: Task<unknown>[];
  /** Extra reward terms summed with each task's reward (default none). */
  rewardFns?: RewardFn[];
  tokenizer?: CharTokenizer;
  method?: RlMethod;
  /** Tokens generated per rollout (the task's response length with EOS padding). */
  genLength: number;
  blockLength?: number;
  /** Rollout decoding (default threshold 0.9) and temperature (default 1). */
  strategy?: DecodingStrategy;
  temperature?: number;
  /** Prompts per step and completions per prompt G (defaults 8 and 6). */
  promptsPerStep?: number;
  groupSize?: number;
  /** Inner iterations mu over each batch of rollouts (default 2). */
  innerIterations?: number;
  clipEps?: number;
  isCap?: number;
  /** k3 KL coefficient against a frozen copy of the starting model (default 0.04; 0 skips the reference). */
  beta?: number;
  pMaskPrompt?: number;
  /** 'mean' (d1: r - mean of the group) or 'mean-std' (also divided by the group's std). */
  advantage?: 'mean' | 'mean-std';
  /** AdamW: peak learning rate (default 1e-4), after `warmup` steps (default 0), then 'constant' (default) or 'cosine' to lr/10. */
  lr?: number;
  warmup?: number;
  schedule?: 'cosine' | 'constant';
  betas?: [number, number];
  weightDecay?: number;
  maxGradNorm?: number;
  exclude?: Iterable<string>;
  seed?: number;
  /**
   * The rollout threshold: 'fixed' (default: `strategy`), or a learned per-prompt threshold (§6) on a
   * grid, trained jointly with the model ('learned') or alone with the model frozen ('sampler-only'),
   * rewarded by r - lambda * NFE / genLength.
   */
  sampler?: { mode: 'fixed' } | { mode: 'learned' | 'sampler-only'; grid: number[]; lambda: number; kind?: 'threshold' | 'entropy'; lr?: number };
  /** Save a resumable checkpoint to outDir every N steps (0: only at the end, when outDir is set). */
  checkpointEvery?: number;
  outDir?: string;
}

export interface DiffpoStepInfo {
  step: number;
  steps: number;
  meanReward: number;
  accuracy: number;
  meanNfe: number;
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

/** Group-relative advantages: rewards minus their group's mean (divided by the group's std with 'mean-std'). */
export function groupAdvantages(rewards: ArrayLike<number>, groupSize: number, mode: 'mean' | 'mean-std' = 'mean'): Float32Array {
  const out = new Float32Array(rewards.length);
  for (let g = 0; g < rewards.length; g += groupSize) {
    const group = Array.from({ length: groupSize }, (_, i) => rewards[g + i]!);
    const mean = group.reduce((a, r) => a + r, 0) / groupSize;
    const std = Math.sqrt(group.reduce((a, r) => a + (r - mean) ** 2, 0) / Math.max(1, groupSize - 1));
    group.forEach((r, i) => (out[g + i] = mode === 'mean-std' ? (r - mean) / (std + 1e-4) : r - mean));
  }
  return out;
}

/**
 * The DiFFPO RL trainer (ALGORITHMS.md §5), model-only with a fixed sampler: rollouts of G completions
 * per prompt, group-relative advantages, and mu inner iterations of the clipped objective with the
 * chosen surrogate (d1's mean-field, DiFFPO's two-stage with truncated importance weights, or the
 * exact trajectory likelihood), k3 KL against the starting model, AdamW.
 */
export class DiffpoTrainer {
  readonly model: DiffusionLM;
  /** The first (or only) task. */
  readonly task: Task<unknown>;
  readonly tasks: Task<unknown>[];
  readonly tokenizer: CharTokenizer;
  readonly optimizer: AdamW;
  /** The learned sampler head (sampler modes 'learned' and 'sampler-only'). */
  head: ThresholdHead | null = null;
  step = 0;
  readonly #o: DiffpoOptions & Required<Pick<DiffpoOptions, 'method' | 'promptsPerStep' | 'groupSize' | 'innerIterations' | 'clipEps' | 'isCap' | 'beta' | 'pMaskPrompt' | 'advantage' | 'seed' | 'temperature' | 'lr' | 'warmup' | 'schedule'>>;
  readonly #rng: Rng;
  readonly #mixture: TaskMixture;
  #reference: Promise<DiffusionLM> | null = null;

  constructor(options: DiffpoOptions) {
    const given = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) as DiffpoOptions;
    this.#o = { method: 'diffpo', promptsPerStep: 8, groupSize: 6, innerIterations: 2, clipEps: 0.5, isCap: 2, beta: 0.04, pMaskPrompt: 0.15, advantage: 'mean', seed: 0, temperature: 1, lr: 1e-4, warmup: 0, schedule: 'constant', ...given };
    const o = this.#o;
    if (!['d1', 'diffpo', 'trace'].includes(o.method)) throw new InvalidArgumentError(`method must be 'd1', 'diffpo' or 'trace', got ${String(o.method)}`);
    for (const [k, v] of Object.entries({ promptsPerStep: o.promptsPerStep, groupSize: o.groupSize, innerIterations: o.innerIterations, genLength: o.genLength }))
      if (!Number.isInteger(v) || (v as number) < 1) throw new InvalidArgumentError(`${k} must be a positive integer, got ${String(v)}`);
    if (o.groupSize < 2) throw new InvalidArgumentError(`groupSize must be at least 2 (advantages are group-relative${o.advantage === 'mean-std' ? ' and mean-std divides by the group std' : ''}), got ${o.groupSize}`);
    if (o.advantage !== 'mean' && o.advantage !== 'mean-std') throw new InvalidArgumentError(`advantage must be 'mean' or 'mean-std', got ${String(o.advantage)}`);
    if (!(o.isCap > 0 && Number.isFinite(o.isCap))) throw new InvalidArgumentError(`isCap must be a finite number > 0, got ${o.isCap}`);
    if (!(o.clipEps > 0 && Number.isFinite(o.clipEps))) throw new InvalidArgumentError(`clipEps must be a finite number > 0, got ${o.clipEps}`);
    if (!(o.beta >= 0 && Number.isFinite(o.beta))) throw new InvalidArgumentError(`beta must be a finite number >= 0, got ${o.beta}`);
    if (!(o.pMaskPrompt >= 0 && o.pMaskPrompt < 1)) throw new InvalidArgumentError(`pMaskPrompt must be in [0, 1), got ${o.pMaskPrompt}`);
    if (!(o.temperature >= 0 && Number.isFinite(o.temperature))) throw new InvalidArgumentError(`temperature must be a finite number >= 0, got ${o.temperature}`);
    if (o.rewardFns && (!Array.isArray(o.rewardFns) || o.rewardFns.some((f) => typeof f !== 'function'))) throw new InvalidArgumentError('rewardFns must be an array of functions');
    this.#rng = new Rng(o.seed);
    this.#mixture = new TaskMixture(o, this.#rng, new Set(o.exclude ?? []), 'DiffpoTrainer');
    this.tasks = this.#mixture.tasks;
    this.model = o.model;
    this.task = this.tasks[0]!;
    this.tokenizer = o.tokenizer ?? new CharTokenizer();
    checkSchedule(o);
    this.optimizer = new AdamW(o.model, { lr: o.lr, betas: o.betas ?? [0.9, 0.99], weightDecay: o.weightDecay ?? 0.1, maxGradNorm: o.maxGradNorm ?? 0.2 });
    const s = o.sampler ?? { mode: 'fixed' };
    if (s.mode === 'learned' || s.mode === 'sampler-only') {
      if (!(Number.isFinite(s.lambda) && s.lambda >= 0)) throw new InvalidArgumentError(`sampler.lambda must be a finite number >= 0, got ${s.lambda}`);
      this.head = new ThresholdHead({ grid: s.grid, dModel: o.model.config.d_model, kind: s.kind });
      o.model.samplerHead = this.head; // saved with the model's checkpoints
    } else if (s.mode !== 'fixed') throw new InvalidArgumentError(`sampler.mode must be 'fixed', 'learned' or 'sampler-only'`);
  }

  /** A frozen copy of the starting weights (made on first use), for the KL term. */
  async #referenceModel(): Promise<DiffusionLM> {
    this.#reference ??= (async () => {
      const ref = DiffusionLM.create(this.model.config, { threads: this.model.threads, backend: this.model.backend });
      const dst = ref.parameters();
      for (const [name, p] of this.model.parameters()) dst.get(name)!.set(p);
      return ref;
    })();
    return this.#reference;
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
    onStep?: (info: DiffpoStepInfo) => void | Promise<void>;
    onRollout?: (r: DiffpoRollout) => void | Promise<void>;
  }): Promise<DiffpoStepInfo | null> {
    const o = this.#o;
    const { steps, signal } = options;
    if (!Number.isInteger(steps) || steps < 1) throw new InvalidArgumentError(`steps must be a positive integer, got ${steps}`);
    const { maxSeconds } = options;
    if (maxSeconds !== undefined && !(maxSeconds > 0)) throw new InvalidArgumentError(`maxSeconds must be a number > 0, got ${maxSeconds}`);
    const deadline = performance.now() + (maxSeconds ?? Infinity) * 1000;
    const reference = o.beta > 0 ? await this.#referenceModel() : null;
    const estimator: EstimatorOptions['estimator'] = o.method === 'd1' ? 'mean-field' : o.method === 'diffpo' ? 'two-stage' : 'trajectory';
    let last: DiffpoStepInfo | null = null;
    while (this.step < steps) {
      const step = this.step + 1;
      // rollouts: G completions of each prompt from the current (behaviour) policy
      let t0 = performance.now();
      const items = this.#mixture.batch(o.promptsPerStep, this.step);
      const groupItems = items.flatMap((item) => new Array<(typeof items)[number]>(o.groupSize).fill(item));
      const encode = (list: typeof items) => list.map(({ task, item }) => this.tokenizer.encode(task.prompt(item)));
      const prompts = encode(groupItems);
      let strategy: DecodingStrategy = o.strategy ?? { kind: 'threshold', threshold: 0.9 };
      let features: Float64Array[] = [],
        choices: number[] = [];
      if (this.head) {
        // each rollout draws its own threshold from the head's distribution for its prompt
        const perItem = await ThresholdHead.features(this.model, encode(items), signal);
        features = perItem.flatMap((f) => new Array(o.groupSize).fill(f));
        choices = features.map((f) => this.head!.sample(f, this.#rng));
        strategy = this.head.strategy(choices);
      }
      const rollout = await this.model.generate(prompts, {
        genLength: o.genLength,
        blockLength: o.blockLength,
        strategy,
        temperature: o.temperature,
        seed: o.seed * 1_000_003 + step,
        signal,
      });
      const L = o.genLength;
      const texts = groupItems.map((_, b) => this.tokenizer.decode(rollout.tokens.subarray(b * L, (b + 1) * L)));
      const rewards = groupItems.map(({ task, item }, b) => (o.rewardFns ?? []).reduce((r, f) => r + f(texts[b]!, item, task), task.reward(item, texts[b]!)));
      if (rewards.some((r) => !Number.isFinite(r))) throw new InvalidArgumentError(`a reward is not a finite number (${rewards.find((r) => !Number.isFinite(r))})`);
      const advantages = groupAdvantages(rewards, o.groupSize, o.advantage);
      // the loss covers each completion up to and including its first EOS
      const tokenMask = new Uint8Array(rollout.tokens.length);
      for (let b = 0; b < groupItems.length; b++)
        for (let i = 0; i < L; i++) {
          tokenMask[b * L + i] = 1;
          if (rollout.tokens[b * L + i] === this.tokenizer.eosId) break;
        }
      let meanThreshold = strategy.kind === 'threshold' && typeof strategy.threshold === 'number' ? strategy.threshold : NaN;
      const sampler = o.sampler;
      if (this.head && sampler && sampler.mode !== 'fixed') {
        // the head's reward trades correctness against compute
        const R = rewards.map((r, b) => r - (sampler.lambda * rollout.nfe[b]!) / L);
        this.head.update(features, choices, groupAdvantages(R, o.groupSize, o.advantage), sampler.lr ?? 0.5);
        meanThreshold = choices.reduce((a, k) => a + this.head!.grid[k]!, 0) / choices.length;
      }
      const rolloutS = (performance.now() - t0) / 1000;
      const modelFrozen = sampler?.mode === 'sampler-only';
      // the surrogate's passes for every inner iteration, with old (and reference) log-probs, before any update
      t0 = performance.now();
      const batch = { prompts, completions: rollout.tokens, decodeStep: rollout.decodeStep };
      const plans = [],
        olds = [],
        refs = [];
      for (let it = 0; it < (modelFrozen ? 0 : o.innerIterations); it++) {
        const plan = planEstimate(this.model, batch, { estimator, pMaskPrompt: o.pMaskPrompt, seed: o.seed * 7919 + step * 31 + it });
        plans.push(plan);
        olds.push(await runPlan(this.model, batch, plan, { signal }));
        refs.push(reference ? await runPlan(reference, batch, plan, { signal }) : undefined);
      }
      const likelihoodS = (performance.now() - t0) / 1000;
      await options.onRollout?.({ step, items: groupItems, rollout, texts, rewards, advantages, tokenMask, logpOld: olds[0] ?? null });
      t0 = performance.now();
      let res = null;
      const lr = scheduledLr(o, step, steps);
      for (let it = 0; it < (modelFrozen ? 0 : o.innerIterations); it++) {
        await this.model.zeroGrad();
        res = await this.model.policyLoss(
          {
            ...batch,
            advantages,
            logpOld: olds[it]!,
            logpBehaviour: o.method === 'diffpo' ? rollout.behaviourLogProb : undefined,
            logpRef: refs[it],
            tokenMask,
            clipEps: o.clipEps,
            isCap: o.isCap,
            beta: o.beta,
          },
          plans[it]!,
          { backward: true, signal },
        );
        await this.optimizer.step({ lr, signal });
      }
      this.step = step;
      last = {
        step,
        steps,
        meanReward: rewards.reduce((a, r) => a + r, 0) / rewards.length,
        accuracy: groupItems.filter(({ task, item }, b) => task.correct(item, texts[b]!)).length / groupItems.length,
        meanNfe: rollout.nfe.reduce((a, n) => a + n, 0) / rollout.nfe.length,
        loss: res?.loss ?? 0,
        klMean: res?.klMean ?? 0,
        clipFraction: res?.clipFraction ?? 0,
        isWeightMean: res?.isWeightMean ?? 1,
        isWeightMax: res?.isWeightMax ?? 1,
        truncatedFraction: res?.truncatedFraction ?? 0,
        meanThreshold,
        lr,
        thresholdDistribution: this.head ? this.head.grid.map((value, k) => ({ value, fraction: choices.filter((c) => c === k).length / choices.length })) : undefined,
        seconds: { rollout: rolloutS, likelihood: likelihoodS, update: (performance.now() - t0) / 1000 },
      };
      const every = o.checkpointEvery ?? 0;
      const outOfTime = performance.now() >= deadline;
      if (o.outDir && ((every > 0 && step % every === 0) || step === steps || outOfTime)) await this.save(o.outDir);
      await options.onStep?.(last);
      if (outOfTime) break;
    }
    return last;
  }

  /** Writes a resumable checkpoint: the model (F32) with its tokenizer, the optimizer, the data RNG and the frozen reference. */
  async save(dir: string): Promise<void> {
    await mkdir(dir, { recursive: true });
    await this.model.save(dir, { dtype: 'f32' });
    await writeFileAtomic(join(dir, 'tokenizer.json'), JSON.stringify(this.tokenizer.toJSON()));
    await writeFileAtomic(join(dir, 'generation_config.json'), JSON.stringify({ task: this.tasks.map((t) => t.name).join('+'), gen_length: this.#o.genLength }, null, 2) + '\n');
    await saveOptimizer(dir, this.optimizer);
    if (this.#reference) await (await this.#reference).save(join(dir, 'reference'), { dtype: 'f32' });
    await writeFileAtomic(join(dir, 'trainer_state.json'), JSON.stringify({ step: this.step, rng: this.#rng.getState(), seed: this.#o.seed }, null, 2) + '\n');
  }

  /** Restores a checkpoint written by save() (same options, without the model: it is loaded from dir). */
  static async resume(dir: string, options: Omit<DiffpoOptions, 'model'> & { threads?: number; backend?: BackendName }): Promise<DiffpoTrainer> {
    let state: { step: number; rng: number[]; seed: number };
    try {
      state = JSON.parse(await readFile(join(dir, 'trainer_state.json'), 'utf8'));
    } catch (err) {
      throw new CheckpointError(`cannot resume from ${dir}: ${(err as Error).message}`, { cause: err });
    }
    const model = await DiffusionLM.fromPretrained(dir, { threads: options.threads, backend: options.backend });
    const savedHead = model.samplerHead;
    const trainer = new DiffpoTrainer({ ...options, model, seed: state.seed });
    await loadOptimizer(dir, trainer.optimizer);
    trainer.#rng.setState(state.rng);
    trainer.step = state.step;
    if (trainer.head && savedHead) model.samplerHead = trainer.head = savedHead;
    if (existsSync(join(dir, 'reference', 'config.json'))) trainer.#reference = DiffusionLM.fromPretrained(join(dir, 'reference'), { threads: options.threads, backend: model.backend });
    return trainer;
  }

  /** Frees the frozen reference copy. */
  async dispose(): Promise<void> {
    if (this.#reference) (await this.#reference).dispose();
    this.#reference = null;
  }
}
