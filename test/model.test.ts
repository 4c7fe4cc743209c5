import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { AbortError, AdamW, ConfigError, DiffpoError, DiffusionLM, DisposedError, InvalidArgumentError, NonFiniteError } from 'diffpo';

const SMALL = { d_model: 16, n_heads: 4, n_kv_heads: 2, n_layers: 2, mlp_hidden_size: 32, vocab_size: 12, rope_theta: 10000 };

function logSoftmaxAt(logits: Float32Array, row: number, E: number, target: number): number {
  const r = logits.subarray(row * E, (row + 1) * E);
  const m = Math.max(...r);
  const lse = m + Math.log(r.reduce((a, v) => a + Math.exp(v - m), 0));
  return r[target]! - lse;
}

describe('forward', () => {
  it('the reference backend and the fast CPU backend give the same logits and gradients', async () => {
    const fast = DiffusionLM.create(SMALL, { seed: 3, initStd: 0.2, threads: 2 });
    const ref = DiffusionLM.create(SMALL, { seed: 3, initStd: 0.2, backend: 'reference' });
    const tokens = Int32Array.from({ length: 3 * 7 }, (_, i) => (i * 5) % 11);
    const attentionMask = Uint8Array.from({ length: 21 }, (_, i) => (i % 7 < 6 || i < 14 ? 1 : 0));
    const a = await fast.logits(tokens, { batch: 3, seqLen: 7, attentionMask });
    const b = await ref.logits(tokens, { batch: 3, seqLen: 7, attentionMask });
    a.forEach((v, i) => expect(v).toBeCloseTo(b[i]!, 4));
    const input = { tokens, batch: 3, seqLen: 7, normalization: 'pretrain' as const, seed: 4 };
    const la = await fast.maskedDiffusionLoss(input, { backward: true });
    const lb = await ref.maskedDiffusionLoss(input, { backward: true });
    expect(la.loss).toBeCloseTo(lb.loss, 4);
    const ga = fast.gradients(),
      gb = ref.gradients();
    for (const [name, g] of ga) {
      const want = gb.get(name)!;
      const scale = Math.max(1e-6, ...want.map(Math.abs));
      g.forEach((v, i) => expect(Math.abs(v - want[i]!) / scale, name).toBeLessThan(1e-4));
    }
    fast.dispose();
    ref.dispose();
  });

  it('padding keys do not influence real positions', async () => {
    const m = DiffusionLM.create(SMALL, { seed: 1, initStd: 0.3 });
    const T = 6,
      E = m.config.embedding_size;
    const attentionMask = Uint8Array.from([1, 1, 1, 1, 0, 0]);
    const x = Int32Array.from([1, 2, 3, 4, 5, 6]);
    const y = Int32Array.from([1, 2, 3, 4, 9, 0]);
    const lx = await m.logits(x, { batch: 1, seqLen: T, attentionMask });
    const ly = await m.logits(y, { batch: 1, seqLen: T, attentionMask });
    expect(lx.subarray(0, 4 * E)).toEqual(ly.subarray(0, 4 * E));
    // and without the mask they do differ
    const ux = await m.logits(x, { batch: 1, seqLen: T });
    const uy = await m.logits(y, { batch: 1, seqLen: T });
    expect(ux.subarray(0, 4 * E)).not.toEqual(uy.subarray(0, 4 * E));
    m.dispose();
  });

  it('a batch gives each sequence the logits it gets alone', async () => {
    const m = DiffusionLM.create(SMALL, { seed: 2, initStd: 0.3 });
    const a = Int32Array.from([1, 2, 3, 4]),
      b = Int32Array.from([7, 7, 0, 10]);
    const both = await m.logits(Int32Array.from([...a, ...b]), { batch: 2, seqLen: 4 });
    const la = await m.logits(a, { batch: 1, seqLen: 4 });
    const lb = await m.logits(b, { batch: 1, seqLen: 4 });
    const E = m.config.embedding_size;
    both.subarray(0, 4 * E).forEach((v, i) => expect(v).toBeCloseTo(la[i]!, 5));
    both.subarray(4 * E).forEach((v, i) => expect(v).toBeCloseTo(lb[i]!, 5));
    m.dispose();
  });

  it('parameters() are zero-copy views: writing one changes the model', async () => {
    const m = DiffusionLM.create(SMALL, { seed: 2 });
    const tokens = Int32Array.from([1, 2, 3]);
    const before = await m.logits(tokens, { batch: 1, seqLen: 3 });
    m.parameters().get('model.transformer.ln_f.weight')!.fill(2);
    const after = await m.logits(tokens, { batch: 1, seqLen: 3 });
    after.forEach((v, i) => expect(v).toBeCloseTo(2 * before[i]!, 5));
    m.dispose();
  });

  it('GQA and weight tying give the LLaDA tensor shapes', () => {
    const m = DiffusionLM.create({ ...SMALL, n_kv_heads: 1, weight_tying: true });
    const p = m.parameters();
    expect(p.get('model.transformer.blocks.0.k_proj.weight')!.length).toBe(4 * 16);
    expect(p.has('model.transformer.ff_out.weight')).toBe(false);
    expect(m.numParameters).toBe([...p.values()].reduce((a, t) => a + t.length, 0));
    m.dispose();
  });
});

describe('masked diffusion loss', () => {
  const tokens = Int32Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0, 1]);
  const mask = Uint8Array.from([0, 1, 0, 1, 1, 0, 0, 0, 1, 1, 1, 0]);
  const pMask = Float32Array.from([0.4, 0.7]);

  async function expected(m: DiffusionLM, normalization: 'pretrain' | 'sft', promptLengths = [0, 0]) {
    const noisy = tokens.map((t, i) => (mask[i] ? m.config.mask_token_id : t));
    const logits = await m.logits(noisy, { batch: 2, seqLen: 6 });
    let loss = 0;
    for (let i = 0; i < 12; i++) {
      if (!mask[i]) continue;
      const b = Math.floor(i / 6);
      const norm = normalization === 'pretrain' ? 2 * 6 : 2 * (6 - promptLengths[b]!);
      loss += -logSoftmaxAt(logits, i, m.config.embedding_size, tokens[i]!) / pMask[b]! / norm;
    }
    return loss;
  }

  it('pretrain: sum over masked tokens of CE/p, divided by B*T (explicit masks)', async () => {
    const m = DiffusionLM.create(SMALL, { seed: 5, initStd: 0.3 });
    const r = await m.maskedDiffusionLoss({ tokens, batch: 2, seqLen: 6, mask, pMask, normalization: 'pretrain' });
    expect(r.maskedTokens).toBe(6);
    expect(r.loss).toBeCloseTo(await expected(m, 'pretrain'), 5);
    m.dispose();
  });

  it('sft: per-sequence normalisation by the response length; masking a prompt token is an error', async () => {
    const m = DiffusionLM.create(SMALL, { seed: 5, initStd: 0.3 });
    const r = await m.maskedDiffusionLoss({ tokens, batch: 2, seqLen: 6, mask, pMask, normalization: 'sft', promptLengths: [1, 2] });
    expect(r.loss).toBeCloseTo(await expected(m, 'sft', [1, 2]), 5);
    await expect(m.maskedDiffusionLoss({ tokens, batch: 2, seqLen: 6, mask, pMask, normalization: 'sft', promptLengths: [2, 2] })).rejects.toThrow(/masks a prompt token/);
    m.dispose();
  });

  it('sampled masks: reproducible per seed, never on the prompt for sft, p in [eps, 1]', async () => {
    const m = DiffusionLM.create(SMALL, { seed: 5 });
    const B = 16,
      T = 12;
    const toks = Int32Array.from({ length: B * T }, (_, i) => i % 11);
    const input = { tokens: toks, batch: B, seqLen: T, normalization: 'sft' as const, promptLengths: new Array(B).fill(5), seed: 11 };
    const a = await m.maskedDiffusionLoss(input);
    const b = await m.maskedDiffusionLoss(input);
    expect(a.loss).toBe(b.loss);
    expect(a.pMask).toEqual(b.pMask);
    const c = await m.maskedDiffusionLoss({ ...input, seed: 12 });
    expect(c.loss).not.toBe(a.loss);
    for (const p of a.pMask) expect(p >= 1e-3 && p <= 1).toBe(true);
    // with every sequence at p = 1, exactly the responses are masked
    const full = await m.maskedDiffusionLoss({ ...input, pMask: new Float32Array(B).fill(1) });
    expect(full.maskedTokens).toBe(B * (T - 5));
    m.dispose();
  });

  it('gradients accumulate across backward calls and zeroGrad clears them', async () => {
    const m = DiffusionLM.create(SMALL, { seed: 6, initStd: 0.2 });
    const input = { tokens, batch: 2, seqLen: 6, mask, pMask, normalization: 'pretrain' as const };
    await m.maskedDiffusionLoss(input, { backward: true });
    const once = new Map([...m.gradients()].map(([k, v]) => [k, v.slice()]));
    await m.maskedDiffusionLoss(input, { backward: true });
    for (const [k, g] of m.gradients()) g.forEach((v, i) => expect(v).toBeCloseTo(2 * once.get(k)![i]!, 5));
    await m.zeroGrad();
    for (const g of m.gradients().values()) expect(g.every((v) => v === 0)).toBe(true);
    m.dispose();
  });

  it('a non-finite loss is an error and accumulates nothing', async () => {
    const m = DiffusionLM.create(SMALL, { seed: 6 });
    m.parameters().get('model.transformer.ln_f.weight')![0] = NaN;
    const p = m.maskedDiffusionLoss({ tokens, batch: 2, seqLen: 6, mask, pMask, normalization: 'pretrain' }, { backward: true });
    await expect(p).rejects.toBeInstanceOf(NonFiniteError);
    for (const g of m.gradients().values()) expect(g.every((v) => v === 0)).toBe(true);
    m.dispose();
  });
});

describe('AdamW', () => {
  it('matches a plain AdamW (decoupled decay, bias correction, clipping, accumulation) step for step', async () => {
    const m = DiffusionLM.create(SMALL, { seed: 8, initStd: 0.2 });
    const opts = { lr: 0.01, betas: [0.9, 0.95] as [number, number], eps: 1e-6, weightDecay: 0.1, maxGradNorm: 0.5, accumulationSteps: 2 };
    const opt = new AdamW(m, opts);
    const tokens = Int32Array.from({ length: 16 }, (_, i) => i % 11);
    const state = new Map([...m.parameters()].map(([k, v]) => [k, { p: Float64Array.from(v), m: new Float64Array(v.length), v: new Float64Array(v.length) }]));
    for (let t = 1; t <= 3; t++) {
      await opt.zeroGrad();
      for (let micro = 0; micro < 2; micro++)
        await m.maskedDiffusionLoss({ tokens, batch: 2, seqLen: 8, normalization: 'pretrain', seed: t * 10 + micro }, { backward: true });
      const grads = m.gradients();
      let ss = 0;
      for (const g of grads.values()) for (const v of g) ss += (v / 2) ** 2;
      const norm = Math.sqrt(ss);
      const clip = norm > opts.maxGradNorm ? opts.maxGradNorm / (norm + 1e-6) : 1;
      const r = await opt.step();
      expect(r.gradNorm).toBeCloseTo(norm, 4);
      expect(r.step).toBe(t);
      for (const [name, s] of state) {
        const g = grads.get(name)!;
        const decay = /norm|ln_f/.test(name) ? 0 : opts.weightDecay; // norms are not decayed
        for (let i = 0; i < g.length; i++) {
          const gi = (g[i]! / 2) * clip;
          s.m[i] = 0.9 * s.m[i]! + 0.1 * gi;
          s.v[i] = 0.95 * s.v[i]! + 0.05 * gi * gi;
          const mh = s.m[i]! / (1 - 0.9 ** t),
            vh = s.v[i]! / (1 - 0.95 ** t);
          s.p[i] = s.p[i]! - opts.lr * (decay * s.p[i]! + mh / (Math.sqrt(vh) + opts.eps));
        }
        const got = m.parameters().get(name)!;
        for (let i = 0; i < got.length; i++) expect(Math.abs(got[i]! - s.p[i]!), name).toBeLessThan(2e-5);
        s.p.set(got); // follow the float32 trajectory
      }
    }
    m.dispose();
  });

  it('bad options are rejected by name', () => {
    const m = DiffusionLM.create(SMALL);
    expect(() => new AdamW(m, { lr: -1 })).toThrow(/lr = -1/);
    expect(() => new AdamW(m, { betas: [1, 0.9] })).toThrow(/betas\[0\]/);
    expect(() => new AdamW(m, { accumulationSteps: 0 })).toThrow(/accumulationSteps/);
    m.dispose();
  });
});

describe('bad input is a typed error, never a crash', () => {
  const m = DiffusionLM.create(SMALL, { seed: 1 });
  const cases: [string, () => Promise<unknown>, RegExp][] = [
    ['negative token id', () => m.logits(Int32Array.from([1, -1]), { batch: 1, seqLen: 2 }), /token id -1 at index 1/],
    ['token id >= vocab', () => m.logits(Int32Array.from([12, 1]), { batch: 1, seqLen: 2 }), /token id 12 at index 0 is outside \[0, vocab_size=12\)/],
    ['tokens.length != batch*seqLen', () => m.logits(Int32Array.from([1, 2, 3]), { batch: 2, seqLen: 2 }), /tokens.length \(3\) != batch \* seqLen/],
    ['tokens not an Int32Array', () => m.logits([1, 2] as unknown as Int32Array, { batch: 1, seqLen: 2 }), /Int32Array/],
    ['tokens of a detached (transferred) buffer', () => {
      const t = Int32Array.from([1, 2]);
      structuredClone(t.buffer, { transfer: [t.buffer] });
      return m.logits(t, { batch: 1, seqLen: 2 });
    }, /view of a detached ArrayBuffer/],
    ['zero batch', () => m.logits(new Int32Array(0), { batch: 0, seqLen: 2 }), /batch must be a positive integer/],
    ['attention mask hiding a whole sequence', () => m.logits(Int32Array.from([1, 2]), { batch: 1, seqLen: 2, attentionMask: new Uint8Array(2) }), /hides every token of sequence 0/],
    ['attention mask of the wrong length', () => m.logits(Int32Array.from([1, 2]), { batch: 1, seqLen: 2, attentionMask: new Uint8Array(3) }), /attentionMask/],
    ['seqLen beyond max_sequence_length', () => m.logits(new Int32Array(5000), { batch: 1, seqLen: 5000 }), /max_sequence_length/],
    ['a clean sequence containing the mask token', () => m.maskedDiffusionLoss({ tokens: Int32Array.from([11, 1]), batch: 1, seqLen: 2, normalization: 'pretrain' }), /mask token/],
    ['sft without prompt lengths', () => m.maskedDiffusionLoss({ tokens: Int32Array.from([1, 1]), batch: 1, seqLen: 2, normalization: 'sft' }), /promptLengths/],
    ['an explicit mask without pMask', () => m.maskedDiffusionLoss({ tokens: Int32Array.from([1, 1]), batch: 1, seqLen: 2, normalization: 'pretrain', mask: new Uint8Array(2) }), /needs pMask/],
    ['pMask out of range', () => m.maskedDiffusionLoss({ tokens: Int32Array.from([1, 1]), batch: 1, seqLen: 2, normalization: 'pretrain', pMask: Float32Array.from([0]) }), /pMask\[0\] = 0/],
    ['unknown normalization', () => m.maskedDiffusionLoss({ tokens: Int32Array.from([1, 1]), batch: 1, seqLen: 2, normalization: 'mean' as 'sft' }), /normalization/],
    ['mismatched positions/targets', () => m.selectedLogProbs({ tokens: Int32Array.from([1, 1]), batch: 1, seqLen: 2, rows: Int32Array.from([0]), targets: new Int32Array(2) }), /rows.length \(1\) != targets.length \(2\)/],
    ['a position out of range', () => m.selectedLogProbs({ tokens: Int32Array.from([1, 1]), batch: 1, seqLen: 2, rows: Int32Array.from([2]), targets: Int32Array.from([0]) }), /rows\[0\] = 2/],
  ];
  for (const [what, call, message] of cases) {
    it(what, async () => {
      const p = call();
      await expect(p).rejects.toBeInstanceOf(InvalidArgumentError);
      await expect(p).rejects.toThrow(message);
      await expect(p).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    });
  }

  it('invalid configs and options name the key', () => {
    expect(() => DiffusionLM.create({ ...SMALL, n_heads: 3 })).toThrow(ConfigError);
    expect(() => DiffusionLM.create({ ...SMALL, d_model: 0 })).toThrow(/config.d_model must be a positive integer/);
    expect(() => DiffusionLM.create({ ...SMALL, rms_norm_eps: -1 })).toThrow(/rms_norm_eps/);
    expect(() => DiffusionLM.create('huge' as 'tiny')).toThrow(/unknown preset 'huge'/);
    expect(() => DiffusionLM.create(SMALL, { threads: 0 })).toThrow(/threads must be a positive integer/);
    expect(() => DiffusionLM.create(SMALL, { backend: 'gpu' as 'cpu' })).toThrow(/backend must be/);
  });

  it('a disposed model rejects calls with DisposedError; its views are detached (its memory is freed at once)', async () => {
    const d = DiffusionLM.create(SMALL, { seed: 1 });
    const w = d.parameters().get('model.transformer.wte.weight')!;
    const copy = Float32Array.from(w);
    expect(w.length).toBe(12 * 16);
    d.dispose();
    d.dispose();
    await expect(d.logits(Int32Array.from([1]), { batch: 1, seqLen: 1 })).rejects.toBeInstanceOf(DisposedError);
    expect(() => d.parameters()).toThrow(DisposedError);
    expect(w.length).toBe(0); // detached: reading it can never reach freed memory
    expect(copy[0]).not.toBe(0); // a copy taken before dispose() is the caller's
    // disposed while a call runs natively: the call is cancelled, then the views are detached
    const e = DiffusionLM.create({ ...SMALL, d_model: 256, n_heads: 4, mlp_hidden_size: 1024, n_layers: 4 }, { seed: 2, threads: 1 });
    const v = e.parameters().get('model.transformer.ln_f.weight')!;
    const pending = e.logits(new Int32Array(64 * 64).fill(1), { batch: 64, seqLen: 64 });
    await new Promise((r) => setTimeout(r, 20)); // the native job has started
    e.dispose();
    expect(v.length).toBe(256); // still in use by the running call
    await expect(pending).rejects.toBeInstanceOf(AbortError);
    expect(v.length).toBe(0);
  });

  it('an aborted signal rejects with AbortError, and aborting mid-call stops it', async () => {
    const big = DiffusionLM.create({ ...SMALL, d_model: 128, n_heads: 4, n_kv_heads: 4, mlp_hidden_size: 512, n_layers: 8 }, { threads: 1 });
    const ac = new AbortController();
    ac.abort();
    await expect(big.logits(Int32Array.from([1]), { batch: 1, seqLen: 1, signal: ac.signal })).rejects.toBeInstanceOf(AbortError);
    const tokens = new Int32Array(32 * 256).fill(3);
    const ac2 = new AbortController();
    const start = performance.now();
    const full = performance.now();
    await big.logits(tokens, { batch: 32, seqLen: 256 });
    const fullMs = performance.now() - full;
    const p = big.logits(tokens, { batch: 32, seqLen: 256, signal: ac2.signal });
    setTimeout(() => ac2.abort(), fullMs / 4);
    await expect(p).rejects.toMatchObject({ code: 'ABORT_ERR' });
    expect(performance.now() - start - fullMs).toBeLessThan(fullMs);
    // the model stays usable
    expect((await big.logits(Int32Array.from([1, 2]), { batch: 1, seqLen: 2 })).length).toBe(24);
    big.dispose();
  });

  it('inputs changed while a call waits or runs cannot reach the kernels: each call reads its own copy', async () => {
    const tokens = () => Int32Array.from({ length: 64 }, (_, i) => i % 11);
    const rows = () => Int32Array.from({ length: 16 }, (_, i) => i * 4);
    const targets = () => Int32Array.from({ length: 16 }, (_, i) => i % 11);
    const prompts = () => [Int32Array.from([1, 2, 3]), Int32Array.from([4, 5, 6])];
    const gen = { genLength: 4, strategy: { kind: 'threshold' as const, threshold: 0.9 } };
    const clean = {
      logits: await m.logits(tokens(), { batch: 4, seqLen: 16 }),
      hidden: await m.hiddenStates(tokens(), { batch: 4, seqLen: 16 }),
      logp: (await m.selectedLogProbs({ tokens: tokens(), batch: 4, seqLen: 16, rows: rows(), targets: targets() })).logProbs,
      generated: (await m.generate(prompts(), gen)).tokens,
    };
    const wreck = (...arrays: (Int32Array | Uint8Array)[]) => arrays.forEach((a) => a.fill(a instanceof Int32Array ? 2 ** 30 : 0));
    for (let round = 0; round < 3; round++) {
      // a slow call first, so the calls below wait in the model's queue while their inputs change
      const busy = m.logits(new Int32Array(8 * 256).fill(3), { batch: 8, seqLen: 256 });
      const t = [tokens(), tokens(), tokens()];
      const [r, g, p] = [rows(), targets(), prompts()];
      const calls = [
        m.logits(t[0]!, { batch: 4, seqLen: 16 }),
        m.hiddenStates(t[1]!, { batch: 4, seqLen: 16 }),
        m.selectedLogProbs({ tokens: t[2]!, batch: 4, seqLen: 16, rows: r, targets: g }),
        m.generate(p, gen),
      ];
      wreck(...t, r, g, ...p);
      const [logits, hidden, logp, generated] = await Promise.all(calls);
      await busy;
      expect(logits).toEqual(clean.logits);
      expect(hidden).toEqual(clean.hidden);
      expect((logp as { logProbs: Float32Array }).logProbs).toEqual(clean.logp);
      expect((generated as { tokens: Int32Array }).tokens).toEqual(clean.generated);
    }
  });

  it('missing or wrong-typed arguments at every entry point are typed errors, never a TypeError', async () => {
    const t = Int32Array.from([1, 2]);
    const calls: [string, () => unknown][] = [
      ['fromPretrained(undefined)', () => DiffusionLM.fromPretrained(undefined as unknown as string)],
      ['fromPretrained(42)', () => DiffusionLM.fromPretrained(42 as unknown as string)],
      ['create(undefined)', () => DiffusionLM.create(undefined as unknown as 'tiny')],
      ['logits(tokens)', () => m.logits(t, undefined as never)],
      ['logits(undefined, ...)', () => m.logits(undefined as never, { batch: 1, seqLen: 2 })],
      ['hiddenStates(tokens)', () => m.hiddenStates(t, undefined as never)],
      ['selectedLogProbs(undefined)', () => m.selectedLogProbs(undefined as never)],
      ['maskedDiffusionLoss(undefined)', () => m.maskedDiffusionLoss(undefined as never)],
      ['generate(undefined)', () => m.generate(undefined as never, undefined as never)],
      ['generate(prompts)', () => m.generate([t], undefined as never)],
      ['tokenLogProbs(undefined)', () => m.tokenLogProbs(undefined as never, undefined as never)],
      ['policyLoss(undefined)', () => m.policyLoss(undefined as never, undefined as never)],
      ['save(undefined)', () => m.save(undefined as never)],
      ['save(a path under a file)', () => m.save('/dev/null/model')],
      ['signal that is not an AbortSignal', () => m.logits(t, { batch: 1, seqLen: 2, signal: { aborted: false } as AbortSignal })],
      ['adamwStep(undefined)', () => m.adamwStep(undefined as never, undefined as never)],
    ];
    for (const [what, call] of calls) {
      const err = await Promise.resolve()
        .then(call)
        .then(
          () => null,
          (e: unknown) => e,
        );
      expect(err, what).toBeInstanceOf(DiffpoError);
    }
  });

  it('threads the OS refuses (a memory cap) are an InvalidArgumentError, not an abort', () => {
    const script = "const { DiffusionLM } = require('diffpo'); try { DiffusionLM.create('tiny', { threads: 1000 }); console.log('created'); } catch (e) { console.log(e.name + ': ' + e.message); }";
    // the plain build: a sanitizer runtime (npm run test:asan) reserves more address space than the cap
    const { LD_PRELOAD, DIFFPO_NATIVE_PATH, ...env } = process.env;
    void LD_PRELOAD, void DIFFPO_NATIVE_PATH;
    const r = spawnSync('bash', ['-c', `ulimit -v 3000000; exec "${process.execPath}" -e "$0"`, script], { encoding: 'utf8', env });
    expect(r.status, r.stderr).toBe(0);
    // with 8 MB stacks, 1000 threads do not fit under a 3 GB cap
    expect(r.stdout).toMatch(/^InvalidArgumentError: cannot start 1000 threads here \(the OS refused after \d+\)/);
  });

  it('every error is a DiffpoError with a stable code', async () => {
    const err = await m.logits(Int32Array.from([99]), { batch: 1, seqLen: 1 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DiffpoError);
    expect((err as DiffpoError).code).toBe('ERR_INVALID_ARGUMENT');
  });
});

describe('gradient checkpointing', () => {
  it("'layer' recomputes each layer in the backward: the same loss and gradients, bit for bit, in a fraction of the activation memory", async () => {
    const cfg = { ...SMALL, d_model: 64, n_heads: 4, n_kv_heads: 2, mlp_hidden_size: 128, n_layers: 6, vocab_size: 50 };
    const [B, T] = [4, 24];
    const tokens = Int32Array.from({ length: B * T }, (_, i) => (i * 7) % 49);
    const attentionMask = Uint8Array.from({ length: B * T }, (_, i) => (i % T < 2 && i >= T ? 0 : 1)); // left padding on rows 1-3
    const rows = Int32Array.from({ length: 30 }, (_, i) => (i * 11) % (B * T));
    const targets = Int32Array.from(rows, (r) => (r * 3) % 50);
    const run = async (checkpointing: 'none' | 'layer') => {
      const m = DiffusionLM.create(cfg, { seed: 5, threads: 2, checkpointing });
      await m.zeroGrad();
      const r = await m.selectedLogProbs({ tokens, batch: B, seqLen: T, rows, targets, attentionMask }, { backward: true });
      const grads = new Map([...m.gradients()].map(([k, g]) => [k, Float32Array.from(g)]));
      const bytes = m.activationBytes;
      m.dispose();
      return { loss: r.loss, grads, bytes };
    };
    const stored = await run('none');
    const recomputed = await run('layer');
    expect(recomputed.loss).toBe(stored.loss);
    for (const [name, g] of stored.grads) expect(recomputed.grads.get(name), name).toEqual(g);
    expect(recomputed.bytes).toBeLessThan(stored.bytes / 2);
    expect(() => (DiffusionLM.create(cfg).checkpointing = 'step' as never)).toThrow(/checkpointing must be 'none' or 'layer'/);
  });
});

describe('non-finite outputs are errors, never silent', () => {
  it('finite but huge weights: logits, hidden states and decoding throw NonFiniteError naming the call', async () => {
    const m = DiffusionLM.create(SMALL, { seed: 1 });
    m.parameters().get('model.transformer.ff_out.weight')!.fill(3.4e38); // finite, but every logit overflows
    const ids = Int32Array.from([1, 2, 3, 4]);
    await expect(m.logits(ids, { batch: 1, seqLen: 4 })).rejects.toThrow(NonFiniteError);
    await expect(m.logits(ids, { batch: 1, seqLen: 4 })).rejects.toThrow(/^logits: /);
    await expect(m.generate([ids], { genLength: 4 })).rejects.toThrow(/^generate: the model's scores are not finite/);
    await expect(m.generate([ids], { genLength: 4, temperature: 1 })).rejects.toThrow(NonFiniteError);
    m.parameters().get('model.transformer.ln_f.weight')!.fill(3.4e38); // normalised states times FLT_MAX overflow
    await expect(m.hiddenStates(ids, { batch: 1, seqLen: 4 })).rejects.toThrow(/^hidden: /);
    m.dispose();
  });
});

describe('memory', () => {
  it('dispose() returns native memory at once: 300 create/dispose cycles taking views, without an await, stay flat', () => {
    const cfg = { ...SMALL, vocab_size: 4096, d_model: 256, n_heads: 4, n_kv_heads: 4, mlp_hidden_size: 256 }; // 4.2M parameters, 17 MB
    const rss0 = process.memoryUsage().rss;
    for (let i = 0; i < 300; i++) {
      const m = DiffusionLM.create(cfg, { seed: i, threads: 1, initStd: 0 });
      m.parameters().get('model.transformer.wte.weight')!.fill(1); // 4 MB of touched pages, and a live view
      m.gradients();
      m.dispose();
    }
    // 300 models kept alive until the next GC would hold 1.2 GB of touched pages
    expect(process.memoryUsage().rss - rss0).toBeLessThan(300 * 2 ** 20);
  });

  it('models created and disposed in a loop hold RSS flat (parameter blocks go back to the OS)', () => {
    // 120 cycles of a 4 MB model in a fresh process (with malloc's blocks, 200 cycles doubled RSS: 247 -> 485 MB)
    const child = fileURLToPath(new URL('./fixtures/create-dispose.mjs', import.meta.url));
    const r = spawnSync(process.execPath, [child, '120'], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const { before, after } = JSON.parse(r.stdout) as { before: number; after: number };
    expect(after / before).toBeLessThan(1.1);
  }, 60_000);
});
