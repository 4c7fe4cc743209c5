import { InvalidArgumentError } from '../core/errors.js';
import { evaluateExpression, pyStrip, withinTolerance } from './expression.js';
import { difficultyRange, drawIn, type Difficulty, type Task } from './task.js';

/** Countdown: reach the target from the given numbers with + - * / and parentheses, each number once. */
export interface CountdownItem {
  numbers: number[];
  target: number;
  /** The worked steps ("100-93=7") and the expression (generated items; absent for test items). */
  steps?: string[];
  expression?: string;
}

const OPS = ['+', '-', '*', '/'] as const;
type Op = (typeof OPS)[number];

/** a op b when it is a positive integer (generated solutions stay there), else null. */
function apply(a: number, op: Op, b: number): number | null {
  const v = op === '+' ? a + b : op === '-' ? a - b : op === '*' ? a * b : b !== 0 && a % b === 0 ? a / b : 0;
  return v > 0 ? v : null;
}

interface Node {
  value: number;
  text: string;
  leaf: boolean;
}

/** A number as the prompt and the worked steps write it: at least three digits ("030"), so digits line up. */
export const countdownNumber = (n: number): string => String(n).padStart(3, '0');

const step = (a: number, op: string, b: number, value: number) => `${countdownNumber(a)}${op}${countdownNumber(b)}=${countdownNumber(value)}`;

/**
 * The first solution of an exhaustive search (pairs in order, operators + - * /, both operand orders),
 * as its steps and expression, or null: a fixed choice among an item's solutions, so the response is
 * a function of the prompt.
 */
function search(nodes: Node[], target: number, steps: string[]): { steps: string[]; expression: string } | null {
  if (nodes.length === 1) return nodes[0]!.value === target ? { steps, expression: nodes[0]!.text } : null;
  const wrap = (n: Node) => (n.leaf ? n.text : `(${n.text})`);
  for (let i = 0; i < nodes.length; i++)
    for (let j = 0; j < nodes.length; j++) {
      if (i === j) continue;
      const [a, b] = [nodes[i]!, nodes[j]!];
      for (const op of OPS) {
        if ((op === '+' || op === '*') && j < i) continue; // commutative: one order
        const value = apply(a.value, op, b.value);
        if (value === null) continue;
        const rest = nodes.filter((_, k) => k !== i && k !== j);
        const found = search([...rest, { value, text: `${wrap(a)}${op}${wrap(b)}`, leaf: false }], target, [...steps, step(a.value, op, b.value, value)]);
        if (found) return found;
      }
    }
  return null;
}

/**
 * The signed-sum part of the worked solution the model learns to write, one computation whatever the
 * item: the running sum S of the numbers, two at a time; S - target and half of it, h, while they are
 * positive integers. When h is one of the numbers the target is the others' sum minus h; when S - h is
 * one, it is that number minus the others (229 of the 256 items of d1's test set are such signed sums,
 * found without search): then `expression` is set. Numbers are padded to three digits so a small
 * model's digits line up; the expression after '#' is plain (Python reads "030" as an error).
 */
function signedSumSteps(numbers: readonly number[], target: number): { steps: string[]; expression?: string } {
  const steps: string[] = [];
  let sum = numbers[0]!;
  for (const n of numbers.slice(1)) {
    steps.push(step(sum, '+', n, sum + n));
    sum += n;
  }
  const others = (n: number) => {
    const k = numbers.indexOf(n);
    return numbers.filter((_, i) => i !== k);
  };
  if (sum === target) return { steps, expression: numbers.join('+') };
  const d = sum - target;
  if (d > 0) {
    steps.push(step(sum, '-', target, d));
    if (d % 2 === 0) {
      const h = d / 2;
      steps.push(`${countdownNumber(d)}/2=${countdownNumber(h)}`);
      if (numbers.includes(h)) return { steps, expression: `${others(h).join('+')}-${h}` };
      steps.push(step(sum, '-', h, sum - h));
      if (numbers.includes(sum - h)) return { steps, expression: `${sum - h}-${others(sum - h).join('-')}` };
    }
  }
  return { steps };
}

/** Whether an item is a signed sum of its numbers (solved by signedSumSteps, without search). */
export const isSignedSum = (numbers: readonly number[], target: number): boolean => signedSumSteps(numbers, target).expression !== undefined;

/**
 * The worked solution of an item: the signed sum's steps (signedSumSteps), and when they do not reach
 * the target, the steps of the first solution of a search after them (null when there is none).
 */
export function countdownSolution(numbers: readonly number[], target: number): { steps: string[]; expression: string } | null {
  const { steps, expression } = signedSumSteps(numbers, target);
  if (expression !== undefined) return { steps, expression };
  return search(
    numbers.map((n) => ({ value: n, text: String(n), leaf: true })),
    target,
    steps,
  );
}

const byValue = (a: bigint, b: bigint) => (a < b ? -1 : a > b ? 1 : 0);

/**
 * d1's Countdown reward for an answer (what d1 finds between its answer tags, null when there are
 * none): 0 for no answer, 1 when the expression uses exactly the given numbers, each once, and
 * evaluates to the target within 1e-5, and 0.1 for any other answer (an empty one included). The
 * answer is read as d1 reads it (stripped as Python strips, evaluated with Python's semantics: see
 * evaluateExpression for the deliberate deviations, all scored 0.1).
 */
export function countdownReward(item: { numbers: readonly number[]; target: number }, answer: string | null): number {
  if (answer === null) return 0;
  const text = pyStrip(answer);
  const r = evaluateExpression(text);
  if (!r || r.numbers.length !== item.numbers.length) return 0.1;
  const given = item.numbers.map((n) => (Number.isInteger(n) ? BigInt(n) : null));
  if (given.includes(null)) return 0.1;
  const used = [...r.numbers].sort(byValue);
  const sorted = (given as bigint[]).sort(byValue);
  if (used.some((n, i) => n !== sorted[i])) return 0.1;
  return withinTolerance(r.value, item.target) ? 1 : 0.1;
}

/** The final expression of a completion "steps#expression": the text after its last '#', or null without one. */
export function countdownAnswer(completion: string): string | null {
  const k = completion.lastIndexOf('#');
  return k < 0 ? null : completion.slice(k + 1);
}

/**
 * Countdown with `numbers` numbers in 1..100 (3 by default, as d1's test set; 4, or [3, 4] to mix)
 * and a target in 1..100, both uniform, kept when some expression reaches it (with positive integer
 * intermediate results). The model answers with worked steps, then the final expression after '#'
 * (countdownSolution: "30+100+93=223;223-23=200;200/2=100#30+93-100"): the steps make the answer a
 * computation a small model can learn, and the reward reads only the expression, as d1's.
 * `searchFraction`: the fraction of items that need a search (the rest are signed sums,
 * isSignedSum); by default the uniform draw's (about a third), where d1's test set has 27 of 256.
 */
export function countdownTask(options: { numbers?: Difficulty; searchFraction?: number } = {}): Task<CountdownItem> {
  const count = difficultyRange('numbers', options.numbers ?? 3, 2, 6);
  const { searchFraction } = options;
  if (searchFraction !== undefined && !(typeof searchFraction === 'number' && searchFraction >= 0 && searchFraction <= 1))
    throw new InvalidArgumentError(`searchFraction must be a number in [0, 1], got ${String(searchFraction)}`);
  const name = count[0] === 3 && count[1] === 3 ? 'countdown3' : count[0] === count[1] ? `countdown${count[0]}` : 'countdown';
  return {
    name,
    testSetFile: name === 'countdown3' ? 'countdown3_test.jsonl' : undefined,
    validationSetFile: name === 'countdown3' ? 'countdown3_validation.jsonl' : undefined,
    difficulty: { name: 'numbers', of: (item) => item.numbers.length },
    generate(rng) {
      const needsSearch = searchFraction === undefined ? undefined : rng.random() < searchFraction;
      for (;;) {
        const numbers = Array.from({ length: drawIn(count, rng) }, () => 1 + rng.int(100));
        const target = 1 + rng.int(100);
        if (needsSearch !== undefined && isSignedSum(numbers, target) === needsSearch) continue;
        const solution = countdownSolution(numbers, target);
        if (solution) return { numbers, target, ...solution };
      }
    },
    prompt: (item) => `C${item.numbers.map(countdownNumber).join(',')}>${countdownNumber(item.target)}\n`,
    response(item) {
      if (!item.expression || !item.steps) throw new InvalidArgumentError('this Countdown item has no reference solution');
      return `${item.steps.join(';')}#${item.expression}`;
    },
    reward: (item, completion) => countdownReward(item, countdownAnswer(completion)),
    correct: (item, completion) => countdownReward(item, countdownAnswer(completion)) === 1,
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
          if (numbers.length < 2 || numbers.some((n) => !Number.isInteger(n) || n < 1) || !Number.isInteger(target))
            throw new InvalidArgumentError(`line ${i + 1}: expected {"input": "a,b,c", "output": "target"}, got ${line}`);
          return { numbers, target };
        });
    },
  };
}

/** Countdown with three numbers, d1's setting (the external test set's). */
export const countdown3Task = (): Task<CountdownItem> => countdownTask();
