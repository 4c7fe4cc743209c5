import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import {
  getTask,
  gsm8kCorrect,
  gsm8kExtract,
  gsm8kReward,
  gsm8kTask,
  GSM8K_VALIDATION_SIZE,
  isEquivMath,
  loadTestSet,
  math500Correct,
  math500Extract,
  math500Reward,
  math500Task,
  Rng,
  type Gsm8kItem,
  type Math500Item,
  type Task,
} from 'diffpo';

interface Generation {
  task: 'gsm8k' | 'math500';
  question: string;
  generation: string;
  training_text: string;
  d1_extracted: number | string | null;
  d1_correct: boolean;
  d1_reward: number;
}

describe('GSM8K and MATH500 scored exactly as d1 scores them', () => {
  it('all 3,260 real LLaDA-8B generations: the extracted answer, the verdict and the training reward equal d1 bit for bit', async () => {
    const lines = readFileSync(join(import.meta.dirname, 'fixtures', 'd1_llada_generations.jsonl'), 'utf8').trim().split('\n');
    const rows = lines.map((l) => JSON.parse(l)).filter((r): r is Generation => 'task' in r);
    expect(rows.length).toBe(3260);
    const gsm = new Map((await loadTestSet(gsm8kTask())).map((x) => [x.question, x]));
    const math = new Map((await loadTestSet(math500Task())).map((x) => [x.problem, x]));
    expect([gsm.size, math.size]).toEqual([1319, 500]);
    const disagree: string[] = [];
    let correct = 0;
    for (const [i, r] of rows.entries()) {
      const isGsm = r.task === 'gsm8k';
      const item = (isGsm ? gsm.get(r.question) : math.get(r.question))!;
      expect(item, `line ${i + 2}: question not in the test set`).toBeDefined();
      const extracted = isGsm ? gsm8kExtract(r.generation) : math500Extract(r.generation);
      const verdict = isGsm ? gsm8kCorrect(item as Gsm8kItem, r.generation) : math500Correct(item as Math500Item, r.generation);
      const reward = isGsm ? gsm8kReward(item as Gsm8kItem, r.training_text) : math500Reward(item as Math500Item, r.training_text);
      // the raw generation (with <|eot_id|> and <|endoftext|>) scores the same: the tasks remove them as d1 does
      const rewardRaw = isGsm ? gsm8kReward(item as Gsm8kItem, r.generation) : math500Reward(item as Math500Item, r.generation);
      if (extracted !== r.d1_extracted || verdict !== r.d1_correct || reward !== r.d1_reward || rewardRaw !== r.d1_reward)
        disagree.push(`line ${i + 2} (${r.task}): extracted ${JSON.stringify(extracted)} / ${JSON.stringify(r.d1_extracted)}, correct ${verdict} / ${r.d1_correct}, reward ${reward} / ${r.d1_reward}`);
      correct += Number(verdict);
    }
    expect(disagree).toEqual([]);
    expect(correct).toBe(rows.filter((r) => r.d1_correct).length); // 1938 of 3260
  });

  it("keeps d1's Python semantics at the edges", () => {
    const item: Gsm8kItem = { question: 'q', solution: '... #### 18', answer: '18', groundTruth: 18 };
    // the first boxed number wins over the answer tag; a boxed non-number falls back to its first number
    expect(gsm8kExtract('\\boxed{18} <answer>7</answer>')).toBe(18);
    expect(gsm8kExtract('\\boxed{x = 18 or 19}')).toBe(18);
    expect(gsm8kExtract('\\boxed{...} <answer>it is 3, or 18</answer>')).toBe(18); // last number of the answer
    expect(gsm8kExtract('\\boxed{1_000}')).toBe(1000); // Python's float() reads underscores
    expect(gsm8kExtract('no answer')).toBeNull();
    // negative answers: d1's evaluation reads no ground truth, so never credits them
    expect(gsm8kCorrect({ ...item, answer: '-3', groundTruth: null }, '\\boxed{-3}')).toBe(false);
    // strict format: Python's `$` also matches before one final newline
    const strict = '<reasoning>\nr\n</reasoning>\n<answer>\n18\n</answer>\n';
    expect(gsm8kReward(item, strict)).toBe(0.5 + 0.5 + 0.5 + 0.5 + 2); // xmlcount 0.5 (nothing after), soft, strict, int, exact
    // one more newline: 0.001 off each of the two closing-tag terms, strict still matches; two more: strict fails
    expect(gsm8kReward(item, strict + '\n')).toBeCloseTo(0.498 + 0.5 + 0.5 + 0.5 + 2, 12);
    expect(gsm8kReward(item, strict + '\n\n')).toBeCloseTo(0.496 + 0.5 + 0.5 + 2, 12);
    // MATH: Hendrycks' normalisation, and its fallback to raw equality where Python raises
    expect(isEquivMath('\\dfrac{1}{2}', '0.5')).toBe(true);
    expect(isEquivMath('\\frac12', '\\frac{1}{2}')).toBe(true);
    expect(isEquivMath('3/4', '\\frac{3}{4}')).toBe(true);
    expect(isEquivMath('x/y', 'x/y')).toBe(true); // int('x') raises: raw comparison
    expect(isEquivMath('x/y', 'x / y')).toBe(false);
    expect(isEquivMath('5\\text{ cm}', '5')).toBe(true);
    const m: Math500Item = { problem: 'p', solution: 'so \\boxed{\\frac{1}{4}}.', answer: '\\frac{1}{4}' };
    expect(math500Correct(m, '<answer>\\boxed{\\frac14}</answer>')).toBe(true);
    expect(math500Correct(m, '<answer>\\frac{1}{4}</answer>')).toBe(false); // unboxed: d1 compares the whole generation
    expect(math500Extract('<answer>\\boxed{-99\n</answer>')).toBe('\\boxed{-99'); // unclosed: the answer tag
    expect(math500Reward(m, '<answer>\\boxed{\\frac{1}{4}}</answer>')).toBe(2 + 0.75);
    expect(math500Reward(m, '\\boxed{0}')).toBe(0.25);
  });

  it('GSM8K trains on its train split less a fixed validation slice; MATH500 has no training split', () => {
    const task = gsm8kTask();
    const validation = new Set(task.validationSet().map((x) => x.question));
    expect(validation.size).toBe(GSM8K_VALIDATION_SIZE);
    const rng = new Rng(1);
    for (let i = 0; i < 2000; i++) expect(validation.has(task.generate(rng).question)).toBe(false);
    const item = task.validationSet()[0]!;
    expect(task.reward(item, task.response(item))).toBe(4); // the reference response earns every term
    expect(() => getTask('math500').generate(rng)).toThrow(/evaluation set/);
    expect(task.chat!(item)[0]!.content).toMatch(/^\nRespond in the following format:\n<reasoning>\n\.\.\.\n<\/reasoning>/);
    // d1's evaluation prompt, for comparisons with its published accuracies: the answer starts with <reasoning>
    const math: Math500Item = { problem: 'p', solution: 's', answer: 'a' };
    for (const [t, x] of [[gsm8kTask({ prompt: 'eval' }), item], [math500Task({ prompt: 'eval' }), math]] as [Task<unknown>, unknown][]) {
      expect(t.chat!(x)[0]!.content).toMatch(/^You are a math expert\. .* Wrap the final answer in a \\boxed\{\}\. \nRespond in the following format:\n<reasoning>\nYour reasoning here\n<\/reasoning>\n<answer>\n\\boxed\{\.\.\.\}\n<\/answer>\n\n/);
      expect(t.generationPrefix).toBe('<reasoning>');
    }
    expect(() => getTask('sudoku4', undefined, { prompt: 'eval' })).toThrow(/prompt is an option of gsm8k and math500/);
  });
});
