import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { paretoCompare, runSetName, summarizeRuns, type ParetoPoint } from 'diffpo';

const cli = (...args: string[]) => spawnSync(process.execPath, ['dist/esm/app/cli.js', ...args], { encoding: 'utf8' });
const pt = (threshold: number, accuracy: number, meanNfe: number): ParetoPoint => ({ label: `threshold ${threshold}`, strategy: { kind: 'threshold', threshold }, accuracy, meanReward: accuracy, meanNfe });

const root = mkdtempSync(join(tmpdir(), 'diffpo-report-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

// the base: 0.85 lies under the chord from 0.7 to 0.9, which the hull replaces it by
const base = [pt(0.5, 0.3, 2), pt(0.7, 0.4, 4), pt(0.85, 0.44, 5.5), pt(0.9, 0.5, 7)];
function writeRun(dir: string, seed: number, after: ParetoPoint[], extra: Record<string, unknown> = {}): string {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'result.json'), JSON.stringify({ task: 'countdown3', method: 'diffpo', sampler: 'fixed', seed, steps: 64, seconds: 100 + seed, testItems: 256, threshold: 0.9, before: base, after, ...extra }));
  return dir;
}

describe('diffpo report', () => {
  it('runSetName takes the seed part off a run folder', () => {
    expect(runSetName('docs/results/countdown3-rl/rs2-300-s1')).toBe('docs/results/countdown3-rl/rs2-300');
    expect(runSetName('runs/main/seed-3/')).toBe('runs/main');
    expect(runSetName('runs/rs2-seed0')).toBe('runs/rs2');
    expect(runSetName('runs/p_seed12')).toBe('runs/p');
    expect(runSetName('runs/plus5')).toBe('runs/plus5'); // no separator: not a seed
    expect(runSetName('runs/h0')).toBe('runs/h0');
  });

  it('summarises seeds as mean ± sample std and gains over the hull of each run\'s starting model', async () => {
    const afters = [
      [pt(0.9, 0.56, 6.0), pt(0.95, 0.6, 8)],
      [pt(0.9, 0.6, 6.5), pt(0.95, 0.62, 8)],
      [pt(0.9, 0.52, 5.5), pt(0.95, 0.58, 8)],
    ];
    const dirs = afters.map((a, s) => writeRun(join(root, 'set', `seed-${s}`), s, a));
    const r = await summarizeRuns(dirs, { thresholds: [0.9] });
    expect(r.sets.length).toBe(1);
    const [set] = r.sets;
    expect([set!.name, set!.seeds]).toEqual([join(root, 'set'), [0, 1, 2]]);
    const row = set!.rows[0]!;
    expect(row.accuracy.values).toEqual([0.56, 0.6, 0.52]);
    expect(row.accuracy.mean).toBeCloseTo(0.56, 12);
    expect(row.accuracy.std).toBeCloseTo(0.04, 12);
    // by hand: the hull is (2, 0.3) (4, 0.4) (7, 0.5); at NFE 6 it has 0.4 + 2/3 * 0.1, at 6.5 0.4 + 2.5/3 * 0.1, at 5.5 0.45
    const gains = [0.56 - (0.4 + 0.2 / 3), 0.6 - (0.4 + 0.25 / 3), 0.52 - 0.45].map((g) => 100 * g);
    gains.forEach((g, i) => expect(row.gainAtEqualNfe!.values[i]).toBeCloseTo(g, 9));
    // the chord-by-neighbours frontier would have read 0.44 at 5.5 (seed 2: +8 instead of +7)
    expect(row.gainAtEqualNfe!.values[2]).toBeCloseTo(7, 9);
    expect(row.nfeSaved).toBeNull(); // every seed is more accurate than the base ever is
    expect(paretoCompare(base, [pt(0.9, 0.45, 5.5)])[0]!.nfeSaved).toBeCloseTo(0, 9);
    expect(r.markdown).toContain('| set (diffpo, 64 steps) | 0, 1, 2 | threshold 0.9 | 0.560, 0.600, 0.520 | 0.560 ± 0.040 |');
    expect(r.svg).toContain('baseline: hull');
  });

  it('reads the validation split, refuses runs made without one, and takes another baseline', async () => {
    const withVal = writeRun(join(root, 'v-s0'), 0, [pt(0.9, 0.6, 6)], { validation: { items: 256, before: [pt(0.9, 0.4, 7)], after: [pt(0.9, 0.45, 6)] } });
    const old = writeRun(join(root, 'old-s0'), 0, [pt(0.9, 0.6, 6)]);
    const v = await summarizeRuns([withVal], { split: 'validation' });
    expect(v.sets[0]!.rows[0]!.accuracy.mean).toBe(0.45);
    await expect(summarizeRuns([old], { split: 'validation' })).rejects.toThrow(/old-s0 has no validation sweeps/);
    const b = await summarizeRuns([withVal], { baseline: [old] });
    expect(b.sets[0]!.rows[0]!.gainAtEqualNfe!.mean).toBeCloseTo(0, 12); // the same point as the baseline's
    await expect(summarizeRuns([join(root, 'nothing')])).rejects.toThrow(/nothing is not a finished run/);
    await expect(summarizeRuns([withVal, writeRun(join(root, 'v-s00'), 0, [pt(0.9, 0.6, 6)])])).rejects.toThrow(/repeats seed 0/);
  });

  it('pools two sets of one experiment into one sample: every run counted, seeds repeating', async () => {
    const a = [0, 1].map((s) => writeRun(join(root, 'pool-a', `seed-${s}`), s, [pt(0.9, [0.56, 0.6][s]!, 6)]));
    const b = [0, 1].map((s) => writeRun(join(root, 'pool-b', `seed-${s}`), s, [pt(0.9, [0.52, 0.64][s]!, 6)]));
    expect((await summarizeRuns([...a, ...b])).sets.length).toBe(2);
    const r = await summarizeRuns([...a, ...b], { pool: 'both' });
    expect(r.sets.map((s) => [s.name, s.seeds])).toEqual([['both', [0, 0, 1, 1]]]);
    const acc = r.sets[0]!.rows[0]!.accuracy;
    expect([...acc.values].sort()).toEqual([0.52, 0.56, 0.6, 0.64]);
    expect(acc.mean).toBeCloseTo(0.58, 12);
    expect(acc.std).toBeCloseTo(Math.sqrt((0.02 ** 2 * 2 + 0.06 ** 2 * 2) / 3), 12);
    // each run's gain over its own starting model's hull, as unpooled (at NFE 6: 0.4 + 2/3 * 0.1)
    expect(r.sets[0]!.rows[0]!.gainAtEqualNfe!.mean).toBeCloseTo(100 * (0.58 - (0.4 + 0.2 / 3)), 9);
    await expect(summarizeRuns(a, { pool: '' })).rejects.toThrow(/pool must name the pooled set/);
    expect(cli('report', ...a, ...b, '--pool', 'both').stdout).toContain('| both (diffpo, 64 steps) | 0, 0, 1, 1 | threshold 0.9 |');
  });

  it('diffpo experiment runs every grid cell and seed, keeps finished runs, and writes both splits\' reports', () => {
    const out = join(root, 'exp');
    const file = join(root, 'exp.json');
    writeFileSync(file, JSON.stringify({ out, claim: 'a test', train: { task: 'sudoku4', steps: 1, limit: 8, sweep: [0.9], threads: 1 }, grid: { method: ['d1', 'diffpo'] }, seeds: [0, 1] }));
    const r = cli('experiment', file, '--jobs', '2');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toContain('4 runs, 0 finished, 4 to run, 2 at a time');
    for (const cell of ['method-d1', 'method-diffpo'])
      for (const seed of [0, 1]) {
        const result = JSON.parse(readFileSync(join(out, cell, `seed-${seed}`, 'result.json'), 'utf8'));
        expect([result.method, result.seed, result.steps, result.validation.items]).toEqual([cell.slice(7), seed, 1, 8]);
      }
    const report = readFileSync(join(out, 'report.md'), 'utf8');
    expect(report).toMatch(/^a test\n/);
    expect(report).toMatch(/\| method-d1 \(d1, 1 steps\) \| 0, 1 \| threshold 0.9 \|/);
    expect(readFileSync(join(out, 'report-validation.md'), 'utf8')).toContain('Evaluated on the validation set');
    expect(readFileSync(join(out, '.gitignore'), 'utf8')).toContain('optimizer.safetensors');
    // again: nothing to run, the same reports
    const again = cli('experiment', file);
    expect(again.stderr).toContain('4 runs, 4 finished, 0 to run');
    expect(readFileSync(join(out, 'report.md'), 'utf8')).toBe(report);
    writeFileSync(file, JSON.stringify({ out, train: { task: 'sudoku4', seed: 3 }, seeds: [0] }));
    expect(cli('experiment', file).stderr).toMatch(/"train" must not set "seed"/);
  });

  it('the report command prints the table, writes Markdown, SVG and JSON, and names bad input', () => {
    const dirs = [0, 1].map((s) => writeRun(join(root, `cli-s${s}`), s, [pt(0.9, 0.55 + s / 100, 6)]));
    const md = join(root, 'out', 'report.md');
    const r = cli('report', ...dirs, '--markdown', md, '--svg', join(root, 'out', 'plot.svg'));
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/\| cli \(diffpo, 64 steps\) \| 0, 1 \| threshold 0.9 \| 0.550, 0.560 \| 0.555 ± 0.007 \| 6.00 ± 0.00 \| \+[\d.]+ ± [\d.]+ \|/);
    const j = cli('report', ...dirs, '--json');
    expect(JSON.parse(j.stdout).sets[0].rows[0].accuracy.values).toEqual([0.55, 0.56]);
    expect(cli('report').stderr).toMatch(/report needs run folders/);
    expect(cli('report', join(root, 'none')).stderr).toMatch(/none is not a finished run.*ERR_INVALID_ARGUMENT/);
  });
});
