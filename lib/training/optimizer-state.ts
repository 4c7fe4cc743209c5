import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

import { writeFileAtomic } from '../engine/checkpoint.js';
import { CheckpointError } from '../core/errors.js';
import type { AdamW } from './optimizer.js';
import { buildSafetensorsHeader, readSafetensorsHeader } from '../engine/safetensors.js';

/** Writes AdamW's moments and step count to dir/optimizer.safetensors (through a temporary file). */
export async function saveOptimizer(dir: string, optimizer: AdamW): Promise<number> {
  const { step, m, v } = optimizer.state();
  const header = buildSafetensorsHeader([{ name: 'adamw.m', shape: [m.length] }, { name: 'adamw.v', shape: [v.length] }], 'F32', { format: 'pt', step: String(step) });
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(header)));
  await writeFileAtomic(join(dir, 'optimizer.safetensors'), Buffer.concat([len, Buffer.from(header), Buffer.from(m.buffer, m.byteOffset, m.byteLength), Buffer.from(v.buffer, v.byteOffset, v.byteLength)]));
  return step;
}

/** Restores what saveOptimizer wrote. */
export async function loadOptimizer(dir: string, optimizer: AdamW): Promise<void> {
  const path = join(dir, 'optimizer.safetensors');
  const { tensors, metadata } = await readSafetensorsHeader(path);
  const bytes = await readFile(path); // a regular file: readSafetensorsHeader checked
  const read = (name: string) => {
    const t = tensors.get(name);
    if (!t || t.dtype !== 'F32') throw new CheckpointError(`${path} lacks ${name}`);
    return new Float32Array(bytes.buffer.slice(bytes.byteOffset + t.begin, bytes.byteOffset + t.end));
  };
  const step = Number(metadata.step);
  if (!Number.isInteger(step) || step < 0) throw new CheckpointError(`${path} has no valid step in its metadata`);
  optimizer.loadState({ step, m: read('adamw.m'), v: read('adamw.v') });
}
