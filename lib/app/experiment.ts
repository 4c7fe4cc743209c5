import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { InvalidArgumentError } from '../core/errors.js';
import { readJsonFile } from '../core/files.js';
import { summarizeRuns, type Split } from './run-sets.js';

/**
 * An experiment: `diffpo train` runs over a grid of flag values and seeds, each in a folder of its
 * own, then `diffpo report` of each grid cell on both splits. Declarative, so a result's file says
 * how it was made, and resumable: a finished run (result.json) is kept, an interrupted one resumed.
 */
export interface ExperimentSpec {
  /** Where the runs and reports go: OUT/<cell>/seed-<s>/, OUT/report.md (and report-validation.md, report.svg). */
  out: string;
  /** What the experiment is for (the report's first line). */
  claim?: string;
  /** `diffpo train` flags (without dashes) common to every run, e.g. {"task": "countdown3", "eval-every": 16}. */
  train: Record<string, string | number | boolean | number[]>;
  /** Flags whose values are swept: every combination is a cell, named `flag-value` joined by `_`. */
  grid?: Record<string, (string | number | number[])[]>;
  seeds: number[];
  /** The decodings the reports list (default each run's own threshold). */
  thresholds?: number[];
}

/** What a run folder holds besides its results: its resumable checkpoint. */
const CHECKPOINT_FILES = ['model.safetensors', 'adapter_model.safetensors', 'adapter_config.json', 'optimizer.safetensors', 'reference/', 'average/', 'checkpoint.json', 'trainer_state.json', 'config.json', 'generation_config.json', 'tokenizer.json', '*.tmp-*'];

const cli = fileURLToPath(new URL('./cli.js', import.meta.url));

/** Reads and checks an experiment file, naming what is wrong with it. */
export async function readExperiment(file: string): Promise<ExperimentSpec> {
  const spec = (await readJsonFile(file, InvalidArgumentError)) as ExperimentSpec;
  const bad = (what: string) => new InvalidArgumentError(`${file}: ${what}`);
  if (typeof spec?.out !== 'string' || spec.out === '') throw bad('"out" must be the folder of the runs');
  if (typeof spec.train !== 'object' || spec.train === null || typeof spec.train.task !== 'string') throw bad('"train" must hold diffpo train flags, "task" among them');
  if (!Array.isArray(spec.seeds) || spec.seeds.length === 0 || !spec.seeds.every((s) => Number.isSafeInteger(s) && s >= 0)) throw bad('"seeds" must be a non-empty array of non-negative integers');
  for (const k of ['out', 'resume', 'seed']) if (k in spec.train) throw bad(`"train" must not set "${k}": the experiment chooses it`);
  for (const [k, values] of Object.entries(spec.grid ?? {})) if (!Array.isArray(values) || values.length === 0) throw bad(`grid "${k}" must be a non-empty array of values`);
  return spec;
}

/** The grid's cells: each a combination of swept values with its folder name ('' without a grid). */
export function experimentCells(spec: ExperimentSpec): { name: string; flags: Record<string, string | number | number[]> }[] {
  let cells: { name: string; flags: Record<string, string | number | number[]> }[] = [{ name: '', flags: {} }];
  for (const [k, values] of Object.entries(spec.grid ?? {}))
    cells = cells.flatMap((c) => values.map((v) => ({ name: [c.name, `${k}-${Array.isArray(v) ? v.join(',') : v}`].filter(Boolean).join('_'), flags: { ...c.flags, [k]: v } })));
  return cells;
}

const flagArgs = (flags: Record<string, string | number | boolean | number[]>) =>
  Object.entries(flags).flatMap(([k, v]) => (v === true ? [`--${k}`] : v === false ? [] : [`--${k}`, Array.isArray(v) ? v.join(',') : String(v)]));

/**
 * Runs an experiment `jobs` runs at a time (each a `diffpo train` process), skipping finished runs and
 * resuming interrupted ones, then writes its reports. Returns the runs' folders.
 */
export async function runExperiment(spec: ExperimentSpec, options: { jobs?: number; log?: (line: string) => void } = {}): Promise<string[]> {
  const jobs = options.jobs ?? 1;
  if (!Number.isInteger(jobs) || jobs < 1) throw new InvalidArgumentError(`jobs must be a positive integer, got ${jobs}`);
  const log = options.log ?? ((line: string) => void process.stderr.write(line + '\n'));
  const runs = experimentCells(spec).flatMap((cell) => spec.seeds.map((seed) => ({ cell, seed, dir: join(spec.out, cell.name, `seed-${seed}`) })));
  const queue = runs.filter((r) => !existsSync(join(r.dir, 'result.json')));
  log(`${runs.length} runs, ${runs.length - queue.length} finished, ${queue.length} to run, ${jobs} at a time`);
  // the runs' checkpoints stay where they are made; their result files are what a repository keeps
  await mkdir(spec.out, { recursive: true });
  await writeFile(join(spec.out, '.gitignore'), `# checkpoints of the runs (diffpo experiment): large, and remade by running it again\n${CHECKPOINT_FILES.join('\n')}\n`);
  const failures: string[] = [];
  const worker = async () => {
    for (let r = queue.shift(); r; r = queue.shift()) {
      const resume = existsSync(join(r.dir, 'trainer_state.json'));
      const args = [cli, 'train', ...flagArgs({ ...spec.train, ...r.cell.flags, seed: r.seed, out: r.dir }), ...(resume ? ['--resume'] : [])];
      await mkdir(r.dir, { recursive: true });
      log(`${resume ? 'resuming' : 'starting'} ${r.dir}`);
      const code = await new Promise<number>((done) => {
        const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
        let tail = '';
        child.stderr.on('data', (d: Buffer) => void (tail = (tail + d.toString()).slice(-2000)));
        child.on('close', (c) => {
          if (c !== 0) log(`${r.dir} failed (exit ${c}): ${tail.trim().split(/\r|\n/).at(-1)}`);
          done(c ?? 1);
        });
      });
      if (code !== 0) failures.push(r.dir);
      else log(`finished ${r.dir}`);
    }
  };
  await Promise.all(Array.from({ length: jobs }, worker));
  if (failures.length) throw new InvalidArgumentError(`${failures.length} run(s) failed: ${failures.join(', ')} (run the experiment again to resume them)`);
  await writeExperimentReports(spec);
  return runs.map((r) => r.dir);
}

/** The experiment's reports from its finished runs: report.md (test), report-validation.md, report.svg. */
export async function writeExperimentReports(spec: ExperimentSpec): Promise<void> {
  const dirs = experimentCells(spec).flatMap((cell) => spec.seeds.map((seed) => join(spec.out, cell.name, `seed-${seed}`)));
  const head = `${spec.claim ? `${spec.claim}\n\n` : ''}Made by \`npx diffpo experiment\` from its description ([experiment.json](experiment.json)); every run's files are in its folder.\n\n`;
  for (const split of ['test', 'validation'] as Split[]) {
    const r = await summarizeRuns(dirs, { split, thresholds: spec.thresholds });
    await writeFile(join(spec.out, split === 'test' ? 'report.md' : 'report-validation.md'), head + r.markdown);
    await writeFile(join(spec.out, split === 'test' ? 'report.svg' : 'report-validation.svg'), r.svg);
  }
  await writeFile(join(spec.out, 'experiment.json'), JSON.stringify(spec, null, 2) + '\n');
}
