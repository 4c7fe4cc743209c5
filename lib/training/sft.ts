import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { nonNegativeInt, positiveInt } from '../core/checks.js';
import { InvalidArgumentError } from '../core/errors.js';
import { defaultsOf, option, withDefaults, type DefaultsOf } from '../core/options.js';
import { Rng } from '../core/rng.js';
import { deriveSeed } from '../core/seeds.js';
import { evaluate, type EvaluateResult } from '../decoding/evaluate.js';
import type { GenerateOptions } from '../decoding/sampler.js';
import type { BackendName } from '../engine/backend.js';
import { shardRange, worldFromEnvironment, type Collective } from '../engine/collective.js';
import { DiffusionLM } from '../engine/model.js';
import { maskedDiffusionLoss } from '../likelihood/masked-diffusion.js';
import { encodeSftPairs, responseLengthOf } from '../tasks/encode.js';
import { TaskMixture, type Task } from '../tasks/task.js';
import { CharTokenizer, checkTokenizerFits, type TextTokenizer } from '../tasks/tokenizer.js';
import { commitCheckpoint, readTrainerState } from './checkpoint-set.js';
import { writeModelFolder } from './model-folder.js';
import { AdamW } from './optimizer.js';
import { loadOptimizer, saveOptimizer } from './optimizer-state.js';
import { checkSchedule, scheduledLr } from './schedule.js';
import { StepLog, type StepExtras } from './step-log.js';

/**
 * The SFT trainer's options with their defaults, each with its reason (the CLI's `sft` flags and help
 * are generated from these).
 */
export const SFT_DEFAULTS = {
  batchSize: option(32, 'sequences per step: with 1-6M-parameter models, 32 keeps a step under a second on 2 cores', { integer: true }),
  lr: option(1e-3, 'peak AdamW learning rate: small models from scratch tolerate (and need) a large rate'),
  warmup: option(20, 'linear warmup steps, so the first random-init gradients do not blow the weights up', { integer: true }),
  schedule: option<'cosine' | 'constant'>('cosine', "'cosine' down to a tenth of lr at the last step, or 'constant'", { choices: ['cosine', 'constant'] }),
  maxGradNorm: option(1, 'global gradient-norm clip'),
  weightDecay: option(0.1, 'decoupled weight decay on weight matrices (not norms)'),
  betas: option<[number, number]>([0.9, 0.99], "AdamW's moment decays", { flag: false }),
  evalEvery: option(0, 'evaluate every N steps on evalItems (0: never)', { integer: true }),
  checkpointEvery: option(0, 'save a resumable checkpoint to outDir every N steps (0: only at the end)', { integer: true }),
  seed: option(0, 'seed of the data stream and of the masks (derived per step with deriveSeed, so a resumed run draws the same)', { integer: true }),
} as const;

export type SftDefaults = DefaultsOf<typeof SFT_DEFAULTS>;

export interface SftOptions extends Partial<SftDefaults> {
  /** The task, or `tasks` for multi-task SFT (each batch cycles through them, one shared vocabulary). */
  task?: Task<unknown>;
  tasks?: Task<unknown>[];
  tokenizer?: TextTokenizer;
  /** Response tokens per sequence including EOS padding (default: longest of 256 generated responses + 1). */
  responseLength?: number;
  /** Keys (Task.key) of items that training must never see, e.g. the test set's. */
  exclude?: Iterable<string>;
  /** Items of the first task to evaluate on (with evalEvery), decoded with evalSampler. */
  evalItems?: unknown[];
  evalSampler?: Omit<GenerateOptions, 'genLength' | 'signal' | 'onStep'>;
  /** Where metrics.jsonl and checkpoints go (rank 0 of a data-parallel job alone writes). */
  outDir?: string;
  /**
   * The data-parallel job (default worldFromEnvironment(): the MPI world under mpirun, else one
   * process). batchSize is the global batch: every process draws it and its masks, computes its share
   * of the sequences, and the shares' gradients are summed before clipping and AdamW.
   */
  world?: Collective;
}

export interface SftStepInfo {
  step: number;
  steps: number;
  loss: number;
  lr: number;
  gradNorm: number;
  seconds: number;
  eval?: Omit<EvaluateResult, 'completions'>;
}

interface TrainerState {
  step: number;
  rng: number[];
  responseLength: number;
  seed: number;
}

/**
 * Supervised fine-tuning with LLaDA's SFT loss: prompts never masked, responses (with their EOS
 * padding) masked at a random ratio. AdamW with warmup and a cosine schedule, periodic evaluation,
 * JSONL metrics, and checkpoints that resume bit-exactly (weights, optimizer moments, data RNG).
 */
export class SftTrainer {
  readonly model: DiffusionLM;
  /** The first (or only) task; evaluation uses it. */
  readonly task: Task<unknown>;
  readonly tasks: Task<unknown>[];
  readonly tokenizer: TextTokenizer;
  readonly responseLength: number;
  readonly optimizer: AdamW;
  readonly world: Collective;
  step = 0;
  readonly #o: SftDefaults & SftOptions;
  readonly #rng: Rng;
  readonly #mixture: TaskMixture;

  constructor(model: DiffusionLM, options: SftOptions) {
    if (!options || typeof options !== 'object') throw new InvalidArgumentError('SftTrainer needs an options object with a task');
    const o = (this.#o = withDefaults(defaultsOf(SFT_DEFAULTS), options));
    positiveInt('batchSize', o.batchSize);
    for (const k of ['warmup', 'evalEvery', 'checkpointEvery'] as const) nonNegativeInt(k, o[k]);
    checkSchedule(o);
    if (o.evalEvery > 0 && !o.evalItems?.length) throw new InvalidArgumentError('evalEvery needs evalItems');
    if (o.checkpointEvery > 0 && !o.outDir) throw new InvalidArgumentError('checkpointEvery needs outDir');
    this.model = model;
    this.#rng = new Rng(o.seed);
    this.#mixture = new TaskMixture(o, this.#rng, new Set(o.exclude ?? []), 'SftTrainer');
    const tasks = (this.tasks = this.#mixture.tasks);
    this.task = tasks[0]!;
    this.tokenizer = o.tokenizer ?? new CharTokenizer();
    checkTokenizerFits(this.tokenizer, model.config);
    const probe = new Rng(o.seed + 1);
    this.responseLength = o.responseLength ?? Math.max(...tasks.map((t) => responseLengthOf(t, Array.from({ length: 256 }, () => t.generate(probe)), this.tokenizer)));
    this.optimizer = new AdamW(model, { lr: o.lr, betas: o.betas, weightDecay: o.weightDecay, maxGradNorm: o.maxGradNorm });
    this.world = o.world ?? worldFromEnvironment();
    if (o.batchSize < this.world.size) throw new InvalidArgumentError(`batchSize (${o.batchSize}) must be at least the number of processes (${this.world.size})`);
  }

  /** Learning rate at a 1-based step of a run of `total` steps. */
  lrAt(step: number, total: number): number {
    return scheduledLr(this.#o, step, total);
  }

  /** Trains until `steps` steps have been taken in all (so a resumed run continues to the same end). */
  /**
   * Trains until `steps` steps have been taken in all (so a resumed run continues to the same end).
   * `onStep` may return fields to add to the step's line of metrics.jsonl.
   */
  async train(options: { steps: number; signal?: AbortSignal; onStep?: (info: SftStepInfo) => StepExtras | Promise<StepExtras> }): Promise<SftStepInfo | null> {
    const { steps, signal } = options;
    positiveInt('steps', steps);
    const o = this.#o;
    const outDir = this.world.rank === 0 ? o.outDir : undefined;
    const log = await StepLog.open(outDir, this.step);
    let last: SftStepInfo | null = null;
    while (this.step < steps) {
      const t0 = performance.now();
      const enc = encodeSftPairs(this.#mixture.batch(o.batchSize, this.step), this.tokenizer, this.responseLength);
      const step = this.step + 1;
      await this.model.zeroGrad();
      const share = await maskedDiffusionLoss(
        this.model,
        {
          tokens: enc.tokens,
          batch: enc.batch,
          seqLen: enc.seqLen,
          attentionMask: enc.attentionMask,
          positions: enc.positions,
          normalization: 'sft',
          promptLengths: new Array(enc.batch).fill(enc.promptLength),
          seed: deriveSeed(o.seed, 'sft-masks', step), // masks depend on the step alone, so a resumed run draws the same
        },
        { backward: true, signal, sequences: shardRange(enc.batch, this.world) },
      );
      // each process holds its sequences' share of the loss and gradient; their sums are the batch's
      const loss = await this.#sum(share.loss);
      await this.world.allReduceSum(this.model.flatGradients());
      const lr = this.lrAt(step, steps);
      const { gradNorm } = await this.optimizer.step({ lr, signal });
      this.step = step;
      const info: SftStepInfo = { step, steps, loss, lr, gradNorm, seconds: (performance.now() - t0) / 1000 };
      if (o.evalEvery > 0 && (step % o.evalEvery === 0 || step === steps)) {
        const { completions, ...r } = await evaluate(this.model, this.task, { items: o.evalItems!, tokenizer: this.tokenizer, genLength: this.responseLength, sampler: o.evalSampler, signal, world: this.world });
        void completions;
        info.eval = r;
      }
      if (outDir && ((o.checkpointEvery > 0 && step % o.checkpointEvery === 0) || step === steps)) await this.save(outDir);
      last = info;
      await log.append(info, await options.onStep?.(info));
    }
    return last;
  }

  async #sum(x: number): Promise<number> {
    const v = Float64Array.of(x);
    await this.world.allReduceSum(v);
    return v[0]!;
  }

  /** Writes what inference needs: the model folder (weights, tokenizer.json, generation_config.json with the response length). */
  async export(dir: string, dtype: 'f32' | 'bf16' = 'bf16'): Promise<void> {
    await writeModelFolder(dir, this.model, { tokenizer: this.tokenizer, genLength: this.responseLength, task: this.tasks.map((t) => t.name).join('+'), dtype });
  }

  /** Writes a resumable checkpoint: export() in F32, plus the optimizer moments and trainer state. */
  async save(dir: string): Promise<void> {
    const state: TrainerState = { step: this.step, rng: this.#rng.getState(), responseLength: this.responseLength, seed: this.#o.seed };
    await commitCheckpoint(dir, this.step, async (staging) => {
      await this.export(staging, 'f32');
      await saveOptimizer(staging, this.optimizer);
      await writeFile(join(staging, 'trainer_state.json'), JSON.stringify(state, null, 2) + '\n');
    });
  }

  /** Restores a checkpoint written by save() into a trainer with the same options (model included). */
  static async resume(dir: string, options: SftOptions & { threads?: number; backend?: BackendName }): Promise<SftTrainer> {
    const state = await readTrainerState<TrainerState>(dir);
    const model = await DiffusionLM.fromPretrained(dir, { threads: options.threads, backend: options.backend });
    const trainer = new SftTrainer(model, { ...options, seed: state.seed, responseLength: state.responseLength });
    await loadOptimizer(dir, trainer.optimizer);
    trainer.#rng.setState(state.rng);
    trainer.step = state.step;
    return trainer;
  }
}
