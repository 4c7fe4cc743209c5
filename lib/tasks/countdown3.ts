import { InvalidArgumentError } from '../errors.js';
import { evaluateExpression } from './expression.js';
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

const sameMultiset = (a: number[], b: number[]) => a.length === b.length && [...a].sort((x, y) => x - y).every((v, i) => v === [...b].sort((x, y) => x - y)[i]);

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
    reward(item, completion) {
      const answer = completion.trim();
      if (answer === '') return 0; // no answer
      if (!/^[\d+\-*/() ]+$/.test(answer)) return 0.1; // other characters
      const r = evaluateExpression(answer);
      if (!r || !sameMultiset(r.numbers, item.numbers) || !Number.isFinite(r.value)) return 0.1;
      return Math.abs(r.value - item.target) < 1e-5 ? 1 : 0.1;
    },
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
