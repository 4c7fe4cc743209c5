import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { DiffusionLM, Rng } from 'diffpo';

import { TINY } from './helpers/copy-task.js';

/**
 * A generated corpus of malformed checkpoints (truncations, flipped bytes, edited headers and
 * configs, files swapped for folders), loaded in child processes: every case must load or fail
 * with a DiffpoError, and no child may crash or hang.
 */
describe('a corpus of malformed checkpoints', () => {
  it('240 broken checkpoints: 0 crashes, 0 hangs, only typed errors', async () => {
    const root = mkdtempSync(join(tmpdir(), 'diffpo-corpus-'));
    const good = join(root, 'good');
    const model = DiffusionLM.create({ ...TINY, n_kv_heads: 2 }, { seed: 1 });
    await model.save(good);
    model.dispose();
    const weights = readFileSync(join(good, 'model.safetensors'));
    const config = JSON.parse(readFileSync(join(good, 'config.json'), 'utf8')) as Record<string, unknown>;
    const headerLen = Number(weights.readBigUInt64LE(0));
    const header = JSON.parse(weights.subarray(8, 8 + headerLen).toString('utf8')) as Record<string, { dtype: string; shape: number[]; data_offsets: number[] }>;
    const names = Object.keys(header).filter((k) => k !== '__metadata__');
    const rng = new Rng(2024);
    const pick = <T>(xs: readonly T[]): T => xs[rng.int(xs.length)]!;
    const oddValues = [null, -1, 0, 1e12, 2 ** 53, 'x', [], {}, true, 1.5, NaN];
    const withHeader = (h: unknown) => {
      const text = Buffer.from(JSON.stringify(h));
      const len = Buffer.alloc(8);
      len.writeBigUInt64LE(BigInt(text.length));
      return Buffer.concat([len, text, weights.subarray(8 + headerLen)]);
    };
    const kinds: Record<string, (dir: string) => void> = {
      truncated: (d) => writeFileSync(join(d, 'model.safetensors'), weights.subarray(0, rng.int(weights.length))),
      headerByte: (d) => {
        const b = Buffer.from(weights);
        const at = rng.int(8 + headerLen);
        b[at] = b[at]! ^ (1 + rng.int(255)); // another value
        writeFileSync(join(d, 'model.safetensors'), b);
      },
      dataByte: (d) => {
        const b = Buffer.from(weights);
        for (let i = 0; i < 4; i++) b[8 + headerLen + rng.int(weights.length - 8 - headerLen)] = rng.int(256);
        writeFileSync(join(d, 'model.safetensors'), b);
      },
      headerField: (d) => {
        const h = structuredClone(header);
        const t = h[pick(names)]!;
        const field = pick(['dtype', 'shape', 'data_offsets'] as const);
        (t as Record<string, unknown>)[field] = field === 'dtype' ? pick(['F64', 'I8', 'F8_E4M3', 'BOOL', '', 'bf16']) : field === 'shape' ? pick([[], [0], [-1, 4], [2 ** 40, 2 ** 40], [1, 1, 1], ['a']]) : pick([[0, 0], [-8, 8], [5, 3], [0, 2 ** 62], [1, 2]]);
        writeFileSync(join(d, 'model.safetensors'), withHeader(h));
      },
      headerTensor: (d) => {
        const h = structuredClone(header) as Record<string, unknown>;
        if (rng.random() < 0.5) delete h[pick(names)];
        else h[pick(['diffpo.head.w', 'model.transformer.blocks.7.q_proj.weight', '', '__metadata__'])] = pick(oddValues);
        writeFileSync(join(d, 'model.safetensors'), withHeader(h));
      },
      configValue: (d) => writeFileSync(join(d, 'config.json'), JSON.stringify({ ...config, [pick(Object.keys(config))]: pick(oddValues) })),
      configText: (d) => writeFileSync(join(d, 'config.json'), JSON.stringify(config).slice(0, rng.int(JSON.stringify(config).length))),
      swapped: (d) => {
        const f = pick(['config.json', 'model.safetensors']);
        rmSync(join(d, f));
        if (rng.random() < 0.5) mkdirSync(join(d, f));
      },
    };
    const cases = join(root, 'cases');
    const list = Object.keys(kinds);
    for (let i = 0; i < 240; i++) {
      const kind = list[i % list.length]!;
      const d = join(cases, `${String(i).padStart(3, '0')}-${kind}`);
      cpSync(good, d, { recursive: true });
      kinds[kind]!(d);
    }
    const child = fileURLToPath(new URL('./fixtures/load-corpus.mjs', import.meta.url));
    const r = spawnSync(process.execPath, [child, cases], { encoding: 'utf8', timeout: 120_000 });
    expect(r.signal, 'a child crashed or hung').toBeNull();
    expect(r.status, r.stderr).toBe(0);
    const outcomes = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { case: string; result: string; error?: string });
    expect(outcomes).toHaveLength(240);
    expect(outcomes.filter((o) => o.result === 'untyped')).toEqual([]);
    // every case is refused but changed data bytes that stayed finite weights, odd values of config
    // keys the loader does not read (torch_dtype: the header gives each tensor's dtype), and a header
    // byte that landed in a metadata string (format: "pt") or JSON whitespace
    const loaded = outcomes.filter((o) => o.result === 'loaded').map((o) => o.case.slice(4));
    expect(loaded.filter((kind) => !['dataByte', 'configValue', 'headerByte'].includes(kind))).toEqual([]);
    expect(loaded.filter((kind) => kind === 'headerByte').length).toBeLessThanOrEqual(3);
    expect(outcomes.filter((o) => o.result === 'typed').length).toBeGreaterThan(180);
  }, 180_000);
});
