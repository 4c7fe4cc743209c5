import { InvalidArgumentError } from '../core/errors.js';
import { evaluateExpression, pyStrip, withinTolerance } from './expression.js';
import type { Task } from './task.js';

/** Countdown with three numbers in 1..100 and a reachable target in 1..100. */
export interface Countdown3Item {
  numbers: [number, number, number];
  target: number;
  /** An expression reaching the target (generated items; absent for test items). */
  solution?: string;
}

const OPS = ['+', '-', '*', '/'] as const;

function apply(a: number, op: (typeof OPS)[number], b: number): number | null {
  switch (op) {
    case '+':
      return a + b;
    case '-':
      return a - b;
    case '*':
      return a * b;
    case '/':
      return b !== 0 && a % b === 0 ? a / b : null; // generated solutions stay in the integers
  }
}

const byValue = (a: bigint, b: bigint) => (a < b ? -1 : a > b ? 1 : 0);

/**
 * d1's Countdown reward for an answer: 0 for no answer, 1 when the expression uses exactly the given
 * numbers, each once, and evaluates to the target within 1e-5, and 0.1 for any other answer. The
 * answer is read as d1 reads it (stripped as Python strips, evaluated with Python's semantics: see
 * evaluateExpression for the deliberate deviations, all scored 0.1).
 */
export function countdownReward(item: { numbers: readonly number[]; target: number }, answer: string): number {
  const text = pyStrip(answer);
  if (text === '') return 0;
  const r = evaluateExpression(text);
  if (!r || r.numbers.length !== item.numbers.length) return 0.1;
  const given = item.numbers.map((n) => (Number.isInteger(n) ? BigInt(n) : null));
  if (given.includes(null)) return 0.1;
  const used = [...r.numbers].sort(byValue);
  const sorted = (given as bigint[]).sort(byValue);
  if (used.some((n, i) => n !== sorted[i])) return 0.1;
  return withinTolerance(r.value, item.target) ? 1 : 0.1;
}

export function countdown3Task(): Task<Countdown3Item> {
  return {
    name: 'countdown3',
    testSetFile: 'countdown3_test.jsonl',
    generate(rng) {
      for (;;) {
        const numbers = [1 + rng.int(100), 1 + rng.int(100), 1 + rng.int(100)] as [number, number, number];
        const [x, y, z] = rng.shuffle([...numbers]);
        const op1 = OPS[rng.int(4)]!,
          op2 = OPS[rng.int(4)]!;
        // (x op1 y) op2 z  or  x op2 (y op1 z)
        const leftFirst = rng.int(2) === 0;
        const inner = apply(leftFirst ? x! : y!, op1, leftFirst ? y! : z!);
        if (inner === null) continue;
        const value = leftFirst ? apply(inner, op2, z!) : apply(x!, op2, inner);
        if (value === null || !Number.isInteger(value) || value < 1 || value > 100) continue;
        const solution = leftFirst ? `(${x}${op1}${y})${op2}${z}` : `${x}${op2}(${y}${op1}${z})`;
        return { numbers, target: value, solution };
      }
    },
    prompt: (item) => `C${item.numbers.join(',')}>${item.target}\n`,
    response(item) {
      if (!item.solution) throw new InvalidArgumentError('this Countdown item has no reference solution');
      return item.solution;
    },
    reward: (item, completion) => countdownReward(item, completion),
    correct(item, completion) {
      return this.reward(item, completion) === 1;
    },
    key: (item) => `${[...item.numbers].sort((a, b) => a - b).join(',')}>${item.target}`,
    parseTestSet(text) {
      return text
        .split(/\r?\n/)
        .filter((l) => l.trim() !== '')
        .map((line, i) => {
          let row: { input?: unknown; output?: unknown };
          try {
            row = JSON.parse(line);
          } catch {
            throw new InvalidArgumentError(`line ${i + 1} is not JSON`);
          }
          const numbers = String(row.input ?? '').split(',').map(Number);
          const target = Number(row.output);
          if (numbers.length !== 3 || numbers.some((n) => !Number.isInteger(n) || n < 1) || !Number.isInteger(target))
            throw new InvalidArgumentError(`line ${i + 1}: expected {"input": "a,b,c", "output": "target"}, got ${line}`);
          return { numbers: numbers as [number, number, number], target };
        });
    },
  };
}
