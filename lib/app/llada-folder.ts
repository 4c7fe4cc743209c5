import { readFileSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import data from 'diffpo/data';

import { InvalidArgumentError } from '../core/errors.js';
import type { ConfigInput } from '../engine/config.js';
import { DiffusionLM, type ModelOptions } from '../engine/model.js';
import { trainByteLevelBpe } from '../tasks/byte-level-bpe.js';

/** LLaDA-8B-Instruct's own configuration files, shipped without its weights (data/llada-8b-instruct/). */
export const LLADA_8B_DIR = join(data.dir, 'llada-8b-instruct');

export interface LladaFolderOptions extends ModelOptions {
  /** Transformer blocks (LLaDA-8B has 32). Default 1: the full-width model's embedding and head with one block. */
  layers?: number;
  /**
   * d_model (default LLaDA's 4096); a smaller width keeps LLaDA's vocabulary, names and head size
   * (128), with width / 128 heads and an FFN of 3 x width, for tests that need the real layout cheaply.
   */
  width?: number;
  /** Weight files: 1 writes model.safetensors, more Hugging Face's sharded layout with its index (LLaDA ships 6). */
  shards?: number;
  /** Seed of the random weights. Default 0. */
  seed?: number;
  /** Byte-level BPE merges learned for the stand-in tokenizer. Default 1000. */
  merges?: number;
}

/**
 * Writes a folder in LLaDA-8B-Instruct's layout with random BF16 weights: its config.json (with
 * `layers` blocks), its tokenizer_config.json (the chat template and 269 special tokens),
 * special_tokens_map.json and generation_config.json, and a stand-in tokenizer.json (a byte-level
 * BPE learned on GSM8K and MATH text, carrying LLaDA's special tokens at their real ids), so that
 * everything a real folder goes through can be tried without the 16 GB of weights. Returns the
 * number of parameters.
 */
export async function writeLladaFolder(dir: string, options: LladaFolderOptions = {}): Promise<number> {
  const { layers = 1, width, shards = 1, seed = 0, merges = 1000, ...run } = options;
  const config = JSON.parse(readFileSync(join(LLADA_8B_DIR, 'config.json'), 'utf8')) as Record<string, unknown>;
  if (!Number.isInteger(layers) || layers < 1 || layers > 32) throw new InvalidArgumentError(`layers must be an integer in [1, 32], got ${layers}`);
  config.n_layers = layers;
  if (width !== undefined) {
    if (!Number.isInteger(width) || width < 128 || width % 128 !== 0 || width > 4096) throw new InvalidArgumentError(`width must be a multiple of 128 in [128, 4096], got ${width}`);
    Object.assign(config, { d_model: width, n_heads: width / 128, n_kv_heads: width / 128, mlp_hidden_size: 3 * width });
  }
  const tokenizerConfig = JSON.parse(readFileSync(join(LLADA_8B_DIR, 'tokenizer_config.json'), 'utf8')) as { added_tokens_decoder: Record<string, { content: string; special?: boolean }> };
  const added = Object.entries(tokenizerConfig.added_tokens_decoder).map(([id, t]) => ({ id: Number(id), content: t.content, special: t.special }));
  const corpus = readFileSync(join(data.dir, 'gsm8k_train.jsonl'), 'utf8').slice(0, 60_000) + readFileSync(join(data.dir, 'math500_test.jsonl'), 'utf8').slice(0, 40_000);
  await mkdir(dir, { recursive: true });
  const model = DiffusionLM.create(config as ConfigInput, { ...run, seed, dtype: 'bf16' });
  try {
    await model.save(dir, { dtype: 'bf16', shards });
    await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(trainByteLevelBpe(corpus, merges, added)));
    for (const f of ['tokenizer_config.json', 'special_tokens_map.json', 'generation_config.json']) await writeFile(join(dir, f), await readFile(join(LLADA_8B_DIR, f)));
    return model.numParameters;
  } finally {
    model.dispose();
  }
}
