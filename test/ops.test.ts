// The op list (the Backend interface of native/ops.h) against the op case table (native/op_cases.cc):
// every op is exercised by some case; each case runs on the fast CPU backend and on the float64
// reference loops (every output compared), and each backward is checked against central finite
// differences of the float64 forward. The CUDA harness reads the same table (cuda/gpu_check.cc).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { resolveConfig } from 'diffpo';

import { testing as native } from './helpers/native-testing.js';

const cases = native.opCheckNames().filter((n) => n !== 'gemm');

/** The ops of the op list: every virtual method of Backend except its name, memory and a size query. */
function opList(): string[] {
  const header = readFileSync(join(import.meta.dirname, '..', 'native', 'ops.h'), 'utf8');
  const backend = header.slice(header.indexOf('class Backend {'));
  const names = [...backend.matchAll(/virtual\s+[\w:<>*&\s]+?\b(\w+)\s*\(/g)].map((m) => m[1]!);
  return names.filter((n) => !['name', 'memory', 'attention_state_floats'].includes(n));
}

describe('op list', () => {
  it('every op of the backend interface is exercised by a case, and every case calls only ops of the list', () => {
    const ops = opList();
    expect(ops.length).toBeGreaterThanOrEqual(21);
    expect(ops).toEqual(expect.arrayContaining(['embedding_forward', 'attention_backward', 'decode_score', 'copy_rows', 'scale', 'sum_squares']));
    const covered = new Set(cases.flatMap((c) => native.opCaseCovers(c)));
    expect(ops.filter((op) => !covered.has(op))).toEqual([]);
    expect([...covered].filter((op) => !ops.includes(op))).toEqual([]);
  });

  for (const name of native.opCheckNames()) {
    it(`${name}: the CPU backend matches the float64 reference; backwards match finite differences`, () => {
      for (const seed of [1, 2]) {
        const r = native.opCheck(name, seed);
        expect(r.forward, `${name} outputs`).toBeLessThan(2e-6);
        for (const [input, err] of Object.entries(r.backward)) expect(err, `${name} d/d${input}`).toBeLessThan(2e-6);
        for (const [input, err] of Object.entries(r.referenceBackward)) expect(err, `${name} reference d/d${input}`).toBeLessThan(1e-8);
      }
    });
  }

  it('backward cases small enough for finite differences have them; the rest are compared output by output', () => {
    const withFd = cases.filter((c) => Object.keys(native.opCheck(c, 3).backward).length > 0);
    for (const op of ['embedding', 'rmsnorm', 'linear', 'rope', 'attention', 'swiglu', 'lmhead']) expect(withFd.some((c) => c.startsWith(op)), op).toBe(true);
  });

  it('rejects an unknown case by name', () => {
    expect(() => native.opCheck('conv2d', 1)).toThrow(/conv2d/);
  });
});

describe('whole-model gradient check (float64 finite differences over every parameter)', () => {
  const base = { d_model: 8, n_heads: 2, n_layers: 2, mlp_hidden_size: 12, vocab_size: 7, rope_theta: 10000 };
  const configs = {
    'GQA, untied head, scaled logits, embedding norm': { ...base, n_kv_heads: 1, embedding_size: 9, scale_logits: true, input_emb_norm: true },
    'weight tying, multi-head kv': { ...base, n_kv_heads: 2, weight_tying: true },
  };
  for (const [name, cfg] of Object.entries(configs)) {
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
