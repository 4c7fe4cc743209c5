import { appendFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { writeFileAtomic } from '../checkpoint.js';
import type { BackendName } from '../backend.js';
import { CheckpointError, InvalidArgumentError } from '../errors.js';
import { evaluate, type EvaluateResult } from '../evaluate.js';
import { DiffusionLM } from '../model.js';
import { AdamW, checkSchedule, scheduledLr } from '../optim.js';
import { Rng } from '../rng.js';
import type { GenerateOptions } from '../sampler.js';
import { encodeSftPairs, responseLengthOf } from '../tasks/encode.js';
import { TaskMixture, type Task } from '../tasks/task.js';
import { loadOptimizer, saveOptimizer } from './state.js';
import { CharTokenizer } from '../tokenizer.js';

export interface SftOptions {
  /** The task, or `tasks` for multi-task SFT (each batch cycles through them, one shared vocabulary). */
  task?: Task<unknown>;
  tasks?: Task<unknown>[];
  tokenizer?: CharTokenizer;
  /** Sequences per step (default 32). */
  batchSize?: number;
  /** Peak learning rate (default 1e-3), reached after `warmup` steps (default 20). */
  lr?: number;
  warmup?: number;
  /** 'cosine' (default: down to lr/10 at the last step) or 'constant'. */
  schedule?: 'cosine' | 'constant';
  maxGradNorm?: number;
  weightDecay?: number;
  betas?: [number, number];
  /** Response tokens per sequence including EOS padding (default: longest of 256 generated responses + 1). */
  responseLength?: number;
  /** Keys (Task.key) of items that training must never see, e.g. the test set's. */
  exclude?: Iterable<string>;
  /** Evaluate every N steps (0 = never) on evalItems (items of the first task) with evalSampler. */
  evalEvery?: number;
  evalItems?: unknown[];
  evalSampler?: Omit<GenerateOptions, 'genLength' | 'signal' | 'onStep'>;
  /** Save a resumable checkpoint to outDir every N steps (0 = only at the end). */
  checkpointEvery?: number;
  outDir?: string;
  seed?: number;
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
  readonly tokenizer: CharTokenizer;
  readonly responseLength: number;
  readonly optimizer: AdamW;
  step = 0;
  readonly #o: Required<Pick<SftOptions, 'batchSize' | 'lr' | 'warmup' | 'schedule' | 'evalEvery' | 'checkpointEvery' | 'seed'>> & SftOptions;
  readonly #rng: Rng;
  readonly #mixture: TaskMixture;

  constructor(model: DiffusionLM, options: SftOptions) {
    if (!options || typeof options !== 'object') throw new InvalidArgumentError('SftTrainer needs an options object with a task');
    const given = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) as SftOptions;
    this.#o = { batchSize: 32, lr: 1e-3, warmup: 20, schedule: 'cosine', evalEvery: 0, checkpointEvery: 0, seed: 0, ...given };
    const o = this.#o;
    for (const [k, v] of Object.entries({ batchSize: o.batchSize, warmup: o.warmup + 1, evalEvery: o.evalEvery + 1, checkpointEvery: o.checkpointEvery + 1 }))
      if (!Number.isInteger(v) || v < 1) throw new InvalidArgumentError(`${k} must be a ${k === 'batchSize' ? 'positive' : 'non-negative'} integer`);
    checkSchedule(o);
    if (o.evalEvery > 0 && !o.evalItems?.length) throw new InvalidArgumentError('evalEvery needs evalItems');
    if (o.checkpointEvery > 0 && !o.outDir) throw new InvalidArgumentError('checkpointEvery needs outDir');
    this.model = model;
    this.#rng = new Rng(o.seed);
    this.#mixture = new TaskMixture(o, this.#rng, new Set(o.exclude ?? []), 'SftTrainer');
    const tasks = (this.tasks = this.#mixture.tasks);
    this.task = tasks[0]!;
    this.tokenizer = o.tokenizer ?? new CharTokenizer();
    if (this.tokenizer.vocabSize !== model.config.vocab_size || this.tokenizer.maskId !== model.config.mask_token_id)
      throw new InvalidArgumentError(`the tokenizer (vocab ${this.tokenizer.vocabSize}, mask ${this.tokenizer.maskId}) does not match the model's config (vocab ${model.config.vocab_size}, mask ${model.config.mask_token_id})`);
    const probe = new Rng(o.seed + 1);
    this.responseLength = o.responseLength ?? Math.max(...tasks.map((t) => responseLengthOf(t, Array.from({ length: 256 }, () => t.generate(probe)), this.tokenizer)));
    this.optimizer = new AdamW(model, { lr: o.lr, betas: o.betas ?? [0.9, 0.99], weightDecay: o.weightDecay ?? 0.1, maxGradNorm: o.maxGradNorm ?? 1 });
  }

  /** Learning rate at a 1-based step of a run of `total` steps. */
  lrAt(step: number, total: number): number {
    return scheduledLr(this.#o, step, total);
  }

  /** Trains until `steps` steps have been taken in all (so a resumed run continues to the same end). */
  async train(options: { steps: number; signal?: AbortSignal; onStep?: (info: SftStepInfo) => void | Promise<void> }): Promise<SftStepInfo | null> {
    const { steps, signal } = options;
    if (!Number.isInteger(steps) || steps < 1) throw new InvalidArgumentError(`steps must be a positive integer, got ${steps}`);
    const o = this.#o;
    if (o.outDir) {
      await mkdir(o.outDir, { recursive: true });
      if (this.step === 0) await writeFile(join(o.outDir, 'metrics.jsonl'), ''); // a fresh run starts a fresh log
    }
    let last: SftStepInfo | null = null;
    while (this.step < steps) {
      const t0 = performance.now();
      const enc = encodeSftPairs(this.#mixture.batch(o.batchSize, this.step), this.tokenizer, this.responseLength);
      const step = this.step + 1;
      await this.model.zeroGrad();
      const { loss } = await this.model.maskedDiffusionLoss(
        {
          tokens: enc.tokens,
          batch: enc.batch,
          seqLen: enc.seqLen,
          attentionMask: enc.attentionMask,
          positions: enc.positions,
          normalization: 'sft',
          promptLengths: new Array(enc.batch).fill(enc.promptLength),
          seed: o.seed * 1_000_003 + step, // masks depend on the step alone, so a resumed run draws the same
        },
        { backward: true, signal },
      );
      const lr = this.lrAt(step, steps);
      const { gradNorm } = await this.optimizer.step({ lr, signal });
      this.step = step;
      const info: SftStepInfo = { step, steps, loss, lr, gradNorm, seconds: (performance.now() - t0) / 1000 };
      if (o.evalEvery > 0 && (step % o.evalEvery === 0 || step === steps)) {
        const { completions, ...r } = await evaluate(this.model, this.task, { items: o.evalItems!, tokenizer: this.tokenizer, genLength: this.responseLength, sampler: o.evalSampler, signal });
        void completions;
        info.eval = r;
      }
      if (o.outDir) await appendFile(join(o.outDir, 'metrics.jsonl'), JSON.stringify(info) + '\n');
      if (o.outDir && ((o.checkpointEvery > 0 && step % o.checkpointEvery === 0) || step === steps)) await this.save(o.outDir);
      last = info;
      await options.onStep?.(info);
    }
    return last;
  }

  /** Writes what inference needs: the model, tokenizer.json and generation_config.json (the response length). */
  async export(dir: string, dtype: 'f32' | 'bf16' = 'bf16'): Promise<void> {
    await mkdir(dir, { recursive: true });
    await this.model.save(dir, { dtype });
    await writeFileAtomic(join(dir, 'tokenizer.json'), JSON.stringify(this.tokenizer.toJSON()));
    await writeFileAtomic(join(dir, 'generation_config.json'), JSON.stringify({ task: this.tasks.map((t) => t.name).join('+'), gen_length: this.responseLength }, null, 2) + '\n');
  }

  /** Writes a resumable checkpoint: export() in F32, plus the optimizer moments and trainer state. */
  async save(dir: string): Promise<void> {
    await this.export(dir, 'f32');
    await saveOptimizer(dir, this.optimizer);
    const state: TrainerState = { step: this.step, rng: this.#rng.getState(), responseLength: this.responseLength, seed: this.#o.seed };
    await writeFileAtomic(join(dir, 'trainer_state.json'), JSON.stringify(state, null, 2) + '\n');
  }

  /** Restores a checkpoint written by save() into a trainer with the same options (model included). */
  static async resume(dir: string, options: SftOptions & { threads?: number; backend?: BackendName }): Promise<SftTrainer> {
    let state: TrainerState;
    try {
      state = JSON.parse(await readFile(join(dir, 'trainer_state.json'), 'utf8'));
    } catch (err) {
      throw new CheckpointError(`cannot resume from ${dir}: ${(err as Error).message}`, { cause: err });
    }
    const model = await DiffusionLM.fromPretrained(dir, { threads: options.threads, backend: options.backend });
    const trainer = new SftTrainer(model, { ...options, seed: state.seed, responseLength: state.responseLength });
    await loadOptimizer(dir, trainer.optimizer);
    trainer.#rng.setState(state.rng);
    trainer.step = state.step;
    return trainer;
  }
}
