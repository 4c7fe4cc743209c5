import { InvalidArgumentError } from '../core/errors.js';
import { checkPromptStyle, D1_EVAL_PREFIX, D1_EVAL_PROMPT, D1_FORMAT_PROMPT, type D1PromptStyle } from './gsm8k.js';
import { boxedAnswer, firstAnswerTag, isEquivMath, lastBoxedOnlyString, removeBoxed } from './math-answer.js';
import { withoutStopTokens } from './reasoning-format.js';
import type { ChatMessage, Task } from './task.js';

/** A MATH problem: the problem, the dataset's solution (its last `\boxed{}` is the answer) and the short answer. */
export interface Math500Item {
  problem: string;
  solution: string;
  /** The short answer, as d1's evaluation compares with. */
  answer: string;
  subject?: string;
  level?: number;
  id?: string;
}

/** The line d1 adds before a MATH problem, after its format instruction. */
export const D1_MATH_PROMPT = 'You are a math expert. You will be given a question to solve. Solve it step by step. Wrap the final answer in a \\boxed{}. ';

/**
 * The answer d1's evaluation reads from a generation (its parser differs from its training reward's
 * in two ways, both measured on d1's own verdicts): a generation without any `\boxed`/`\fbox` is
 * kept whole, and a boxed answer that does not unbox (`\fbox{..}`) is kept as it is. Then, when
 * that is empty or missing (an unclosed `\boxed{`), the first `<answer>...</answer>` text; null when
 * there is none.
 */
export function math500Extract(generation: string): string | null {
  const found = generation.includes('\\boxed') || generation.includes('\\fbox');
  const last = found ? lastBoxedOnlyString(generation) : generation;
  const parsed = removeBoxed(last) ?? last;
  return parsed ? parsed : (firstAnswerTag(generation) ?? parsed);
}

/** d1's evaluation verdict: the extracted answer is equivalent to the short answer (Hendrycks et al.'s normalisation). */
export function math500Correct(item: Math500Item, generation: string): boolean {
  const x = math500Extract(generation);
  return x !== null && isEquivMath(x, item.answer);
}

/**
 * d1's training reward of a completion: 2 when its last boxed answer (the whole text when it has
 * none) is equivalent to the solution's, plus d1's "boxed in answer" term halved: 0.5 with an
 * `<answer>` tag, 0.25 without. d1's code tests for the string "\boxed" written in Python without
 * a raw prefix, i.e. a backspace followed by "oxed", so the boxed half of that term is never earned;
 * kept as it is, to score as d1 trains.
 */
export function math500Reward(item: Math500Item, completion: string): number {
  const text = withoutStopTokens(completion);
  const reference = boxedAnswer(item.solution);
  const answer = boxedAnswer(text) ?? text;
  const correctness = isEquivMath(answer, reference) ? 2.0 : 0.0;
  const hasTag = text.includes('<answer>');
  const part = hasTag ? text.split('<answer>')[1]!.split('</answer>')[0]! : text;
  const boxedInAnswer = (hasTag ? 1.0 : 0.0) + (part.includes('\x08oxed') ? 1.0 : 0.5);
  return correctness + boxedInAnswer * 0.5;
}

export function parseMath500(text: string, file = 'MATH500'): Math500Item[] {
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((line, i) => {
      let row: { problem?: unknown; solution?: unknown; answer?: unknown; subject?: unknown; level?: unknown; unique_id?: unknown };
      try {
        row = JSON.parse(line);
      } catch {
        throw new InvalidArgumentError(`${file}: line ${i + 1} is not JSON`);
      }
      if (typeof row?.problem !== 'string' || typeof row.solution !== 'string' || typeof row.answer !== 'string')
        throw new InvalidArgumentError(`${file}: line ${i + 1} needs string problem, solution and answer fields`);
      return {
        problem: row.problem,
        solution: row.solution,
        answer: row.answer,
        subject: typeof row.subject === 'string' ? row.subject : undefined,
        level: typeof row.level === 'number' ? row.level : undefined,
        id: typeof row.unique_id === 'string' ? row.unique_id : undefined,
      };
    });
}

/**
 * MATH500 as d1 evaluates on it: d1's prompt (format instruction, its "math expert" line, then the
 * problem; with `prompt: 'eval'`, its evaluation prompt) as one user turn of the chat template; `correct` is d1's evaluation verdict, `reward` its
 * training reward (at most 2.75). An evaluation set only: there is no training split here, so
 * `generate` refuses.
 */
export function math500Task(options: { prompt?: D1PromptStyle } = {}): Task<Math500Item> {
  const style = checkPromptStyle(options.prompt ?? 'train');
  const content = (item: Math500Item) => (style === 'train' ? `${D1_FORMAT_PROMPT}\n\n${D1_MATH_PROMPT}\n\n${item.problem}` : `${D1_EVAL_PROMPT}\n\n${item.problem}`);
  return {
    name: 'math500',
    genLength: 256,
    blockLength: 32,
    testSetFile: 'math500_test.jsonl',
    generate() {
      throw new InvalidArgumentError('math500 is an evaluation set: it has no training split to draw from (train on gsm8k)');
    },
    prompt: content,
    chat: (item): ChatMessage[] => [{ role: 'user', content: content(item) }],
    generationPrefix: style === 'eval' ? D1_EVAL_PREFIX : undefined,
    response: (item) => `<reasoning>\n${item.solution}\n</reasoning>\n<answer>\n\\boxed{${item.answer}}\n</answer>\n`,
    reward: math500Reward,
    correct: math500Correct,
    key: (item) => item.problem,
    parseTestSet: (text) => parseMath500(text),
  };
}
