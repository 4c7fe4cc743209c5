// LoRA (PEFT's layout) on the native core: the forward against the base with (alpha/r) B A folded in
// by hand, the adapters' gradients against the chain rule through the full-weight gradient of that
// folded model and against central finite differences, a BF16 base, checkpointing, AdamW touching
// only the adapters, PEFT's files read back by an independent parser, merging, and bad input.
import { mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { AdamW, CheckpointError, DiffusionLM, InvalidArgumentError, LORA_TARGETS, type LoraTarget } from 'diffpo';

import { directionalDerivative } from './helpers/directional.js';

const CFG = { d_model: 16, n_heads: 4, n_kv_heads: 2, n_layers: 2, mlp_hidden_size: 24, vocab_size: 13, rope_theta: 10000 };
const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 'diffpo-lora-'));
  dirs.push(d);
  return d;
};
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

const B = 2,
  T = 7;
const tokens = Int32Array.from({ length: B * T }, (_, i) => (i * 5 + 1) % 13);
const rows = Int32Array.from([1, 3, 6, 8, 12, 13]);
const targets = Int32Array.from([2, 7, 11, 0, 5, 9]);
const weights = Float32Array.from([1, -0.5, 2, 0.7, -1.3, 0.4]);
const input = (adapters = true) => ({ tokens, batch: B, seqLen: T, rows, targets, weights, adapters });

/** The base target weight a PEFT name's adapter belongs to. */
const baseName = (peft: string) => peft.replace('base_model.model.', '').replace(/\.lora_[AB]\.weight$/, '.weight');

/** Random nonzero B (and A as initialised), so the adapters change the model. */
function perturb(m: DiffusionLM) {
  for (const [name, p] of m.parameters()) if (name.includes('lora_B')) p.forEach((_, i) => (p[i] = 0.3 * Math.sin(i * 1.3 + name.length)));
}

/** A float32 copy of `base` with (alpha/r) B A added to each target, computed here in double. */
function folded(base: DiffusionLM, lora: DiffusionLM): DiffusionLM {
  const m = DiffusionLM.create(CFG, { seed: 0, initStd: 0 });
  const src = base.parameters();
  for (const [name, p] of m.parameters()) p.set(src.get(name)!);
  const { rank: r, alpha } = lora.lora!;
  const ad = lora.parameters();
  const W = m.parameters();
  for (const [name, A] of ad) {
    if (!name.includes('lora_A')) continue;
    const Bm = ad.get(name.replace('lora_A', 'lora_B'))!;
    const w = W.get(baseName(name))!;
    const I = A.length / r,
      O = Bm.length / r;
    for (let o = 0; o < O; o++)
      for (let i = 0; i < I; i++) {
        let s = 0;
        for (let k = 0; k < r; k++) s += Bm[o * r + k]! * A[k * I + i]!;
        w[o * I + i] = w[o * I + i]! + (alpha / r) * s;
      }
  }
  return m;
}

async function withLora(targetsList: LoraTarget[] = [...LORA_TARGETS], rank = 3, alpha = 5) {
  const base = DiffusionLM.create(CFG, { seed: 4, initStd: 0.3 });
  const m = DiffusionLM.create(CFG, { seed: 4, initStd: 0.3 });
  await m.addLora({ rank, alpha, targets: targetsList, seed: 7 });
  return { base, m };
}

describe('LoRA forward', () => {
  it('a fresh adapter (B = 0) changes nothing; with B set it equals the base with (alpha/r) B A folded in; adapters off is the base', async () => {
    const { base, m } = await withLora();
    expect((await m.selectedLogProbs(input())).logProbs).toEqual((await base.selectedLogProbs(input())).logProbs);
    // A as PEFT initialises it: uniform in +-1/sqrt(fan_in), not all equal
    const A = m.parameters().get('base_model.model.model.transformer.blocks.1.ff_out.lora_A.weight')!;
    expect(A.length).toBe(3 * 24);
    expect(Math.max(...A.map(Math.abs))).toBeLessThanOrEqual(1 / Math.sqrt(24));
    expect(new Set(A).size).toBe(A.length);
    perturb(m);
    const want = folded(base, m);
    const got = (await m.selectedLogProbs(input())).logProbs;
    const ref = (await want.selectedLogProbs(input())).logProbs;
    got.forEach((v, i) => expect(v).toBeCloseTo(ref[i]!, 5));
    const logits = await m.logits(tokens, { batch: B, seqLen: T });
    const refLogits = await want.logits(tokens, { batch: B, seqLen: T });
    logits.forEach((v, i) => expect(v).toBeCloseTo(refLogits[i]!, 4));
    // the reference policy: the same model with its adapters off is the base, bit for bit
    expect((await m.selectedLogProbs(input(false))).logProbs).toEqual((await base.selectedLogProbs(input())).logProbs);
    for (const x of [base, m, want]) x.dispose();
  });
});

describe('LoRA gradients', () => {
  it("equal the chain rule through the folded model's full-weight gradient: dB = s G A^T, dA = s B^T G", async () => {
    const { base, m } = await withLora([...LORA_TARGETS], 2, 3);
    perturb(m);
    const full = folded(base, m);
    await m.zeroGrad();
    const a = await m.selectedLogProbs(input(), { backward: true });
    const b = await full.selectedLogProbs(input(), { backward: true });
    expect(a.loss).toBeCloseTo(b.loss, 5);
    const G = full.gradients();
    const ad = m.parameters();
    const s = 3 / 2,
      r = 2;
    let worst = 0;
    for (const [name, g] of m.gradients()) {
      const Gw = G.get(baseName(name))!;
      const A = ad.get(name.replace('lora_B', 'lora_A'))!,
        Bm = ad.get(name.replace('lora_A', 'lora_B'))!;
      const I = A.length / r,
        O = Bm.length / r;
      const want = new Float64Array(g.length);
      if (name.includes('lora_B'))
        for (let o = 0; o < O; o++) for (let k = 0; k < r; k++) for (let i = 0; i < I; i++) want[o * r + k] += s * Gw[o * I + i]! * A[k * I + i]!;
      else for (let k = 0; k < r; k++) for (let i = 0; i < I; i++) for (let o = 0; o < O; o++) want[k * I + i] += s * Bm[o * r + k]! * Gw[o * I + i]!;
      const scale = Math.max(1e-3, ...want.map(Math.abs));
      g.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - want[i]!) / scale)));
    }
    expect(worst).toBeLessThan(1e-4);
    // the base has no gradient of its own: gradients() are the adapters'
    expect([...m.gradients().keys()].every((k) => k.includes('.lora_'))).toBe(true);
    expect(m.numTrainable).toBe([...m.parameters().values()].reduce((a, p) => a + p.length, 0));
    for (const x of [base, m, full]) x.dispose();
  });

  it('match central finite differences along a random direction of the adapters', async () => {
    const { base, m } = await withLora();
    perturb(m);
    await m.zeroGrad();
    await m.selectedLogProbs(input(), { backward: true });
    const { fd, analytic } = await directionalDerivative(m, async () => (await m.selectedLogProbs(input())).loss);
    expect(Math.abs(analytic)).toBeGreaterThan(1); // a real gradient, not a vacuous comparison
    expect(Math.abs(fd - analytic)).toBeLessThan(1e-2 * Math.max(1, Math.abs(analytic)));
    base.dispose();
    m.dispose();
  });

  it('on a BF16-resident base equal those on a float32 base holding the same rounded weights', async () => {
    const dir = tmp();
    const src = DiffusionLM.create(CFG, { seed: 8, initStd: 0.3 });
    await src.save(dir, { dtype: 'bf16' });
    const m16 = await DiffusionLM.fromPretrained(dir, { dtype: 'bf16' });
    const m32 = await DiffusionLM.fromPretrained(dir, { dtype: 'f32' });
    for (const m of [m16, m32]) {
      await m.addLora({ rank: 2, targets: ['q_proj', 'k_proj', 'ff_proj', 'ff_out'], seed: 1 });
      perturb(m);
      await m.selectedLogProbs(input(), { backward: true });
    }
    const g32 = m32.gradients();
    for (const [name, g] of m16.gradients()) {
      const want = g32.get(name)!;
      const scale = Math.max(1e-6, ...want.map(Math.abs));
      g.forEach((v, i) => expect(Math.abs(v - want[i]!) / scale, name).toBeLessThan(1e-4));
    }
    for (const x of [src, m16, m32]) x.dispose();
  });

  it("with checkpointing 'layer' are bit-identical to the stored-activation path", async () => {
    const grads = async (checkpointing: 'none' | 'layer') => {
      const m = DiffusionLM.create(CFG, { seed: 4, initStd: 0.3, checkpointing });
      await m.addLora({ rank: 3, targets: [...LORA_TARGETS], seed: 2 });
      perturb(m);
      await m.selectedLogProbs(input(), { backward: true });
      const out = [...m.gradients().values()].map((g) => g.slice());
      m.dispose();
      return out;
    };
    expect(await grads('layer')).toEqual(await grads('none'));
  });
});

describe('LoRA dropout', () => {
  const dropped = async (checkpointing: 'none' | 'layer' = 'none') => {
    const m = DiffusionLM.create(CFG, { seed: 4, initStd: 0.3, checkpointing });
    await m.addLora({ rank: 3, alpha: 5, dropout: 0.3, targets: [...LORA_TARGETS], seed: 2 });
    perturb(m);
    return m;
  };
  // the training loss under the masks of the first forward after seedDropout(seed) (a forward with a
  // backward: the only kind that drops)
  const lossUnder = async (m: DiffusionLM, seed: number) => {
    await m.seedDropout(seed);
    return (await m.selectedLogProbs(input(), { backward: true })).loss;
  };

  it('drops only in forwards with a backward, a new mask each, remade by seedDropout', async () => {
    const m = await dropped();
    const plain = DiffusionLM.create(CFG, { seed: 4, initStd: 0.3 });
    await plain.addLora({ rank: 3, alpha: 5, targets: [...LORA_TARGETS], seed: 2 });
    perturb(plain);
    const noDrop = (await plain.selectedLogProbs(input(), { backward: true })).loss;
    // scoring and decoding forwards never drop: equal to the same adapters without dropout, bit for bit
    expect((await m.selectedLogProbs(input())).logProbs).toEqual((await plain.selectedLogProbs(input())).logProbs);
    await m.seedDropout(11);
    const first = (await m.selectedLogProbs(input(), { backward: true })).loss;
    const second = (await m.selectedLogProbs(input(), { backward: true })).loss;
    expect(first).not.toBe(noDrop);
    expect(second).not.toBe(first); // the next training forward draws new masks
    expect(await lossUnder(m, 11)).toBe(first); // the same seed, the same masks
    expect(await lossUnder(m, 12)).not.toBe(first);
    for (const x of [m, plain]) x.dispose();
  });

  it('gradients equal central finite differences of the loss under the same masks', async () => {
    const m = await dropped();
    await m.zeroGrad();
    await lossUnder(m, 5);
    const { fd, analytic } = await directionalDerivative(m, () => lossUnder(m, 5));
    expect(Math.abs(analytic)).toBeGreaterThan(1);
    expect(Math.abs(fd - analytic)).toBeLessThan(1e-2 * Math.max(1, Math.abs(analytic)));
    // and they are not the gradients without dropout
    const plain = DiffusionLM.create(CFG, { seed: 4, initStd: 0.3 });
    await plain.addLora({ rank: 3, alpha: 5, targets: [...LORA_TARGETS], seed: 2 });
    perturb(plain);
    await plain.selectedLogProbs(input(), { backward: true });
    const { analytic: undropped } = await directionalDerivative(plain, async () => 0);
    expect(Math.abs(undropped - analytic)).toBeGreaterThan(1e-2 * Math.abs(analytic));
    for (const x of [m, plain]) x.dispose();
  });

  it("with checkpointing 'layer' remakes the forward's masks: gradients bit-identical", async () => {
    const grads = async (checkpointing: 'none' | 'layer') => {
      const m = await dropped(checkpointing);
      await lossUnder(m, 3);
      const out = [...m.gradients().values()].map((g) => g.slice());
      m.dispose();
      return out;
    };
    expect(await grads('layer')).toEqual(await grads('none'));
  });

  it('is checked: a dropout outside [0, 1) and a bad seed are typed errors', async () => {
    const m = DiffusionLM.create(CFG, { seed: 4 });
    for (const dropout of [-0.1, 1, Number.NaN]) await expect(m.addLora({ rank: 2, dropout })).rejects.toThrow(InvalidArgumentError);
    await m.addLora({ rank: 2, dropout: 0.05 });
    await expect(m.seedDropout(-1)).rejects.toThrow(/dropout seed must be a non-negative integer, got -1/);
    m.dispose();
  });
});

describe('LoRA training state', () => {
  it('AdamW moves the adapters only: moments are adapter-sized and the base weights keep their bits', async () => {
    const { base, m } = await withLora(['v_proj', 'up_proj']);
    const before = new Map([...m.parameters()].map(([k, v]) => [k, v.slice()]));
    const opt = new AdamW(m, { lr: 1e-2 });
    expect(m.createMoments().m.length).toBe(m.numTrainable);
    await m.selectedLogProbs(input(), { backward: true });
    await opt.step();
    // B moved off zero (A's gradient is zero while B is: dA = s B^T G)
    for (const [name, p] of m.parameters()) if (name.includes('lora_B')) expect(p.some((v, i) => v !== before.get(name)![i]), name).toBe(true);
    expect((await m.selectedLogProbs(input(false))).logProbs).toEqual((await base.selectedLogProbs(input())).logProbs);
    await expect(m.selectedLogProbs(input(false), { backward: true })).rejects.toThrow(/adapters switched off/);
    base.dispose();
    m.dispose();
  });
});

/** The tensors of a safetensors file by a parser written here from the format's spec. */
function parseSafetensors(path: string): Map<string, { dtype: string; shape: number[]; data: Float32Array }> {
  const buf = readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  const out = new Map<string, { dtype: string; shape: number[]; data: Float32Array }>();
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__' || t.dtype !== 'F32') continue;
    const bytes = buf.subarray(8 + n + t.data_offsets[0], 8 + n + t.data_offsets[1]);
    out.set(name, { dtype: t.dtype, shape: t.shape, data: new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)) });
  }
  return out;
}

describe("PEFT's adapter folder", () => {
  it('saves adapter_config.json and adapter_model.safetensors with PEFT names, loads back onto its base, and merges into a full model', async () => {
    const baseDir = tmp(),
      adapterDir = tmp(),
      mergedDir = tmp();
    const src = DiffusionLM.create(CFG, { seed: 4, initStd: 0.3 });
    await src.save(baseDir);
    const m = await DiffusionLM.fromPretrained(baseDir);
    await m.addLora({ rank: 4, alpha: 8, targets: ['q_proj', 'k_proj', 'v_proj', 'up_proj'], seed: 3 });
    perturb(m);
    await m.saveAdapter(adapterDir);
    const config = JSON.parse(readFileSync(join(adapterDir, 'adapter_config.json'), 'utf8'));
    expect(config).toMatchObject({ peft_type: 'LORA', r: 4, lora_alpha: 8, lora_dropout: 0, target_modules: ['q_proj', 'k_proj', 'v_proj', 'up_proj'], base_model_name_or_path: baseDir, bias: 'none' });
    const file = parseSafetensors(join(adapterDir, 'adapter_model.safetensors'));
    expect([...file.keys()].sort()).toEqual([...m.parameters().keys()].sort());
    expect(file.get('base_model.model.model.transformer.blocks.0.q_proj.lora_A.weight')!.shape).toEqual([4, 16]);
    expect(file.get('base_model.model.model.transformer.blocks.1.up_proj.lora_B.weight')!.shape).toEqual([24, 4]);
    expect(file.get('base_model.model.model.transformer.blocks.0.k_proj.lora_B.weight')!.shape).toEqual([8, 4]);
    for (const [name, p] of m.parameters()) expect(file.get(name)!.data).toEqual(p);
    // back: the adapter folder loads its base, then the adapters
    const back = await DiffusionLM.fromPretrained(adapterDir);
    expect(back.lora).toEqual({ rank: 4, alpha: 8, dropout: 0, targets: ['q_proj', 'k_proj', 'v_proj', 'up_proj'] });
    const want = (await m.selectedLogProbs(input())).logProbs;
    expect((await back.selectedLogProbs(input())).logProbs).toEqual(want);
    // merge: the base with the adapters folded in, saved as a full model
    await back.mergeAdapters();
    expect(back.lora).toBeNull();
    await back.save(mergedDir);
    const merged = await DiffusionLM.fromPretrained(mergedDir);
    (await merged.selectedLogProbs(input())).logProbs.forEach((v, i) => expect(v).toBeCloseTo(want[i]!, 5));
    for (const x of [src, m, back, merged]) x.dispose();
  });

  it('refuses bad input with typed errors naming the value or file', async () => {
    const m = DiffusionLM.create(CFG, { seed: 1 });
    await expect(m.addLora({ rank: 0 })).rejects.toThrow(InvalidArgumentError);
    await expect(m.addLora({ rank: 0 })).rejects.toThrow(/rank must be a positive integer, got 0/);
    await expect(m.addLora({ rank: 9, targets: ['k_proj'] })).rejects.toThrow(/rank must be in \[1, 8\] for k_proj \(8 x 16\), got 9/);
    await expect(m.addLora({ rank: 2, targets: ['o_proj' as LoraTarget] })).rejects.toThrow(/unknown LoRA target 'o_proj'/);
    await expect(m.addLora({ rank: 2, alpha: -1 })).rejects.toThrow(/alpha must be a finite number > 0, got -1/);
    await expect(m.saveAdapter(tmp())).rejects.toThrow(/no LoRA adapters/);
    expect(m.lora).toBeNull();
    // an adapter made for another base: shapes differ
    const baseDir = tmp(),
      otherDir = tmp(),
      adapterDir = tmp();
    const wide = DiffusionLM.create({ ...CFG, d_model: 32 }, { seed: 1 });
    await wide.save(otherDir);
    await m.save(baseDir);
    await wide.addLora({ rank: 2 });
    await wide.saveAdapter(adapterDir, { baseModel: otherDir });
    await expect(DiffusionLM.fromPretrained(adapterDir, { baseModel: baseDir })).rejects.toThrow(CheckpointError);
    await expect(DiffusionLM.fromPretrained(adapterDir, { baseModel: baseDir })).rejects.toThrow(/'base_model\.model\.model\.transformer\.blocks\.0\.q_proj\.lora_A\.weight' has shape \[2,32\], but .* needs \[2,16\]/);
    // a truncated adapter file
    const file = join(adapterDir, 'adapter_model.safetensors');
    truncateSync(file, readFileSync(file).length - 10);
    await expect(DiffusionLM.fromPretrained(adapterDir)).rejects.toThrow(/adapter_model\.safetensors.*(truncated|out of range)/);
    // PEFT options this library does not implement, and a missing base
    const cfg = JSON.parse(readFileSync(join(adapterDir, 'adapter_config.json'), 'utf8'));
    writeFileSync(join(adapterDir, 'adapter_config.json'), JSON.stringify({ ...cfg, use_dora: true }));
    await expect(DiffusionLM.fromPretrained(adapterDir)).rejects.toThrow(/use_dora is not supported/);
    writeFileSync(join(adapterDir, 'adapter_config.json'), JSON.stringify({ ...cfg, base_model_name_or_path: '/nonexistent/llada' }));
    await expect(DiffusionLM.fromPretrained(adapterDir)).rejects.toThrow(/base model '\/nonexistent\/llada' is not a model folder/);
    m.dispose();
    wide.dispose();
  });
});
