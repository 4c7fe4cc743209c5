import { existsSync, readdirSync, rmSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { InvalidArgumentError } from '../core/errors.js';
import { ensureDir } from '../core/files.js';
import { evaluate } from '../decoding/evaluate.js';
import { ONE_TOKEN_PER_STEP } from '../decoding/strategy.js';
import { worldFromEnvironment } from '../engine/collective.js';
import type { LoraOptions } from '../engine/lora.js';
import { DiffusionLM, type ModelOptions } from '../engine/model.js';
import { encodePrompts } from '../tasks/encode.js';
import { resolveGenLength, type Difficulty, type Task } from '../tasks/task.js';
import type { Sudoku4Solutions } from '../tasks/sudoku4.js';
import { DIFFPO_DEFAULTS, DiffpoTrainer, SAMPLER_DEFAULTS, type DiffpoDefaults, type SamplerDefaults } from '../training/diffpo.js';
import { readModelFolder } from '../training/model-folder.js';
import { givenFlags, parseDifficulty, type FlagValues } from './cli-flags.js';
import { paretoSweep, type ParetoPoint } from './pareto.js';
import { itemProgress, Progress } from './progress.js';
import { runReport, type HeadChoices } from './report.js';
import type { RunResult } from './run-sets.js';

/** The thresholds `diffpo train` sweeps before and after (above 1: one token per step). */
export const RUN_SWEEP: readonly number[] = [0.5, 0.7, 0.9, 0.95, ONE_TOKEN_PER_STEP];

/** What `diffpo train` uses for a task unless its flags say otherwise (see RL_RECIPES). */
export interface RlRecipe {
  /** The training items' difficulty, and for sudoku4 the kind of puzzle. */
  difficulty?: Difficulty;
  solutions?: Sudoku4Solutions;
  /** countdown3: the fraction of training items that need a search. */
  searchFraction?: number;
  /** DiffpoTrainer options that differ from its defaults for this task. */
  trainer?: Partial<DiffpoDefaults>;
  /** The learned sampler's grid (default SAMPLER_DEFAULTS.grid). */
  headGrid?: number[];
  /** RL steps (default: the `--steps` flag's). */
  steps?: number;
  /** The before/after sweep's thresholds (default RUN_SWEEP). */
  sweep?: number[];
}

/**
 * Each task's RL recipe. Found in the recipe search of 2026-11-30 to 12-01 (docs/results/archive/),
 * on test-set curves, before validation sets existed; measured since on validation and test sets by
 * docs/results/countdown3-main/ and docs/results/sudoku4-job/. sudoku4: training on unique 8-empty
 * puzzles left 96-98% of groups flat and moved nothing; puzzles with 8-10 empty cells that may have
 * several solutions, credited for any, give RL something to learn. countdown3: rollouts all at 0.9
 * left 75-100% of groups flat, mixed rollout thresholds 0.7-0.99 bring that to 25-75%; training items
 * are all signed sums (the base never solves one that needs a search, so those groups are all wrong),
 * and two rounds of resampling the flat groups leave 15-17% of the batch flat. Its 64 steps fit the
 * main job in about 10 minutes on 2 cores (a cosine from 5e-5 after 10 warmup steps: +4.8 ± 2.4 points
 * over the base's hull at equal NFE on the test set, +6.1 ± 1.9 on the validation set, four seeds;
 * +5.0 ± 1.8 and +6.2 ± 1.4 over eight, two sets of four with different rollout noise).
 * One token per step (96 forwards an item) would be 80% of the sweeps' time: the main job leaves it
 * out. The learned sampler's grid is 0.7 / 0.9, where a per-prompt threshold has room on this base
 * (0.5 / 0.9 would spend its loose choice where the base solves 0.29).
 */
export const RL_RECIPES: Partial<Record<string, RlRecipe>> = {
  sudoku4: { difficulty: [8, 10], solutions: 'any' },
  countdown3: {
    searchFraction: 0,
    steps: 64,
    sweep: [0.5, 0.7, 0.9, 0.95],
    trainer: { lr: 5e-5, warmup: 10, schedule: 'cosine', rolloutThresholds: [0.7, 0.8, 0.9, 0.9, 0.95, 0.99], resampleFlatGroups: 2 },
    headGrid: [0.7, 0.9],
  },
};

/**
 * `diffpo train`'s options for a task from its parsed flags: the task's recipe replaces the defaults,
 * and flags given on the command line replace the recipe. With a learned sampler the recipe's rollout
 * thresholds are dropped (the sampler chooses them).
 */
export function recipeOptions(
  task: string,
  v: FlagValues,
): { difficulty?: Difficulty; solutions?: Sudoku4Solutions; searchFraction?: number; trainer: Partial<DiffpoDefaults>; headGrid: number[]; steps: number; sweep: number[] } {
  const recipe = RL_RECIPES[task] ?? {};
  const given = givenFlags.get(v) ?? new Set<string>();
  const options = (keep: (k: string) => boolean) => Object.fromEntries(Object.keys(DIFFPO_DEFAULTS).filter((k) => v[k] !== undefined && keep(k)).map((k) => [k, v[k]]));
  const trainer = { ...options((k) => !given.has(k)), ...recipe.trainer, ...options((k) => given.has(k)) } as Partial<DiffpoDefaults>;
  if (v.sampler !== undefined && v.sampler !== 'fixed' && !given.has('rolloutThresholds')) delete trainer.rolloutThresholds;
  return {
    difficulty: parseDifficulty(v.difficulty as string | undefined) ?? recipe.difficulty,
    solutions: (v.solutions as Sudoku4Solutions | undefined) ?? recipe.solutions,
    searchFraction: (v.searchFraction as number | undefined) ?? recipe.searchFraction,
    trainer,
    headGrid: given.has('headGrid') ? (v.headGrid as number[]) : [...(recipe.headGrid ?? SAMPLER_DEFAULTS.grid.default)],
    steps: given.has('steps') ? (v.steps as number) : (recipe.steps ?? (v.steps as number)),
    sweep: given.has('sweep') ? (v.sweep as number[]) : [...(recipe.sweep ?? (v.sweep as number[] | undefined) ?? RUN_SWEEP)],
  };
}

/** The shipped base checkpoint of a task. */
export const shippedBase = (task: string): string => fileURLToPath(new URL(`../../../models/${task}-base`, import.meta.url));

export interface RlRunOptions {
  /** The task evaluated on `testItems`. */
  task: Task<unknown>;
  /** The task's training items (default `task`), e.g. a harder or mixed difficulty of it. */
  trainTask?: Task<unknown>;
  /** Items scored once, before and after (never trained on, never chosen on). */
  testItems: unknown[];
  /**
   * Items that choices are made on (never trained on): `evalEvery`'s curve, and a sweep before and
   * after beside the test set's, so seeds, steps and recipes are picked without the test set.
   */
  validationItems?: unknown[];
  /** The command line that made the run, recorded in result.json. */
  command?: string;
  /** The starting model folder (default: the shipped base of the task). */
  from?: string;
  /** The run's folder: checkpoints, metrics.jsonl, the report, result.json. */
  out: string;
  /** Total RL steps (a resumed run continues to this count). */
  steps: number;
  resume?: boolean;
  /** Rollout and evaluation threshold. */
  threshold: number;
  /** Seconds of training after which no step starts. */
  timeBudget?: number;
  /** The thresholds swept on the test items before and after (default RUN_SWEEP; above 1: one token per step); `threshold` is always among them. */
  sweep?: readonly number[];
  /**
   * Every this many steps, accuracy and mean NFE on the validation items at `threshold` (with a
   * learned sampler: its learned point), logged in that step's metrics.jsonl line as
   * `validationAccuracy` and `validationNfe` (0 or absent: only before and after).
   */
  evalEvery?: number;
  sampler: 'fixed' | 'learned' | 'sampler-only';
  /** The learned sampler's NFE cost. */
  lambda: number;
  /** The learned sampler's features, starting value and reward form (see DiffpoOptions.sampler). */
  head?: Partial<Omit<SamplerDefaults, 'lambda'>>;
  /** DiffpoTrainer options (its defaults for the rest). */
  trainer: Partial<DiffpoDefaults>;
  /** Tokens per answer (default: the starting folder's gen_length, else the task's). */
  genLength?: number;
  /**
   * Train LoRA adapters on the frozen starting model (loaded in its own dtype: a BF16 folder stays
   * BF16) instead of all its weights; checkpoints are adapter folders. A's seed: the trainer's.
   */
  lora?: LoraOptions;
  model?: ModelOptions;
  /** Where progress lines go (default stderr). */
  log?: (line: string) => void;
}

export interface RlRunResult {
  /** The before/after table (Markdown). */
  table: string;
  /** report.html, or null when nothing was evaluated (no test items). */
  report: string | null;
  result: RunResult;
}

/**
 * One RL run as an experiment: the frontier of the starting model on the test items (a threshold
 * sweep), DiFFPO training with progress and metrics.jsonl, the frontier again, and the report
 * (report.html and .md, pareto.svg, steps.svg, result.json) in `out`. Under mpirun every process runs
 * it (training and evaluation are data-parallel) and rank 0 alone writes `out`.
 */
export async function runRl(o: RlRunOptions): Promise<RlRunResult> {
  const created = !existsSync(o.out);
  try {
    return await rlRun(o);
  } catch (err) {
    // a run that failed before writing anything leaves no empty folder behind
    if (created && worldFromEnvironment().rank === 0 && existsSync(o.out) && readdirSync(o.out).length === 0) rmSync(o.out, { recursive: true, force: true });
    throw err;
  }
}

async function rlRun(o: RlRunOptions): Promise<RlRunResult> {
  if (o.evalEvery !== undefined && !(Number.isInteger(o.evalEvery) && o.evalEvery >= 0))
    throw new InvalidArgumentError(`evalEvery must be an integer >= 0 (steps between validation evaluations), got ${o.evalEvery}`);
  if (o.evalEvery && !o.validationItems?.length) throw new InvalidArgumentError(`evalEvery evaluates on the validation set, and task '${o.task.name}' was given none`);
  const bad = (o.sweep ?? []).find((t) => !(Number.isFinite(t) && t > 0));
  if (bad !== undefined) throw new InvalidArgumentError(`sweep thresholds must be positive numbers (above 1: one token per step), got ${bad}`);
  const log = o.log ?? ((line: string) => void process.stderr.write(line + '\n'));
  const { task, out, steps, threshold } = o;
  const base = o.from ?? shippedBase(task.name);
  if (o.from === undefined && !existsSync(base))
    throw new InvalidArgumentError(`task '${task.name}' has no shipped base checkpoint (models/${task.name}-base): give the model to start from with --from DIR (a LLaDA-8B-Instruct folder, for instance)`);
  const from = o.resume ? out : base;
  const folder = await readModelFolder(from);
  const { tokenizer } = folder;
  const genLength = resolveGenLength(task as Task<unknown>, o.genLength, folder.genLength);
  // in a data-parallel job every process computes, rank 0 alone writes (the trainer's checkpoints too)
  const lead = worldFromEnvironment().rank === 0;
  const write = async (file: string, text: string) => void (lead && (await writeFile(file, text)));
  if (lead) await ensureDir(out);
  const test = o.testItems;
  const validation = o.validationItems ?? [];
  const thresholds = [...new Set([...(o.sweep ?? RUN_SWEEP), threshold])].sort((a, b) => a - b);
  const options = {
    ...o.trainer,
    task: o.trainTask ?? task,
    tokenizer,
    genLength,
    strategy: { kind: 'threshold' as const, threshold },
    exclude: [...test, ...validation].map((t) => task.key(t)),
    outDir: out,
    sampler: o.sampler === 'fixed' ? ({ mode: 'fixed' } as const) : { mode: o.sampler, lambda: o.lambda, ...o.head, grid: o.head?.grid ?? [...SAMPLER_DEFAULTS.grid.default] },
  };
  const start = async () => {
    const m = await DiffusionLM.fromPretrained(base, { ...o.model, ...(o.lora && { dtype: 'auto' as const }) });
    if (o.lora) await m.addLora({ seed: o.trainer.seed ?? 0, ...o.lora }).catch((err) => (m.dispose(), Promise.reject(err)));
    return m;
  };
  const rl = o.resume ? await DiffpoTrainer.resume(out, { ...options, ...o.model }) : new DiffpoTrainer({ ...options, model: await start() });
  const model = rl.model;
  const method = o.trainer.method ?? DIFFPO_DEFAULTS.method.default;
  try {
    const sweepOn = async (items: unknown[], split: string, of = model) => {
      const bar = itemProgress(`${split} sweep (${thresholds.length} decodings of ${items.length} items)`);
      try {
        return await paretoSweep(of, task, { items, tokenizer, genLength, thresholds, onProgress: bar.onProgress });
      } finally {
        bar.done();
      }
    };
    // the test set's sweep, and the validation set's beside it when there is one
    const sweep = async (of = model) => ({ test: await sweepOn(test, 'test', of), validation: validation.length ? await sweepOn(validation, 'validation', of) : undefined });
    // a run with a learned sampler is judged by its learned point, others at the run's threshold
    const evaluateAt = (m: DiffusionLM, items = validation) =>
      evaluate(m, task, { items, tokenizer, genLength, sampler: { strategy: rl.head ? { kind: 'learned', head: rl.head } : { kind: 'threshold', threshold } } });
    // with weightAverage the run's result is the averaged model (the checkpoint's average/ folder)
    const averaging = (o.trainer.weightAverage ?? 0) > 0;
    const withAverage = async <T>(f: (m: DiffusionLM) => Promise<T>): Promise<T> => {
      const m = rl.averagedModel();
      try {
        return await f(m);
      } finally {
        m.dispose();
      }
    };
    // no test items (--limit 0): training alone, e.g. to time or size a step of a large model
    const evaluating = test.length > 0;
    if (evaluating) log(`evaluating ${o.resume ? `${out} (step ${rl.step})` : base} on ${test.length} test${validation.length ? ` and ${validation.length} validation` : ''} items at ${thresholds.length} thresholds...`);
    const before = evaluating ? await sweep() : null;
    const progress = new Progress(steps, 10);
    const first = rl.step;
    try {
      await rl.train({
        steps,
        maxSeconds: o.timeBudget,
        onStep: async (i) => {
          // every process evaluates (evaluation is data-parallel under mpirun); rank 0 writes
          const due = o.evalEvery && i.step % o.evalEvery === 0;
          const now = due ? await evaluateAt(model) : undefined;
          const averaged = due && averaging ? await withAverage((m) => evaluateAt(m)) : undefined;
          progress.update(i.step, `reward ${i.meanReward.toFixed(3)}  acc ${i.accuracy.toFixed(3)}  flat ${(100 * i.zeroVariance).toFixed(0)}%${i.resampledGroups > 0 ? ` -> ${(100 * i.zeroVarianceTrained).toFixed(0)}%` : ''}  NFE ${i.meanNfe.toFixed(2)}  tau ${i.meanThreshold.toFixed(2)}  KL ${i.klMean.toFixed(4)}  clip ${i.clipFraction.toFixed(3)}  IS ${i.isWeightMean.toFixed(2)}/${i.isWeightMax.toFixed(2)}`, first);
          // the trainer adds these to the step's line of metrics.jsonl
          return {
            ...(now && { validationAccuracy: now.accuracy, validationNfe: now.meanNfe }),
            ...(averaged && { validationAccuracyAveraged: averaged.accuracy, validationNfeAveraged: averaged.meanNfe }),
          };
        },
      });
    } finally {
      progress.done();
      await rl.dispose();
    }
    const seconds = progress.seconds;
    if (!before) {
      const result = { task: task.name, method, sampler: o.sampler, seed: o.trainer.seed ?? 0, steps: rl.step, seconds, peakRssBytes: process.resourceUsage().maxRSS * 1024, command: o.command, options: { ...o.trainer, ...(model.lora && { lora: model.lora }) } };
      await write(join(out, 'result.json'), JSON.stringify(result, null, 2) + '\n');
      return { table: `${rl.step} ${method} steps in ${seconds.toFixed(1)} s, peak RSS ${(result.peakRssBytes / 2 ** 30).toFixed(2)} GiB (no evaluation: --limit 0)`, report: null, result: result as unknown as RunResult };
    }
    log(`evaluating the trained model${averaging ? `'s weight average (${join(out, 'average')})` : ''}...`);
    const after = averaging ? await withAverage(sweep) : await sweep();
    const raw = averaging ? await evaluateAt(model, test) : undefined;
    const rawValidation = averaging && validation.length ? await evaluateAt(model) : undefined;
    let learned: ParetoPoint | undefined, learnedValidation: ParetoPoint | undefined;
    let choices: HeadChoices | undefined;
    if (rl.head) {
      const learnedOn = async (items: unknown[]): Promise<ParetoPoint> => {
        const r = await evaluate(model, task, { items, tokenizer, genLength, sampler: { strategy: { kind: 'learned' } } });
        return { label: 'learned threshold', strategy: { kind: 'learned' }, accuracy: r.accuracy, meanReward: r.meanReward, meanNfe: r.meanNfe };
      };
      learned = await learnedOn(test);
      if (validation.length) learnedValidation = await learnedOn(validation);
      if (task.difficulty) {
        const { head } = rl;
        const features = await head.featuresOf(model, encodePrompts(task, test, tokenizer), { genLength });
        const of = task.difficulty.of;
        const levels = [...new Set(test.map((x) => of(x)))].sort((a, b) => a - b);
        const rows = levels.map((difficulty) => ({ difficulty, counts: head.grid.map(() => 0) }));
        test.forEach((x, i) => rows[levels.indexOf(of(x))]!.counts[head.mostLikely(features[i]!)]!++);
        choices = { difficulty: task.difficulty.name, grid: head.grid, rows };
      }
    }
    const at = (points: ParetoPoint[]) => points.find((p) => p.strategy.kind === 'threshold' && p.strategy.threshold === threshold)!;
    const b = at(before.test),
      a = learned ?? at(after.test);
    const row = (name: string, p: Pick<ParetoPoint, 'accuracy' | 'meanReward' | 'meanNfe'>) => `| ${name} | ${p.accuracy.toFixed(3)} | ${p.meanReward.toFixed(3)} | ${p.meanNfe.toFixed(2)} |`;
    const table = [
      `| model | accuracy | mean reward | mean NFE |`,
      `|---|---|---|---|`,
      row(o.resume ? 'resumed run' : o.from ?? `${task.name}-base`, b),
      row(`after ${rl.step} ${method} steps${learned ? ` (${o.sampler} sampler)` : ''}${averaging ? ' (weight average)' : ''}`, a),
      ...(raw ? [row(`after ${rl.step} ${method} steps (last step's weights)`, raw)] : []),
    ].join('\n');
    const metrics = join(out, 'metrics.jsonl');
    const history = lead ? (await readFile(metrics, 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l)) : [];
    const seed = o.trainer.seed ?? 0;
    const mixed = o.trainer.rolloutThresholds?.length ? o.trainer.rolloutThresholds : undefined;
    const rollouts = learned ? `rollouts at the learned threshold (lambda ${o.lambda})` : mixed ? `rollouts at thresholds ${mixed.join(', ')} in turn within each group` : `rollouts at threshold ${threshold}`;
    const report = runReport({
      title: `${task.name}: ${method} RL${learned ? ` with a ${o.sampler} threshold` : ''}`,
      summary: `${rl.step} RL steps from ${o.resume ? 'a resumed run' : `${task.name}-base`} in ${seconds.toFixed(0)} s (seed ${seed}${averaging ? `, the weights' moving average at decay ${o.trainer.weightAverage} evaluated` : ''}, ${rollouts}); evaluated on ${test.length} test items${validation.length ? ` (and ${validation.length} validation items, the curve's)` : ''}, greedy decoding, the table's row at threshold ${threshold}.`,
      before: before.test,
      after: after.test,
      learned,
      choices,
      metrics: history,
    });
    await write(join(out, 'report.md'), report.markdown);
    await write(join(out, 'report.html'), report.html);
    await write(join(out, 'pareto.svg'), report.paretoSvg);
    await write(join(out, 'steps.svg'), report.stepsSvg);
    await write(join(out, 'kl.svg'), report.klSvg);
    const result = {
      task: task.name,
      method,
      sampler: o.sampler,
      lambda: learned ? o.lambda : undefined,
      seed,
      steps: rl.step,
      seconds,
      // this process's peak resident memory over the whole run (weights, optimizer, reference, activations, decoding)
      peakRssBytes: process.resourceUsage().maxRSS * 1024,
      testItems: test.length,
      threshold,
      before: before.test,
      after: after.test,
      learned,
      choices,
      validation:
        before.validation && after.validation
          ? {
              items: validation.length,
              before: before.validation,
              after: after.validation,
              learned: learnedValidation,
              ...(rawValidation && { lastWeights: { accuracy: rawValidation.accuracy, meanReward: rawValidation.meanReward, meanNfe: rawValidation.meanNfe } }),
            }
          : undefined,
      command: o.command,
      options: { ...o.trainer, sampler: o.sampler, ...(o.sampler !== 'fixed' && { lambda: o.lambda, head: o.head }), ...(model.lora && { lora: model.lora }) },
      // with weightAverage, `after` is the average's; this is the last step's own weights at the run's threshold
      ...(raw && { lastWeights: { accuracy: raw.accuracy, meanReward: raw.meanReward, meanNfe: raw.meanNfe } }),
    };
    await write(join(out, 'result.json'), JSON.stringify(result, null, 2) + '\n');
    return { table, report: join(out, 'report.html'), result };
  } finally {
    model.dispose();
  }
}
