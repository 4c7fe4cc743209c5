#!/usr/bin/env node
import { readFileSync, writeSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';

import { DiffpoError, InvalidArgumentError } from '../core/errors.js';
import { evaluate } from '../decoding/evaluate.js';
import { generate, type GenerateOptions } from '../decoding/sampler.js';
import { DEFAULT_THRESHOLD, strategyLabel, type DecodingStrategy } from '../decoding/strategy.js';
import type { BackendName } from '../engine/backend.js';
import { launchedLocalSize, worldFromEnvironment } from '../engine/collective.js';
import { presetConfig, PRESETS, type PresetName } from '../engine/config.js';
import { D1_LORA_TARGETS, LORA_TARGETS, type LoraTarget } from '../engine/lora.js';
import { DiffusionLM, type ModelOptions } from '../engine/model.js';
import { getTask, loadTestSet, loadValidationSet, resolveGenLength, siblingValidationFile, SUDOKU4_SOLUTIONS, type Task, type TaskName } from '../tasks/index.js';
import { checkTokenizerFits, completionText } from '../tasks/tokenizer.js';
import { writeLladaFolder } from './llada-folder.js';
import { DIFFPO_DEFAULTS, SAMPLER_DEFAULTS } from '../training/diffpo.js';
import { loadModelFolder, readModelFolder, writeModelFolder } from '../training/model-folder.js';
import { SFT_DEFAULTS, SftTrainer, type SftOptions } from '../training/sft.js';
import { flagsFromSpecs, flagsHelp, parseDifficulty, parseFlags, positionalArgs, type Flag, type FlagValues } from './cli-flags.js';
import { readExperiment, runExperiment } from './experiment.js';
import { summarizeRuns, type Split } from './run-sets.js';
import type { HeadFeatures } from '../decoding/threshold-head.js';
import { budgetSweep, paretoCompare, paretoFront, paretoSvg, paretoSweep, type ParetoComparison, type ParetoPoint } from './pareto.js';
import { itemProgress, Progress } from './progress.js';
import { recipeOptions, RUN_SWEEP, runRl } from './rl-run.js';

const TASKS = ['sudoku4', 'countdown3', 'arith', 'gsm8k', 'math500'];

// every command that builds a model
const MODEL_FLAGS: Flag[] = [
  { name: 'threads', type: 'int', help: 'worker threads of the native kernels (default: all cores)' },
  { name: 'backend', type: 'string', default: 'cpu', help: "where the model computes: cpu, cuda, cuda-fp32, or auto (CUDA when the CUDA flavour and a device are present)", meta: 'cpu|cuda|cuda-fp32|auto' },
];
const STRATEGY_FLAGS: Flag[] = [
  { name: 'threshold', type: 'number', help: `threshold decoding (Fast-dLLM): unmask every position with confidence >= T (${DEFAULT_THRESHOLD} unless another strategy is given)` },
  { name: 'steps', type: 'int', help: "LLaDA's schedule: N forwards in all, the most confident first" },
  { name: 'factor', type: 'number', help: "Fast-dLLM's dynamic rule with factor F" },
  { name: 'gamma', type: 'number', help: 'the entropy-bounded sampler with bound G' },
  { name: 'block-length', type: 'int', help: 'semi-autoregressive block length (default: one block)' },
  { name: 'cache', type: 'string', default: 'none', choices: ['none', 'prefix', 'dual'], help: "Fast-dLLM's approximate KV caches" },
];
const EXPORT_FLAG: Flag = { name: 'export', type: 'string', help: 'also write the trained model as a BF16 model folder for inference here', meta: 'DIR' };
const DATA_FLAG: Flag = { name: 'data', type: 'string', help: "a test set file in the task's format (default: its external test set, shipped in the package, or its held-out set)", meta: 'FILE' };
const VALIDATION_FLAG: Flag = {
  name: 'validation',
  type: 'string',
  help: "a validation set file in the task's format (default: the *_validation.* beside --data's *_test.*, else the task's own: data/<task>_validation.*, gsm8k's last 256 train rows)",
  meta: 'FILE',
};
const MODEL_DIR: Flag = { name: 'model', type: 'string', help: 'a model folder (config.json, model.safetensors, tokenizer.json, ...)', meta: 'DIR' };
const TASK: Flag = { name: 'task', type: 'string', choices: TASKS, help: 'the task' };
const JSON_FLAG: Flag = { name: 'json', type: 'boolean', help: 'print one JSON object' };
const DIFFICULTY: Flag = {
  name: 'difficulty',
  type: 'string',
  meta: 'N|MIN-MAX',
  help: "the training items' difficulty: sudoku4's empty cells (default 8), countdown3's numbers (3), arith's terms (3); a range such as 4-12 mixes them (evaluation always uses the task's test set)",
};

interface Command {
  usage: string;
  summary: string;
  flags: Flag[];
  /** Whether it takes arguments that are not flags (report's run folders). */
  positionals?: boolean;
  run(v: FlagValues, model: ModelOptions): Promise<void>;
}

const COMMANDS: Record<string, Command> = {
  logits: {
    usage: 'diffpo logits --model DIR --tokens "1,2,3;4,5,6"',
    summary: 'Prints JSON {"logits": [[[...]]]}: one row of token ids per ;-separated sequence (all of one length), for cross-checking against other implementations.',
    flags: [MODEL_DIR, { name: 'tokens', type: 'string', help: 'token ids, rows separated by ;', meta: '"1,2;3,4"' }, ...MODEL_FLAGS],
    run: logitsCommand,
  },
  init: {
    usage: 'diffpo init --out DIR [--config tiny|small|medium] [--seed N] [--dtype f32|bf16] | --like llada-8b-instruct [--layers N] [--width D] [--shards N]',
    summary: "Writes a randomly initialised LLaDA-layout checkpoint; with --like llada-8b-instruct, a folder in LLaDA-8B-Instruct's real layout (its config with --layers blocks, tokenizer config, chat template and special tokens, a stand-in byte-level BPE tokenizer.json, random BF16 weights), to try real-folder commands without the real weights.",
    flags: [
      { name: 'out', type: 'string', help: 'the folder to write', meta: 'DIR' },
      { name: 'config', type: 'string', default: 'tiny', choices: Object.keys(PRESETS), help: 'size preset' },
      { name: 'seed', type: 'int', default: 0, help: 'seed of the initialisation' },
      { name: 'dtype', type: 'string', default: 'f32', choices: ['f32', 'bf16'], help: 'weight dtype on disk' },
      { name: 'like', type: 'string', choices: ['llada-8b-instruct'], help: "write LLaDA-8B-Instruct's folder layout (BF16) instead of a preset" },
      { name: 'layers', type: 'int', default: 1, help: 'with --like: transformer blocks (LLaDA-8B has 32; one full-width block is 1.25B parameters, a 2.3 GiB file)' },
      { name: 'width', type: 'int', help: "with --like: d_model (default LLaDA's 4096; a multiple of 128, keeping its vocabulary and head size)" },
      { name: 'shards', type: 'int', default: 1, help: "with --like: weight files (LLaDA ships 6, with model.safetensors.index.json)" },
      ...MODEL_FLAGS,
    ],
    run: initCommand,
  },
  merge: {
    usage: 'diffpo merge --model ADAPTER_DIR --out DIR [--dtype f32|bf16]',
    summary: "Folds a LoRA adapter folder (PEFT's adapter_config.json and adapter_model.safetensors, on the base it names) into its base weights and writes a full model folder (weights, tokenizer, generation config).",
    flags: [
      { name: 'model', type: 'string', help: 'the adapter folder', meta: 'ADAPTER_DIR' },
      { name: 'out', type: 'string', help: 'the model folder to write', meta: 'DIR' },
      { name: 'dtype', type: 'string', default: 'bf16', choices: ['f32', 'bf16'], help: 'weight dtype on disk' },
      ...MODEL_FLAGS,
    ],
    run: mergeCommand,
  },
  generate: {
    usage: 'diffpo generate --model DIR (--chat "a message" | --text "a prompt" | --prompt "1,2,3[;4,5]") [--gen-length N] [strategy flags] [...]',
    summary: "Decodes a completion per prompt: with --chat (one user turn through the folder's chat template) or --text, prints the completion's text; with --prompt (token ids), the tokens, the NFE and a per-step trace (positions, tokens, confidences).",
    flags: [
      MODEL_DIR,
      { name: 'chat', type: 'string', help: "a user message, rendered with the tokenizer's chat template (with the assistant's generation prompt)", meta: '"TEXT"' },
      { name: 'text', type: 'string', help: 'a prompt text, tokenized as it is', meta: '"TEXT"' },
      { name: 'prompt', type: 'string', help: 'prompt token ids, prompts separated by ;', meta: '"1,2;3"' },
      { name: 'gen-length', type: 'int', help: 'tokens to generate per prompt (default 128 with --chat or --text)' },
      ...STRATEGY_FLAGS,
      { name: 'temperature', type: 'number', default: 0, help: '0 = argmax; else Gumbel-max sampling at this temperature' },
      { name: 'seed', type: 'int', default: 0, help: 'seed of the sampling noise' },
      { name: 'max-nfe', type: 'int', help: 'NFE budget per sequence: the last allowed forward fills what is left' },
      JSON_FLAG,
      ...MODEL_FLAGS,
    ],
    run: generateCommand,
  },
  eval: {
    usage: 'diffpo eval --model DIR --task NAME [--split test|validation] [--data FILE] [--limit N] [strategy flags] [--pareto [--out FILE.svg]] [--json]',
    summary: "Accuracy, mean reward, mean NFE and tokens/s on the task's test set (or FILE); --pareto sweeps thresholds and one token per step instead and draws the accuracy-vs-NFE plot.",
    flags: [
      MODEL_DIR,
      TASK,
      { name: 'split', type: 'string', default: 'test', choices: ['test', 'validation'], help: 'the test set (scored once per finished model) or the validation set (what choices are made on)' },
      DATA_FLAG,
      VALIDATION_FLAG,
      { name: 'limit', type: 'int', help: 'evaluate the first N items only' },
      { name: 'prompt', type: 'string', choices: ['eval', 'train'], help: "gsm8k and math500: d1's evaluation prompt (the default: the math-expert prompt, the answer started with <reasoning>, as d1's published accuracies) or its training prompt" },
      { name: 'gen-length', type: 'int', help: "tokens per answer (default: the model folder's generation_config.json gen_length, else the task's: gsm8k and math500 256, as d1)" },
      ...STRATEGY_FLAGS,
      { name: 'learned', type: 'boolean', help: "decode with the model's learned per-prompt threshold (a checkpoint trained with --sampler learned)" },
      { name: 'max-nfe', type: 'int', help: 'NFE budget per sequence: the last allowed forward fills what is left' },
      { name: 'budgets', type: 'numbers', default: [], help: 'accuracy at each per-sequence NFE budget, e.g. 2,4,8,16 (with the strategy flags, default threshold 0.9; --threshold 1.01 spends the whole budget)', meta: 'N,N,...' },
      { name: 'pareto', type: 'boolean', help: 'sweep thresholds 0.5..0.95 and one token per step (with --learned: the learned point against that frontier)' },
      { name: 'thresholds', type: 'numbers', help: 'with --pareto: the thresholds to sweep (above 1: one token per step)', meta: 'N,N,...' },
      { name: 'baseline', type: 'string', help: "with --pareto: a model folder (the base, say) swept on the same items: each point against its frontier (the upper concave hull), in points at equal NFE and NFE saved at equal accuracy", meta: 'DIR' },
      { name: 'out', type: 'string', help: 'with --pareto: the SVG to write (default runs/<task>-pareto.svg)', meta: 'FILE.svg' },
      JSON_FLAG,
      ...MODEL_FLAGS,
    ],
    run: evalCommand,
  },
  sft: {
    usage: 'diffpo sft --task NAME[,NAME...] --out DIR [--config tiny|small|medium] [--steps N] [trainer flags]',
    summary: 'Supervised fine-tuning on generated items (never an evaluation item), with a progress bar, metrics.jsonl and a resumable checkpoint in DIR; several tasks mix in every batch (--eval-every evaluates the first).',
    flags: [
      { name: 'task', type: 'string', help: `one task or several separated by commas (${TASKS.join(', ')})`, meta: 'NAME[,NAME]' },
      { name: 'out', type: 'string', help: 'the run folder', meta: 'DIR' },
      { name: 'config', type: 'string', default: 'tiny', choices: Object.keys(PRESETS), help: 'size preset of the new model' },
      { name: 'steps', type: 'int', default: 1000, help: 'total steps (a resumed run continues to this count)' },
      { name: 'resume', type: 'boolean', help: 'continue the run in --out' },
      EXPORT_FLAG,
      DIFFICULTY,
      VALIDATION_FLAG,
      { name: 'limit', type: 'int', help: "score the first N items of the first task's test and validation sets at the end (default all; 0 none)" },
      ...flagsFromSpecs(SFT_DEFAULTS, { checkpointEvery: { default: 100, why: 'a long run keeps its progress' } }),
      ...MODEL_FLAGS,
    ],
    run: sftCommand,
  },
  train: {
    usage: 'diffpo train --task NAME [--method diffpo|d1|trace] [--steps 100] [--out DIR] [trainer flags]',
    summary:
      "RL from the shipped base checkpoint models/<task>-base: sweeps thresholds on the test set, trains with the DiFFPO trainer (a progress line per step), sweeps again, prints a before/after table, and writes a resumable checkpoint, metrics.jsonl and the report (report.html with the accuracy-vs-NFE plot and per-step curves, report.md, *.svg, result.json) to DIR.",
    flags: [
      TASK,
      { name: 'steps', type: 'int', default: 150, help: "total RL steps (a resumed run continues to this count); default from the task's recipe (countdown3: 64, which keeps the main job near 10 minutes on 2 cores with its validation sweeps), else 150" },
      { name: 'from', type: 'string', help: 'the model folder to start from (default: the shipped base models/<task>-base)', meta: 'DIR' },
      { name: 'out', type: 'string', help: 'the run folder (default runs/<task>-<method>)', meta: 'DIR' },
      { name: 'resume', type: 'boolean', help: 'continue the run in --out' },
      EXPORT_FLAG,
      { name: 'threshold', type: 'number', default: DEFAULT_THRESHOLD, help: 'rollout and evaluation threshold' },
      DATA_FLAG,
      VALIDATION_FLAG,
      { name: 'limit', type: 'int', help: 'evaluate on the first N test (and validation) items only; 0 evaluates nothing (training alone, to time or size the steps of a large model)' },
      DIFFICULTY,
      { name: 'solutions', type: 'string', choices: [...SUDOKU4_SOLUTIONS], help: "sudoku4's training puzzles: 'unique' solutions, 'any' (they may have several, as a quarter of the test set's do) or 'several' (only those with two or more); unless unique, a completion is credited for whichever solution it matches best; default from the task's RL stream (see runRl)" },
      { name: 'search-fraction', type: 'number', help: "countdown3's training items: the fraction that need a search (the rest are signed sums of their numbers; d1's test set has 27 of 256 that need a search, the uniform draw about a third); default from the task's RL recipe, else the uniform draw's" },
      { name: 'sweep', type: 'numbers', default: [...RUN_SWEEP], help: "the thresholds evaluated on the test set before and after (above 1: one token per step, which costs a forward per generated token); default from the task's recipe (countdown3: no one token per step), else these", meta: 'N,N,...' },
      { name: 'time-budget', type: 'number', help: 'seconds of training after which no step starts', meta: 'SECONDS' },
      { name: 'eval-every', type: 'int', help: 'every N steps, accuracy and mean NFE on the validation set at the rollout threshold (with a learned sampler: its learned point), in metrics.jsonl (validationAccuracy, validationNfe): when a run peaked, where seeds part', meta: 'N' },
      { name: 'sampler', type: 'string', default: 'fixed', choices: ['fixed', 'learned', 'sampler-only'], help: 'the rollout threshold: fixed, or a learned per-prompt threshold on --head-grid, trained with the model or alone' },
      // the learned sampler's options, stored under their --head-* names (its lr is not the trainer's)
      ...flagsFromSpecs(SAMPLER_DEFAULTS, {}, { grid: 'head-grid', features: 'head-features', init: 'head-init', cost: 'head-cost', kind: 'head-kind', lr: 'head-lr' }).map((f) => ({ ...f, key: undefined })),
      { name: 'gen-length', type: 'int', help: "tokens per answer (default: the starting folder's generation_config.json gen_length, else the task's: gsm8k and math500 256, as d1)" },
      { name: 'lora-rank', type: 'int', help: "train LoRA adapters of this rank on the frozen starting model (loaded in its own dtype: LLaDA-8B stays BF16) instead of all its weights; checkpoints are PEFT adapter folders (d1: 128)" },
      { name: 'lora-alpha', type: 'number', help: 'LoRA scale alpha / rank (default rank / 2: d1 has 64 at rank 128)' },
      { name: 'lora-dropout', type: 'number', default: 0, help: "PEFT's lora_dropout on the adapters' inputs in the policy-gradient forwards (d1: 0.05)" },
      { name: 'lora-targets', type: 'string', default: D1_LORA_TARGETS.join(','), help: `the layers that get adapters, in every block (${LORA_TARGETS.join(', ')}); default d1's that exist in LLaDA`, meta: 'NAME,NAME,...' },
      { name: 'checkpointing', type: 'string', default: 'none', choices: ['none', 'layer'], help: "gradient checkpointing: 'layer' keeps each layer's input only and recomputes the layer in the backward (about one more forward's work; activations of one layer instead of all)" },
      ...flagsFromSpecs(DIFFPO_DEFAULTS, { checkpointEvery: { default: 25, why: 'a run can resume from its last quarter-hundred steps' } }, { temperature: 'rollout-temperature' }),
      ...MODEL_FLAGS,
    ],
    run: trainCommand,
  },
  experiment: {
    usage: 'diffpo experiment FILE.json [--jobs N]',
    summary:
      'Runs an experiment described in a JSON file ({out, claim, train: {diffpo train flags}, grid: {flag: [values]}, seeds: [...], thresholds}): every grid cell and seed as a diffpo train run in OUT/<cell>/seed-<s>/ (finished runs kept, interrupted ones resumed), then report.md (test set), report-validation.md and report.svg in OUT.',
    positionals: true,
    flags: [{ name: 'jobs', type: 'int', default: 1, help: 'runs at a time (each a process; give --threads in the file\'s train flags to share the cores)' }],
    run: experimentCommand,
  },
  report: {
    usage: 'diffpo report RUN... [--split test|validation] [--baseline PATH[,PATH]] [--thresholds N,N] [--pool NAME] [--markdown FILE] [--svg FILE] [--json]',
    summary:
      "Summarises finished runs (folders with result.json) by set, a set being the runs whose folder names differ only in a seed part (rs2-300-s0, rs2-300-s1; or set/seed-0, set/seed-1): per decoding, accuracy and mean NFE as mean ± sample std over seeds, and each seed's gain over the baseline's frontier (the upper concave hull of its threshold sweep) at equal NFE and NFE saved at equal accuracy. Choose on --split validation; report the test set.",
    positionals: true,
    flags: [
      { name: 'split', type: 'string', default: 'test', choices: ['test', 'validation'], help: 'which evaluation of the runs to read: the test set (reported) or the validation set (what choices are made on)' },
      { name: 'baseline', type: 'string', help: "what gains are measured against (default each run's starting model, its sweep before training): run folders (their sweeps after training, averaged) or `diffpo eval --pareto --json` files", meta: 'PATH[,PATH]' },
      { name: 'thresholds', type: 'numbers', help: "the decodings to list (default each run's own threshold; the learned threshold is listed where the runs have one)", meta: 'N,N,...' },
      { name: 'pool', type: 'string', help: 'read every run given as one set of this name, seeds repeating (two sets of one experiment made with other random draws, as one sample)', meta: 'NAME' },
      { name: 'markdown', type: 'string', help: 'also write the table as Markdown here', meta: 'FILE' },
      { name: 'svg', type: 'string', help: "also write the accuracy-vs-NFE plot here (the baseline's sweep and hull, each set's mean sweep, learned points)", meta: 'FILE' },
      JSON_FLAG,
    ],
    run: reportCommand,
  },
};


async function experimentCommand(v: FlagValues): Promise<void> {
  const files = positionalArgs.get(v) ?? [];
  if (files.length !== 1) throw new InvalidArgumentError('experiment needs one description file: diffpo experiment FILE.json (see diffpo experiment --help)');
  const spec = await readExperiment(files[0]!);
  await runExperiment(spec, { jobs: v.jobs as number });
  process.stdout.write(`${readFileSync(join(spec.out, 'report.md'), 'utf8')}\nreports: ${join(spec.out, 'report.md')}, ${join(spec.out, 'report-validation.md')}\n`);
}

async function reportCommand(v: FlagValues): Promise<void> {
  const dirs = positionalArgs.get(v) ?? [];
  if (dirs.length === 0) throw new InvalidArgumentError('report needs run folders: diffpo report RUN... (see diffpo report --help)');
  const r = await summarizeRuns([...dirs], {
    split: v.split as Split,
    thresholds: v.thresholds as number[] | undefined,
    baseline: typeof v.baseline === 'string' ? v.baseline.split(',') : undefined,
    pool: v.pool as string | undefined,
  });
  for (const [file, text] of [
    [v.markdown, r.markdown],
    [v.svg, r.svg],
  ] as const)
    if (typeof file === 'string') {
      await mkdir(dirname(file), { recursive: true });
      await writeFile(file, text);
    }
  if (v.json) return void process.stdout.write(JSON.stringify({ split: r.split, sets: r.sets }, null, 2) + '\n');
  process.stdout.write(r.markdown);
}

function usage(): string {
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(9)} ${c.summary.split('. ')[0]!.replace(/\.$/, '')}`);
  return `usage: diffpo <command> [flags]\n\ncommands:\n${lines.join('\n')}\n\n'diffpo <command> --help' lists a command's flags with their defaults; 'diffpo --version' prints the version.\nUnder 'mpirun -np N', sft, train and eval run data-parallel over the N processes (same flags; the batch flags are the global batch).\n`;
}

function parseRows(flag: string, text: string): number[][] {
  return text.split(';').map((row) =>
    row.split(',').map((s) => {
      const v = Number(s.trim());
      if (s.trim() === '' || !Number.isInteger(v)) throw new InvalidArgumentError(`${flag}: '${s}' is not an integer token id`);
      return v;
    }),
  );
}

function required(v: FlagValues, command: string, ...names: string[]): void {
  const missing = names.filter((n) => v[n.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase())] === undefined);
  if (missing.length) throw new InvalidArgumentError(`${command} needs ${missing.map((n) => `--${n}`).join(' and ')} (see diffpo ${command} --help)`);
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (!command || command === '--help' || command === '-h') return void process.stdout.write(usage());
  if (command === '--version' || command === '-v') {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
    return void process.stdout.write(`diffpo ${pkg.version}\n`);
  }
  const c = COMMANDS[command];
  if (!c) throw new InvalidArgumentError(`unknown command '${command}' (one of ${Object.keys(COMMANDS).join(', ')}; see diffpo --help)`);
  if (rest.includes('--help') || rest.includes('-h')) return void process.stdout.write(flagsHelp(c.usage, c.summary, c.flags));
  const v = parseFlags(command, c.flags, rest, c.positionals);
  let threads = v.threads as number | undefined;
  const world = worldFromEnvironment();
  if (world.size > 1) {
    // under mpirun every process runs the command; rank 0 speaks and writes, the others only compute
    if (world.rank !== 0) for (const stream of [process.stdout, process.stderr]) stream.write = (() => true) as typeof stream.write;
    // the machine's cores shared among its processes, unless told
    threads ??= Math.max(1, Math.floor(availableParallelism() / (launchedLocalSize() ?? world.size)));
  }
  await c.run(v, { threads, backend: v.backend as BackendName });
}

async function logitsCommand(v: FlagValues, run: ModelOptions): Promise<void> {
  required(v, 'logits', 'model', 'tokens');
  const rows = parseRows('--tokens', v.tokens as string);
  const seqLen = rows[0]!.length;
  if (rows.some((r) => r.length !== seqLen)) throw new InvalidArgumentError('--tokens: every row must have the same length');
  const model = await DiffusionLM.fromPretrained(v.model as string, run);
  try {
    const flat = await model.logits(Int32Array.from(rows.flat()), { batch: rows.length, seqLen });
    const E = model.config.embedding_size;
    const logits = rows.map((_, b) => Array.from({ length: seqLen }, (_, t) => Array.from(flat.subarray((b * seqLen + t) * E, (b * seqLen + t + 1) * E))));
    process.stdout.write(JSON.stringify({ logits }) + '\n');
  } finally {
    model.dispose();
  }
}

async function mergeCommand(v: FlagValues, run: ModelOptions): Promise<void> {
  required(v, 'merge', 'model', 'out');
  const { model, ...folder } = await loadModelFolder(v.model as string, { ...run, dtype: v.dtype === 'f32' ? 'f32' : 'auto' });
  try {
    if (!model.lora) throw new InvalidArgumentError(`merge: ${v.model} is not an adapter folder (no adapter_config.json)`);
    await model.mergeAdapters();
    await writeModelFolder(v.out as string, model, { ...folder, dtype: v.dtype as 'f32' | 'bf16' });
  } finally {
    model.dispose();
  }
  process.stdout.write(`wrote ${v.out} (the adapters of ${v.model} merged into their base, ${v.dtype === 'f32' ? 'float32' : 'BF16'})\n`);
}

async function initCommand(v: FlagValues, run: ModelOptions): Promise<void> {
  required(v, 'init', 'out');
  const out = v.out as string;
  if (v.like !== undefined) {
    const t0 = performance.now();
    const n = await writeLladaFolder(out, { ...run, layers: v.layers as number, width: v.width as number | undefined, shards: v.shards as number, seed: v.seed as number });
    return void process.stdout.write(`wrote ${out} (LLaDA-8B-Instruct's layout, ${v.layers} layer(s), ${n} parameters, BF16, ${((performance.now() - t0) / 1000).toFixed(1)} s)\n`);
  }
  const dtype = v.dtype as 'f32' | 'bf16';
  const model = DiffusionLM.create(presetConfig(v.config as PresetName), { seed: v.seed as number, ...run });
  try {
    await model.save(out, { dtype });
    process.stdout.write(`wrote ${out} (${model.numParameters} parameters, ${dtype})\n`);
  } finally {
    model.dispose();
  }
}

/** The decoding strategy the flags name: exactly one of them, or (when `fallback`) the default threshold. */
function strategyFromFlags(v: FlagValues, command: string, fallback: boolean): DecodingStrategy {
  const given = (['steps', 'threshold', 'factor', 'gamma'] as const).filter((k) => v[k] !== undefined);
  if (given.length === 0 && fallback) return { kind: 'threshold', threshold: DEFAULT_THRESHOLD };
  if (given.length !== 1) throw new InvalidArgumentError(`${command} needs exactly one of --steps, --threshold, --factor, --gamma`);
  const value = v[given[0]!] as number;
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

/** eval's decoding: --learned, or the strategy flags (default threshold decoding at 0.9). */
function evalStrategy(v: FlagValues): DecodingStrategy {
  if (!v.learned) return strategyFromFlags(v, 'eval', true);
  const other = (['steps', 'threshold', 'factor', 'gamma'] as const).find((k) => v[k] !== undefined);
  if (other) throw new InvalidArgumentError(`eval: --learned and --${other} both choose the decoding; give one`);
  return { kind: 'learned' };
}

async function generateCommand(v: FlagValues, run: ModelOptions): Promise<void> {
  required(v, 'generate', 'model');
  const given = (['chat', 'text', 'prompt'] as const).filter((k) => v[k] !== undefined);
  if (given.length !== 1) throw new InvalidArgumentError('generate needs exactly one of --chat, --text, --prompt');
  const textual = given[0] !== 'prompt';
  if (!textual) required(v, 'generate', 'gen-length');
  const genLength = (v.genLength as number | undefined) ?? 128;
  const folder = textual ? await readModelFolder(v.model as string) : null;
  let prompts: Int32Array[];
  if (folder) {
    const { tokenizer } = folder;
    const text = v.chat !== undefined ? tokenizer.applyChatTemplate([{ role: 'user', content: v.chat as string }], { addGenerationPrompt: true }) : (v.text as string);
    if (text === null) throw new InvalidArgumentError(`--chat needs a chat template, and ${v.model as string}'s tokenizer has none: use --text`);
    prompts = [tokenizer.encode(text)];
  } else prompts = parseRows('--prompt', v.prompt as string).map((r) => Int32Array.from(r));
  const trace: { step: number; unmasked: { sequence: number; position: number; token: number; confidence: number }[] }[] = [];
  const options: GenerateOptions = {
    genLength,
    blockLength: (v.blockLength as number | undefined) ?? genLength,
    strategy: strategyFromFlags(v, 'generate', textual),
    temperature: v.temperature as number,
    seed: v.seed as number,
    maxNfe: v.maxNfe as number | undefined,
    cache: v.cache as GenerateOptions['cache'],
    onStep: (e) =>
      void trace.push({
        step: e.step,
        unmasked: Array.from(e.unmasked.token, (token, i) => ({ sequence: e.unmasked.sequence[i]!, position: e.unmasked.position[i]!, token, confidence: e.unmasked.confidence[i]! })),
      }),
  };
  const model = await DiffusionLM.fromPretrained(v.model as string, { ...run, dtype: 'auto' });
  try {
    if (folder) checkTokenizerFits(folder.tokenizer, model.config);
    const r = await generate(model, prompts, options);
    const tokens = prompts.map((_, b) => Array.from(r.tokens.subarray(b * genLength, (b + 1) * genLength)));
    if (folder) {
      const text = completionText(folder.tokenizer, tokens[0]!);
      if (v.json) return void process.stdout.write(JSON.stringify({ text, tokens: tokens[0], nfe: r.nfe[0], hitBudget: Boolean(r.hitBudget[0]) }) + '\n');
      return void process.stdout.write(`${text}\n\n(${r.nfe[0]} forwards for ${genLength} tokens${r.hitBudget[0] ? ', budget reached' : ''})\n`);
    }
    if (v.json) return void process.stdout.write(JSON.stringify({ tokens, nfe: Array.from(r.nfe), hitBudget: Array.from(r.hitBudget, Boolean), steps: trace }) + '\n');
    for (const s of trace) process.stdout.write(`step ${s.step}: ` + s.unmasked.map((u) => `[${u.sequence}] ${u.position}=${u.token} (${u.confidence.toFixed(3)})`).join('  ') + '\n');
    tokens.forEach((t, b) => process.stdout.write(`sequence ${b}: ${t.join(',')}  NFE ${r.nfe[b]}${r.hitBudget[b] ? ' (budget reached)' : ''}\n`));
  } finally {
    model.dispose();
  }
}

async function evalCommand(v: FlagValues, run: ModelOptions): Promise<void> {
  required(v, 'eval', 'model', 'task');
  const math = v.task === 'gsm8k' || v.task === 'math500';
  const task = getTask(v.task as TaskName, undefined, { prompt: (v.prompt as 'eval' | 'train' | undefined) ?? (math ? 'eval' : undefined) });
  let items = v.split === 'validation' ? await validationSetOf(task, v) : await loadTestSet(task, v.data as string | undefined);
  if (v.limit !== undefined) items = items.slice(0, v.limit as number);
  const folder = await readModelFolder(v.model as string);
  const { tokenizer } = folder;
  const genLength = resolveGenLength(task, v.genLength as number | undefined, folder.genLength);
  const blockLength = (v.blockLength as number | undefined) ?? task.blockLength;
  const model = await DiffusionLM.fromPretrained(v.model as string, { ...run, dtype: 'auto' });
  try {
    checkTokenizerFits(tokenizer, model.config);
    const budgets = v.budgets as number[];
    if (budgets.length > 0) {
      const bar = itemProgress('budget sweep');
      const strategy = evalStrategy(v);
      const points = await budgetSweep(model, task, { items, tokenizer, genLength, blockLength, budgets, strategy, onProgress: bar.onProgress }).finally(bar.done);
      if (v.json) return void process.stdout.write(JSON.stringify({ task: task.name, strategy, points }) + '\n');
      process.stdout.write(`${strategyLabel(strategy)}\n| NFE budget | accuracy | mean NFE |\n|---|---|---|\n`);
      for (const p of points) process.stdout.write(`| ${p.budget} | ${p.accuracy.toFixed(3)} | ${p.meanNfe.toFixed(2)} |\n`);
      return;
    }
    if (v.pareto) {
      const thresholds = v.thresholds as number[] | undefined;
      const sweepOf = async (m: DiffusionLM, what: string) => {
        const bar = itemProgress(`${what} threshold sweep`);
        return paretoSweep(m, task, { items, tokenizer, genLength, blockLength, thresholds, onProgress: bar.onProgress }).finally(bar.done);
      };
      const points = await sweepOf(model, 'the model\'s');
      let learned: ParetoPoint | undefined;
      if (v.learned) {
        const r = await evaluate(model, task, { items, tokenizer, genLength, sampler: { strategy: { kind: 'learned' }, blockLength } });
        learned = { label: 'learned threshold', strategy: { kind: 'learned' }, accuracy: r.accuracy, meanReward: r.meanReward, meanNfe: r.meanNfe };
      }
      let base: ParetoPoint[] | undefined;
      if (typeof v.baseline === 'string') {
        const b = await DiffusionLM.fromPretrained(v.baseline, { ...run, dtype: 'auto' });
        base = await sweepOf(b, "the baseline's").finally(() => b.dispose());
      }
      // the learned point against the model's own fixed frontier, every point against the baseline's
      const ownGain = learned ? paretoCompare(points, [learned])[0] : undefined;
      const vsBase = base ? paretoCompare(base, [...points, ...(learned ? [learned] : [])]) : undefined;
      const front = new Set(paretoFront(points));
      const svg = (v.out as string | undefined) ?? join('runs', `${task.name}-pareto.svg`);
      if (worldFromEnvironment().rank === 0) {
        await mkdir(dirname(svg), { recursive: true });
        const curves = [{ name: v.model as string, points, hull: true }, ...(base ? [{ name: `baseline ${v.baseline as string}`, points: base, hull: true }] : [])];
        await writeFile(svg, paretoSvg(curves, learned ? [{ name: 'learned threshold', point: learned }] : [], `${task.name}: accuracy vs mean NFE`));
      }
      if (v.json) return void process.stdout.write(JSON.stringify({ task: task.name, items: items.length, points, svg, learned: ownGain, baseline: base && { points: base, comparisons: vsBase } }) + '\n');
      const gain = (c: ParetoComparison | undefined) =>
        c === undefined ? '' : ` ${c.accuracyGain === null ? 'n/a' : `${c.accuracyGain >= 0 ? '+' : ''}${(100 * c.accuracyGain).toFixed(1)}`} | ${c.nfeSaved === null ? 'n/a' : c.nfeSaved.toFixed(2)} |`;
      const baseAt = (p: ParetoPoint) => base?.find((q) => q.label === p.label);
      process.stdout.write(`${items.length} items\n\n| decoding | accuracy | mean NFE | on the front |${base ? ' baseline: accuracy | baseline: mean NFE | gain over the baseline at equal NFE (points) | NFE saved at equal accuracy |' : ''}\n|---|---|---|---|${base ? '---|---|---|---|' : ''}\n`);
      [...points, ...(learned ? [learned] : [])].forEach((p, i) => {
        const b = baseAt(p);
        const own = p === learned && ownGain ? `${ownGain.accuracyGain === null ? 'n/a' : `${(100 * ownGain.accuracyGain).toFixed(1)} points`} over its own fixed frontier` : front.has(p) ? 'yes' : '';
        const cols = base ? ` ${b ? b.accuracy.toFixed(3) : '-'} | ${b ? b.meanNfe.toFixed(2) : '-'} |${gain(vsBase![i])}` : '';
        process.stdout.write(`| ${p.label} | ${p.accuracy.toFixed(3)} | ${p.meanNfe.toFixed(2)} | ${own} |${cols}\n`);
      });
      return void process.stdout.write(`\nplot: ${svg}\n`);
    }
    const strategy = evalStrategy(v);
    const bar = itemProgress('evaluating');
    const sampler = { strategy, blockLength: blockLength ?? genLength, cache: v.cache as GenerateOptions['cache'], maxNfe: v.maxNfe as number | undefined };
    const { completions, ...r } = await evaluate(model, task, { items, tokenizer, genLength, sampler, onProgress: bar.onProgress }).finally(bar.done);
    void completions;
    if (v.json) process.stdout.write(JSON.stringify({ task: task.name, strategy, ...r }) + '\n');
    else process.stdout.write(`${task.name}: ${r.items} items  accuracy ${r.accuracy.toFixed(3)}  mean reward ${r.meanReward.toFixed(3)}  mean NFE ${r.meanNfe.toFixed(2)}  ${r.tokensPerS.toFixed(0)} tokens/s\n`);
  } finally {
    model.dispose();
  }
}

/**
 * The validation set of a command: --validation, else the sibling of --data, else the task's own;
 * with `optional`, none (an empty list, with a note) for a task that has none (math500).
 */
async function validationSetOf(task: Task<unknown>, v: FlagValues, optional = false): Promise<unknown[]> {
  const file = (v.validation as string | undefined) ?? siblingValidationFile(v.data as string | undefined);
  if (optional && !file && !task.validationSetFile && !task.validationSet) {
    process.stderr.write(`note: task '${task.name}' has no validation set: nothing is evaluated between steps (give one with --validation FILE)\n`);
    return [];
  }
  return loadValidationSet(task, file);
}

async function sftCommand(v: FlagValues, run: ModelOptions): Promise<void> {
  required(v, 'sft', 'task', 'out');
  const names = (v.task as string).split(',') as TaskName[];
  const difficulty = parseDifficulty(v.difficulty as string | undefined);
  const tasks = names.map((name) => getTask(name, difficulty));
  const steps = v.steps as number;
  const out = v.out as string;
  // every task's test and validation items stay out of training; periodic evaluation uses the first task's validation set
  const tests = await Promise.all(names.map((name) => loadTestSet(getTask(name))));
  const validations = await Promise.all(names.map((name, k) => validationSetOf(getTask(name), k === 0 ? v : {}, true)));
  const trainer = Object.fromEntries(Object.keys(SFT_DEFAULTS).filter((k) => v[k] !== undefined).map((k) => [k, v[k]])) as Partial<SftOptions>;
  const options: SftOptions = {
    ...trainer,
    ...(tasks.length === 1 ? { task: tasks[0]! } : { tasks }),
    outDir: out,
    exclude: [...tests, ...validations].flatMap((items, k) => items.map((t) => tasks[k % tasks.length]!.key(t))),
    evalItems: (validations[0]!.length ? validations[0]! : tests[0]!).slice(0, 64),
  };
  const sft = v.resume ? await SftTrainer.resume(out, { ...options, ...run }) : new SftTrainer(DiffusionLM.create(v.config as PresetName, { seed: options.seed, ...run }), options);
  const progress = new Progress(steps, 50);
  const first = sft.step;
  try {
    await sft.train({
      steps,
      onStep: (i) => {
        const evalText = i.eval ? `  eval acc ${i.eval.accuracy.toFixed(3)} NFE ${i.eval.meanNfe.toFixed(1)}` : '';
        progress.update(i.step, `loss ${i.loss.toFixed(4)}  lr ${i.lr.toExponential(2)}${evalText}`, first, !!i.eval);
      },
    });
  } finally {
    progress.done();
  }
  // the run's record, as train writes one: the first task's test set scored once, its validation set beside it
  const scored = async (items: unknown[]) => {
    if (!items.length) return undefined;
    const { completions: _, ...r } = await evaluate(sft.model, tasks[0]!, { items, tokenizer: sft.tokenizer, genLength: sft.responseLength, world: sft.world });
    return r;
  };
  const limit = (v.limit as number | undefined) ?? Infinity;
  const [test, validation] = [await scored(tests[0]!.slice(0, limit)), await scored(validations[0]!.slice(0, limit))];
  if (sft.world.rank === 0) {
    const result = { task: names.join('+'), method: 'sft', seed: options.seed ?? SFT_DEFAULTS.seed.default, steps: sft.step, seconds: progress.seconds, peakRssBytes: process.resourceUsage().maxRSS * 1024, test, validation, command: ['diffpo', ...process.argv.slice(2)].join(' '), options: trainer };
    await writeFile(join(out, 'result.json'), JSON.stringify(result, null, 2) + '\n');
  }
  const at = (r: { accuracy: number; meanNfe: number } | undefined, what: string) => (r ? `, ${what} accuracy ${r.accuracy.toFixed(3)} at NFE ${r.meanNfe.toFixed(2)}` : '');
  process.stdout.write(`wrote ${out} after ${sft.step} steps (${progress.seconds.toFixed(0)} s${at(test, 'test')}${at(validation, 'validation')}; result.json)\n`);
  if (typeof v.export === 'string' && sft.world.rank === 0) {
    await sft.export(v.export, 'bf16');
    process.stdout.write(`exported ${v.export} (BF16, for inference)\n`);
  }
  sft.model.dispose();
}

async function trainCommand(v: FlagValues, run: ModelOptions): Promise<void> {
  required(v, 'train', 'task');
  const task = getTask(v.task as TaskName);
  const { difficulty, solutions, searchFraction, trainer, headGrid, steps, sweep } = recipeOptions(v.task as string, v);
  const trainTask = getTask(v.task as TaskName, difficulty, { solutions, searchFraction });
  let test = await loadTestSet(task, v.data as string | undefined);
  let validation = await validationSetOf(task, v, true);
  if (v.limit !== undefined) [test, validation] = [test.slice(0, v.limit as number), validation.slice(0, v.limit as number)];
  const out = (v.out as string | undefined) ?? join('runs', `${task.name}-${trainer.method}`);
  const { table, report } = await runRl({
    task,
    trainTask,
    from: v.from as string | undefined,
    testItems: test,
    validationItems: validation,
    command: ['diffpo', ...process.argv.slice(2)].join(' '),
    out,
    steps,
    resume: v.resume as boolean,
    threshold: v.threshold as number,
    timeBudget: v.timeBudget as number | undefined,
    sweep,
    evalEvery: v.evalEvery as number | undefined,
    sampler: v.sampler as 'fixed' | 'learned' | 'sampler-only',
    lambda: v.lambda as number,
    head: { grid: headGrid, features: v.headFeatures as HeadFeatures, init: v.headInit as number, cost: v.headCost as 'additive' | 'correct-bonus', kind: v.headKind as 'threshold' | 'entropy', lr: v.headLr as number },
    trainer,
    genLength: v.genLength as number | undefined,
    lora: v.loraRank === undefined ? undefined : { rank: v.loraRank as number, alpha: v.loraAlpha as number | undefined, dropout: v.loraDropout as number, targets: (v.loraTargets as string).split(',').map((t) => t.trim()) as LoraTarget[] },
    model: { ...run, checkpointing: v.checkpointing as 'none' | 'layer' },
  });
  process.stdout.write(report ? `${table}\n\nreport: ${report} (and report.md)\n` : `${table}\n`);
  if (typeof v.export === 'string' && worldFromEnvironment().rank === 0) {
    const { model, ...folder } = await loadModelFolder(out, run);
    try {
      if (model.lora) await model.mergeAdapters(); // a full model for inference
      await writeModelFolder(v.export, model, { ...folder, dtype: 'bf16' });
    } finally {
      model.dispose();
    }
    process.stdout.write(`exported ${v.export} (BF16, for inference${v.loraRank !== undefined ? ', the adapters merged' : ''})\n`);
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  // written past a muted stderr: any rank's error is the job's; exiting non-zero then aborts every rank
  let who = '';
  try {
    const world = worldFromEnvironment();
    if (world.size > 1) who = ` (rank ${world.rank} of ${world.size})`;
  } catch {
    // the error being reported may be MPI's own
  }
  // one line with a code; a stack trace only when asked for (DIFFPO_DEBUG=1)
  const e = err as NodeJS.ErrnoException;
  const code = err instanceof DiffpoError ? err.code : typeof e?.code === 'string' ? e.code : 'ERR_INTERNAL';
  const message = (e?.message ?? String(err)).split('\n')[0];
  writeSync(2, `diffpo${who}: ${message} (${code})\n`);
  if (process.env.DIFFPO_DEBUG === '1' && e?.stack) writeSync(2, `${e.stack}\n`);
  process.exit(1);
});
