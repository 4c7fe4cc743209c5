import { spawnSync } from 'node:child_process';

import { describe, expect, it } from 'vitest';

describe('examples', () => {
  it('quickstart trains a copy task, round-trips a BF16 checkpoint, fills the masked half and decodes', () => {
    const r = spawnSync(process.execPath, ['examples/quickstart.mjs'], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/filled 3 14 15 9 26 5 3 14 15 9 26 5/);
    expect(r.stdout).toMatch(/generate 3 14 15 9 26 5 -> 3 14 15 9 26 5 in [2-6] forwards/);
    expect(r.stdout).toMatch(/generate 7 7 1 0 12 29 -> 7 7 1 0 12 29 in [2-6] forwards/);
  });
});
