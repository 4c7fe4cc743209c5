// A minimal safetensors writer for tests, independent of the library's: raw bytes in the layout of
// the format's spec, with F32, F16 and BF16 encoders written here.
import { writeFileSync } from 'node:fs';

export type Dtype = 'F32' | 'F16' | 'BF16';
export interface RawTensor {
  name: string;
  dtype: Dtype;
  shape: number[];
  data: Float32Array;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** BF16 bits of x, rounded to nearest even. */
export function bf16Bits(x: number): number {
  f32[0] = x;
  const bits = u32[0]!;
  if ((bits & 0x7f800000) === 0x7f800000 && (bits & 0x7fffff) !== 0) return ((bits >>> 16) | 0x40) & 0xffff;
  const lower = bits & 0xffff;
  let upper = bits >>> 16;
  if (lower > 0x8000 || (lower === 0x8000 && (upper & 1) === 1)) upper += 1;
  return upper & 0xffff;
}

export function bf16Value(bits: number): number {
  u32[0] = bits << 16;
  return f32[0]!;
}

/** F16 bits of x, which must be exactly representable in half precision (normal or subnormal). */
export function f16Bits(x: number): number {
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a === 0) return sign;
  if (a < 2 ** -14) {
    const m = a / 2 ** -24;
    if (!Number.isInteger(m)) throw new Error(`${x} is not exact in f16`);
    return sign | m;
  }
  const e = Math.floor(Math.log2(a));
  const m = (a / 2 ** e - 1) * 1024;
  if (!Number.isInteger(m) || e > 15) throw new Error(`${x} is not exact in f16`);
  return sign | ((e + 15) << 10) | m;
}

export function encodeSafetensors(tensors: RawTensor[], opts: { headerPadding?: number } = {}): Buffer {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  const chunks: Buffer[] = [];
  let offset = 0;
  for (const t of tensors) {
    const n = t.data.length;
    let buf: Buffer;
    if (t.dtype === 'F32') {
      buf = Buffer.alloc(n * 4);
      t.data.forEach((v, i) => buf.writeFloatLE(v, i * 4));
    } else {
      buf = Buffer.alloc(n * 2);
      t.data.forEach((v, i) => buf.writeUInt16LE(t.dtype === 'BF16' ? bf16Bits(v) : f16Bits(v), i * 2));
    }
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + buf.length] };
    offset += buf.length;
    chunks.push(buf);
  }
  const json = Buffer.from(JSON.stringify(header) + ' '.repeat(opts.headerPadding ?? 0));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, json, ...chunks]);
}

export function writeSafetensors(path: string, tensors: RawTensor[]): void {
  writeFileSync(path, encodeSafetensors(tensors));
}
