import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { CheckpointError, CONFIDENCE_FEATURES, samplerOptions, deriveSeed, DiffpoTrainer, HEAD_CALIBRATION_PROMPTS, samplerRewards, DiffusionLM, evaluate, InvalidArgumentError, Rng, SftTrainer, ThresholdHead, type Task } from 'diffpo';

import { copy4, easyHard, TINY } from './helpers/copy-task.js';

describe('learned threshold head', () => {
  it('its policy-gradient step follows the gradient of -mean(A log pi), checked by finite differences', () => {
    const head = new ThresholdHead({ grid: [0.3, 0.6, 0.9], dModel: 4 });
    const rng = new Rng(1);
    head.weight.forEach((_, i) => (head.weight[i] = rng.random() - 0.5));
    const feats = [0, 1, 2].map(() => Float64Array.from({ length: 4 }, () => rng.random() * 2 - 1));
    const choices = [0, 2, 1],
      adv = [0.7, -0.4, 1.1];
    const loss = () => -feats.reduce((a, f, i) => a + adv[i]! * Math.log(head.probs(f)[choices[i]!]!), 0) / 3;
    const numeric = Array.from(head.weight, (w, i) => {
      head.weight[i] = w + 1e-6;
      const up = loss();
      head.weight[i] = w - 1e-6;
      const down = loss();
      head.weight[i] = w;
      return (up - down) / 2e-6;
    });
    const before = Float64Array.from(head.weight);
    const lossBefore = loss();
    expect(head.update(feats, choices, adv, 1)).toBeCloseTo(lossBefore, 12); // it reports the loss it stepped from
    head.weight.forEach((w, i) => expect(before[i]! - w).toBeCloseTo(numeric[i]!, 6)); // lr 1: the step is the gradient
    expect(loss()).toBeLessThan(lossBefore);
  });

  it('trained alone (model frozen) with a compute penalty, it prefers the low thresholds a confident model can afford', async () => {
    const model = DiffusionLM.create(TINY, { seed: 3 });
    const sft = new SftTrainer(model, { task: copy4 as Task<unknown>, batchSize: 32, lr: 5e-3, warmup: 10, seed: 4 });
    await sft.train({ steps: 150 });
    const grid = [0.2, 0.5, 0.9, 1.01];
    const rl = new DiffpoTrainer({ model, task: copy4 as Task<unknown>, genLength: 5, promptsPerStep: 8, groupSize: 4, beta: 0, seed: 2, sampler: { mode: 'sampler-only', grid, lambda: 1, lr: 2 } });
    const before = Float64Array.from(model.parameters().get('model.transformer.ln_f.weight')!);
    await rl.train({ steps: 25 });
    expect(model.parameters().get('model.transformer.ln_f.weight')).toEqual(Float32Array.from(before)); // frozen
    const rng = new Rng(77);
    const items = Array.from({ length: 64 }, () => copy4.generate(rng));
    const common = { items, tokenizer: sft.tokenizer, genLength: 5 };
    const learned = await evaluate(model, copy4, { ...common, sampler: { strategy: { kind: 'learned', head: rl.head! } } });
    const slow = await evaluate(model, copy4, { ...common, sampler: { strategy: { kind: 'threshold', threshold: 1.01 } } });
    expect(learned.meanNfe).toBeLessThan(slow.meanNfe * 0.7);
    expect(learned.accuracy).toBeGreaterThanOrEqual(slow.accuracy - 0.1);
    // the head travels with the weights as float64 `diffpo.` tensors, even in a BF16 checkpoint
    const dir = mkdtempSync(join(tmpdir(), 'diffpo-head-'));
    expect(model.samplerHead).toBe(rl.head);
    await model.save(dir, { dtype: 'bf16' });
    const back = await ThresholdHead.load(dir);
    expect(Array.from(back.weight)).toEqual(Array.from(rl.head!.weight));
    expect(back.grid).toEqual(grid);
    const header = JSON.parse(readFileSync(join(dir, 'model.safetensors')).subarray(8, 8 + Number(readFileSync(join(dir, 'model.safetensors')).readBigUInt64LE(0))).toString());
    expect(header['diffpo.threshold_head.weight']).toMatchObject({ dtype: 'F64', shape: [4, 8] }); // the default: the decoder's 8 confidence features
    const loaded = await DiffusionLM.fromPretrained(dir);
    expect(Array.from(loaded.samplerHead!.bias)).toEqual(Array.from(rl.head!.bias));
    const fromCheckpoint = await evaluate(loaded, copy4, { ...common, sampler: { strategy: { kind: 'learned' } } });
    const given = await evaluate(loaded, copy4, { ...common, sampler: { strategy: { kind: 'learned', head: back } } });
    expect(fromCheckpoint.completions).toEqual(given.completions);
    expect(fromCheckpoint.meanNfe).toBe(given.meanNfe);
    loaded.samplerHead = null;
    await expect(evaluate(loaded, copy4, { ...common, sampler: { strategy: { kind: 'learned' } } })).rejects.toThrow(/needs a ThresholdHead/);
    loaded.dispose();
    await rl.dispose();
    model.dispose();
  });

  it('on easy and hard prompts that need different thresholds, sampler-only training gives them different ones, saving NFEs at equal accuracy', async () => {
    const model = DiffusionLM.create(TINY, { seed: 3, threads: 2 });
    const sft = new SftTrainer(model, { task: easyHard, batchSize: 32, lr: 3e-3, warmup: 5, seed: 1 });
    await sft.train({ steps: 150 });
    const rng = new Rng(9);
    const items = Array.from({ length: 200 }, () => easyHard.generate(rng));
    const common = { tokenizer: sft.tokenizer, genLength: sft.responseLength };
    const at = (threshold: number, list = items) => evaluate(model, easyHard, { ...common, items: list, sampler: { strategy: { kind: 'threshold', threshold } } });
    // the premise: the loose threshold decodes easy prompts in one forward and mixes the hard ones' answers
    const hard = items.filter((x) => x[0] === 'H');
    expect((await at(0.3, hard)).accuracy).toBeLessThan(0.2);
    expect((await at(1.01, hard)).accuracy).toBe(1);
    const grid = [0.3, 1.01];
    // measured over RL seeds 1-4 at this head lr: all four split the prompts (lr 1 split one in five in 60 steps)
    const rl = new DiffpoTrainer({ model, task: easyHard, ...common, promptsPerStep: 8, groupSize: 4, seed: 2, sampler: { mode: 'sampler-only', grid, lambda: 0.5, features: 'confidence', lr: 3 } });
    await rl.train({ steps: 120 });
    const head = rl.head!;
    const features = await head.featuresOf(model, items.map((x) => sft.tokenizer.encode(easyHard.prompt(x))), { genLength: sft.responseLength });
    items.forEach((x, i) => expect(grid[head.mostLikely(features[i]!)], x).toBe(x[0] === 'E' ? 0.3 : 1.01));
    const learned = await evaluate(model, easyHard, { ...common, items, sampler: { strategy: { kind: 'learned', head } } });
    const [loose, strict] = [await at(0.3), await at(1.01)];
    expect(learned.accuracy).toBe(strict.accuracy);
    expect(learned.accuracy).toBeGreaterThan(loose.accuracy + 0.4);
    expect(learned.meanNfe).toBeLessThan(0.7 * strict.meanNfe);
    await rl.dispose();
    model.dispose();
  });

  it("joint mode updates both the model and the head, logs the sampled thresholds, and checkpoints the head", async () => {
    const model = DiffusionLM.create(TINY, { seed: 5 });
    const dir = mkdtempSync(join(tmpdir(), 'diffpo-joint-'));
    const grid = [0.3, 0.9];
    const rl = new DiffpoTrainer({ model, task: copy4 as Task<unknown>, genLength: 5, promptsPerStep: 4, groupSize: 3, seed: 6, sampler: { mode: 'learned', grid, lambda: 0.5 }, outDir: dir });
    const w0 = Float64Array.from(rl.head!.weight);
    const p0 = Float32Array.from(model.parameters().get('model.transformer.ln_f.weight')!);
    const infos: number[] = [];
    await rl.train({ steps: 3, onStep: (i) => void infos.push(i.meanThreshold) });
    for (const t of infos) expect(t >= 0.3 && t <= 0.9).toBe(true);
    expect(Array.from(rl.head!.weight)).not.toEqual(Array.from(w0));
    expect(model.parameters().get('model.transformer.ln_f.weight')).not.toEqual(p0);
    const resumed = await DiffpoTrainer.resume(dir, { task: copy4 as Task<unknown>, genLength: 5, promptsPerStep: 4, groupSize: 3, seed: 6, sampler: { mode: 'learned', grid, lambda: 0.5 } });
    expect(Array.from(resumed.head!.weight)).toEqual(Array.from(rl.head!.weight));
    await rl.dispose();
    await resumed.dispose();
    resumed.model.dispose();
    model.dispose();
  });

  it('confidence features: the first forward\'s confidence and entropy statistics, against a plain computation from the logits', async () => {
    const model = DiffusionLM.create(TINY, { seed: 9, initStd: 0.3 });
    const prompts = [Int32Array.from([5, 6, 7]), Int32Array.from([8, 9])];
    const L = 4;
    const head = new ThresholdHead({ grid: [0.5, 0.9], dModel: TINY.d_model, features: 'confidence' });
    expect(head.inputs).toBe(CONFIDENCE_FEATURES);
    const got = await head.featuresOf(model, prompts, { genLength: L });
    const V = TINY.vocab_size,
      M = V - 1;
    for (const [b, p] of prompts.entries()) {
      // each prompt alone, unpadded: prompt then L masks
      const x = Int32Array.from([...p, ...new Array(L).fill(M)]);
      const logits = await model.logits(x, { batch: 1, seqLen: x.length });
      const conf: number[] = [],
        ent: number[] = [];
      const E = model.config.embedding_size;
      for (let t = p.length; t < x.length; t++) {
        // the decoder's confidence: the softmax over the whole row, of the best id but the mask
        const row = Array.from(logits.subarray(t * E, (t + 1) * E));
        const z = row.reduce((a, l) => a + Math.exp(l), 0);
        const probs = row.map((l) => Math.exp(l) / z);
        conf.push(Math.max(...probs.filter((_, v) => v !== M && v < V)));
        ent.push(-probs.reduce((a, q) => a + q * Math.log(q), 0) / Math.log(V - 1));
      }
      const mean = (xs: number[]) => xs.reduce((a, v) => a + v, 0) / xs.length;
      const want = [mean(conf), Math.min(...conf), Math.sqrt(mean(conf.map((c) => (c - mean(conf)) ** 2))), ...[0.9, 0.7, 0.5].map((t) => conf.filter((c) => c >= t).length / L), mean(ent), Math.max(...ent)];
      want.forEach((w, i) => expect(got[b]![i]!, `feature ${i} of prompt ${b}`).toBeCloseTo(w, 5));
    }
    // it round-trips through a checkpoint, and the model width it was made for is checked
    head.weight.fill(0.25);
    model.samplerHead = head;
    const dir = mkdtempSync(join(tmpdir(), 'diffpo-conf-head-'));
    await model.save(dir);
    const back = (await DiffusionLM.fromPretrained(dir)).samplerHead!;
    expect([back.features, back.inputs, back.dModel, Array.from(back.weight)]).toEqual(['confidence', CONFIDENCE_FEATURES, TINY.d_model, Array.from(head.weight)]);
    model.dispose();
  });

  it("generate takes the confidence features from the decoder's own first forward: the reference's features, the head's thresholds, no extra NFE", async () => {
    const model = DiffusionLM.create(TINY, { seed: 9, initStd: 0.3 });
    const rng = new Rng(3);
    const prompts = Array.from({ length: 6 }, (_, b) => Int32Array.from({ length: 2 + (b % 3) }, () => 1 + rng.int(20)));
    const genLength = 8;
    const head = new ThresholdHead({ grid: [0.05, 0.3, 1.01], dModel: TINY.d_model, features: 'confidence' });
    const reference = await head.featuresOf(model, prompts, { genLength });
    head.calibrate(reference);
    rng.random();
    head.weight.forEach((_, i) => (head.weight[i] = 4 * (rng.random() - 0.5)));
    const chosen = head.strategy(reference.map((f) => head.mostLikely(f)));
    expect(new Set(chosen.kind === 'threshold' ? chosen.threshold : []).size).toBeGreaterThan(1); // the prompts really differ
    for (const options of [{ blockLength: 8 }, { blockLength: 4, cache: 'dual' as const }, { blockLength: 4, temperature: 1, seed: 5 }]) {
      const decoder = await model.createDecoder(prompts, samplerOptions(model, prompts, { genLength, ...options, strategy: { kind: 'threshold', threshold: 0.5 } }));
      const native = await decoder.firstForwardFeatures();
      await decoder.free();
      reference.forEach((f, b) => f.forEach((v, i) => expect(native[b * CONFIDENCE_FEATURES + i], `feature ${i} of prompt ${b}`).toBeCloseTo(v, 6)));
      const learned = await model.generate(prompts, { genLength, ...options, strategy: { kind: 'learned', head } });
      const fixed = await model.generate(prompts, { genLength, ...options, strategy: chosen });
      expect(learned.tokens).toEqual(fixed.tokens);
      expect(learned.nfe).toEqual(fixed.nfe); // the features' forward is the decoding's first
      expect(learned.behaviourLogProb).toEqual(fixed.behaviourLogProb);
    }
    // the hidden features need a forward of the prompt alone: counted
    const hidden = new ThresholdHead({ grid: [0.3, 0.9], dModel: TINY.d_model, features: 'hidden' });
    const h = await model.generate(prompts, { genLength, strategy: { kind: 'learned', head: hidden } });
    const hChosen = hidden.strategy((await hidden.featuresOf(model, prompts, { genLength })).map((f) => hidden.mostLikely(f)));
    expect(Array.from(h.nfe)).toEqual(Array.from((await model.generate(prompts, { genLength, strategy: hChosen })).nfe, (n) => n + 1));
    // once, before any step
    const d = await model.createDecoder(prompts, samplerOptions(model, prompts, { genLength, strategy: { kind: 'threshold', threshold: 0.5 } }));
    await d.step();
    await expect(d.firstForwardFeatures()).rejects.toThrow(/before any step/);
    await expect(d.setThresholds(new Float32Array(2))).rejects.toThrow(/one threshold per sequence/);
    await d.free();
    model.dispose();
  });

  it('calibrate standardises the inputs (mean 0, std 1 per feature, std floored), the trainer calibrates before the first update, and the normalisation travels with the head', async () => {
    const head = new ThresholdHead({ grid: [0.5, 0.9], dModel: 3 });
    expect(head.calibrated).toBe(false);
    const sample = [Float64Array.of(1, 0.97, 5), Float64Array.of(3, 0.99, 5), Float64Array.of(2, 0.98, 5)];
    head.calibrate(sample);
    expect(Array.from(head.featureMean).map((v) => +v.toFixed(12))).toEqual([2, 0.98, 5]);
    // std 0.8165 and 0.008165; the constant feature's 0 floored at MIN_FEATURE_STD
    expect(Array.from(head.featureScale).map((v) => +v.toPrecision(6))).toEqual([1 / Math.sqrt(2 / 3), 1 / (0.01 * Math.sqrt(2 / 3)), 1000].map((v) => +v.toPrecision(6)));
    // the head reads the standardised values: with weight row 1 = [1, 0, 0], the logit gap is (x - 2) / 0.8165
    head.weight.set([0, 0, 0, 1, 0, 0]);
    const p = head.probs(Float64Array.of(3, 0.98, 5));
    expect(Math.log(p[1]! / p[0]!)).toBeCloseTo(1 / Math.sqrt(2 / 3), 12);
    expect(() => head.calibrate([Float64Array.of(1, 2, 3)])).toThrow(InvalidArgumentError);

    const model = DiffusionLM.create(TINY, { seed: 3 });
    const rl = new DiffpoTrainer({ model, task: copy4 as Task<unknown>, genLength: 5, promptsPerStep: 4, groupSize: 2, seed: 6, sampler: { mode: 'sampler-only', grid: [0.5, 0.9], lambda: 0.5, features: 'confidence' } });
    await rl.train({ steps: 1 });
    const rng = new Rng(deriveSeed(6, 'head-calibration'));
    const prompts = Array.from({ length: HEAD_CALIBRATION_PROMPTS }, () => rl.tokenizer.encode(copy4.prompt(copy4.generate(rng))));
    const want = new ThresholdHead({ grid: [0.5, 0.9], dModel: TINY.d_model, features: 'confidence' });
    want.calibrate(await want.featuresOf(model, prompts, { genLength: 5 }));
    expect(Array.from(rl.head!.featureMean)).toEqual(Array.from(want.featureMean));
    expect(Array.from(rl.head!.featureScale)).toEqual(Array.from(want.featureScale));
    const dir = mkdtempSync(join(tmpdir(), 'diffpo-calibrated-head-'));
    await model.save(dir);
    const back = await ThresholdHead.load(dir);
    expect([Array.from(back.featureMean), Array.from(back.featureScale)]).toEqual([Array.from(want.featureMean), Array.from(want.featureScale)]);
    // a stored normalisation must be whole and sane
    const tensors = (h: ThresholdHead) => new Map(h.toTensors().map((t) => [t.name, t]));
    const noScale = tensors(back);
    noScale.delete('diffpo.threshold_head.feature_scale');
    expect(() => ThresholdHead.fromTensors(noScale)).toThrow(/feature_mean and diffpo.threshold_head.feature_scale come together/);
    const zeroScale = tensors(back);
    zeroScale.get('diffpo.threshold_head.feature_scale')!.data = new Float64Array(CONFIDENCE_FEATURES);
    expect(() => ThresholdHead.fromTensors(zeroScale)).toThrow(CheckpointError);
    await rl.dispose();
    model.dispose();
  });

  it('init peaks the head at the grid value nearest it (80%), and the correct-bonus cost never pays for a wrong answer', async () => {
    const head = new ThresholdHead({ grid: [0.5, 0.7, 0.9, 1.01], dModel: 4, init: 0.88 });
    const p = head.probs(new Float64Array(4));
    expect(p[2]).toBeCloseTo(0.8, 12);
    expect(p[0]).toBeCloseTo(0.2 / 3, 12);
    expect(() => new ThresholdHead({ grid: [0.5, 0.9], dModel: 4, features: 'logits' as 'hidden' })).toThrow(/features must be/);
    const model = DiffusionLM.create(TINY, { seed: 5 });
    expect(() => new DiffpoTrainer({ model, task: copy4 as Task<unknown>, genLength: 5, sampler: { mode: 'learned', grid: [0.5, 0.9], lambda: 1, cost: 'free' as 'additive' } })).toThrow(/sampler.cost must be/);
    // the head's rewards: three rollouts of a 17-token answer, L = 17, lambda 1
    const rewards = [1, 0.9, 1],
      nfe = [17, 1, 2],
      correct = [true, false, true];
    expect(samplerRewards(rewards, nfe, correct, { genLength: 17, lambda: 1 })).toEqual([0, 0.9 - 1 / 17, 1 - 2 / 17]); // fast and wrong beats slow and right
    expect(samplerRewards(rewards, nfe, correct, { genLength: 17, lambda: 1, cost: 'correct-bonus' })).toEqual([1, 0.9, 1 + 15 / 17]); // never
    model.dispose();
  });

  it('rejects a bad grid', () => {
    expect(() => new ThresholdHead({ grid: [0.5], dModel: 4 })).toThrow(InvalidArgumentError);
    expect(() => new ThresholdHead({ grid: [0.5, NaN], dModel: 4 })).toThrow(InvalidArgumentError);
    // a malformed head in a checkpoint is a CheckpointError naming the tensors
    const t = (name: string, shape: number[], data: number[]) => [`diffpo.threshold_head.${name}`, { name: `diffpo.threshold_head.${name}`, shape, data: Float64Array.from(data) }] as const;
    const extras = (grid: number[], w: number[], wShape: number[]) => new Map([t('grid', [grid.length], grid), t('weight', wShape, w), t('bias', [grid.length], grid.map(() => 0))]);
    expect(() => ThresholdHead.fromTensors(extras([0.5, 0.9], [1, 2, 3], [3, 1]), 'ckpt')).toThrow(/ckpt: the threshold head needs/);
    expect(() => ThresholdHead.fromTensors(extras([0.5], [1], [1, 1]), 'ckpt')).toThrow(CheckpointError);
    expect(ThresholdHead.fromTensors(new Map(), 'ckpt')).toBeNull();
  });

  it("refuses a head made for another width, however it is passed", async () => {
    const model = DiffusionLM.create(TINY, { seed: 1 });
    for (const features of ['hidden', 'confidence'] as const) {
      const head = new ThresholdHead({ grid: [0.5, 0.9], dModel: 7, features });
      const strategy = { kind: 'learned' as const, head };
      await expect(model.generate([Int32Array.from([1, 2])], { genLength: 4, strategy })).rejects.toThrow(/made for d_model 7 but the model's d_model is \d+/);
      expect(() => (model.samplerHead = head)).toThrow(InvalidArgumentError);
    }
    model.dispose();
  });
});
