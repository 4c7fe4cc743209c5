import { describe, expect, it } from 'vitest';

import { getTask, InvalidArgumentError, isSignedSum, loadTestSet, loadValidationSet, siblingValidationFile, type CountdownItem, type Task } from 'diffpo';

describe('validation sets', () => {
  it('each task has one: fixed, at least 256 distinct items, none of them a test item', async () => {
    for (const name of ['countdown3', 'sudoku4', 'arith', 'gsm8k'] as const) {
      const task = getTask(name) as Task<unknown>;
      const [test, validation] = [await loadTestSet(task), await loadValidationSet(task)];
      const keys = new Set(validation.map((x) => task.key(x)));
      expect(validation.length, name).toBeGreaterThanOrEqual(256);
      expect(keys.size, name).toBe(validation.length);
      expect(test.filter((x) => keys.has(task.key(x))).length, name).toBe(0);
      expect((await loadValidationSet(task)).map((x) => task.key(x)), `${name} is fixed`).toEqual([...keys]);
    }
    // countdown3's is made like d1's test set: 229 signed sums and 27 that need a search
    const cd = (await loadValidationSet(getTask('countdown3'))) as CountdownItem[];
    expect(cd.filter((x) => !isSignedSum(x.numbers, x.target)).length).toBe(27);
    await expect(loadValidationSet(getTask('math500'))).rejects.toThrow(InvalidArgumentError);
  });

  it("a test-set file's sibling *_validation.* is its validation set, disjoint from it", async () => {
    const task = getTask('sudoku4') as Task<unknown>;
    const file = siblingValidationFile('data/sudoku4_mixed_test.csv')!;
    expect(file).toBe('data/sudoku4_mixed_validation.csv');
    const [test, validation] = [await loadTestSet(task, 'data/sudoku4_mixed_test.csv'), await loadValidationSet(task, file)];
    const keys = new Set(test.map((x) => task.key(x)));
    expect(validation.some((x) => keys.has(task.key(x)))).toBe(false);
    expect(siblingValidationFile('data/sudoku4_test.csv')).toBe('data/sudoku4_validation.csv');
    expect(siblingValidationFile('data/gsm8k_test.jsonl')).toBeUndefined(); // none beside it: the task's own
    expect(siblingValidationFile(undefined)).toBeUndefined();
  });
});
