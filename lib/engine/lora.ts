import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';

import { CheckpointError, InvalidArgumentError } from '../core/errors.js';
import { readJsonFile } from '../core/files.js';
import { buildSafetensorsHeader, readSafetensorsHeader, type SafetensorsDtype } from './safetensors.js';
import { writeFileAtomic } from './checkpoint.js';

/** LLaDA's linear layers by their names, in the order of a block (native/lora.h's LoraTarget). */
export const LORA_TARGETS = ['q_proj', 'k_proj', 'v_proj', 'attn_out', 'ff_proj', 'up_proj', 'ff_out'] as const;
export type LoraTarget = (typeof LORA_TARGETS)[number];

/** d1's targets as they exist in LLaDA (its list also names gate_proj and down_proj, which LLaDA has not). */
export const D1_LORA_TARGETS: LoraTarget[] = ['q_proj', 'k_proj', 'v_proj', 'up_proj'];

export interface LoraOptions {
  /** The adapters' rank r (each target W (O, I) gets A (r, I) and B (O, r)); at most min(O, I). */
  rank: number;
  /** The scale is alpha / rank. Default: rank / 2 (d1's 64 at rank 128). */
  alpha?: number;
  /**
   * PEFT's lora_dropout (d1: 0.05): the probability of dropping each element of an adapter's input in
   * forwards that compute gradients (see DiffusionLM.seedDropout). Default 0.
   */
  dropout?: number;
  /** The layers that get adapters, in every block. Default: d1's, `q_proj`, `k_proj`, `v_proj`, `up_proj`. */
  targets?: LoraTarget[];
  /** Seed of A's initialisation (PEFT's: uniform in +-1/sqrt(fan_in); B starts at zero). Default 0. */
  seed?: number;
}

/** A model's adapters as configured (options resolved). */
export interface LoraConfig {
  rank: number;
  alpha: number;
  dropout: number;
  targets: LoraTarget[];
}

/** The options checked and defaulted, with typed errors naming the bad value. */
export function resolveLora(options: LoraOptions): LoraConfig {
  if (options === null || typeof options !== 'object') throw new InvalidArgumentError(`LoRA options must be an object, got ${String(options)}`);
  const { rank } = options;
  if (!Number.isInteger(rank) || rank < 1) throw new InvalidArgumentError(`LoRA rank must be a positive integer, got ${String(rank)}`);
  const alpha = options.alpha ?? rank / 2;
  if (!(typeof alpha === 'number' && Number.isFinite(alpha) && alpha > 0)) throw new InvalidArgumentError(`LoRA alpha must be a finite number > 0, got ${String(alpha)}`);
  const dropout = options.dropout ?? 0;
  if (!(typeof dropout === 'number' && dropout >= 0 && dropout < 1)) throw new InvalidArgumentError(`LoRA dropout must be a number in [0, 1), got ${String(dropout)}`);
  const targets = options.targets ?? D1_LORA_TARGETS;
  if (!Array.isArray(targets) || targets.length === 0) throw new InvalidArgumentError(`LoRA targets must be a non-empty array of ${LORA_TARGETS.join(', ')}`);
  for (const t of targets)
    if (!LORA_TARGETS.includes(t)) throw new InvalidArgumentError(`unknown LoRA target '${String(t)}': LLaDA's linear layers are ${LORA_TARGETS.join(', ')}`);
  return { rank, alpha, dropout, targets: LORA_TARGETS.filter((t) => targets.includes(t)) };
}

/** The native bit mask of a config's targets. */
export function targetMask(targets: LoraTarget[]): number {
  return targets.reduce((m, t) => m | (1 << LORA_TARGETS.indexOf(t)), 0);
}

export const ADAPTER_CONFIG = 'adapter_config.json';
export const ADAPTER_WEIGHTS = 'adapter_model.safetensors';

/** adapter_config.json as PEFT writes it for plain LoRA (what PEFT needs to load it back). */
export function adapterConfigJson(lora: LoraConfig, baseModel: string): Record<string, unknown> {
  return {
    peft_type: 'LORA',
    task_type: null,
    base_model_name_or_path: baseModel,
    r: lora.rank,
    lora_alpha: lora.alpha,
    lora_dropout: lora.dropout,
    target_modules: lora.targets,
    bias: 'none',
    fan_in_fan_out: false,
    use_rslora: false,
    use_dora: false,
    init_lora_weights: true,
    inference_mode: true,
    modules_to_save: null,
    layers_to_transform: null,
    layers_pattern: null,
    rank_pattern: {},
    alpha_pattern: {},
    revision: null,
  };
}

/**
 * Reads an adapter folder's adapter_config.json: plain LoRA only (a PEFT option this library does not
 * implement is a CheckpointError naming the key). Target names that are none of LLaDA's layers are
 * skipped, as PEFT skips a name that matches no module; none left is an error.
 */
export async function readAdapterConfig(dir: string): Promise<{ lora: LoraConfig; baseModel: string }> {
  const path = join(dir, ADAPTER_CONFIG);
  const c = (await readJsonFile(path)) as Record<string, unknown> | null;
  if (c === null || typeof c !== 'object' || Array.isArray(c)) throw new CheckpointError(`${path} is not a JSON object`);
  const bad = (key: string, why: string): never => {
    throw new CheckpointError(`${path}: ${key} ${why}, got ${JSON.stringify(c[key])}`);
  };
  if (c.peft_type !== 'LORA') bad('peft_type', "must be 'LORA'");
  const empty = (v: unknown) => v === undefined || v === null || (typeof v === 'object' && Object.keys(v as object).length === 0);
  for (const key of ['use_rslora', 'use_dora', 'fan_in_fan_out']) if (c[key] !== undefined && c[key] !== false) bad(key, 'is not supported (plain LoRA only)');
  for (const key of ['rank_pattern', 'alpha_pattern', 'modules_to_save', 'layers_to_transform']) if (!empty(c[key])) bad(key, 'is not supported (plain LoRA only)');
  if (c.bias !== undefined && c.bias !== 'none') bad('bias', "must be 'none'");
  if (!Array.isArray(c.target_modules) || !c.target_modules.every((t) => typeof t === 'string')) bad('target_modules', 'must be a list of layer names');
  const targets = LORA_TARGETS.filter((t) => (c.target_modules as string[]).includes(t));
  if (targets.length === 0) bad('target_modules', `names none of LLaDA's layers (${LORA_TARGETS.join(', ')})`);
  if (typeof c.base_model_name_or_path !== 'string' || c.base_model_name_or_path === '') bad('base_model_name_or_path', 'must name the base model folder');
  try {
    const lora = resolveLora({ rank: c.r as number, alpha: c.lora_alpha as number, dropout: (c.lora_dropout as number | undefined) ?? 0, targets });
    return { lora, baseModel: c.base_model_name_or_path as string };
  } catch (err) {
    throw new CheckpointError(`${path}: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * The base model folder an adapter folder names (or `override`): an absolute path as is, a relative
 * one against the adapter folder, then the working directory. A CheckpointError when it is no model
 * folder here.
 */
export function resolveAdapterBase(dir: string, named: string): string {
  const base = isAbsolute(named) ? named : [join(dir, named), resolve(named)].find((p) => existsSync(join(p, 'config.json')));
  if (!base || !existsSync(join(base, 'config.json')))
    throw new CheckpointError(`${join(dir, ADAPTER_CONFIG)}: its base model '${named}' is not a model folder here (no config.json); pass LoadOptions.baseModel`);
  return base;
}

/** An adapter tensor: PEFT's name, its shape, its float32 data. */
export interface AdapterTensor {
  name: string;
  shape: number[];
  data: Float32Array;
}

/** Writes adapter_config.json and adapter_model.safetensors (float32, and float64 extras) into dir, each atomically. */
export async function writeAdapter(dir: string, lora: LoraConfig, baseModel: string, tensors: AdapterTensor[], extras: { name: string; shape: number[]; data: Float64Array | number[] }[] = []): Promise<void> {
  const header = buildSafetensorsHeader([...tensors, ...extras.map((e) => ({ name: e.name, shape: e.shape, dtype: 'F64' as const }))], 'F32');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(header)));
  const parts = [len, Buffer.from(header), ...tensors.map((t) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength))];
  for (const e of extras) parts.push(Buffer.from(Float64Array.from(e.data).buffer));
  await writeFileAtomic(join(dir, ADAPTER_WEIGHTS), Buffer.concat(parts));
  await writeFileAtomic(join(dir, ADAPTER_CONFIG), JSON.stringify(adapterConfigJson(lora, baseModel), null, 2) + '\n');
}

function widen(bytes: Buffer, dtype: SafetensorsDtype, n: number): Float32Array {
  const out = new Float32Array(n);
  if (dtype === 'F32') return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + 4 * n));
  if (dtype === 'F64') for (let i = 0; i < n; i++) out[i] = bytes.readDoubleLE(8 * i);
  else if (dtype === 'BF16') {
    const u = new Uint32Array(out.buffer);
    for (let i = 0; i < n; i++) u[i] = bytes.readUInt16LE(2 * i) << 16;
  } else
    for (let i = 0; i < n; i++) {
      // IEEE half: sign, 5-bit exponent, 10-bit mantissa (subnormals included)
      const h = bytes.readUInt16LE(2 * i);
      const e = (h >> 10) & 31,
        m = h & 1023,
        s = h & 0x8000 ? -1 : 1;
      out[i] = e === 0 ? s * m * 2 ** -24 : e === 31 ? (m ? NaN : s * Infinity) : s * (1 + m / 1024) * 2 ** (e - 15);
    }
  return out;
}

/**
 * Reads adapter_model.safetensors against the tensors the model expects (PEFT's names and shapes):
 * a missing tensor, a shape made for another base or rank, or a truncated file is a CheckpointError
 * naming the file and the tensor. Also returns the file's `diffpo.` extras' entries (read by their owner).
 */
export async function readAdapterTensors(dir: string, expected: { name: string; shape: number[] }[]): Promise<{ tensors: Map<string, Float32Array>; file: string }> {
  const file = join(dir, ADAPTER_WEIGHTS);
  const { tensors: entries } = await readSafetensorsHeader(file);
  const bytes = await readFile(file);
  const out = new Map<string, Float32Array>();
  for (const t of expected) {
    const e = entries.get(t.name);
    if (!e) throw new CheckpointError(`${file}: missing adapter tensor '${t.name}' (adapter_config.json names a target the file has no weights for)`);
    if (e.shape.length !== t.shape.length || e.shape.some((d, i) => d !== t.shape[i]))
      throw new CheckpointError(`${file}: adapter tensor '${t.name}' has shape [${e.shape}], but this base model with the adapter's rank needs [${t.shape}] (an adapter made for another base model?)`);
    const data = widen(bytes.subarray(e.begin, e.end), e.dtype, e.shape.reduce((a, d) => a * d, 1));
    const bad = data.findIndex((x) => !Number.isFinite(x));
    if (bad >= 0) throw new CheckpointError(`${file}: adapter tensor '${t.name}' holds a non-finite value at element ${bad}`);
    out.set(t.name, data);
  }
  const known = new Set(expected.map((t) => t.name));
  const extra = [...entries.keys()].find((n) => !known.has(n) && !n.startsWith('diffpo.'));
  if (extra) throw new CheckpointError(`${file}: tensor '${extra}' is none of this model's adapters (an adapter made for another base model or with other targets?)`);
  return { tensors: out, file };
}
