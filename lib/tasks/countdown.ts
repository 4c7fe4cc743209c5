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

function apply(a: number, op: Op, b: number): number | null {
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
 * and a reachable target in 1..100. The model answers with its intermediate results, then the final
 * expression after '#' ("100-93=7;30-7=23#30-(100-93)"): the steps make the search learnable by a
 * small model, and the reward reads only the expression, as d1's.
 */
export function countdownTask(options: { numbers?: Difficulty } = {}): Task<CountdownItem> {
  const count = difficultyRange('numbers', options.numbers ?? 3, 2, 6);
  const name = count[0] === 3 && count[1] === 3 ? 'countdown3' : count[0] === count[1] ? `countdown${count[0]}` : 'countdown';
  return {
    name,
    testSetFile: name === 'countdown3' ? 'countdown3_test.jsonl' : undefined,
    difficulty: { name: 'numbers', of: (item) => item.numbers.length },
    generate(rng) {
      for (;;) {
        const numbers = Array.from({ length: drawIn(count, rng) }, () => 1 + rng.int(100));
        // combine two random subexpressions until one is left, as a solver's search tree would
        let nodes = numbers.map((n) => ({ value: n, text: String(n), leaf: true }));
        const steps: string[] = [];
        let ok = true;
        while (nodes.length > 1 && ok) {
          const i = rng.int(nodes.length);
          let j = rng.int(nodes.length - 1);
          if (j >= i) j++;
          const [a, b] = [nodes[i]!, nodes[j]!];
          const op = OPS[rng.int(4)]!;
          const value = apply(a.value, op, b.value);
          if (value === null) ok = false;
          else {
            steps.push(`${a.value}${op}${b.value}=${value}`);
            const wrap = (n: typeof a) => (n.leaf ? n.text : `(${n.text})`);
            nodes = [...nodes.filter((_, k) => k !== i && k !== j), { value, text: `${wrap(a)}${op}${wrap(b)}`, leaf: false }];
          }
        }
        const target = nodes[0]!.value;
        if (!ok || !Number.isInteger(target) || target < 1 || target > 100) continue;
        return { numbers, target, steps, expression: nodes[0]!.text };
      }
    },
    prompt: (item) => `C${item.numbers.join(',')}>${item.target}\n`,
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
