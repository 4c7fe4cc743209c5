import { describe, expect, it } from 'vitest';

import { InvalidArgumentError, Rng } from 'diffpo';

describe('Rng', () => {
  it('is reproducible per seed and resumes exactly from its state', () => {
    const a = new Rng(42),
      b = new Rng(42);
    const xs = Array.from({ length: 5 }, () => a.random());
    expect(Array.from({ length: 5 }, () => b.random())).toEqual(xs);
    const state = a.getState();
    const next = Array.from({ length: 5 }, () => a.random());
    const c = new Rng(0);
    c.setState(state);
    expect(Array.from({ length: 5 }, () => c.random())).toEqual(next);
    expect(new Rng(43).random()).not.toBe(xs[0]);
  });

  it('is uniform on [0, 1): mean, variance and decile counts of 200k draws', () => {
    const r = new Rng(7);
    const n = 200_000;
    const bins = new Array(10).fill(0);
    let sum = 0,
      sq = 0;
    for (let i = 0; i < n; i++) {
      const x = r.random();
      expect(x >= 0 && x < 1).toBe(true);
      sum += x;
      sq += x * x;
      bins[Math.floor(x * 10)]++;
    }
    expect(Math.abs(sum / n - 0.5)).toBeLessThan(0.005);
    expect(Math.abs(sq / n - (sum / n) ** 2 - 1 / 12)).toBeLessThan(0.002);
    // chi-square with 9 degrees of freedom: 27.9 is the 0.999 quantile
    const chi = bins.reduce((a, c) => a + (c - n / 10) ** 2 / (n / 10), 0);
    expect(chi).toBeLessThan(27.9);
  });

  it('rejects bad seeds and states with a typed error', () => {
    expect(() => new Rng(NaN)).toThrow(InvalidArgumentError);
    expect(() => new Rng(0).setState([0, 0, 0, 0])).toThrow(InvalidArgumentError);
    expect(() => new Rng(0).setState([1, 2, 3])).toThrow(/four uint32/);
  });
});
