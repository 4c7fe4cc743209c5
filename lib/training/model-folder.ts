import { existsSync } from 'node:fs';
import { join } from 'node:path';

import { CheckpointError } from '../core/errors.js';
import { readJsonFile, ensureDir } from '../core/files.js';
import { writeFileAtomic } from '../engine/checkpoint.js';
import { ADAPTER_CONFIG, readAdapterConfig, resolveAdapterBase } from '../engine/lora.js';
import { DiffusionLM, type LoadOptions } from '../engine/model.js';
import { loadTokenizer, type TextTokenizer } from '../tasks/tokenizer.js';

/**
 * A model folder: what inference needs in one directory. config.json and model.safetensors (or a
 * sharded index; the weights, with a learned sampler head if it has one), tokenizer.json (with
 * tokenizer_config.json and special_tokens_map.json for a Hugging Face tokenizer), and
 * generation_config.json (for diffpo's own models, the task and the tokens to generate per answer;
 * a Hugging Face folder's, such as LLaDA-8B-Instruct's, has neither).
 */
export interface ModelFolder {
  tokenizer: TextTokenizer;
  /** Tokens generated per answer (the response length, EOS padding included), when the folder records it. */
  genLength?: number;
  /** The task (or 'a+b' mixture) the model was trained on, when recorded. */
  task?: string;
}

/**
 * Reads a model folder's tokenizer and generation config (not the weights: DiffusionLM.fromPretrained,
 * or loadModelFolder). An adapter folder without a tokenizer of its own (PEFT writes none) uses its
 * base folder's.
 */
export async function readModelFolder(dir: string): Promise<ModelFolder> {
  const own = ['tokenizer.json', 'tokenizer_config.json'].some((f) => existsSync(join(dir, f)));
  const tokenizer = await loadTokenizer(!own && existsSync(join(dir, ADAPTER_CONFIG)) ? resolveAdapterBase(dir, (await readAdapterConfig(dir)).baseModel) : dir);
  const path = join(dir, 'generation_config.json');
  const json = (existsSync(path) ? ((await readJsonFile(path)) ?? {}) : {}) as { task?: unknown; gen_length?: unknown };
  if (json.gen_length !== undefined && (typeof json.gen_length !== 'number' || !Number.isInteger(json.gen_length) || json.gen_length < 1))
    throw new CheckpointError(`${path}: gen_length must be a positive integer, got ${JSON.stringify(json.gen_length)}`);
  return { tokenizer, genLength: json.gen_length as number | undefined, task: typeof json.task === 'string' ? json.task : undefined };
}

/** The weights and the rest of a model folder. */
export async function loadModelFolder(dir: string, options: LoadOptions = {}): Promise<ModelFolder & { model: DiffusionLM }> {
  const folder = await readModelFolder(dir);
  return { ...folder, model: await DiffusionLM.fromPretrained(dir, options) };
}

/**
 * Writes a model folder (each file atomically); a model with LoRA adapters as an adapter folder
 * (PEFT's files, naming the base it was loaded from) with the tokenizer and generation config.
 */
export async function writeModelFolder(dir: string, model: DiffusionLM, folder: ModelFolder & { dtype: 'f32' | 'bf16' }): Promise<void> {
  await ensureDir(dir);
  if (model.lora) await model.saveAdapter(dir);
  else await model.save(dir, { dtype: folder.dtype });
  for (const [name, json] of Object.entries(folder.tokenizer.files())) await writeFileAtomic(join(dir, name), JSON.stringify(json));
  await writeFileAtomic(join(dir, 'generation_config.json'), JSON.stringify({ task: folder.task, gen_length: folder.genLength }, null, 2) + '\n');
}
