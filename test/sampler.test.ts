import { describe, expect, it } from 'vitest';

import { AbortError, DiffusionLM, InvalidArgumentError, type DecodingStrategy } from 'diffpo';

import { referenceGenerate } from './helpers/reference-sampler.js';

// Random tiny models with spread-out logits (large init), so that confidences have no near-ties.
const CONFIG = { vocab_size: 12, d_model: 32, n_heads: 4, n_kv_heads: 2, n_layers: 2, mlp_hidden_size: 64, rope_theta: 10000 };
const model = DiffusionLM.create(CONFIG, { seed: 11, initStd: 0.6, threads: 2 });
const prompts = [Int32Array.from([1, 2, 3]), Int32Array.from([4, 5, 6, 7, 8]), Int32Array.from([9]), Int32Array.from([2, 2, 0, 1])];

const cases: { name: string; strategy: DecodingStrategy; tau?: number[]; blockLength: number }[] = [
  { name: 'threshold 0.3, blocks of 4', strategy: { kind: 'threshold', threshold: 0.3 }, tau: [0.3, 0.3, 0.3, 0.3], blockLength: 4 },
  { name: 'per-sequence thresholds, one block', strategy: { kind: 'threshold', threshold: Float32Array.from([0.15, 0.5, 0.9, 0.35]) }, tau: [0.15, 0.5, 0.9, 0.35], blockLength: 8 },
  { name: 'steps 4, blocks of 4', strategy: { kind: 'steps', steps: 4 }, blockLength: 4 },
  { name: 'steps 8, blocks of 2', strategy: { kind: 'steps', steps: 8 }, blockLength: 2 },
  { name: 'factor 1, blocks of 4', strategy: { kind: 'factor', factor: 1 }, blockLength: 4 },
  { name: 'factor 2.5, one block', strategy: { kind: 'factor', factor: 2.5 }, blockLength: 8 },
  { name: 'entropy gamma 0.8, blocks of 4', strategy: { kind: 'entropy', gamma: 0.8 }, tau: [0.8, 0.8, 0.8, 0.8], blockLength: 4 },
  { name: 'per-sequence gammas, one block', strategy: { kind: 'entropy', gamma: Float32Array.from([0, 0.5, 2, 5]) }, tau: [0, 0.5, 2, 5], blockLength: 8 },
];

describe('sampler against a TypeScript reference (temperature 0)', () => {
  for (const c of cases) {
    it(c.name, async () => {
      const r = await model.generate(prompts, { genLength: 8, blockLength: c.blockLength, strategy: c.strategy });
      for (let b = 0; b < prompts.length; b++) {
        const want = await referenceGenerate(model, prompts[b]!, { genLength: 8, blockLength: c.blockLength, strategy: c.strategy, tau: c.tau?.[b] });
        expect(Array.from(r.tokens.subarray(b * 8, b * 8 + 8)), `tokens of ${b}`).toEqual(want.tokens);
        expect(Array.from(r.decodeStep.subarray(b * 8, b * 8 + 8)), `decode steps of ${b}`).toEqual(want.decodeStep);
        expect(r.nfe[b], `NFE of ${b}`).toBe(want.nfe);
        r.behaviourLogProb.subarray(b * 8, b * 8 + 8).forEach((lp, i) => expect(lp).toBeCloseTo(want.logp[i]!, 4));
      }
    });
  }

  it('an NFE budget fills every remaining position in the last allowed forward', async () => {
    const strategy: DecodingStrategy = { kind: 'threshold', threshold: 2 };
    const r = await model.generate(prompts, { genLength: 8, blockLength: 4, strategy, maxNfe: [3, 0, 1, 5] });
    expect(Array.from(r.hitBudget)).toEqual([1, 0, 1, 1]);
    expect(Array.from(r.nfe)).toEqual([3, 8, 1, 5]);
    for (let b = 0; b < prompts.length; b++) {
      const want = await referenceGenerate(model, prompts[b]!, { genLength: 8, blockLength: 4, strategy, tau: 2, maxNfe: [3, 0, 1, 5][b] });
      expect(Array.from(r.tokens.subarray(b * 8, b * 8 + 8))).toEqual(want.tokens);
      expect(want.hitBudget).toBe(r.hitBudget[b] === 1);
    }
    expect(r.tokens.includes(model.config.mask_token_id)).toBe(false);
  });
});

describe('sampler invariants', () => {
  const gen = (strategy: DecodingStrategy, extra = {}) => model.generate(prompts, { genLength: 8, blockLength: 4, strategy, ...extra });

  it('threshold above 1 unmasks one token per step; threshold 0 a whole block per step; steps uses exactly `steps`', async () => {
    expect(Array.from((await gen({ kind: 'threshold', threshold: 1.5 })).nfe)).toEqual([8, 8, 8, 8]);
    expect(Array.from((await gen({ kind: 'threshold', threshold: 0 })).nfe)).toEqual([2, 2, 2, 2]);
    expect(Array.from((await gen({ kind: 'steps', steps: 6 })).nfe)).toEqual([6, 6, 6, 6]);
    const one = await gen({ kind: 'threshold', threshold: 1.5 });
    for (let b = 0; b < 4; b++) expect([...one.decodeStep.subarray(b * 8, b * 8 + 8)].sort((x, y) => x - y)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  });

  it('the mask token is never generated, and tokens stay within the vocabulary', async () => {
    for (const strategy of cases.map((c) => c.strategy)) {
      const r = await gen(strategy);
      for (const t of r.tokens) expect(t >= 0 && t < CONFIG.vocab_size - 1).toBe(true);
    }
  });

  it('per-sequence thresholds in one batch give what each sequence gets alone', async () => {
    const tau = Float32Array.from([0.2, 0.6, 0.95, 0.4]);
    const batch = await gen({ kind: 'threshold', threshold: tau });
    for (let b = 0; b < 4; b++) {
      const alone = await model.generate([prompts[b]!], { genLength: 8, blockLength: 4, strategy: { kind: 'threshold', threshold: tau[b]! } });
      expect(batch.tokens.subarray(b * 8, b * 8 + 8)).toEqual(alone.tokens);
      expect(batch.nfe[b]).toBe(alone.nfe[0]);
      expect(batch.behaviourLogProb.subarray(b * 8, b * 8 + 8)).toEqual(alone.behaviourLogProb);
    }
  });

  it('batch compaction gives the same tokens as keeping finished rows', async () => {
    const strategy: DecodingStrategy = { kind: 'threshold', threshold: Float32Array.from([0, 0.5, 2, 0.3]) };
    const a = await gen(strategy);
    const b = await gen(strategy, { compact: false });
    expect(a.tokens).toEqual(b.tokens);
    expect(a.decodeStep).toEqual(b.decodeStep);
    expect(a.nfe).toEqual(b.nfe);
  });

  it('sampling at temperature > 0 draws the documented Philox Gumbel noise of (seed; sequence, forward, position, id), whatever the batch', async () => {
    for (const [seed, first] of [[5, 0], [2 ** 40 + 3, 7]] as const) {
      const strategy: DecodingStrategy = { kind: 'threshold', threshold: 0.3 };
      const r = await model.generate(prompts, { genLength: 8, blockLength: 4, strategy, temperature: 0.8, seed, firstSequence: first });
      for (let b = 0; b < prompts.length; b++) {
        const want = await referenceGenerate(model, prompts[b]!, { genLength: 8, blockLength: 4, strategy, tau: 0.3, temperature: 0.8, seed, sequence: first + b });
        expect(Array.from(r.tokens.subarray(b * 8, b * 8 + 8)), `tokens of ${b}`).toEqual(want.tokens);
        expect(Array.from(r.decodeStep.subarray(b * 8, b * 8 + 8)), `decode steps of ${b}`).toEqual(want.decodeStep);
        r.behaviourLogProb.subarray(b * 8, b * 8 + 8).forEach((lp, i) => expect(lp).toBeCloseTo(want.logp[i]!, 4));
        // alone, with its index in the batch, a sequence draws the same
        const alone = await model.generate([prompts[b]!], { genLength: 8, blockLength: 4, strategy, temperature: 0.8, seed, firstSequence: first + b });
        expect(alone.tokens).toEqual(r.tokens.subarray(b * 8, b * 8 + 8));
      }
    }
    const remask = await model.generate(prompts, { genLength: 8, blockLength: 4, strategy: { kind: 'steps', steps: 4, remasking: 'random' }, temperature: 1, seed: 9 });
    const again = await model.generate(prompts, { genLength: 8, blockLength: 4, strategy: { kind: 'steps', steps: 4, remasking: 'random' }, temperature: 1, seed: 9 });
    expect(remask.decodeStep).toEqual(again.decodeStep);
  });

  it('sampling at temperature > 0 is reproducible per seed, differs across seeds, and reports log-probs at that temperature', async () => {
    const strategy: DecodingStrategy = { kind: 'threshold', threshold: 0.5 };
    const a = await gen(strategy, { temperature: 1, seed: 5 });
    const b = await gen(strategy, { temperature: 1, seed: 5 });
    expect(a.tokens).toEqual(b.tokens);
    const others = await Promise.all([6, 7, 8].map((seed) => gen(strategy, { temperature: 1, seed })));
    expect(others.some((o) => o.tokens.some((t, i) => t !== a.tokens[i]))).toBe(true);
    for (const lp of a.behaviourLogProb) expect(lp < 0 && Number.isFinite(lp)).toBe(true);
  });

  it('onStep sees each forward: what it unmasked and the partial canvas', async () => {
    const events: { step: number; count: number; masked: number }[] = [];
    const r = await model.generate(prompts, {
      genLength: 8,
      blockLength: 4,
      strategy: { kind: 'threshold', threshold: 0.5 },
      onStep: (e) => {
        events.push({ step: e.step, count: e.unmasked.token.length, masked: e.tokens.filter((t) => t === CONFIG.vocab_size - 1).length });
      },
    });
    expect(events.map((e) => e.step)).toEqual(events.map((_, i) => i + 1));
    expect(events.length).toBe(Math.max(...r.nfe));
    expect(events.reduce((a, e) => a + e.count, 0)).toBe(4 * 8);
    expect(events.at(-1)!.masked).toBe(0);
    for (let i = 1; i < events.length; i++) expect(events[i]!.masked).toBe(events[i - 1]!.masked - events[i]!.count);
  });

  it('an abort stops within one step', async () => {
    const ac = new AbortController();
    let steps = 0;
    const p = model.generate(prompts, {
      genLength: 16,
      blockLength: 4,
      strategy: { kind: 'threshold', threshold: 2 },
      signal: ac.signal,
      onStep: () => {
        if (++steps === 3) ac.abort();
      },
    });
    await expect(p).rejects.toBeInstanceOf(AbortError);
    expect(steps).toBe(3);
    // the model is still usable
    expect((await model.generate([prompts[0]!], { genLength: 4, strategy: { kind: 'threshold', threshold: 0 } })).nfe[0]).toBe(1);
  });
});

describe('sampler bad input', () => {
  const bad: [string, () => Promise<unknown>, RegExp][] = [
    ['empty prompt list', () => model.generate([], { genLength: 4 }), /non-empty array/],
    ['an empty prompt', () => model.generate([new Int32Array(0)], { genLength: 4 }), /prompts\[0\] is empty/],
    ['token id out of range', () => model.generate([Int32Array.from([1, 12])], { genLength: 4 }), /prompts\[0\]\[1\] = 12 is outside/],
    ['genLength not a multiple of blockLength', () => model.generate(prompts, { genLength: 8, blockLength: 3 }), /not a multiple of blockLength 3/],
    ['steps not a multiple of the block count', () => model.generate(prompts, { genLength: 8, blockLength: 2, strategy: { kind: 'steps', steps: 6 } }), /not a multiple of the number of blocks \(4\)/],
    ['threshold NaN', () => model.generate(prompts, { genLength: 8, strategy: { kind: 'threshold', threshold: NaN } }), /threshold = NaN/],
    ['negative gamma', () => model.generate(prompts, { genLength: 8, strategy: { kind: 'entropy', gamma: -0.1 } }), /gamma = -0.1/],
    ['thresholds of the wrong count', () => model.generate(prompts, { genLength: 8, strategy: { kind: 'threshold', threshold: new Float32Array(2) } }), /one entry per prompt \(4\)/],
    ['unknown strategy', () => model.generate(prompts, { genLength: 8, strategy: { kind: 'beam' } as unknown as DecodingStrategy }), /strategy.kind/],
    ['negative temperature', () => model.generate(prompts, { genLength: 8, temperature: -1 }), /temperature/],
    ['a bad budget', () => model.generate(prompts, { genLength: 8, maxNfe: [1, 2] }), /maxNfe/],
    ['an unknown cache', () => model.generate(prompts, { genLength: 8, cache: 'full' as 'dual' }), /cache must be/],
  ];
  for (const [what, call, message] of bad) {
    it(what, async () => {
      const p = call();
      await expect(p).rejects.toBeInstanceOf(InvalidArgumentError);
      await expect(p).rejects.toThrow(message);
    });
  }
});

describe('KV caches', () => {
  it('are exact for a one-layer model (its keys and values depend on the token alone)', async () => {
    const one = DiffusionLM.create({ ...CONFIG, n_layers: 1 }, { seed: 5, initStd: 0.6 });
    for (const strategy of [{ kind: 'threshold', threshold: 0.3 }, { kind: 'steps', steps: 8 }, { kind: 'entropy', gamma: 1 }] as DecodingStrategy[]) {
      const none = await one.generate(prompts, { genLength: 8, blockLength: 4, strategy });
      for (const cache of ['prefix', 'dual'] as const) {
        const r = await one.generate(prompts, { genLength: 8, blockLength: 4, strategy, cache });
        expect(r.tokens, `${cache} ${strategy.kind}`).toEqual(none.tokens);
        expect(r.decodeStep).toEqual(none.decodeStep);
        expect(r.nfe).toEqual(none.nfe);
        expect(r.behaviourLogProb).toEqual(none.behaviourLogProb);
      }
    }
    one.dispose();
  });

  it('on a trained model, keep the accuracy of decoding without a cache (copy task, within 0.1)', async () => {
    const { AdamW } = await import('diffpo');
    const V = 24,
      HALF = 8;
    const m = DiffusionLM.create({ vocab_size: V, d_model: 64, n_heads: 4, n_layers: 2, mlp_hidden_size: 128, rope_theta: 10000 }, { seed: 2 });
    const opt = new AdamW(m, { lr: 3e-3, maxGradNorm: 1 });
    let s = 7;
    const rand = (n: number) => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0), s % n);
    const sample = () => Array.from({ length: HALF }, () => rand(V - 2));
    for (let step = 0; step < 300; step++) {
      const rows = Array.from({ length: 32 }, () => {
        const h = sample();
        return [...h, ...h];
      });
      await m.zeroGrad();
      await m.maskedDiffusionLoss({ tokens: Int32Array.from(rows.flat()), batch: 32, seqLen: 2 * HALF, normalization: 'sft', promptLengths: new Array(32).fill(HALF) }, { backward: true });
      await opt.step();
    }
    const tests = Array.from({ length: 32 }, () => Int32Array.from(sample()));
    const accuracy = async (cache: 'none' | 'prefix' | 'dual') => {
      const r = await m.generate(tests, { genLength: HALF, blockLength: 4, strategy: { kind: 'threshold', threshold: 0.9 }, cache });
      const right = tests.filter((p, b) => r.tokens.subarray(b * HALF, (b + 1) * HALF).every((t, i) => t === p[i])).length;
      return { accuracy: right / tests.length, nfe: r.nfe.reduce((a, n) => a + n, 0) / tests.length };
    };
    const none = await accuracy('none');
    expect(none.accuracy).toBeGreaterThan(0.5); // the model did learn the task
    for (const cache of ['prefix', 'dual'] as const) {
      const c = await accuracy(cache);
      expect(c.accuracy, cache).toBeGreaterThanOrEqual(none.accuracy - 0.1);
    }
    m.dispose();
  });
});
