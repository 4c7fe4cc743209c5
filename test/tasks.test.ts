import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import {
  arithTask,
  CharTokenizer,
  countdown3Task,
  countdownSolution,
  countdownTask,
  countSudoku4Solutions,
  evaluateExpression,
  getTask,
  HfTokenizer,
  InvalidArgumentError,
  loadTokenizer,
  isSignedSum,
  isSudoku4Solution,
  loadTestSet,
  Rng,
  solveArith,
  sudoku4Solutions,
  sudoku4Task,
  trainingStream,
} from 'diffpo';

describe('sudoku4', () => {
  const task = sudoku4Task();
  it('generates puzzles with 8 empty cells, a unique solution and consistent givens', () => {
    const rng = new Rng(1);
    for (let i = 0; i < 200; i++) {
      const item = task.generate(rng);
      expect([...item.puzzle].filter((c) => c === '0').length).toBe(8);
      expect(countSudoku4Solutions(item.puzzle)).toBe(1);
      expect(isSudoku4Solution(item.solution)).toBe(true);
      for (let j = 0; j < 16; j++) if (item.puzzle[j] !== '0') expect(item.puzzle[j]).toBe(item.solution[j]);
    }
    // other sizes, still unique
    for (const empty of [4, 10]) {
      const p = sudoku4Task({ empty }).generate(new Rng(empty)).puzzle;
      expect([...p].filter((c) => c === '0').length).toBe(empty);
      expect(countSudoku4Solutions(p)).toBe(1);
    }
  });

  it('a range of empty cells draws each puzzle\'s count uniformly (and keeps every puzzle unique)', () => {
    const mixed = sudoku4Task({ empty: [4, 12] });
    const rng = new Rng(11);
    const counts = new Map<number, number>();
    for (let i = 0; i < 900; i++) {
      const p = mixed.generate(rng).puzzle;
      const k = [...p].filter((c) => c === '0').length;
      counts.set(k, (counts.get(k) ?? 0) + 1);
      if (i < 100) expect(countSudoku4Solutions(p)).toBe(1);
    }
    expect([...counts.keys()].sort((a, b) => a - b)).toEqual([4, 5, 6, 7, 8, 9, 10, 11, 12]);
    for (const n of counts.values()) expect(n).toBeGreaterThan(60); // 100 expected each
    // a one-value range draws nothing: the default stream is what it always was
    const a = new Rng(3),
      b = new Rng(3);
    expect(sudoku4Task({ empty: [8, 8] }).generate(a)).toEqual(sudoku4Task().generate(b));
    expect(() => sudoku4Task({ empty: [0, 4] })).toThrow(/empty = \[0,4\]/);
    expect(() => sudoku4Task({ empty: 13 })).toThrow(/empty = 13/);
  });

  it("solutions 'any': puzzles may have several solutions, and any of them is credited (d1's reward on a unique puzzle)", async () => {
    const any = sudoku4Task({ empty: 12, solutions: 'any' });
    const rng = new Rng(21);
    let several = 0;
    for (let i = 0; i < 50; i++) {
      const item = any.generate(rng);
      const all = sudoku4Solutions(item.puzzle);
      expect(all).toContain(item.solution);
      if (all.length > 1) several++;
      for (const s of all) {
        expect(any.reward(item, s)).toBe(1);
        expect(any.correct(item, s)).toBe(true);
      }
    }
    expect(several).toBeGreaterThan(25); // 4 givens rarely pin the grid down
    // a test puzzle with two solutions: d1's reward credits only the reference, 'any' both
    const test = await loadTestSet(sudoku4Task());
    const two = test.find((x) => sudoku4Solutions(x.puzzle).length === 2)!;
    const other = sudoku4Solutions(two.puzzle).find((s) => s !== two.solution)!;
    expect(sudoku4Task().reward(two, other)).toBeLessThan(1);
    expect(sudoku4Task({ solutions: 'any' }).reward(two, other)).toBe(1);
    // on a unique puzzle the two rewards agree, partial answers included
    const unique = test.find((x) => sudoku4Solutions(x.puzzle).length === 1)!;
    for (const text of [unique.solution, unique.solution.slice(0, 10), '1'.repeat(16)]) expect(any.reward(unique, text)).toBe(sudoku4Task().reward(unique, text));
    expect(() => getTask('arith', undefined, { solutions: 'any' })).toThrow(/solutions is a sudoku4 option/);
    expect(() => sudoku4Task({ solutions: 'all' as never })).toThrow(/solutions must be one of unique, any, several, got "all"/);
  });

  it("solutions 'several': only puzzles with two or more solutions, each credited; 4 holes at least", () => {
    for (const empty of [4, 8, 12] as const) {
      const several = sudoku4Task({ empty, solutions: 'several' });
      const rng = new Rng(empty);
      for (let i = 0; i < 20; i++) {
        const item = several.generate(rng);
        expect([...item.puzzle].filter((c) => c === '0').length).toBe(empty);
        const all = sudoku4Solutions(item.puzzle);
        expect(all.length).toBeGreaterThanOrEqual(2);
        expect(all).toContain(item.solution);
        for (const s of all) expect(several.correct(item, s)).toBe(true);
      }
    }
    expect(() => sudoku4Task({ empty: 3, solutions: 'several' })).toThrow(/empty = 3/);
    // unique stays unique
    const rng = new Rng(5);
    for (let i = 0; i < 20; i++) expect(countSudoku4Solutions(sudoku4Task({ empty: 10 }).generate(rng).puzzle)).toBe(1);
  });

  it('rewards the fraction of empty cells filled correctly (digits padded/truncated to 16)', () => {
    const item = { puzzle: '3102200002100320', solution: '3142243142131324' };
    expect(task.reward(item, '3142243142131324')).toBe(1);
    expect(task.correct(item, '3142243142131324')).toBe(true);
    expect(task.reward(item, '')).toBe(0);
    expect(task.reward(item, '3142243142131324999')).toBe(1); // truncated to 16
    expect(task.reward(item, '3142 2431 4213 1324')).toBe(1); // non-digits are ignored
    // 8 empty cells at 2,3,5,6,7,8,11,15: get the first four right
    expect(task.reward(item, '3142243100000320')).toBe(4 / 8);
    expect(task.correct(item, '3142243100000320')).toBe(false);
    expect(task.reward(item, '31')).toBe(0); // too short: padded with zeros
  });

  it("loads the external test set (500 puzzles, valid solutions) and training streams never emit its items", async () => {
    const test = await loadTestSet(task);
    expect(test.length).toBe(500);
    for (const item of test.slice(0, 100)) {
      expect(isSudoku4Solution(item.solution)).toBe(true);
      expect(countSudoku4Solutions(item.puzzle)).toBeGreaterThanOrEqual(1);
    }
    const keys = new Set(test.map((t) => task.key(t)));
    // a stream whose first generated item is excluded skips it
    const first = task.generate(new Rng(9));
    const stream = trainingStream(task, new Rng(9), new Set([task.key(first)]));
    expect(task.key(stream.next().value!)).not.toBe(task.key(first));
    const training = trainingStream(task, new Rng(5), keys);
    for (let i = 0; i < 300; i++) expect(keys.has(task.key(training.next().value!))).toBe(false);
    expect(() => task.parseTestSet('a,b\n1,2')).toThrow(InvalidArgumentError);
  });
});

describe('countdown3', () => {
  const task = countdown3Task();
  it('generates reachable targets in 1..100 from three numbers in 1..100', () => {
    const rng = new Rng(2);
    for (let i = 0; i < 300; i++) {
      const item = task.generate(rng);
      expect(item.target >= 1 && item.target <= 100).toBe(true);
      for (const n of item.numbers) expect(n >= 1 && n <= 100).toBe(true);
      expect(task.reward(item, task.response(item))).toBe(1);
    }
  });

  it("rewards as d1 the expression after the last '#': 1 right, 0.1 wrong or malformed (or empty), 0 without one", () => {
    const item = { numbers: [30, 100, 93], target: 23 };
    expect(task.reward(item, '100-93=7;30-7=23#100-(93-30)')).toBeCloseTo(0.1); // = 37
    expect(task.reward(item, '100-93=7;30-7=23#30-(100-93)')).toBe(1);
    expect(task.reward(item, 'any steps at all#30-(100-93)')).toBe(1); // the steps are not scored (d1)
    expect(task.reward(item, '#1#30-(100-93)')).toBe(1); // the last '#'
    expect(task.reward(item, '# 30 - ( 100 - 93 ) ')).toBe(1);
    expect(task.reward(item, '30-(100-93)')).toBe(0); // no '#': no answer
    expect(task.reward(item, '')).toBe(0);
    expect(task.reward(item, '#')).toBeCloseTo(0.1); // d1: an empty answer between its tags is a wrong answer
    expect(task.reward(item, '#   ')).toBeCloseTo(0.1);
    expect(task.reward(item, '#30-(100-93)=23')).toBeCloseTo(0.1); // other characters
    expect(task.reward(item, '#30-(100-100)')).toBeCloseTo(0.1); // a number reused, one missing
    expect(task.reward(item, '#93/(100-100)+30')).toBeCloseTo(0.1); // division by zero
    const frac = { numbers: [7, 2, 4], target: 14 };
    expect(task.reward(frac, '#7/2*4')).toBe(1); // exact through a fraction
    expect(task.correct(item, '#30-(100-93)')).toBe(true);
    expect(task.correct(item, '#30-(100-92)')).toBe(false);
  });

  it('works a signed sum out (running sum, S - target, its half, S - h), else appends the first solution of a search; numbers padded to 3 digits', () => {
    // by hand: 30+100 = 130, 130+93 = 223, 223-23 = 200, 200/2 = 100 is a number: subtract it
    expect(countdownSolution([30, 100, 93], 23)).toEqual({ steps: ['030+100=130', '130+093=223', '223-023=200', '200/2=100'], expression: '30+93-100' });
    // 20+90+10 = 120, 120-60 = 60, 60/2 = 30 is not a number, 120-30 = 90 is: subtract the others from it
    expect(countdownSolution([20, 90, 10], 60)).toEqual({ steps: ['020+090=110', '110+010=120', '120-060=060', '060/2=030', '120-030=090'], expression: '90-20-10' });
    expect(countdownSolution([23, 28, 5], 56)).toEqual({ steps: ['023+028=051', '051+005=056'], expression: '23+28+5' });
    // 64+4+31-47 = 52, 52/2 = 26 and 99-26 = 73 are no numbers: then the search's first solution, the
    // pair (64, 4) before others, + - * / in turn: 68 and 60 reach nothing with 31, 64*4 neither, 64/4 = 16 and 31+16 = 47
    expect(countdownSolution([64, 4, 31], 47)).toEqual({
      steps: ['064+004=068', '068+031=099', '099-047=052', '052/2=026', '099-026=073', '064/004=016', '031+016=047'],
      expression: '31+(64/4)',
    });
    // 2+3+4 = 9 < 24: nothing to halve, the search right after the sum: (2, 3) first; 2+3 = 5 reaches
    // nothing with 4, 2-3 is negative, 2*3 = 6 and then 4+6, 4-6 fail before 4*6 = 24
    expect(countdownSolution([2, 3, 4], 24)).toEqual({ steps: ['002+003=005', '005+004=009', '002*003=006', '004*006=024'], expression: '4*(2*3)' });
    expect(countdownSolution([7, 5, 3], 100)).toBeNull(); // 7*5*3 = 105 and nothing reaches 100
    expect(countdownTask().prompt({ numbers: [30, 100, 93], target: 23 })).toBe('C030,100,093>023\n');
  });

  it('generates uniform targets it can solve, its response reaching the target; a numbers knob makes 4-number and mixed tasks', () => {
    const rng = new Rng(5);
    for (let i = 0; i < 200; i++) {
      const item = task.generate(rng);
      // each step's arithmetic is right, and the expression reaches the target
      for (const step of item.steps!) {
        const [lhs, value] = step.split('=');
        expect(Number(evaluateExpression(lhs!.replace(/\b0+(\d)/g, '$1'))!.value), step).toBe(Number(value)); // "064" is 64
      }
      expect(Number(evaluateExpression(item.expression!)!.value)).toBe(item.target);
      expect(task.response(item)).toBe(`${item.steps!.join(';')}#${item.expression}`);
    }
    const four = countdownTask({ numbers: 4 });
    expect(four.name).toBe('countdown4');
    const mixed = countdownTask({ numbers: [3, 4] });
    const sizes = new Set<number>();
    for (let i = 0; i < 200; i++) {
      const x = mixed.generate(rng);
      sizes.add(x.numbers.length);
      expect(mixed.reward(x, mixed.response(x))).toBe(1);
    }
    expect([...sizes].sort()).toEqual([3, 4]);
    expect(() => countdownTask({ numbers: [4, 3] })).toThrow(/numbers = \[4,3\] must be an integer in \[2, 6\] or a range/);
  });

  it('loads the external test set (256 problems, 229 of them signed sums)', async () => {
    const test = await loadTestSet(task);
    expect(test.length).toBe(256);
    expect(test[0]).toEqual({ numbers: [30, 100, 93], target: 23 });
    expect(test.filter((x) => isSignedSum(x.numbers, x.target)).length).toBe(229);
  });

  it('a searchFraction knob sets the share of training items that need a search', () => {
    // by hand: 30+93-100 = 23 and 23+28+5 = 56 are signed sums; 31+64/4 = 47 and 4*2*3 = 24 need a search
    expect(isSignedSum([30, 100, 93], 23)).toBe(true);
    expect(isSignedSum([23, 28, 5], 56)).toBe(true);
    expect(isSignedSum([64, 4, 31], 47)).toBe(false);
    expect(isSignedSum([2, 3, 4], 24)).toBe(false);
    const share = (t: ReturnType<typeof countdownTask>, n: number, seed: number) => {
      const rng = new Rng(seed);
      let searches = 0;
      for (let i = 0; i < n; i++) {
        const x = t.generate(rng);
        expect(t.reward(x, t.response(x))).toBe(1);
        if (!isSignedSum(x.numbers, x.target)) searches++;
      }
      return searches / n;
    };
    expect(share(countdownTask({ searchFraction: 0 }), 300, 1)).toBe(0);
    expect(share(countdownTask({ searchFraction: 1 }), 300, 2)).toBe(1);
    // 600 draws at 0.25: the standard deviation of the share is 0.018, so 0.25 ± 0.07 is a 4-sigma band
    expect(Math.abs(share(countdownTask({ searchFraction: 0.25 }), 600, 3) - 0.25)).toBeLessThan(0.07);
    expect(() => countdownTask({ searchFraction: 1.5 })).toThrow(/searchFraction must be a number in \[0, 1\], got 1.5/);
    expect(() => getTask('sudoku4', undefined, { searchFraction: 0 })).toThrow(/searchFraction is a countdown3 option/);
    expect((getTask('countdown3', undefined, { searchFraction: 0 }) as ReturnType<typeof countdownTask>).generate(new Rng(4)).expression).toMatch(/^[\d+-]+$/);
  });
});

describe('arith', () => {
  const task = arithTask();
  it('solves with products first and shows every intermediate result', () => {
    expect(solveArith('12+7*3-5')).toEqual({ steps: ['7*3=21', '12+21=33', '33-5=28'], answer: 28 });
    const rng = new Rng(3);
    for (const [t, terms, maxOperand] of [[task, 3, 9], [arithTask({ terms: 4, maxOperand: 20 }), 4, 20]] as const)
      for (let i = 0; i < 200; i++) {
        const item = t.generate(rng);
        expect(BigInt(item.answer)).toBe(evaluateExpression(item.expression)!.value);
        expect(item.steps.length).toBe(terms - 1);
        expect(item.expression.match(/\d+/g)!.every((n) => Number(n) >= 1 && Number(n) <= maxOperand)).toBe(true);
        expect(t.reward(item, t.response(item))).toBeCloseTo(2.2);
      }
    expect(() => arithTask({ maxOperand: 0 })).toThrow(/maxOperand/);
  });

  it('a range of terms mixes chain lengths', () => {
    const mixed = arithTask({ terms: [2, 5] });
    const rng = new Rng(4);
    const lengths = new Set<number>();
    for (let i = 0; i < 200; i++) {
      const item = mixed.generate(rng);
      lengths.add(item.steps.length + 1);
      expect(mixed.reward(item, mixed.response(item))).toBeCloseTo(2.2);
    }
    expect([...lengths].sort()).toEqual([2, 3, 4, 5]);
    expect(() => arithTask({ terms: [1, 3] })).toThrow(/terms = \[1,3\]/);
  });

  it('has a fixed held-out evaluation set that training streams never emit', async () => {
    const held = await loadTestSet(task);
    expect(held.length).toBe(500);
    expect(new Set(held.map((i) => i.expression)).size).toBe(500);
    expect(held).toEqual(task.heldOut!()); // the same items every time
    const keys = new Set(held.map((i) => task.key(i)));
    const stream = trainingStream(task, new Rng(1), keys);
    for (let i = 0; i < 2000; i++) expect(keys.has(task.key(stream.next().value!))).toBe(false);
  });

  it('rewards 2 for the final answer plus small format terms', () => {
    const item = { expression: '12+7*3-5', ...solveArith('12+7*3-5') };
    expect(task.reward(item, '7*3=21;12+21=33;33-5=28#28')).toBeCloseTo(2.2);
    expect(task.reward(item, '#28')).toBeCloseTo(2.1);
    expect(task.reward(item, '7*3=21;12+21=33;33-5=27#27')).toBeCloseTo(0.1 + 0.1 * (2 / 3));
    expect(task.reward(item, '28')).toBe(0);
    expect(task.reward(item, '')).toBe(0);
    expect(task.correct(item, '#28')).toBe(true);
    expect(task.correct(item, '#27')).toBe(false);
  });
});
