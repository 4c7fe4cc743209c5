// The engine's narrow interface: optimizer state owned by each optimizer, derived seeds, extras, and
// structured errors from the native core.
import native from 'diffpo/native';
import { describe, expect, it } from 'vitest';

import { AdamW, deriveSeed, DiffusionLM, InvalidArgumentError, resolveConfig, ThresholdHead } from 'diffpo';

import { TINY } from './helpers/copy-task.js';

async function withGradients(model: DiffusionLM): Promise<void> {
  await model.zeroGrad();
  const tokens = Int32Array.from({ length: 8 }, (_, i) => i + 1);
  await model.maskedDiffusionLoss({ tokens, batch: 1, seqLen: 8, normalization: 'pretrain', seed: 1 }, { backward: true });
}

describe('optimizer state', () => {
  it('each AdamW owns its moments: a second optimizer on the same model starts from zero', async () => {
    const model = DiffusionLM.create(TINY, { seed: 1 });
    const a = new AdamW(model, { lr: 1e-3 });
    await withGradients(model);
    await a.step();
    const b = new AdamW(model, { lr: 1e-3 });
    expect(a.state().m.some((x) => x !== 0)).toBe(true);
    expect(b.state().m.every((x) => x === 0) && b.state().v.every((x) => x === 0)).toBe(true);
    // b's first step is a bias-corrected step from zero moments: |update| = lr wherever the gradient is not tiny
    const before = Float32Array.from(model.parameters().get('model.transformer.ln_f.weight')!);
    const aMoments = a.state();
    await b.step();
    const after = model.parameters().get('model.transformer.ln_f.weight')!;
    const g = model.gradients().get('model.transformer.ln_f.weight')!;
    const big = [...g.keys()].filter((i) => Math.abs(g[i]!) > 1e-3);
    expect(big.length).toBeGreaterThan(10);
    for (const i of big) expect(Math.abs(after[i]! - before[i]!)).toBeCloseTo(1e-3, 5);
    // a's moments did not move with b's step (shared moments would now hold 0.19 g instead of 0.1 g)
    expect(a.state().m).toEqual(aMoments.m);
    model.dispose();
  });

  it("the native update refuses buffers that are not this model's moments", async () => {
    const model = DiffusionLM.create(TINY, { seed: 1 });
    const other = DiffusionLM.create(TINY, { seed: 2 });
    await withGradients(model);
    const n = model.numParameters;
    const update = { lr: 1e-3, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0, gradScale: 1, t: 1, maxGradNorm: 0 };
    await expect(model.adamwStep({ m: new Float32Array(n), v: new Float32Array(n) }, update)).rejects.toThrow(/newMoments/);
    await expect(model.adamwStep(other.createMoments(), update)).rejects.toThrow(/this model's newMoments/);
    const mine = model.createMoments();
    await expect(model.adamwStep({ m: mine.m, v: mine.m }, update)).rejects.toBeInstanceOf(InvalidArgumentError);
    expect(await model.adamwStep(mine, update)).toBeGreaterThan(0);
    model.dispose();
    other.dispose();
  });
});

describe('deriveSeed', () => {
  it('is deterministic, a non-negative safe integer, and distinct across seeds, purposes, steps and iterations', () => {
    expect(deriveSeed(3, 'rollout', 7)).toBe(deriveSeed(3, 'rollout', 7));
    const seen = new Set<number>();
    for (const seed of [0, 1, 2, 2 ** 40])
      for (const purpose of ['sft-masks', 'rollout', 'estimator'] as const)
        for (let step = 0; step < 300; step++)
          for (let it = 0; it < 3; it++) {
            const s = deriveSeed(seed, purpose, step, it);
            expect(Number.isSafeInteger(s) && s >= 0).toBe(true);
            seen.add(s);
          }
    expect(seen.size).toBe(4 * 3 * 300 * 3);
  });
});

describe('extras and errors', () => {
  it('a sampler head must read d_model features', () => {
    const model = DiffusionLM.create(TINY, { seed: 1 });
    expect(() => (model.samplerHead = new ThresholdHead({ grid: [0.5, 0.9], dModel: TINY.d_model + 1 }))).toThrow(/made for d_model 65 but d_model is 64/);
    const head = new ThresholdHead({ grid: [0.5, 0.9], dModel: TINY.d_model });
    model.samplerHead = head;
    expect(model.samplerHead).toBe(head);
    model.samplerHead = null;
    expect(model.samplerHead).toBeNull();
    model.dispose();
  });

  it('native config errors carry the key at fault', () => {
    const cfg = { ...resolveConfig(TINY), n_kv_heads: 3 };
    try {
      new native.NativeModel(cfg, 1, 'cpu');
      expect.unreachable();
    } catch (err) {
      expect((err as { code: string; key: string }).code).toBe('ERR_CONFIG');
      expect((err as { key: string }).key).toBe('n_kv_heads');
      expect((err as Error).message).toBe('config.n_kv_heads must divide n_heads');
    }
  });
});

describe('inputs that would give silent garbage are refused', () => {
  it('a NaN or infinite weight in a checkpoint, a non-finite sampler head, huge threads or initStd, a maxNfe that Int32 would wrap', async () => {
    const { mkdtempSync, readFileSync, writeFileSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const { CheckpointError } = await import('diffpo');
    const model = DiffusionLM.create(TINY, { seed: 1 });
    const dir = mkdtempSync(join(tmpdir(), 'diffpo-nan-'));
    await model.save(dir);
    const file = join(dir, 'model.safetensors');
    const bytes = readFileSync(file);
    const headerLength = Number(bytes.readBigUInt64LE(0));
    bytes.writeFloatLE(NaN, 8 + headerLength + 4 * 5); // the 6th float of the first tensor (wte)
    writeFileSync(file, bytes);
    await expect(DiffusionLM.fromPretrained(dir)).rejects.toThrow(/tensor 'model.transformer.wte.weight' holds NaN at index 5/);
    await expect(DiffusionLM.fromPretrained(dir)).rejects.toBeInstanceOf(CheckpointError);
    const head = new ThresholdHead({ grid: [0.5, 0.9], dModel: TINY.d_model });
    head.bias[1] = Infinity;
    const extras = new Map(head.toTensors().map((t) => [t.name, t]));
    expect(() => ThresholdHead.fromTensors(extras, 'ckpt')).toThrow(/diffpo.threshold_head.bias holds a non-finite value/);
    expect(() => DiffusionLM.create(TINY, { threads: 2 ** 31 })).toThrow(/threads must be at most 1024/);
    expect(() => DiffusionLM.create(TINY, { initStd: 1e30 })).toThrow(/initStd must be a number in \[0, 1\]/);
    const prompt = [Int32Array.from([1, 2])];
    await expect(model.generate(prompt, { genLength: 4, maxNfe: NaN })).rejects.toThrow(/maxNfe = NaN must be an integer in \[0, 2147483647\]/);
    await expect(model.generate(prompt, { genLength: 4, maxNfe: [2 ** 32 + 1] })).rejects.toThrow(/maxNfe\[0\] = 4294967297/);
    expect(resolveConfig({ vocab_size: 64, d_model: 64, n_heads: 4, n_layers: 2, mlp_hidden_size: 128 }).rope_theta).toBe(10000); // LLaDA's configuration class default
    model.dispose();
  });
});
