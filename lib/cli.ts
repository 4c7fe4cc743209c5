#!/usr/bin/env node
import { parseArgs } from 'node:util';

import { presetConfig, type PresetName } from './config.js';
import { DiffpoError, InvalidArgumentError } from './errors.js';
import { DiffusionLM } from './model.js';

const USAGE = `usage: diffpo <command> [options]

commands:
  logits --model DIR --tokens "1,2,3;4,5,6" [--threads N]
      Prints JSON {"logits": [[[...]]]} (one row of token ids per ';'-separated sequence,
      all of the same length), for cross-checking against other implementations.
  init --out DIR [--config tiny|small|medium] [--seed N] [--dtype f32|bf16]
      Writes a randomly initialised LLaDA-layout checkpoint.
`;

function parseTokenRows(text: string): { tokens: Int32Array; batch: number; seqLen: number } {
  const rows = text.split(';').map((row) =>
    row.split(',').map((s) => {
      const v = Number(s.trim());
      if (s.trim() === '' || !Number.isInteger(v)) throw new InvalidArgumentError(`--tokens: '${s}' is not an integer token id`);
      return v;
    }),
  );
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
  } else {
    throw new InvalidArgumentError(`unknown command '${command}'\n\n${USAGE}`);
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  if (err instanceof DiffpoError) process.stderr.write(`diffpo: ${err.message} (${err.code})\n`);
  else process.stderr.write(`diffpo: ${(err as Error)?.stack ?? String(err)}\n`);
  process.exit(1);
});
