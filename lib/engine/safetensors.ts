import { open } from 'node:fs/promises';

import { CheckpointError } from '../core/errors.js';
import { regularFileSize } from '../core/files.js';

/** The dtypes this library reads; it writes F32 and BF16 (and F64 for the `diffpo.` extras). */
export type SafetensorsDtype = 'F32' | 'F16' | 'BF16' | 'F64';
export const DTYPE_BYTES: Record<SafetensorsDtype, number> = { F32: 4, F16: 2, BF16: 2, F64: 8 };

export interface TensorEntry {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  /** Absolute byte range of the data in the file. */
  begin: number;
  end: number;
  file: string;
}

export interface SafetensorsHeader {
  tensors: Map<string, TensorEntry>;
  metadata: Record<string, string>;
}

const MAX_HEADER_BYTES = 100 * 1024 * 1024;

/**
 * Reads and validates a safetensors header: every error a malformed file can have is reported as a
 * CheckpointError naming the file and, where there is one, the tensor.
 */
export async function readSafetensorsHeader(file: string): Promise<SafetensorsHeader> {
  const size = await regularFileSize(file);
  if (size < 8) throw new CheckpointError(`${file} is truncated: ${size} bytes, less than the 8-byte header length`);
  const fh = await open(file, 'r');
  let headerText: string;
  let headerLen: number;
  try {
    const lenBuf = Buffer.alloc(8);
    await fh.read(lenBuf, 0, 8, 0);
    const n = lenBuf.readBigUInt64LE(0);
    if (n > BigInt(size - 8))
      throw new CheckpointError(`${file}: header length ${n} runs past the end of the file (${size} bytes)`);
    if (n > BigInt(MAX_HEADER_BYTES)) throw new CheckpointError(`${file}: header length ${n} exceeds ${MAX_HEADER_BYTES} bytes`);
    headerLen = Number(n);
    const buf = Buffer.alloc(headerLen);
    await fh.read(buf, 0, headerLen, 8);
    try {
      headerText = new TextDecoder('utf-8', { fatal: true }).decode(buf);
    } catch {
      throw new CheckpointError(`${file}: the header is not valid UTF-8`);
    }
  } finally {
    await fh.close();
  }
  let json: unknown;
  try {
    json = JSON.parse(headerText);
  } catch (err) {
    throw new CheckpointError(`${file}: malformed JSON header (${(err as Error).message})`, { cause: err });
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json))
    throw new CheckpointError(`${file}: the JSON header must be an object`);
  const dataStart = 8 + headerLen;
  const dataSize = size - dataStart;
  const tensors = new Map<string, TensorEntry>();
  let metadata: Record<string, string> = {};
  for (const [name, value] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      // the format's metadata is a map of strings (safetensors rejects anything else, and so do we)
      if (value === null || typeof value !== 'object' || Array.isArray(value) || Object.values(value).some((x) => typeof x !== 'string'))
        throw new CheckpointError(`${file}: __metadata__ must be an object of strings, got ${JSON.stringify(value)}`);
      metadata = value as Record<string, string>;
      continue;
    }
    const v = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (v === null || typeof v !== 'object') throw new CheckpointError(`${file}: tensor '${name}' has no description`);
    if (typeof v.dtype !== 'string' || !(v.dtype in DTYPE_BYTES))
      throw new CheckpointError(`${file}: tensor '${name}' has unknown or unsupported dtype ${JSON.stringify(v.dtype)} (F32, F16, BF16 and F64 are supported)`);
    const dtype = v.dtype as SafetensorsDtype;
    if (!Array.isArray(v.shape) || v.shape.some((d) => !Number.isSafeInteger(d) || d < 0))
      throw new CheckpointError(`${file}: tensor '${name}' has an invalid shape ${JSON.stringify(v.shape)}`);
    const offs = v.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2 || offs.some((o) => !Number.isSafeInteger(o) || o < 0) || offs[0] > offs[1])
      throw new CheckpointError(`${file}: tensor '${name}' has invalid data_offsets ${JSON.stringify(offs)}`);
    const [b, e] = offs as [number, number];
    if (e > dataSize)
      throw new CheckpointError(`${file}: data offsets of tensor '${name}' [${b}, ${e}] are out of range (data section is ${dataSize} bytes; the file may be truncated)`);
    const numel = (v.shape as number[]).reduce((a, d) => a * d, 1);
    if (e - b !== numel * DTYPE_BYTES[dtype])
      throw new CheckpointError(`${file}: tensor '${name}' spans ${e - b} bytes but shape ${JSON.stringify(v.shape)} of ${dtype} needs ${numel * DTYPE_BYTES[dtype]}`);
    tensors.set(name, { name, dtype, shape: v.shape as number[], begin: dataStart + b, end: dataStart + e, file });
  }
  const sorted = [...tensors.values()].filter((t) => t.end > t.begin).sort((a, b) => a.begin - b.begin);
  for (let i = 1; i < sorted.length; i++)
    if (sorted[i]!.begin < sorted[i - 1]!.end)
      throw new CheckpointError(`${file}: data of tensors '${sorted[i - 1]!.name}' and '${sorted[i]!.name}' overlap`);
  return { tensors, metadata };
}

/**
 * The header of a file holding `tensors` in the given order, padded with spaces to a multiple of 8
 * bytes as Hugging Face's writer does.
 */
export function buildSafetensorsHeader(
  tensors: { name: string; shape: number[]; dtype?: SafetensorsDtype }[],
  dtype: 'F32' | 'BF16',
  metadata: Record<string, string> = { format: 'pt' },
): string {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const t of tensors) {
    const bytes = t.shape.reduce((a, d) => a * d, 1) * DTYPE_BYTES[t.dtype ?? dtype];
    header[t.name] = { dtype: t.dtype ?? dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let text = JSON.stringify(header);
  const pad = (8 - (Buffer.byteLength(text) % 8)) % 8;
  text += ' '.repeat(pad);
  return text;
}
