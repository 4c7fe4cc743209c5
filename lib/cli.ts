#!/usr/bin/env node
import { parseArgs } from 'node:util';

import { appendFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { presetConfig, type PresetName } from './config.js';
import { evaluate } from './evaluate.js';
import { paretoFront, paretoSvg, paretoSweep, type ParetoPoint } from './pareto.js';
import { Progress } from './progress.js';
import { runReport } from './report.js';
import { DiffpoError, InvalidArgumentError } from './errors.js';
import type { BackendName } from './backend.js';
import { DiffusionLM, type ModelOptions } from './model.js';
import type { DecodingStrategy, GenerateOptions } from './sampler.js';
import { findBenchmarksDir, getTask, loadTestSet, type TaskName } from './tasks/index.js';
import { CharTokenizer } from './tokenizer.js';
import { DiffpoTrainer, type DiffpoOptions, type RlMethod } from './trainers/diffpo.js';
import { SftTrainer, type SftOptions } from './trainers/sft.js';

const USAGE = `usage: diffpo <command> [options]

Every command that builds a model takes --threads N (default: all cores) and --backend
cpu|cuda|cuda-fp32|auto (default cpu; auto: CUDA when the CUDA flavour and a device are present).

commands:
  logits --model DIR --tokens "1,2,3;4,5,6" [--threads N]
      Prints JSON {"logits": [[[...]]]} (one row of token ids per ';'-separated sequence,
      all of the same length), for cross-checking against other implementations.
  init --out DIR [--config tiny|small|medium] [--seed N] [--dtype f32|bf16]
      Writes a randomly initialised LLaDA-layout checkpoint.
  train --task sudoku4|countdown3|arith [--method diffpo|d1|trace] [--steps 100] [--out DIR] [--seed 0]
      [--threshold 0.9] [--lr 1e-4] [--limit N] [--time-budget SECONDS] [--resume]
      [--prompts-per-step 8] [--group-size 6] [--inner-iterations 2] [--clip-eps 0.5] [--is-cap 2]
      [--beta 0.04] [--rollout-temperature 1] [--p-mask-prompt 0.15] [--max-grad-norm 0.2] [--advantage mean|mean-std]
      [--warmup 0] [--schedule constant|cosine] [--checkpoint-every 25]
      [--sampler fixed|learned|sampler-only] [--lambda 0.5]   (learned: a per-prompt threshold on the
      grid 0.5, 0.7, 0.8, 0.9, 1.01, trained with the model or alone; evaluated with the head after)
      RL from the shipped base checkpoint models/<task>-base: sweeps thresholds on the external test
      set, trains with the DiFFPO trainer (progress line per step), sweeps again, prints a before/after
      table, and writes a resumable checkpoint (every 25 steps), metrics.jsonl and the report
      (report.html with the accuracy-vs-NFE plot and per-step curves, report.md, *.svg, result.json)
      to DIR; --time-budget stops starting new steps after that many seconds of training
      (default runs/<task>-<method>); --resume continues a run in DIR to --steps.
  sft --task sudoku4|countdown3|arith[,...] --out DIR [--config tiny|small|medium] [--steps N]
      [--batch-size 32] [--lr 1e-3] [--seed 0] [--eval-every N] [--resume] [--export DIR]
      Supervised fine-tuning on generated items (never an evaluation item), with a progress bar,
      metrics.jsonl and a resumable checkpoint in DIR; several tasks (--task sudoku4,arith) mix
      in every batch (--eval-every evaluates the first).
  eval --model DIR --task sudoku4|countdown3|arith [--data FILE] [--limit N]
       [--threshold 0.9 | --steps N | --factor F | --gamma G] [--block-length N] [--cache none|prefix|dual] [--json]
      Accuracy, mean reward, mean NFE and tokens/s on the task's external test set (or FILE).
       --pareto [--out FILE.svg]: sweeps thresholds 0.5..0.95 and one token per step instead, prints
      the accuracy-vs-NFE table and draws it as an SVG (default runs/<task>-pareto.svg).
  generate --model DIR --prompt "1,2,3[;4,5]" --gen-length N [--block-length N]
           (--steps N | --threshold T | --factor F | --gamma G) [--temperature 0] [--seed 0]
           [--max-nfe N] [--cache none|prefix|dual] [--json]
      Decodes a completion per prompt and prints the tokens, the NFE and a per-step trace
      (positions, tokens, confidences); --json prints it all as one JSON object.
`;

function parseRows(flag: string, text: string): number[][] {
  return text.split(';').map((row) =>
    row.split(',').map((s) => {
      const v = Number(s.trim());
      if (s.trim() === '' || !Number.isInteger(v)) throw new InvalidArgumentError(`${flag}: '${s}' is not an integer token id`);
      return v;
    }),
  );
}

function parseTokenRows(text: string): { tokens: Int32Array; batch: number; seqLen: number } {
  const rows = parseRows('--tokens', text);
  const seqLen = rows[0]!.length;
  if (rows.some((r) => r.length !== seqLen)) throw new InvalidArgumentError('--tokens: every row must have the same length');
  return { tokens: Int32Array.from(rows.flat()), batch: rows.length, seqLen };
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (!command || command === '--help' || command === '-h') {
    process.stdout.write(USAGE);
    return;
  }
  const { values } = parseArgs({
    args: rest,
    options: {
      model: { type: 'string' },
      tokens: { type: 'string' },
      threads: { type: 'string' },
      config: { type: 'string', default: 'tiny' },
      seed: { type: 'string', default: '0' },
      dtype: { type: 'string', default: 'f32' },
      prompt: { type: 'string' },
      'gen-length': { type: 'string' },
      'block-length': { type: 'string' },
      steps: { type: 'string' },
      threshold: { type: 'string' },
      factor: { type: 'string' },
      gamma: { type: 'string' },
      temperature: { type: 'string', default: '0' },
      'max-nfe': { type: 'string' },
      json: { type: 'boolean', default: false },
      task: { type: 'string' },
      out: { type: 'string' },
      'batch-size': { type: 'string' },
      lr: { type: 'string' },
      'eval-every': { type: 'string' },
      resume: { type: 'boolean', default: false },
      method: { type: 'string', default: 'diffpo' },
      export: { type: 'string' },
      data: { type: 'string' },
      limit: { type: 'string' },
      cache: { type: 'string', default: 'none' },
      pareto: { type: 'boolean', default: false },
      sampler: { type: 'string', default: 'fixed' },
      lambda: { type: 'string', default: '0.5' },
      'time-budget': { type: 'string' },
      backend: { type: 'string', default: 'cpu' },
      ...Object.fromEntries(Object.keys(RL_NUMBER_FLAGS).map((f) => [f, { type: 'string' as const }])),
      schedule: { type: 'string' },
      advantage: { type: 'string' },
    },
  });
  // how every command builds its models: --threads N, --backend cpu|cuda|cuda-fp32|auto
  const run: ModelOptions = { threads: values.threads !== undefined ? Number(values.threads) : undefined, backend: values.backend as BackendName };
  if (command === 'logits') {
    if (!values.model || !values.tokens) throw new InvalidArgumentError('logits needs --model DIR and --tokens "1,2,3;4,5,6"');
    const { tokens, batch, seqLen } = parseTokenRows(values.tokens);
    const model = await DiffusionLM.fromPretrained(values.model, run);
    try {
      const flat = await model.logits(tokens, { batch, seqLen });
      const E = model.config.embedding_size;
      const logits = Array.from({ length: batch }, (_, b) =>
        Array.from({ length: seqLen }, (_, t) => Array.from(flat.subarray((b * seqLen + t) * E, (b * seqLen + t + 1) * E))),
      );
      process.stdout.write(JSON.stringify({ logits }) + '\n');
    } finally {
      model.dispose();
    }
  } else if (command === 'init') {
    if (!values.out) throw new InvalidArgumentError('init needs --out DIR');
    const dtype = values.dtype as 'f32' | 'bf16';
    const model = DiffusionLM.create(presetConfig(values.config as PresetName), { seed: Number(values.seed), ...run });
    try {
      await model.save(values.out, { dtype });
      process.stdout.write(`wrote ${values.out} (${model.numParameters} parameters, ${dtype})\n`);
    } finally {
      model.dispose();
    }
  } else if (command === 'generate') {
    await generateCommand(values, run);
  } else if (command === 'train') {
    await trainCommand(values, run);
  } else if (command === 'sft') {
    await sftCommand(values, run);
  } else if (command === 'eval') {
    await evalCommand(values, run);
  } else {
    throw new InvalidArgumentError(`unknown command '${command}'\n\n${USAGE}`);
  }
}

type Flags = Record<string, string | boolean | undefined>;

// train's numeric flags and the DiffpoTrainer options they set (the trainer checks their ranges)
const RL_NUMBER_FLAGS = {
  'prompts-per-step': 'promptsPerStep',
  'group-size': 'groupSize',
  'inner-iterations': 'innerIterations',
  'clip-eps': 'clipEps',
  'is-cap': 'isCap',
  beta: 'beta',
  'rollout-temperature': 'temperature',
  'p-mask-prompt': 'pMaskPrompt',
  'max-grad-norm': 'maxGradNorm',
  warmup: 'warmup',
  'checkpoint-every': 'checkpointEvery',
} as const;

function rlFlags(v: Flags): Partial<DiffpoOptions> {
  const out: Record<string, unknown> = {};
  for (const [flag, key] of Object.entries(RL_NUMBER_FLAGS)) {
    const text = v[flag];
    if (typeof text !== 'string') continue;
    const n = Number(text);
    if (text.trim() === '' || !Number.isFinite(n)) throw new InvalidArgumentError(`--${flag}: '${text}' is not a number`);
    out[key] = n;
  }
  if (typeof v.schedule === 'string') out.schedule = v.schedule;
  if (typeof v.advantage === 'string') out.advantage = v.advantage;
  return out as Partial<DiffpoOptions>;
}

async function sftCommand(v: Flags, run: ModelOptions): Promise<void> {
  if (typeof v.task !== 'string' || typeof v.out !== 'string') throw new InvalidArgumentError('sft needs --task NAME[,NAME...] and --out DIR');
  const tasks = v.task.split(',').map((name) => getTask(name as TaskName));
  const steps = Number(v.steps ?? 1000);
  // every task's evaluation items stay out of training; periodic evaluation uses the first task's
  const tests = await Promise.all(tasks.map(async (t) => ((t.testSetFile && findBenchmarksDir()) || t.heldOut ? await loadTestSet(t) : [])));
  const test = tests[0]!;
  const options: SftOptions = {
    ...(tasks.length === 1 ? { task: tasks[0]! } : { tasks }),
    outDir: v.out,
    batchSize: v['batch-size'] !== undefined ? Number(v['batch-size']) : undefined,
    lr: v.lr !== undefined ? Number(v.lr) : undefined,
    seed: Number(v.seed),
    checkpointEvery: 100,
    exclude: tests.flatMap((items, k) => items.map((t) => tasks[k]!.key(t))),
    evalEvery: v['eval-every'] !== undefined ? Number(v['eval-every']) : 0,
    evalItems: test.slice(0, 64),
  };
  const trainer = v.resume ? await SftTrainer.resume(v.out, { ...options, ...run }) : new SftTrainer(DiffusionLM.create(v.config as PresetName, { seed: Number(v.seed), ...run }), options);
  const progress = new Progress(steps, 50);
  const first = trainer.step;
  try {
    await trainer.train({
      steps,
      onStep: (i) => {
        const evalText = i.eval ? `  eval acc ${i.eval.accuracy.toFixed(3)} NFE ${i.eval.meanNfe.toFixed(1)}` : '';
        progress.update(i.step, `loss ${i.loss.toFixed(4)}  lr ${i.lr.toExponential(2)}${evalText}`, first, !!i.eval);
      },
    });
  } finally {
    progress.done();
  }
  process.stdout.write(`wrote ${v.out} after ${trainer.step} steps (${progress.seconds.toFixed(0)} s)\n`);
  if (typeof v.export === 'string') {
    await trainer.export(v.export, 'bf16');
    process.stdout.write(`exported ${v.export} (BF16, for inference)\n`);
  }
  trainer.model.dispose();
}

async function trainCommand(v: Flags, run: ModelOptions): Promise<void> {
  if (typeof v.task !== 'string') throw new InvalidArgumentError('train needs --task NAME');
  const task = getTask(v.task as TaskName);
  const method = v.method as RlMethod;
  const base = fileURLToPath(new URL(`../../models/${task.name}-base`, import.meta.url));
  const out = typeof v.out === 'string' ? v.out : join('runs', `${task.name}-${method}`);
  const steps = Number(v.steps ?? 100);
  await mkdir(out, { recursive: true });
  const from = v.resume ? out : base;
  const tokenizer = await CharTokenizer.fromFile(join(from, 'tokenizer.json'));
  const genLength = JSON.parse(await readFile(join(from, 'generation_config.json'), 'utf8')).gen_length as number;
  let test = await loadTestSet(task);
  if (v.limit !== undefined) test = test.slice(0, Number(v.limit));
  const threshold = v.threshold !== undefined ? Number(v.threshold) : 0.9;
  const strategy = { kind: 'threshold' as const, threshold };
  // the frontier before and after: a threshold sweep that includes the run's own threshold
  const thresholds = [...new Set([0.5, 0.7, 0.9, 0.95, 1.01, threshold])].sort((a, b) => a - b);
  const sweep = () => paretoSweep(model, task, { items: test, tokenizer, genLength, thresholds });
  const options = {
    task,
    tokenizer,
    method,
    genLength,
    strategy,
    lr: v.lr !== undefined ? Number(v.lr) : 1e-4,
    seed: Number(v.seed),
    exclude: test.map((t) => task.key(t)),
    outDir: out,
    checkpointEvery: 25,
    ...rlFlags(v),
    sampler:
      v.sampler === 'fixed'
        ? ({ mode: 'fixed' } as const)
        : { mode: v.sampler as 'learned' | 'sampler-only', grid: [0.5, 0.7, 0.8, 0.9, 1.01], lambda: Number(v.lambda) },
  };
  const rl = v.resume ? await DiffpoTrainer.resume(out, { ...options, ...run }) : new DiffpoTrainer({ ...options, model: await DiffusionLM.fromPretrained(base, run) });
  const model = rl.model;
  process.stderr.write(`evaluating ${v.resume ? `${out} (step ${rl.step})` : base} on ${test.length} test items at ${thresholds.length} thresholds...\n`);
  const beforeSweep = await sweep();
  const metrics = join(out, 'metrics.jsonl');
  if (!v.resume) await writeFile(metrics, '');
  const progress = new Progress(steps, 10);
  const first = rl.step;
  try {
    await rl.train({
      steps,
      maxSeconds: v['time-budget'] !== undefined ? Number(v['time-budget']) : undefined,
      onStep: async (i) => {
        await appendFile(metrics, JSON.stringify(i) + '\n');
        progress.update(i.step, `reward ${i.meanReward.toFixed(3)}  acc ${i.accuracy.toFixed(3)}  NFE ${i.meanNfe.toFixed(2)}  tau ${i.meanThreshold.toFixed(2)}  KL ${i.klMean.toFixed(4)}  clip ${i.clipFraction.toFixed(3)}  IS ${i.isWeightMean.toFixed(2)}/${i.isWeightMax.toFixed(2)}`, first);
      },
    });
  } finally {
    progress.done();
    await rl.dispose();
  }
  const seconds = progress.seconds;
  process.stderr.write(`evaluating the trained model...\n`);
  const afterSweep = await sweep();
  let learned: ParetoPoint | undefined;
  if (rl.head) {
    const { completions, ...r } = await evaluate(model, task, { items: test, tokenizer, genLength, sampler: { strategy: { kind: 'learned' } } });
    void completions;
    learned = { label: 'learned threshold', strategy: { kind: 'learned' }, accuracy: r.accuracy, meanReward: r.meanReward, meanNfe: r.meanNfe };
  }
  const at = (points: ParetoPoint[]) => points.find((p) => p.strategy.kind === 'threshold' && p.strategy.threshold === threshold)!;
  const before = at(beforeSweep),
    after = learned ?? at(afterSweep);
  const table = [
    `| model | accuracy | mean reward | mean NFE |`,
    `|---|---|---|---|`,
    `| ${v.resume ? 'resumed run' : `${task.name}-base`} | ${before.accuracy.toFixed(3)} | ${before.meanReward.toFixed(3)} | ${before.meanNfe.toFixed(2)} |`,
    `| after ${rl.step} ${method} steps${learned ? ` (${v.sampler} sampler)` : ''} | ${after.accuracy.toFixed(3)} | ${after.meanReward.toFixed(3)} | ${after.meanNfe.toFixed(2)} |`,
  ].join('\n');
  const history = (await readFile(metrics, 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l));
  const report = runReport({
    title: `${task.name}: ${method} RL${learned ? ` with a ${v.sampler} threshold` : ''}`,
    summary: `${rl.step} RL steps from ${v.resume ? 'a resumed run' : `${task.name}-base`} in ${seconds.toFixed(0)} s (seed ${Number(v.seed)}, rollouts at threshold ${threshold}${learned ? ` or the learned threshold, lambda ${Number(v.lambda)}` : ''}); evaluated on ${test.length} test items, greedy decoding.`,
    before: beforeSweep,
    after: afterSweep,
    learned,
    metrics: history,
  });
  await writeFile(join(out, 'report.md'), report.markdown);
  await writeFile(join(out, 'report.html'), report.html);
  await writeFile(join(out, 'pareto.svg'), report.paretoSvg);
  await writeFile(join(out, 'steps.svg'), report.stepsSvg);
  const result = { task: task.name, method, sampler: v.sampler, lambda: learned ? Number(v.lambda) : undefined, seed: Number(v.seed), steps: rl.step, seconds, testItems: test.length, threshold, before: beforeSweep, after: afterSweep, learned };
  await writeFile(join(out, 'result.json'), JSON.stringify(result, null, 2) + '\n');
  process.stdout.write(`${table}\n\nreport: ${join(out, 'report.html')} (and report.md)\n`);
  model.dispose();
}

async function evalCommand(v: Flags, run: ModelOptions): Promise<void> {
  if (typeof v.model !== 'string' || typeof v.task !== 'string') throw new InvalidArgumentError('eval needs --model DIR and --task NAME');
  const task = getTask(v.task as TaskName);
  let items = await loadTestSet(task, typeof v.data === 'string' ? v.data : undefined);
  if (v.limit !== undefined) items = items.slice(0, Number(v.limit));
  const tokenizer = await CharTokenizer.fromFile(join(v.model, 'tokenizer.json'));
  let genLength = v['gen-length'] !== undefined ? Number(v['gen-length']) : NaN;
  if (!Number.isFinite(genLength)) {
    try {
      genLength = JSON.parse(await readFile(join(v.model, 'generation_config.json'), 'utf8')).gen_length;
    } catch {
      throw new InvalidArgumentError(`${v.model} has no generation_config.json: give --gen-length`);
    }
  }
  const given = (['steps', 'threshold', 'factor', 'gamma'] as const).some((k) => v[k] !== undefined);
  const strategy = given ? strategyFromFlags(v) : { kind: 'threshold' as const, threshold: 0.9 };
  const model = await DiffusionLM.fromPretrained(v.model, run);
  if (v.pareto) {
    try {
      const points = await paretoSweep(model, task, { items, tokenizer, genLength, blockLength: v['block-length'] !== undefined ? Number(v['block-length']) : undefined });
      const front = new Set(paretoFront(points));
      const svg = typeof v.out === 'string' ? v.out : join('runs', `${task.name}-pareto.svg`);
      await mkdir(dirname(svg), { recursive: true });
      await writeFile(svg, paretoSvg([{ name: v.model, points }], [], `${task.name}: accuracy vs mean NFE`));
      if (v.json) process.stdout.write(JSON.stringify({ task: task.name, points, svg }) + '\n');
      else {
        process.stdout.write('| decoding | accuracy | mean NFE | on the front |\n|---|---|---|---|\n');
        for (const p of points) process.stdout.write(`| ${p.label} | ${p.accuracy.toFixed(3)} | ${p.meanNfe.toFixed(2)} | ${front.has(p) ? 'yes' : ''} |\n`);
        process.stdout.write(`\nplot: ${svg}\n`);
      }
    } finally {
      model.dispose();
    }
    return;
  }
  try {
    const sampler = { strategy, blockLength: v['block-length'] !== undefined ? Number(v['block-length']) : genLength, cache: v.cache as 'none' };
    const { completions, ...r } = await evaluate(model, task, { items, tokenizer, genLength, sampler });
    void completions;
    if (v.json) process.stdout.write(JSON.stringify({ task: task.name, strategy, ...r }) + '\n');
    else
      process.stdout.write(
        `${task.name}: ${r.items} items  accuracy ${r.accuracy.toFixed(3)}  mean reward ${r.meanReward.toFixed(3)}  mean NFE ${r.meanNfe.toFixed(2)}  ${r.tokensPerS.toFixed(0)} tokens/s\n`,
      );
  } finally {
    model.dispose();
  }
}

function strategyFromFlags(v: Flags): DecodingStrategy {
  const given = (['steps', 'threshold', 'factor', 'gamma'] as const).filter((k) => v[k] !== undefined);
  if (given.length !== 1) throw new InvalidArgumentError('generate needs exactly one of --steps, --threshold, --factor, --gamma');
  const value = Number(v[given[0]!]);
  switch (given[0]) {
    case 'steps':
      return { kind: 'steps', steps: value };
    case 'threshold':
      return { kind: 'threshold', threshold: value };
    case 'factor':
      return { kind: 'factor', factor: value };
    default:
      return { kind: 'entropy', gamma: value };
  }
}

async function generateCommand(v: Record<string, string | boolean | undefined>, run: ModelOptions): Promise<void> {
  if (typeof v.model !== 'string' || typeof v.prompt !== 'string' || v['gen-length'] === undefined)
    throw new InvalidArgumentError('generate needs --model DIR, --prompt "1,2,3" and --gen-length N');
  const prompts = parseRows('--prompt', v.prompt).map((r) => Int32Array.from(r));
  const genLength = Number(v['gen-length']);
  const options: GenerateOptions = {
    genLength,
    blockLength: v['block-length'] !== undefined ? Number(v['block-length']) : genLength,
    strategy: strategyFromFlags(v),
    temperature: Number(v.temperature),
    seed: Number(v.seed),
    maxNfe: v['max-nfe'] !== undefined ? Number(v['max-nfe']) : undefined,
    cache: v.cache as GenerateOptions['cache'],
  };
  const trace: { step: number; unmasked: { sequence: number; position: number; token: number; confidence: number }[] }[] = [];
  options.onStep = (e) => {
    trace.push({
      step: e.step,
      unmasked: Array.from(e.unmasked.token, (token, i) => ({
        sequence: e.unmasked.sequence[i]!,
        position: e.unmasked.position[i]!,
        token,
        confidence: e.unmasked.confidence[i]!,
      })),
    });
  };
  const model = await DiffusionLM.fromPretrained(v.model, run);
  try {
    const r = await model.generate(prompts, options);
    const tokens = prompts.map((_, b) => Array.from(r.tokens.subarray(b * genLength, (b + 1) * genLength)));
    if (v.json) {
      process.stdout.write(JSON.stringify({ tokens, nfe: Array.from(r.nfe), hitBudget: Array.from(r.hitBudget, Boolean), steps: trace }) + '\n');
      return;
    }
    for (const s of trace)
      process.stdout.write(
        `step ${s.step}: ` + s.unmasked.map((u) => `[${u.sequence}] ${u.position}=${u.token} (${u.confidence.toFixed(3)})`).join('  ') + '\n',
      );
    tokens.forEach((t, b) => process.stdout.write(`sequence ${b}: ${t.join(',')}  NFE ${r.nfe[b]}${r.hitBudget[b] ? ' (budget reached)' : ''}\n`));
  } finally {
    model.dispose();
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  if (err instanceof DiffpoError) process.stderr.write(`diffpo: ${err.message} (${err.code})\n`);
  else process.stderr.write(`diffpo: ${(err as Error)?.stack ?? String(err)}\n`);
  process.exit(1);
});
