import { randomBytes } from 'node:crypto';
import { appendFile, open, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import type { NativeModel, NativeTensorRead, NativeTensorSpec } from 'diffpo/native';

import { resolveConfig, type LLaDAConfig } from './config.js';
import { CheckpointError, ConfigError, InvalidArgumentError } from '../core/errors.js';
import { readJsonFile } from '../core/files.js';
import { buildSafetensorsHeader, readSafetensorsHeader, type TensorEntry } from './safetensors.js';

/** Tensors with this prefix are library extras (e.g. a learned sampler head); LLaDA loaders ignore them. */
export const EXTRA_TENSOR_PREFIX = 'diffpo.';

const DTYPE_CODE: Partial<Record<TensorEntry['dtype'], 0 | 1 | 2>> = { F32: 0, F16: 1, BF16: 2 };

/** A library extra stored beside the model's tensors (name starting with `diffpo.`), in float64. */
export interface ExtraTensor {
  name: string;
  shape: number[];
  data: Float64Array;
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Reads and validates `dir/config.json`. */
export async function readConfig(dir: string): Promise<LLaDAConfig> {
  if (typeof dir !== 'string' || dir === '') throw new InvalidArgumentError(`a checkpoint directory must be a non-empty string, got ${JSON.stringify(dir) ?? String(dir)}`);
  const path = join(dir, 'config.json');
  const json = await readJsonFile(path);
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw new CheckpointError(`${path} must hold a JSON object`);
  try {
    return resolveConfig(json as Record<string, unknown>);
  } catch (err) {
    if (err instanceof ConfigError) throw new ConfigError(err.key, `${path}: ${err.message}`);
    throw err;
  }
}

/** A training run's checkpoint manifest (see training/checkpoint-set.ts, which writes and reads it). */
export const CHECKPOINT_MANIFEST = 'checkpoint.json';

/**
 * Refuses a folder that is a training run stopped while moving a committed checkpoint into place: its
 * manifest names a staging folder that still exists, so its weights may belong to another step than
 * its optimizer. Resuming the run completes the move.
 */
export async function refuseInterruptedCommit(dir: string): Promise<void> {
  let manifest: { step?: unknown; staging?: unknown };
  try {
    manifest = JSON.parse(await readFile(join(dir, CHECKPOINT_MANIFEST), 'utf8'));
  } catch {
    return; // no manifest (a plain model folder) or an unreadable one, which resume reports
  }
  const staging = manifest?.staging;
  if (typeof staging !== 'string' || !staging.startsWith('.staging-') || staging.includes('/') || !(await exists(join(dir, staging)))) return;
  throw new CheckpointError(
    `${dir} is a training run stopped while moving its step-${String(manifest.step)} checkpoint into place (${staging} is still there): its files may mix two steps, so it is not loaded; resume the run (diffpo train/sft --resume, or the trainer's resume()) to complete the move`,
  );
}

/** Every tensor of a checkpoint directory: `model.safetensors`, or the shards of `model.safetensors.index.json`. */
export async function readCheckpointTensors(dir: string): Promise<Map<string, TensorEntry>> {
  const single = join(dir, 'model.safetensors');
  const index = join(dir, 'model.safetensors.index.json');
  if (await exists(single)) return (await readSafetensorsHeader(single)).tensors;
  if (!(await exists(index))) throw new CheckpointError(`${dir} has neither model.safetensors nor model.safetensors.index.json`);
  const weightMap = ((await readJsonFile(index)) as { weight_map?: Record<string, string> } | null)?.weight_map;
  if (!weightMap || typeof weightMap !== 'object') throw new CheckpointError(`${index} has no weight_map`);
  const all = new Map<string, TensorEntry>();
  for (const shard of new Set(Object.values(weightMap))) {
    if (typeof shard !== 'string' || shard === '' || shard === '.' || shard === '..' || shard.includes('/') || shard.includes('\\'))
      throw new CheckpointError(`${index}: invalid shard file name ${JSON.stringify(shard)}`);
    const { tensors } = await readSafetensorsHeader(join(dir, shard));
    for (const [name, t] of tensors) {
      if (weightMap[name] !== shard)
        throw new CheckpointError(`${index}: tensor '${name}' found in ${shard} but the weight map places it in ${weightMap[name] ?? 'no shard'}`);
      all.set(name, t);
    }
  }
  for (const name of Object.keys(weightMap))
    if (!all.has(name)) throw new CheckpointError(`${index}: tensor '${name}' is missing from shard ${weightMap[name]}`);
  return all;
}

/** Matches checkpoint tensors to the model's and builds the native read list; throws on any mismatch. */
export function planLoad(dir: string, entries: Map<string, TensorEntry>, specs: NativeTensorSpec[]): NativeTensorRead[] {
  const reads: NativeTensorRead[] = [];
  const wanted = new Set(specs.map((s) => s.name));
  for (const name of entries.keys())
    if (!wanted.has(name) && !name.startsWith(EXTRA_TENSOR_PREFIX))
      throw new CheckpointError(`${dir}: unexpected tensor '${name}' (not part of this model's config)`);
  for (const spec of specs) {
    const t = entries.get(spec.name);
    if (!t) throw new CheckpointError(`${dir}: missing tensor '${spec.name}'`);
    if (t.shape.length !== spec.shape.length || t.shape.some((d, i) => d !== spec.shape[i]))
      throw new CheckpointError(`${dir}: tensor '${spec.name}' has shape [${t.shape}] but the config needs [${spec.shape}]`);
    const dtype = DTYPE_CODE[t.dtype];
    if (dtype === undefined) throw new CheckpointError(`${dir}: tensor '${spec.name}' is ${t.dtype}; model tensors must be F32, F16 or BF16`);
    reads.push({ file: t.file, byteOffset: t.begin, count: spec.numel, dtype, dstOffset: spec.offset });
  }
  return reads;
}

/** The `diffpo.` tensors of a checkpoint, read as float64 (they are small: a sampler head, ...). */
export async function readExtraTensors(entries: Map<string, TensorEntry>): Promise<Map<string, ExtraTensor>> {
  const out = new Map<string, ExtraTensor>();
  for (const t of entries.values()) {
    if (!t.name.startsWith(EXTRA_TENSOR_PREFIX)) continue;
    if (t.dtype !== 'F64' && t.dtype !== 'F32') throw new CheckpointError(`${t.file}: extra tensor '${t.name}' must be F64 or F32, got ${t.dtype}`);
    const buf = Buffer.alloc(t.end - t.begin);
    const fh = await open(t.file, 'r');
    try {
      await fh.read(buf, 0, buf.length, t.begin);
    } finally {
      await fh.close();
    }
    const n = buf.length / (t.dtype === 'F64' ? 8 : 4);
    const data = new Float64Array(n);
    for (let i = 0; i < n; i++) data[i] = t.dtype === 'F64' ? buf.readDoubleLE(i * 8) : buf.readFloatLE(i * 4);
    out.set(t.name, { name: t.name, shape: t.shape, data });
  }
  return out;
}

function tempName(path: string): string {
  return `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
}

/** Temporary files of interrupted writes (tempName's `<name>.tmp-<pid>-<hex>`). */
export const TEMP_FILE = /\.tmp-(\d+)-[0-9a-f]{8}$/;

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'; // another user's live process
  }
};

/** Removes the temporaries in dir of writers that are gone (a killed save); a live process's are left to it. */
export async function removeStaleTemporaries(dir: string): Promise<void> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return;
  }
  for (const name of names) {
    const m = TEMP_FILE.exec(name);
    if (m && Number(m[1]) !== process.pid && !alive(Number(m[1]))) await rm(join(dir, name), { force: true });
  }
}

/** Writes a file through a temporary sibling and a rename, so a failure never leaves a partial file. */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const tmp = tempName(path);
  try {
    await writeFile(tmp, data, { flush: true });
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/** `model-0000k-of-0000n.safetensors`, Hugging Face's shard names. */
const shardName = (k: number, n: number) => `model-${String(k + 1).padStart(5, '0')}-of-${String(n).padStart(5, '0')}.safetensors`;

/**
 * Saves config.json and the weights into dir: model.safetensors, or with `shards` > 1 the
 * Hugging Face sharded layout (model-0000k-of-0000n.safetensors, tensors in order, split by bytes,
 * and model.safetensors.index.json). Every file is written to a temporary sibling, then renamed, the
 * index last. Extra tensors (float64, after the model's) go to the last file.
 */
export async function saveCheckpoint(
  dir: string,
  config: LLaDAConfig,
  native: NativeModel,
  specs: NativeTensorSpec[],
  dtype: 'f32' | 'bf16',
  extras: ExtraTensor[] = [],
  shards = 1,
): Promise<void> {
  const sd = dtype === 'bf16' ? 'BF16' : 'F32';
  for (const e of extras)
    if (!e.name.startsWith(EXTRA_TENSOR_PREFIX) || e.data.length !== e.shape.reduce((a, d) => a * d, 1))
      throw new CheckpointError(`extra tensor '${e.name}' needs the '${EXTRA_TENSOR_PREFIX}' prefix and data matching its shape [${e.shape}]`);
  if (!Number.isInteger(shards) || shards < 1 || shards > specs.length) throw new InvalidArgumentError(`shards must be an integer in [1, ${specs.length}], got ${shards}`);
  // contiguous groups of tensors of about equal bytes
  const bytes = dtype === 'bf16' ? 2 : 4;
  const total = specs.reduce((a, t) => a + t.numel * bytes, 0);
  const groups: NativeTensorSpec[][] = Array.from({ length: shards }, () => []);
  let seen = 0,
    k = 0;
  for (const [i, t] of specs.entries()) {
    // where its bytes fall, but late enough that every later group still gets a tensor
    const want = Math.max(Math.min(shards - 1, Math.floor((seen * shards) / total)), shards - (specs.length - i));
    if (want > k && groups[k]!.length > 0) k++;
    groups[k]!.push(t);
    seen += t.numel * bytes;
  }
  const names = shards === 1 ? ['model.safetensors'] : groups.map((_, k) => shardName(k, shards));
  await removeStaleTemporaries(dir); // an earlier save killed midway left its temporaries here
  const temps: [string, string][] = [];
  try {
    for (const [k, group] of groups.entries()) {
      const mine = k === shards - 1 ? extras : [];
      const header = buildSafetensorsHeader([...group, ...mine.map((e) => ({ name: e.name, shape: e.shape, dtype: 'F64' as const }))], sd);
      const target = join(dir, names[k]!);
      const tmp = tempName(target);
      temps.push([tmp, target]);
      await native.saveSafetensors(tmp, header, group.map((s) => ({ srcOffset: s.offset, count: s.numel })), dtype === 'bf16' ? 2 : 0);
      if (mine.length) {
        const buf = Buffer.alloc(mine.reduce((a, e) => a + e.data.length * 8, 0));
        let o = 0;
        for (const e of mine) for (const v of e.data) o = buf.writeDoubleLE(v, o);
        await appendFile(tmp, buf, { flush: true });
      }
    }
    await writeFileAtomic(join(dir, 'config.json'), JSON.stringify({ ...config, torch_dtype: dtype === 'bf16' ? 'bfloat16' : 'float32' }, null, 2) + '\n');
    for (const [tmp, target] of temps) await rename(tmp, target);
  } catch (err) {
    for (const [tmp] of temps) await rm(tmp, { force: true });
    throw err;
  }
  const index = join(dir, 'model.safetensors.index.json');
  if (shards === 1) {
    // a sharded index left from an earlier save would now describe stale weights
    await rm(index, { force: true });
    return;
  }
  const weightMap: Record<string, string> = {};
  groups.forEach((g, k) => g.forEach((t) => (weightMap[t.name] = names[k]!)));
  for (const e of extras) weightMap[e.name] = names[shards - 1]!;
  await writeFileAtomic(index, JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2) + '\n');
  // a single file left from an earlier save would shadow the index (loaders read it first)
  await rm(join(dir, 'model.safetensors'), { force: true });
}
