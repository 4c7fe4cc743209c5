#!/usr/bin/env node
import { parseArgs } from 'node:util';

import { presetConfig, type PresetName } from './config.js';
import { DiffpoError, InvalidArgumentError } from './errors.js';
import { DiffusionLM } from './model.js';
import type { DecodingStrategy, GenerateOptions } from './sampler.js';

const USAGE = `usage: diffpo <command> [options]

commands:
  logits --model DIR --tokens "1,2,3;4,5,6" [--threads N]
      Prints JSON {"logits": [[[...]]]} (one row of token ids per ';'-separated sequence,
      all of the same length), for cross-checking against other implementations.
  init --out DIR [--config tiny|small|medium] [--seed N] [--dtype f32|bf16]
      Writes a randomly initialised LLaDA-layout checkpoint.
  generate --model DIR --prompt "1,2,3[;4,5]" --gen-length N [--block-length N]
           (--steps N | --threshold T | --factor F | --gamma G) [--temperature 0] [--seed 0]
           [--max-nfe N] [--json]
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
      out: { type: 'string' },
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
    },
  });
  const threads = values.threads !== undefined ? Number(values.threads) : undefined;
  if (command === 'logits') {
    if (!values.model || !values.tokens) throw new InvalidArgumentError('logits needs --model DIR and --tokens "1,2,3;4,5,6"');
    const { tokens, batch, seqLen } = parseTokenRows(values.tokens);
    const model = await DiffusionLM.fromPretrained(values.model, { threads });
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
    const model = DiffusionLM.create(presetConfig(values.config as PresetName), { seed: Number(values.seed), threads });
    try {
      await model.save(values.out, { dtype });
      process.stdout.write(`wrote ${values.out} (${model.numParameters} parameters, ${dtype})\n`);
    } finally {
      model.dispose();
    }
  } else if (command === 'generate') {
    await generateCommand(values, threads);
  } else {
    throw new InvalidArgumentError(`unknown command '${command}'\n\n${USAGE}`);
  }
}

function strategyFromFlags(v: Record<string, string | boolean | undefined>): DecodingStrategy {
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

async function generateCommand(v: Record<string, string | boolean | undefined>, threads: number | undefined): Promise<void> {
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
  const model = await DiffusionLM.fromPretrained(v.model, { threads });
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
