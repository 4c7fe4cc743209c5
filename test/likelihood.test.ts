import { describe, expect, it } from 'vitest';

import { DiffusionLM, InvalidArgumentError, planEstimate, policyObjective, runPlan, type CompletionBatch, type PolicyLossInput } from 'diffpo';

import { directionalDerivative } from './helpers/directional.js';

// A tiny model: vocab of 6 besides the mask, completions of length 3, so everything is enumerable.
const CONFIG = { vocab_size: 7, d_model: 16, n_heads: 2, n_layers: 2, mlp_hidden_size: 32, rope_theta: 10000 };
const model = DiffusionLM.create(CONFIG, { seed: 4, initStd: 0.5, threads: 2 });
const M = 6,
  E = 7,
  L = 3;

async function logSoftmaxAt(prompt: number[], canvas: number[], g: number, target: number): Promise<number> {
  const tokens = Int32Array.from([...prompt, ...canvas]);
  const logits = await model.logits(tokens, { batch: 1, seqLen: tokens.length });
  const row = Array.from(logits.subarray((prompt.length + g) * E, (prompt.length + g + 1) * E));
  const m = Math.max(...row);
  return row[target]! - m - Math.log(row.reduce((a, v) => a + Math.exp(v - m), 0));
}

const prompts = [Int32Array.from([1, 2]), Int32Array.from([3, 0, 4])];
async function rollout(): Promise<CompletionBatch> {
  const r = await model.generate(prompts, { genLength: L, strategy: { kind: 'steps', steps: 3 } });
  return { prompts, completions: r.tokens, decodeStep: r.decodeStep };
}

describe('likelihood estimators (exact checks on a tiny model)', () => {
  it("mean-field is log-softmax of the fully masked pass (and of a fully masked prompt with pMaskPrompt 1)", async () => {
    const batch = await rollout();
    const plan = planEstimate(model, batch, { estimator: 'mean-field' });
    const got = await runPlan(model, batch, plan);
    const masked = await runPlan(model, batch, planEstimate(model, batch, { estimator: 'mean-field', pMaskPrompt: 1 }));
    for (let b = 0; b < 2; b++)
      for (let g = 0; g < L; g++) {
        const t = batch.completions[b * L + g]!;
        expect(got[b * L + g]).toBeCloseTo(await logSoftmaxAt(Array.from(prompts[b]!), [M, M, M], g, t), 5);
        expect(masked[b * L + g]).toBeCloseTo(await logSoftmaxAt(new Array(prompts[b]!.length).fill(M), [M, M, M], g, t), 5);
      }
  });

  it('two-stage scores each token by the right pass for every tau', async () => {
    const batch = await rollout();
    for (const tau of [1, 2, 3]) {
      const plan = planEstimate(model, batch, { estimator: 'two-stage', tau: Int32Array.from([tau, tau]) });
      const got = await runPlan(model, batch, plan);
      for (let b = 0; b < 2; b++) {
        const steps = batch.decodeStep!.subarray(b * L, (b + 1) * L);
        const comp = Array.from(batch.completions.subarray(b * L, (b + 1) * L));
        const z = comp.map((t, i) => (steps[i]! <= tau ? t : M));
        for (let g = 0; g < L; g++) {
          const want = steps[g]! <= tau ? await logSoftmaxAt(Array.from(prompts[b]!), [M, M, M], g, comp[g]!) : await logSoftmaxAt(Array.from(prompts[b]!), z, g, comp[g]!);
          expect(got[b * L + g], `tau ${tau}, sequence ${b}, token ${g}`).toBeCloseTo(want, 5);
        }
      }
    }
  });

  it("trajectory equals the exact log-probability of the sampler's own choices (its behaviour log-probs)", async () => {
    for (const strategy of [{ kind: 'steps', steps: 3 }, { kind: 'threshold', threshold: 0.3 }, { kind: 'entropy', gamma: 1.5 }] as const) {
      const r = await model.generate(prompts, { genLength: L, strategy });
      const batch = { prompts, completions: r.tokens, decodeStep: r.decodeStep };
      const got = await runPlan(model, batch, planEstimate(model, batch, { estimator: 'trajectory' }));
      got.forEach((lp, i) => expect(lp, `${strategy.kind} token ${i}`).toBeCloseTo(r.behaviourLogProb[i]!, 5));
      // with shrink 2 the second pass scores steps 2 and 3 together from the state before step 2
      const merged = await runPlan(model, batch, planEstimate(model, batch, { estimator: 'trajectory', shrink: 2 }));
      for (let b = 0; b < 2; b++) {
        const steps = Array.from(r.decodeStep.subarray(b * L, (b + 1) * L));
        const comp = Array.from(r.tokens.subarray(b * L, (b + 1) * L));
        const distinct = [...new Set(steps)].sort((x, y) => x - y);
        for (let g = 0; g < L; g++) {
          const first = distinct[Math.floor(distinct.indexOf(steps[g]!) / 2) * 2]!;
          const z = comp.map((t, i) => (steps[i]! < first ? t : M));
          expect(merged[b * L + g]).toBeCloseTo(await logSoftmaxAt(Array.from(prompts[b]!), z, g, comp[g]!), 5);
        }
      }
    }
  });

  it('the exact ELBO equals the mean over unmasking orders of one-at-a-time log-probs, bounds its log-mean-exp, and MC converges to it', async () => {
    const prompt = [1, 2];
    const o = [4, 0, 5];
    const batch: CompletionBatch = { prompts: [Int32Array.from(prompt)], completions: Int32Array.from(o) };
    // exact ELBO: l uniform in 1..L, then a uniform mask set of size l
    const subsets = [1, 2, 3, 4, 5, 6, 7].map((bits) => [0, 1, 2].map((i) => ((bits >> i) & 1) as 0 | 1));
    const choose = (n: number, k: number) => (k === 0 || k === n ? 1 : n === 3 ? 3 : 1);
    let elbo = 0;
    for (const s of subsets) {
      const l = s.reduce((a, v) => a + v, 0);
      const est = await runPlan(model, batch, planEstimate(model, batch, { estimator: 'elbo', masks: Uint8Array.from(s) }));
      elbo += (1 / L) * (1 / choose(L, l)) * est.reduce((a, v) => a + v, 0);
    }
    // every order of unmasking, one token at a time
    const orders = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]];
    const logps: number[] = [];
    for (const order of orders) {
      const canvas = [M, M, M];
      let lp = 0;
      for (const g of order) {
        lp += await logSoftmaxAt(prompt, canvas, g, o[g]!);
        canvas[g] = o[g]!;
      }
      logps.push(lp);
    }
    const meanLogp = logps.reduce((a, v) => a + v, 0) / logps.length;
    const logMeanP = Math.log(logps.reduce((a, v) => a + Math.exp(v), 0) / logps.length);
    expect(elbo).toBeCloseTo(meanLogp, 5);
    expect(elbo).toBeLessThanOrEqual(logMeanP + 1e-9);
    const mc = await runPlan(model, batch, planEstimate(model, batch, { estimator: 'elbo', mcSamples: 4000, seed: 3 }));
    const estimate = mc.reduce((a, v) => a + v, 0);
    expect(Math.abs(estimate - elbo)).toBeLessThan(0.05 * Math.abs(elbo) + 0.05);
  });
});

describe('policy loss', () => {
  it('matches a plain implementation of §5 and its gradient matches finite differences, through every estimator', async () => {
    const batch = await rollout();
    const ref = await runPlan(model, batch, planEstimate(model, batch, { estimator: 'mean-field' }));
    for (const estimator of ['mean-field', 'two-stage', 'trajectory', 'elbo'] as const) {
      const m = DiffusionLM.create(CONFIG, { seed: 9, initStd: 0.5 });
      const plan = planEstimate(m, batch, { estimator, pMaskPrompt: estimator === 'mean-field' ? 0.5 : 0, seed: 1, mcSamples: 2 });
      const old = await runPlan(m, batch, plan);
      // move the weights a little so that ratios differ from 1 and some clip
      for (const p of m.parameters().values()) p.forEach((v, i) => (p[i] = v * (1 + 0.3 * Math.sin(i))));
      const input: PolicyLossInput = {
        ...batch,
        advantages: Float32Array.from([0.8, -1.2]),
        logpOld: old,
        logpBehaviour: old.map((v, i) => v + (i % 2 ? 0.9 : -0.2)),
        logpRef: ref,
        clipEps: 0.2,
        isCap: 1.5,
        beta: 0.04,
      };
      await m.zeroGrad();
      const r = await m.policyLoss(input, plan, { backward: true });
      const want = policyObjective(input, r.logProbs, L);
      expect(r.loss).toBeCloseTo(want.loss, 6);
      // plain re-derivation of the loss from the log-probs
      let plain = 0;
      for (let i = 0; i < 2 * L; i++) {
        const A = input.advantages[Math.floor(i / L)]!;
        const rho = Math.exp(r.logProbs[i]! - old[i]!);
        const w = Math.min(1.5, Math.exp(old[i]! - input.logpBehaviour![i]!));
        const d = ref[i]! - r.logProbs[i]!;
        plain += -w * Math.min(rho * A, Math.min(1.2, Math.max(0.8, rho)) * A) + 0.04 * (Math.exp(d) - d - 1);
      }
      expect(r.loss).toBeCloseTo(plain / (2 * L), 6);
      expect(r.isWeightMax).toBeLessThanOrEqual(1.5);
      // directional derivative along a random direction, central differences (float32 model)
      const { fd, analytic } = await directionalDerivative(m, async () => (await m.policyLoss(input, plan)).loss);
      expect(Math.abs(analytic)).toBeGreaterThan(0.05); // a real gradient, not a vacuous comparison
      expect(Math.abs(fd - analytic), `${estimator}: fd ${fd} vs analytic ${analytic}`).toBeLessThan(0.03 * Math.abs(analytic) + 2e-3);
      m.dispose();
    }
  });

  it('importance weights: truncated at isCap, and 1 when behaviour and surrogate agree', async () => {
    const batch = await rollout();
    const plan = planEstimate(model, batch, { estimator: 'mean-field' });
    const old = await runPlan(model, batch, plan);
    const base = { ...batch, advantages: Float32Array.from([1, -1]), logpOld: old };
    const same = await model.policyLoss({ ...base, logpBehaviour: old }, plan);
    expect(same.isWeightMean).toBeCloseTo(1, 6);
    expect(same.isWeightMax).toBeCloseTo(1, 6);
    expect(same.truncatedFraction).toBe(0);
    expect(same.clipFraction).toBe(0);
    const far = await model.policyLoss({ ...base, logpBehaviour: old.map((v) => v - 3), isCap: 2 }, plan);
    expect(far.isWeightMax).toBe(2);
    expect(far.truncatedFraction).toBe(1);
  });

  it('bad input is a clear error', async () => {
    const batch = await rollout();
    const plan = planEstimate(model, batch, { estimator: 'mean-field' });
    const old = await runPlan(model, batch, plan);
    const cases: [() => unknown, RegExp][] = [
      [() => planEstimate(model, { ...batch, completions: new Int32Array(5) }, { estimator: 'mean-field' }), /multiple of the number of prompts/],
      [() => planEstimate(model, { ...batch, decodeStep: undefined }, { estimator: 'two-stage' }), /needs decodeStep/],
      [() => planEstimate(model, { ...batch, decodeStep: undefined }, { estimator: 'trajectory' }), /needs decodeStep/],
      [() => planEstimate(model, batch, { estimator: 'two-stage', tau: Int32Array.from([9, 1]) }), /tau\[0\] = 9 is not one of sequence 0's decode steps/],
      [() => planEstimate(model, batch, { estimator: 'bogus' as 'elbo' }), /estimator must be/],
      [() => model.policyLoss({ ...batch, advantages: Float32Array.from([NaN, 1]), logpOld: old }, plan), /advantages\[0\] = NaN is not finite/],
      [() => model.policyLoss({ ...batch, advantages: Float32Array.from([1, 1]), logpOld: old.subarray(1) }, plan), /logpOld must be a Float32Array of length 6/],
      [() => model.policyLoss({ ...batch, advantages: Float32Array.from([1, 1]), logpOld: old, beta: 0.1 }, plan), /beta > 0 needs logpRef/],
    ];
    for (const [call, message] of cases) {
      const p = Promise.resolve().then(call);
      await expect(p).rejects.toBeInstanceOf(InvalidArgumentError);
      await expect(p).rejects.toThrow(message);
    }
  });
});

describe('policy loss gradient in double precision', () => {
  it('matches central finite differences of a float64 reference model, through every estimator', async () => {
    const { testing: native } = await import('./helpers/native-testing.js');
    const { passBatches, resolveConfig } = await import('diffpo');
    const batch = await rollout();
    const ref = await runPlan(model, batch, planEstimate(model, batch, { estimator: 'mean-field' }));
    for (const estimator of ['mean-field', 'two-stage', 'trajectory', 'elbo'] as const) {
      const m = DiffusionLM.create(CONFIG, { seed: 21, initStd: 0.5 });
      const plan = planEstimate(m, batch, { estimator, pMaskPrompt: 0.3, seed: 2, mcSamples: 2 });
      const old = await runPlan(m, batch, plan);
      for (const p of m.parameters().values()) p.forEach((v, i) => (p[i] = v * (1 + 0.3 * Math.cos(i))));
      const input: PolicyLossInput = {
        ...batch,
        advantages: Float32Array.from([0.7, -1.1]),
        logpOld: old,
        logpBehaviour: old.map((v, i) => v + (i % 3 ? 0.4 : -0.3)),
        logpRef: ref,
        clipEps: 0.2,
        isCap: 1.5,
        beta: 0.05,
      };
      await m.zeroGrad();
      await m.policyLoss(input, plan, { backward: true });
      const grad = Float64Array.from([...m.gradients().values()].flatMap((g) => Array.from(g)));
      const params = Float64Array.from([...m.parameters().values()].flatMap((p) => Array.from(p)));
      const config = resolveConfig(m.config);
      const batches = passBatches(batch, plan);
      // the objective in float64: the estimator's per-token sums from the reference model, then §5
      const loss = (theta: Float64Array) => {
        const est = new Float64Array(2 * L);
        for (const b of batches) {
          const lp = native.referenceLogProbs(config, theta, b.tokens, b.attentionMask, b.positions, b.batch, b.seqLen, b.rows, b.targets);
          b.slots.forEach((slot, s) => (est[slot] += b.factors[s]! * lp[s]!));
        }
        return policyObjective(input, est, L).loss;
      };
      const h = 1e-5;
      const scale = Math.max(...grad.map(Math.abs));
      expect(scale).toBeGreaterThan(1e-3);
      // every 7th coordinate: a few hundred central differences over every tensor
      for (let i = 0; i < params.length; i += 7) {
        const p = params.slice();
        p[i] = params[i]! + h;
        const up = loss(p);
        p[i] = params[i]! - h;
        const down = loss(p);
        expect(Math.abs((up - down) / (2 * h) - grad[i]!), `${estimator}, parameter ${i}`).toBeLessThan(2e-4 * scale + 1e-6);
      }
      m.dispose();
    }
  });
});
