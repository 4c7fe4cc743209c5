import { existsSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

import { InvalidArgumentError } from '../core/errors.js';
import { readJsonFile } from '../core/files.js';
import { meanStd, paretoCompare, paretoSvg, type ParetoPoint } from './pareto.js';
import type { HeadChoices } from './report.js';

/** A finished run's result.json, as `diffpo train` (runRl) writes it. */
export interface RunResult {
  task: string;
  method: string;
  sampler: string;
  lambda?: number;
  seed: number;
  steps: number;
  seconds: number;
  /** The run's peak resident memory (runs since LoRA; older result.json files lack it). */
  peakRssBytes?: number;
  testItems: number;
  threshold: number;
  /** The test set's sweeps (and learned point): scored once, reported. */
  before: ParetoPoint[];
  after: ParetoPoint[];
  learned?: ParetoPoint;
  choices?: HeadChoices;
  /** With a weight average, the last step's own weights at the run's threshold (`after` is the average's). */
  lastWeights?: Pick<ParetoPoint, 'accuracy' | 'meanReward' | 'meanNfe'>;
  /** The same on the validation set: what choices are made on. */
  validation?: { items: number; before: ParetoPoint[]; after: ParetoPoint[]; learned?: ParetoPoint; lastWeights?: Pick<ParetoPoint, 'accuracy' | 'meanReward' | 'meanNfe'> };
  /** How the run was made: the command line and the trainer's options as given (defaults for the rest). */
  command?: string;
  options?: Record<string, unknown>;
}

/** A finished run as `diffpo train` leaves it: its folder and result.json. */
export interface RunRecord {
  dir: string;
  result: RunResult;
}

/** Which evaluation a summary reads: the test set (reported) or the validation set (chosen on). */
export type Split = 'test' | 'validation';

/** The mean ± sample std over a set's seeds of one value, with the per-seed values in seed order. */
export interface SeedStat {
  values: number[];
  mean: number;
  std: number;
}

/** One decoding of a run set: its accuracy and NFE over seeds, and where that lies against the baseline's frontier. */
export interface RunSetRow {
  /** 'threshold 0.9' or 'learned threshold'. */
  decoding: string;
  accuracy: SeedStat;
  meanNfe: SeedStat;
  /** Accuracy minus the baseline frontier's at the same NFE, in points (null for a seed cheaper than every baseline point). */
  gainAtEqualNfe: SeedStat | null;
  /** NFE the baseline frontier needs for the same accuracy, minus the run's (null for a seed more accurate than every baseline point). */
  nfeSaved: SeedStat | null;
}

/** Runs that differ only in their seed, summarised. */
export interface RunSet {
  /** The runs' folder with the seed part of its name taken off (`.../rs2-300-s1` -> `.../rs2-300`). */
  name: string;
  dirs: string[];
  seeds: number[];
  task: string;
  method: string;
  sampler: string;
  steps: number;
  seconds: SeedStat;
  /** What the gains are measured against: 'each run's starting model' or the --baseline path. */
  baseline: string;
  /** The baseline's frontier (mean over its runs of each decoding's accuracy and NFE). */
  baselinePoints: ParetoPoint[];
  rows: RunSetRow[];
  /** The runs' mean sweep after training (for plots). */
  after: ParetoPoint[];
  learned?: ParetoPoint;
}

export interface RunReport {
  split: Split;
  sets: RunSet[];
  markdown: string;
  svg: string;
}

/** Reads a run folder's result.json, naming the folder in every error. */
export async function readRun(dir: string): Promise<RunRecord> {
  const file = join(dir, 'result.json');
  if (!existsSync(file)) throw new InvalidArgumentError(`${dir} is not a finished run: it has no result.json`);
  const result = (await readJsonFile(file, InvalidArgumentError)) as RunResult;
  if (!Array.isArray(result?.before) || !Array.isArray(result?.after) || typeof result.task !== 'string')
    throw new InvalidArgumentError(`${file} is not a diffpo run result (it needs task, before and after)`);
  return { dir, result };
}

/** The run set a folder belongs to: its path with a trailing seed part (`seed-3`, `-s3`, `_seed3`) taken off. */
export function runSetName(dir: string): string {
  const d = dir.replace(/[/\\]+$/, '');
  const m = /(^|[-_/\\])(?:seed[-_]?|s)\d+$/.exec(d);
  if (!m) return d;
  // a folder named only for its seed (countdown3-main/seed-0) belongs to its parent's set
  return m[1] === '' || m[1] === '/' || m[1] === '\\' ? dirname(d) : d.slice(0, m.index);
}

const sweepOf = (r: RunRecord, split: Split, which: 'before' | 'after'): ParetoPoint[] => {
  if (split === 'test') return r.result[which];
  const v = r.result.validation;
  if (!v) throw new InvalidArgumentError(`${r.dir} has no validation sweeps (it was run before validation sets existed): report it with --split test`);
  return v[which];
};
const learnedOf = (r: RunRecord, split: Split): ParetoPoint | undefined => (split === 'test' ? r.result.learned : r.result.validation?.learned);

/** The mean of each decoding's accuracy and NFE over several sweeps (the decodings all of them have). */
export function meanSweep(sweeps: ParetoPoint[][]): ParetoPoint[] {
  const labels = sweeps[0]!.map((p) => p.label).filter((label) => sweeps.every((s) => s.some((p) => p.label === label)));
  return labels.map((label) => {
    const ps = sweeps.map((s) => s.find((p) => p.label === label)!);
    const avg = (f: (p: ParetoPoint) => number) => ps.reduce((a, p) => a + f(p), 0) / ps.length;
    return { label, strategy: ps[0]!.strategy, accuracy: avg((p) => p.accuracy), meanReward: avg((p) => p.meanReward), meanNfe: avg((p) => p.meanNfe) };
  });
}

const stat = (values: number[]): SeedStat => ({ values, ...meanStd(values) });
const statOrNull = (values: (number | null)[]): SeedStat | null => (values.some((v) => v === null) ? null : stat(values as number[]));

/**
 * Summarises runs by set (runs differing in their seed): per decoding (`thresholds`, default each
 * run's own; and the learned threshold where the runs have one) the accuracy and NFE as mean ± sample
 * std over seeds, and each seed's gain over the baseline's frontier (its upper concave hull,
 * paretoCompare) at equal NFE and NFE saved at equal accuracy. The baseline is each run's starting
 * model (its sweep before training), or the given runs' (or `eval --pareto --json` files') points.
 * With `pool`, every run given is one set of that name, seeds may repeat (several sets of one
 * experiment, made with other random draws, read as one larger sample).
 */
export async function summarizeRuns(dirs: string[], options: { split?: Split; thresholds?: number[]; baseline?: string[]; pool?: string } = {}): Promise<RunReport> {
  const split = options.split ?? 'test';
  if (split !== 'test' && split !== 'validation') throw new InvalidArgumentError(`split must be 'test' or 'validation', got ${JSON.stringify(split)}`);
  if (dirs.length === 0) throw new InvalidArgumentError('report needs at least one run folder');
  const runs = await Promise.all(dirs.map(readRun));
  const baseline = options.baseline?.length ? meanSweep(await Promise.all(options.baseline.map((b) => baselinePoints(b, split)))) : null;
  const { pool } = options;
  if (pool !== undefined && (typeof pool !== 'string' || pool === '')) throw new InvalidArgumentError(`pool must name the pooled set, got ${JSON.stringify(pool)}`);
  const setOf = (r: RunRecord) => pool ?? runSetName(r.dir);
  const groups = new Map<string, RunRecord[]>();
  for (const r of runs) groups.set(setOf(r), [...(groups.get(setOf(r)) ?? []), r]);
  const sets: RunSet[] = [];
  for (const [name, members] of groups) {
    members.sort((a, b) => a.result.seed - b.result.seed);
    const first = members[0]!.result;
    const seen = new Set<number>();
    for (const m of members) {
      if (m.result.task !== first.task) throw new InvalidArgumentError(`${m.dir} is a ${m.result.task} run but ${members[0]!.dir} is ${first.task}: a set holds one task`);
      if (seen.has(m.result.seed) && pool === undefined) throw new InvalidArgumentError(`${m.dir} repeats seed ${m.result.seed} of set ${name} (give --pool to read several sets as one)`);
      seen.add(m.result.seed);
    }
    const frontOf = (r: RunRecord) => baseline ?? sweepOf(r, split, 'before');
    const thresholds = options.thresholds ?? [first.threshold];
    const rows: RunSetRow[] = [];
    const pick = (r: RunRecord, t: number) => {
      const p = sweepOf(r, split, 'after').find((q) => q.strategy.kind === 'threshold' && q.strategy.threshold === t);
      if (!p) throw new InvalidArgumentError(`${r.dir} has no point at threshold ${t} on the ${split} set`);
      return p;
    };
    const row = (decoding: string, points: ParetoPoint[]): RunSetRow => {
      const cmp = members.map((r, i) => paretoCompare(frontOf(r), [points[i]!])[0]!);
      return {
        decoding,
        accuracy: stat(points.map((p) => p.accuracy)),
        meanNfe: stat(points.map((p) => p.meanNfe)),
        gainAtEqualNfe: statOrNull(cmp.map((c) => (c.accuracyGain === null ? null : 100 * c.accuracyGain))),
        nfeSaved: statOrNull(cmp.map((c) => c.nfeSaved)),
      };
    };
    for (const t of thresholds) rows.push(row(`threshold ${t}`, members.map((r) => pick(r, t))));
    const learned = members.map((r) => learnedOf(r, split));
    if (learned.every((p) => p !== undefined)) rows.push(row('learned threshold', learned as ParetoPoint[]));
    sets.push({
      name,
      dirs: members.map((m) => m.dir),
      seeds: members.map((m) => m.result.seed),
      task: first.task,
      method: first.method,
      sampler: first.sampler,
      steps: first.steps,
      seconds: stat(members.map((m) => m.result.seconds)),
      baseline: baseline ? options.baseline!.join(', ') : "each run's starting model",
      baselinePoints: baseline ?? meanSweep(members.map((r) => sweepOf(r, split, 'before'))),
      rows,
      after: meanSweep(members.map((r) => sweepOf(r, split, 'after'))),
      learned: learned.every((p) => p !== undefined) ? meanSweep(learned.map((p) => [p!]))[0] : undefined,
    });
  }
  // in the order of their names, whatever the order of the folders given
  sets.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return { split, sets, markdown: reportMarkdown(split, sets), svg: reportSvg(split, sets) };
}

/** A baseline's points on a split: a run folder's sweep after training, or an `eval --pareto --json` file's points. */
async function baselinePoints(path: string, split: Split): Promise<ParetoPoint[]> {
  if (existsSync(path) && statSync(path).isDirectory()) return sweepOf(await readRun(path), split, 'after');
  const parsed = (await readJsonFile(path, InvalidArgumentError)) as { points?: ParetoPoint[] };
  if (!Array.isArray(parsed.points) || parsed.points.length === 0) throw new InvalidArgumentError(`baseline ${path} has no points (write it with diffpo eval --pareto --json)`);
  return parsed.points;
}

const fmt = (s: SeedStat | null, digits: number, scale = 1) => (s === null ? 'n/a' : s.values.length > 1 ? `${(s.mean * scale).toFixed(digits)} ± ${(s.std * scale).toFixed(digits)}` : (s.mean * scale).toFixed(digits));
const signed = (s: SeedStat | null, digits: number) => (s === null ? 'n/a' : `${s.mean >= 0 ? '+' : ''}${fmt(s, digits)}`);

function reportMarkdown(split: Split, sets: RunSet[]): string {
  const lines = [
    `Evaluated on the ${split} set. Mean ± sample standard deviation over seeds; gains are against the baseline's frontier (the upper concave hull of its threshold sweep) at the run's NFE, in points, and the NFE saved at the run's accuracy.`,
    '',
    '| run set | seeds | decoding | accuracy per seed | accuracy | mean NFE | gain at equal NFE (points) | NFE saved at equal accuracy | seconds |',
    '|---|---|---|---|---|---|---|---|---|',
  ];
  for (const s of sets) {
    const at = s.rows[0]!.decoding.startsWith('threshold ') ? Number(s.rows[0]!.decoding.slice(10)) : undefined;
    const b = s.baselinePoints.find((p) => p.strategy.kind === 'threshold' && p.strategy.threshold === at);
    if (b) lines.push(`| ${basename(s.name)}: baseline (${s.baseline}) | - | ${b.label} | - | ${b.accuracy.toFixed(3)} | ${b.meanNfe.toFixed(2)} | - | - | - |`);
    for (const r of s.rows)
      lines.push(
        `| ${basename(s.name)} (${s.sampler === 'sampler-only' ? 'the head alone' : s.sampler === 'learned' ? `${s.method} + head` : s.method}, ${s.steps} steps) | ${s.seeds.join(', ')} | ${r.decoding} | ${r.accuracy.values.map((v) => v.toFixed(3)).join(', ')} | ${fmt(r.accuracy, 3)} | ${fmt(r.meanNfe, 2)} | ${signed(r.gainAtEqualNfe, 1)} | ${signed(r.nfeSaved, 2)} | ${s.seconds.mean.toFixed(0)} |`,
      );
  }
  return lines.join('\n') + '\n';
}

function reportSvg(split: Split, sets: RunSet[]): string {
  const first = sets[0]!;
  const curves = [
    { name: `baseline${sets.length > 1 ? ` (${basename(first.name)})` : ''}`, points: first.baselinePoints, hull: true },
    ...sets.map((s) => ({ name: `${basename(s.name)}, mean of ${s.seeds.length}`, points: s.after })),
  ];
  const extra = sets.filter((s) => s.learned).map((s) => ({ name: `${basename(s.name)}: learned`, point: s.learned! }));
  return paretoSvg(curves, extra, `${first.task}: accuracy vs mean NFE (${split} set)`);
}
