// Each op of the native op list: the fast CPU kernel against the reference loop (forward), and both
// backwards against central finite differences of the float64 reference.
import { testing as native } from './helpers/native-testing.js';
import { describe, expect, it } from 'vitest';

import { resolveConfig } from 'diffpo';

const ops = native.opCheckNames();

describe('op list', () => {
  it('covers every op of the backend interface', () => {
    expect(ops).toEqual(['gemm', 'embedding', 'rmsnorm', 'linear', 'rope', 'attention', 'swiglu', 'lmhead', 'adamw']);
  });

  for (const op of ops) {
    it(`${op}: fast forward matches the reference, backward matches finite differences`, () => {
      for (const seed of [1, 2]) {
        const r = native.opCheck(op, seed);
        expect(r.forward).toBeLessThan(2e-6);
        for (const [input, err] of Object.entries(r.backward)) expect(err, `${op} d/d${input}`).toBeLessThan(2e-6);
        for (const [input, err] of Object.entries(r.referenceBackward)) expect(err, `${op} ref d/d${input}`).toBeLessThan(1e-8);
        if (op !== 'adamw' && op !== 'gemm') expect(Object.keys(r.backward).length).toBeGreaterThan(0);
      }
    });
  }

  it('rejects an unknown op by name', () => {
    expect(() => native.opCheck('conv2d', 1)).toThrow(/conv2d/);
  });
});

describe('whole-model gradient check (float64 finite differences over every parameter)', () => {
  const base = { d_model: 8, n_heads: 2, n_layers: 2, mlp_hidden_size: 12, vocab_size: 7, rope_theta: 10000 };
  const cases = {
    'GQA, untied head, scaled logits, embedding norm': { ...base, n_kv_heads: 1, embedding_size: 9, scale_logits: true, input_emb_norm: true },
    'weight tying, multi-head kv': { ...base, n_kv_heads: 2, weight_tying: true },
  };
  for (const [name, cfg] of Object.entries(cases)) {
    it(name, () => {
      const r = native.modelCheck(resolveConfig(cfg), 7);
      expect(r.forward).toBeLessThan(1e-5);
      const names = Object.keys(r.backward);
      expect(names).toContain('model.transformer.wte.weight');
      expect(names.includes('model.transformer.ff_out.weight')).toBe(!cfg.weight_tying);
      for (const [tensor, err] of Object.entries(r.backward)) expect(err, tensor).toBeLessThan(1e-5);
    });
  }
});
