import { InvalidArgumentError } from '../core/errors.js';
import { Rng } from '../core/rng.js';
import { difficultyRange, drawIn, type Difficulty, type Task } from './task.js';

/**
 * Multi-step arithmetic with a chain of thought [ours]: an expression of `terms` integers in
 * 1..maxOperand with + - *, answered by its intermediate results (products first, then left to right)
 * before the final answer, e.g. "12+7*3-5" -> "7*3=21;12+21=33;33-5=28#28". The defaults (3 terms,
 * operands 1..9) are what a 1M-parameter model learns in minutes; 4 terms in 1..20 stayed at chance.
 */
export interface ArithItem {
  expression: string;
  steps: string[];
  answer: number;
}

type Op = '+' | '-' | '*';
const calc = (a: number, op: Op, b: number) => (op === '+' ? a + b : op === '-' ? a - b : a * b);

/** The worked steps of an expression over + - * (precedence respected), and its value. */
export function solveArith(expression: string): { steps: string[]; answer: number } {
  const tokens = expression.match(/\d+|[+\-*]/g) ?? [];
  let nums = tokens.filter((_, i) => i % 2 === 0).map(Number);
  let ops = tokens.filter((_, i) => i % 2 === 1) as Op[];
  const steps: string[] = [];
  for (const pass of [['*'], ['+', '-']] as Op[][])
    for (let i = 0; i < ops.length; ) {
      if (!pass.includes(ops[i]!)) {
        i++;
        continue;
      }
      const v = calc(nums[i]!, ops[i]!, nums[i + 1]!);
      steps.push(`${nums[i]}${ops[i]}${nums[i + 1]}=${v}`);
      nums = [...nums.slice(0, i), v, ...nums.slice(i + 2)];
      ops = [...ops.slice(0, i), ...ops.slice(i + 1)];
    }
  return { steps, answer: nums[0]! };
}

/**
 * A completion read strictly: the steps before the one '#', and after it a canonical integer (no sign
 * but '-', no leading zero, no inner whitespace), or null when there is no such answer (no '#',
 * several, or anything else after it).
 */
export function parseArithAnswer(completion: string): { steps: string[]; answer: number | null } {
  const parts = completion.trim().split('#');
  const steps = parts[0]!.split(';').map((s) => s.trim());
  const tail = parts.length === 2 ? parts[1]!.trim() : '';
  return { steps, answer: /^(0|-?[1-9]\d*)$/.test(tail) ? Number(tail) : null };
}

/**
 * 2 for the right final answer, plus small format terms: 0.1 for a well-formed final answer, and up
 * to 0.1 for the fraction of the expected steps shown in their place (listing extra or shuffled
 * steps earns nothing).
 */
export function arithReward(item: ArithItem, completion: string): number {
  const { steps, answer } = parseArithAnswer(completion);
  let r = answer === null ? 0 : answer === item.answer ? 2.1 : 0.1;
  r += (0.1 * item.steps.filter((s, i) => steps[i] === s).length) / Math.max(1, item.steps.length);
  return r;
}

/** Items held out of every training stream, for tasks without an external test set. */
const HELD_OUT_SEED = 20261129;

/** Arithmetic with `terms` integers (3 by default; a range such as [2, 5] mixes difficulties) in 1..maxOperand. */
export function arithTask(options: { terms?: Difficulty; maxOperand?: number } = {}): Task<ArithItem> {
  const terms = difficultyRange('terms', options.terms ?? 3, 2, 8);
  const maxOperand = options.maxOperand ?? 9;
  if (!Number.isInteger(maxOperand) || maxOperand < 1 || maxOperand > 99) throw new InvalidArgumentError(`maxOperand = ${maxOperand} must be an integer in [1, 99]`);
  return {
    name: 'arith',
    validationSetFile: 'arith_validation.jsonl',
    difficulty: { name: 'terms', of: (item) => item.expression.split(/[+\-*]/).length },
    generate(rng) {
      let expression = String(1 + rng.int(maxOperand));
      const n = drawIn(terms, rng);
      for (let t = 1; t < n; t++) expression += '+-*'[rng.int(3)]! + String(1 + rng.int(maxOperand));
      return { expression, ...solveArith(expression) };
    },
    prompt: (item) => `A${item.expression}\n`,
    response: (item) => `${item.steps.join(';')}#${item.answer}`,
    reward: (item, completion) => arithReward(item, completion),
    correct: (item, completion) => parseArithAnswer(completion).answer === item.answer,
    key: (item) => item.expression,
    heldOut() {
      // 500 distinct items from a fixed seed: the evaluation set (training streams exclude their keys)
      const rng = new Rng(HELD_OUT_SEED);
      const seen = new Map<string, ArithItem>();
      for (let tries = 0; seen.size < 500 && tries < 100_000; tries++) {
        const item = this.generate(rng);
        seen.set(item.expression, item);
      }
      return [...seen.values()];
    },
    parseTestSet(text) {
      return text
        .split(/\r?\n/)
        .filter((l) => l.trim() !== '')
        .map((line, i) => {
          const row = JSON.parse(line) as { input?: string; output?: string };
          if (typeof row.input !== 'string' || !/^\d+([+\-*]\d+)+$/.test(row.input))
            throw new InvalidArgumentError(`line ${i + 1}: expected {"input": "12+7*3", "output": "33"}`);
          const solved = solveArith(row.input);
          if (row.output !== undefined && Number(row.output) !== solved.answer)
            throw new InvalidArgumentError(`line ${i + 1}: output ${row.output} is not the value of ${row.input} (${solved.answer})`);
          return { expression: row.input, ...solved };
        });
    },
  };
}
