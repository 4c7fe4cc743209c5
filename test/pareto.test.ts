import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { budgetSweep, CharTokenizer, DiffusionLM, evaluate, loadTestSet, meanStd, paretoCompare, paretoFront, paretoHull, paretoSvg, paretoSweep, sudoku4Task, type ParetoPoint } from 'diffpo';

const pt = (label: string, accuracy: number, meanNfe: number): ParetoPoint => ({ label, strategy: { kind: 'threshold', threshold: 0 }, accuracy, meanReward: 0, meanNfe });

describe('accuracy vs NFE', () => {
  it('paretoFront keeps exactly the undominated points', () => {
    const a = pt('a', 0.5, 1),
      b = pt('b', 0.7, 2),
      c = pt('c', 0.6, 3), // dominated by b
      d = pt('d', 0.9, 10),
      e = pt('e', 0.5, 1.5); // dominated by a
    expect(paretoFront([a, b, c, d, e]).map((p) => p.label)).toEqual(['a', 'b', 'd']);
  });

  it('paretoCompare: accuracy gained at equal NFE and NFE saved at equal accuracy, against the interpolated fixed front', () => {
    // fixed front (1, 0.5) - (2, 0.7) - (10, 0.9); (3, 0.6) is dominated and ignored
    const fixed = [pt('a', 0.5, 1), pt('b', 0.7, 2), pt('c', 0.6, 3), pt('d', 0.9, 10)];
    const [above, on, cheap, best] = paretoCompare(fixed, [pt('l1', 0.8, 2), pt('l2', 0.75, 4), pt('l3', 0.6, 0.5), pt('l4', 0.95, 12)]);
    // at NFE 2 the front has 0.7: +0.1; the front reaches 0.8 at NFE 2 + (0.1 / 0.2) * 8 = 6: 4 NFE saved
    expect(above!.accuracyGain).toBeCloseTo(0.1, 12);
    expect(above!.nfeSaved).toBeCloseTo(4, 12);
    // at NFE 4 the front has 0.7 + 2/8 * 0.2 = 0.75: on it
    expect(on!.accuracyGain).toBeCloseTo(0, 12);
    expect(on!.nfeSaved).toBeCloseTo(0, 12);
    // cheaper than every fixed point: no accuracy comparison; 0.6 is reached at NFE 1.5
    expect(cheap!.accuracyGain).toBeNull();
    expect(cheap!.nfeSaved).toBeCloseTo(1, 12);
    // more accurate than every fixed point: the front stays flat at 0.9 beyond NFE 10
    expect(best!.accuracyGain).toBeCloseTo(0.05, 12);
    expect(best!.nfeSaved).toBeNull();
    expect(() => paretoCompare([], [])).toThrow(/at least one fixed point/);
    expect(meanStd([0.8, 0.82, 0.84])).toEqual({ mean: 0.82, std: expect.closeTo(0.02, 12), n: 3 });
    expect(meanStd([0.5])).toEqual({ mean: 0.5, std: 0, n: 1 });
  });

  it('paretoHull: the upper concave hull of the front, where per-prompt mixtures of two settings reach; paretoCompare measures against it', () => {
    // c (3, 0.55) is undominated but under the chord b-d (0.6 at NFE 3): mixing b and d half and half beats it
    const fixed = [pt('a', 0.3, 1), pt('b', 0.5, 2), pt('c', 0.55, 3), pt('d', 0.7, 4), pt('e', 0.2, 3)];
    expect(paretoHull(fixed).map((p) => p.label)).toEqual(['a', 'b', 'd']);
    // a point exactly on a chord is dropped too (the chord is the hull there)
    expect(paretoHull([pt('a', 0.3, 1), pt('m', 0.4, 2), pt('b', 0.5, 3)]).map((p) => p.label)).toEqual(['a', 'b']);
    const [at3] = paretoCompare(fixed, [pt('l', 0.58, 3)]);
    expect(at3!.accuracyGain).toBeCloseTo(-0.02, 12); // by chords between front points it would read +0.03
    expect(at3!.nfeSaved).toBeCloseTo(2 + (0.08 / 0.2) * 2 - 3, 12);
  });

  it('paretoSvg draws one polyline per curve, a marker per point and per extra point, and a legend', () => {
    const svg = paretoSvg([{ name: 'base <1>', points: [pt('x', 0.5, 1), pt('y', 0.8, 4)] }, { name: 'rl', points: [pt('z', 0.9, 2)] }], [{ name: 'learned', point: pt('l', 0.85, 1.5) }]);
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg.match(/<polyline/g)!.length).toBe(2);
    expect(svg.match(/<circle/g)!.length).toBe(3);
    expect(svg).toContain('base &lt;1&gt;');
    expect(svg).toContain('learned: accuracy 0.850, NFE 1.50');
  });

  it('paretoSweep of the shipped sudoku4 base: NFE grows with the threshold, one token per step costs genLength', async () => {
    const dir = join('models', 'sudoku4-base');
    const model = await DiffusionLM.fromPretrained(dir);
    const tokenizer = await CharTokenizer.fromFile(join(dir, 'tokenizer.json'));
    const genLength = JSON.parse(readFileSync(join(dir, 'generation_config.json'), 'utf8')).gen_length;
    const items = (await loadTestSet(sudoku4Task())).slice(0, 32);
    const points = await paretoSweep(model, sudoku4Task(), { items, tokenizer, genLength, thresholds: [0.5, 0.9, 1.01], gammas: [0.5] });
    expect(points.map((p) => p.label)).toEqual(['threshold 0.5', 'threshold 0.9', 'one token per step', 'gamma 0.5']);
    expect(points[0]!.meanNfe).toBeLessThanOrEqual(points[1]!.meanNfe);
    expect(points[2]!.meanNfe).toBe(genLength);
    expect(points[2]!.accuracy).toBeGreaterThanOrEqual(points[0]!.accuracy);
    // evaluate with strategies: one result per strategy, each equal to evaluating it alone
    const strategies = [{ kind: 'threshold', threshold: 0.7 }, { kind: 'entropy', gamma: 0.2 }] as const;
    const seen: [number, number][] = [];
    const many = await evaluate(model, sudoku4Task(), { items, tokenizer, genLength, strategies: [...strategies], batchSize: 12, onProgress: (done, total) => void seen.push([done, total]) });
    // progress after each generate call, counted over both strategies
    expect(seen).toEqual([[12, 64], [24, 64], [32, 64], [44, 64], [56, 64], [64, 64]]);
    for (const [i, strategy] of strategies.entries()) {
      const one = await evaluate(model, sudoku4Task(), { items, tokenizer, genLength, sampler: { strategy } });
      expect(many[i]!.strategy).toEqual(strategy);
      expect([many[i]!.accuracy, many[i]!.meanNfe, many[i]!.completions]).toEqual([one.accuracy, one.meanNfe, one.completions]);
    }
    await expect(evaluate(model, sudoku4Task(), { items, tokenizer, genLength, strategies: [] })).rejects.toThrow(/strategies/);
    // NFE budgets: one token per step spends each budget exactly; the full budget is plain one token per step
    const budgets = await budgetSweep(model, sudoku4Task(), { items, tokenizer, genLength, budgets: [1, 3, genLength], strategy: { kind: 'threshold', threshold: 1.01 } });
    expect(budgets.map((p) => p.meanNfe)).toEqual([1, 3, genLength]);
    expect(budgets[2]!.accuracy).toBe(points[2]!.accuracy);
    const loose = await budgetSweep(model, sudoku4Task(), { items, tokenizer, genLength, budgets: [2] });
    expect(loose[0]!.meanNfe).toBeLessThanOrEqual(2);
    await expect(budgetSweep(model, sudoku4Task(), { items, tokenizer, genLength, budgets: [0] })).rejects.toThrow(/budgets must be positive integers/);
    model.dispose();
  });
});
