import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { arithReward, arithTask, countdownReward, evaluateExpression, parseArithAnswer, pyStrip, solveArith, sudokuReward, withinTolerance } from 'diffpo';

interface ParityCase {
  task: 'countdown' | 'sudoku';
  class: string;
  policy: 'parity' | 'safe-deviation';
  item: { numbers: number[]; target: number } & { puzzle: string; solution: string };
  text: string;
  d1Reward: number;
}

describe('rewards against d1 reward code', () => {
  it('every parity case scores exactly as d1; every safe deviation scores as d1 or invalid (0.1), fast, never throws', () => {
    const lines = readFileSync(join(import.meta.dirname, 'fixtures', 'reward_parity.jsonl'), 'utf8').trim().split('\n');
    const cases = lines.map((l) => JSON.parse(l)).filter((r): r is ParityCase => 'task' in r);
    expect(cases.length).toBe(5857);
    const count = { parity: 0, parityAgree: 0, deviation: 0, deviationAgree: 0 };
    const disagreements: string[] = [];
    let slowest = 0;
    for (const c of cases) {
      const score = () => (c.task === 'countdown' ? countdownReward(c.item, c.text) : sudokuReward(c.item, c.text));
      const got = score();
      // the time an input costs: the fastest of three calls, so a GC pause or JIT step is not charged to it
      let fastest = Infinity;
      for (let k = 0; k < 3; k++) {
        const t0 = performance.now();
        score();
        fastest = Math.min(fastest, performance.now() - t0);
      }
      slowest = Math.max(slowest, fastest);
      if (c.policy === 'parity') {
        count.parity++;
        if (got === c.d1Reward) count.parityAgree++;
        else disagreements.push(`${c.class} ${JSON.stringify(c.text)}: d1 ${c.d1Reward}, ours ${got}`);
      } else {
        count.deviation++;
        if (got === c.d1Reward) count.deviationAgree++;
        else if (got !== 0.1) disagreements.push(`${c.class} ${JSON.stringify(c.text)}: d1 ${c.d1Reward}, ours ${got} (neither d1 nor 0.1)`);
      }
    }
    console.log(
      `reward parity: ${count.parityAgree}/${count.parity} parity cases equal to d1; safe deviations: ${count.deviationAgree}/${count.deviation} equal to d1, the rest 0.1; slowest case ${slowest.toFixed(2)} ms`,
    );
    expect(disagreements).toEqual([]);
    expect(count.parityAgree).toBe(count.parity);
    expect(slowest).toBeLessThan(10);
  });
});

describe('countdown reward (edge cases by hand, checked against Python 3.11 eval)', () => {
  const item = { numbers: [30, 100, 93], target: 23 };
  it.each([
    ['30-(100-93)', 1, 'right'],
    ['', 0.1, 'an empty answer: d1 finds "" between its tags, a wrong answer'],
    [' \t\n', 0.1, 'only whitespace: empty once stripped'],
    ['\x1c30-(100-93)\x1f', 1, 'Python strips U+001C..U+001F'],
    ['100-(93-30)', 0.1, 'wrong value'],
    ['3 0-(100-93)', 0.1, 'whitespace splits a number'],
    ['30-(10 0-93)', 0.1, 'whitespace splits a number'],
    ['-30+(100-93)*-1+76', 0.1, 'a number not given'],
    ['--30-(100-93)', 1, 'double unary minus'],
    ['+30-+(100-93)', 1, 'unary plus'],
    ['-(-30)-(100-93)', 1, 'unary minus before a parenthesis'],
    ['030-(100-93)', 0.1, 'leading zero: a syntax error in Python 3'],
    ['(\n30-(100-93))', 1, 'newline inside parentheses'],
    ['30\n-(100-93)', 0.1, 'newline outside parentheses'],
    ['30\t-\f(100-93)', 1, 'tab and form feed between tokens'],
    ['30\v-(100-93)', 0.1, 'vertical tab: not Python whitespace inside an expression'],
    ['30-(100-93', 0.1, 'unbalanced'],
    ['30-(100-93))', 0.1, 'unbalanced'],
    ['30(100-93)', 0.1, 'implicit call'],
    ['30-(100-93)+0*0', 0.1, 'extra numbers'],
    ['30**1-(100-93)', 0.1, 'Python-only power: scored invalid'],
    ['30.0-(100-93)', 0.1, 'decimal point: scored invalid'],
    ['30-(100-93)=23', 0.1, 'other characters'],
  ])('%j scores %s (%s)', (text, reward) => {
    expect(countdownReward(item, text)).toBe(reward);
  });

  it('no answer at all (no answer tags in d1, no # in our format) scores 0', () => {
    expect(countdownReward(item, null)).toBe(0);
  });

  it('divides as Python: exact through fractions, tolerance 1e-5, a division by zero is invalid even when its result is not used', () => {
    expect(countdownReward({ numbers: [7, 2, 4], target: 14 }, '7/2*4')).toBe(1);
    expect(countdownReward({ numbers: [1, 3, 3], target: 1 }, '1/3*3')).toBe(1); // 0.9999999999999999... within 1e-5
    expect(countdownReward({ numbers: [5, 5, 1], target: 1 }, '1+5*(1/(5-5))*0')).toBe(0.1);
    expect(countdownReward({ numbers: [2, 2, 9], target: 9 }, '9+0*(2/(2-2))')).toBe(0.1); // Python raises, JavaScript would give NaN
  });

  it('uses exact integers as Python does (beyond 2^53), and returns at once on deep nesting and huge literals', () => {
    const big = { numbers: [9007199254740993, 1, 1], target: 9007199254740994 };
    // 2^53+1 is not a double; the literal is exact as a BigInt while the item was rounded: scored invalid, never wrong
    expect([0.1, 1]).toContain(countdownReward(big, '9007199254740993+1*1'));
    expect(evaluateExpression('9007199254740993+1')!.value).toBe(9007199254740994n);
    const deep = '('.repeat(50_000) + '30-(100-93)' + ')'.repeat(50_000);
    const t0 = performance.now();
    expect(countdownReward(item, deep)).toBe(1);
    expect(countdownReward(item, '-'.repeat(100_000) + '30')).toBe(0.1);
    expect(countdownReward(item, '1'.repeat(5000) + '+30')).toBe(0.1); // past Python's 4300-digit limit
    expect(countdownReward(item, Array(200).fill('9'.repeat(4000)).join('*'))).toBe(0.1); // past our 2^4096 bound
    expect(performance.now() - t0).toBeLessThan(200);
  });
});

describe('expression evaluator', () => {
  it("gives Python's values: exact ints, true division, unary signs, errors where Python raises", () => {
    expect(evaluateExpression('2+3*4')).toEqual({ value: 14n, numbers: [2n, 3n, 4n] });
    expect(evaluateExpression('(2+3)*4')!.value).toBe(20n);
    expect(evaluateExpression('8/4/2')!.value).toBe(1);
    expect(evaluateExpression('10-4-3')!.value).toBe(3n);
    expect(evaluateExpression('7/2')!.value).toBe(3.5);
    expect(evaluateExpression('-2*-3')!.value).toBe(6n);
    expect(evaluateExpression('2--3')!.value).toBe(5n);
    expect(evaluateExpression('00+1')!.value).toBe(1n);
    for (const bad of ['', '2+', '(2', '2)', '2**3', '2//3', '1/0', '1/(2-2)', '01', '2 3', 'a', '()', '1.5', '1\n+2'])
      expect(evaluateExpression(bad), JSON.stringify(bad)).toBeNull();
  });

  it("strips as Python's str.strip and compares with Python's tolerance", () => {
    expect(pyStrip('\x1c\x85 12 \u3000\n')).toBe('12');
    expect(pyStrip('\ufeff12')).toBe('\ufeff12'); // not whitespace to Python
    expect(withinTolerance(23n, 23)).toBe(true);
    expect(withinTolerance(1 / 3, 0.333334)).toBe(true);
    expect(withinTolerance(1 / 3, 0.3334)).toBe(false);
    expect(withinTolerance(NaN, 1)).toBe(false);
    expect(withinTolerance(10n ** 400n, 1)).toBe(false); // float(10**400) overflows in Python
  });
});

describe('sudoku reward (edge cases by hand)', () => {
  const item = { puzzle: '3102200002100320', solution: '3142243142131324' };
  it.each([
    ['3142243142131324', 1],
    ['', 0],
    ['no digits', 0],
    ['31', 0], // padded with zeros
    ['3142 2431 4213 1324', 1], // separators ignored
    ['3142243142131324999', 1], // cut to 16
    ['3142243100000320', 4 / 8],
    ['\u00b93142243142131324', 0], // a superscript one is a digit to Python: every cell shifts
    ['31\u0664\u0662243142131324', 7 / 8], // Arabic-Indic digits keep their places and match nothing
  ])('%j scores %s', (text, reward) => {
    expect(sudokuReward(item, text)).toBe(reward);
  });
  it('a puzzle with no empty cell scores 0 for any answer (d1)', () => {
    const full = { puzzle: '3142243142131324', solution: '3142243142131324' };
    expect(sudokuReward(full, '3142243142131324')).toBe(0);
  });
});

describe('arith reward (edge cases by hand)', () => {
  const item = { expression: '12+7*3-5', ...solveArith('12+7*3-5') };
  const neg = { expression: '2-9', ...solveArith('2-9') };
  it.each([
    [item, '7*3=21;12+21=33;33-5=28#28', 2.2, true],
    [item, ' 7*3=21 ; 12+21=33 ; 33-5=28 # 28 ', 2.2, true],
    [item, '#28', 2.1, true],
    [item, '7*3=21;12+21=33;33-5=27#27', 0.1 + 0.1 * (2 / 3), false],
    [item, '12+21=33;7*3=21;33-5=28#28', 2.1 + 0.1 / 3, true], // steps out of place earn nothing
    [item, '7*3=21;7*3=21;7*3=21#28', 2.1 + 0.1 / 3, true], // repeating a step earns it once
    [item, 'junk#28', 2.1, true],
    [item, '28', 0, false], // no '#'
    [item, '#', 0, false],
    [item, '', 0, false],
    [item, '#028', 0, false], // leading zero
    [item, '#+28', 0, false],
    [item, '#2 8', 0, false],
    [item, '#28.0', 0, false],
    [item, '#28#28', 0, false], // two answers
    [item, '#\u0662\u0668', 0, false], // only ASCII digits
    [neg, '2-9=-7#-7', 2.2, true],
    [neg, '#-0', 0, false],
  ])('%j: %j scores %s', (it_, text, reward, correct) => {
    expect(arithReward(it_, text)).toBeCloseTo(reward, 12);
    expect(arithTask().correct(it_, text)).toBe(correct);
  });
  it('parses the steps and the answer', () => {
    expect(parseArithAnswer('a; b #-12')).toEqual({ steps: ['a', 'b'], answer: -12 });
  });
});
