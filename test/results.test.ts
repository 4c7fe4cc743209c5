import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { summarizeRuns } from 'diffpo';

const RESULTS = 'docs/results';

/** The run folders of a result set: <set>/seed-N or <set>/<cell>/seed-N. */
function runsOf(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    if (/^seed-\d+$/.test(name) && existsSync(join(path, 'result.json'))) out.push(path);
    else if (statSync(path).isDirectory() && readdirSync(path).some((n) => /^seed-\d+$/.test(n))) out.push(...runsOf(path)); // cells may hold dots (lora-dropout-0.05)
  }
  return out;
}

/**
 * Each result set's reports recomputed from its committed runs, as `diffpo experiment` or
 * `diffpo report` wrote them: report.md (test set), and report-validation.md where there is one.
 */
async function recomputed(): Promise<Map<string, string>> {
  const reports = new Map<string, string>();
  for (const name of readdirSync(RESULTS)) {
    const dir = join(RESULTS, name);
    if (name === 'archive' || !existsSync(join(dir, 'report.md'))) continue;
    const spec = existsSync(join(dir, 'experiment.json')) ? (JSON.parse(readFileSync(join(dir, 'experiment.json'), 'utf8')) as { thresholds?: number[] }) : { thresholds: [0.9, 0.95] };
    for (const split of ['test', 'validation'] as const) {
      const file = join(dir, split === 'test' ? 'report.md' : 'report-validation.md');
      if (existsSync(file)) reports.set(file, (await summarizeRuns(runsOf(dir), { split, thresholds: spec.thresholds })).markdown);
    }
  }
  return reports;
}

describe('results', () => {
  it("every result set's report is what diffpo report computes from its committed runs, and the README's result rows are theirs", async () => {
    const reports = await recomputed();
    expect(reports.size).toBeGreaterThanOrEqual(3);
    const rows = new Set<string>();
    for (const [file, markdown] of reports) {
      // the committed report ends with the table diffpo report prints (an experiment's starts with its claim)
      expect(readFileSync(file, 'utf8').endsWith(markdown), file).toBe(true);
      for (const line of markdown.split('\n')) if (line.startsWith('| ')) rows.add(line);
    }
    const readme = readFileSync('README.md', 'utf8');
    const results = readme.slice(readme.indexOf('## Results'), readme.indexOf('## Benchmarks'));
    const claimed = results.split('\n').filter((l) => l.startsWith('| ') && l.includes(' ± '));
    expect(claimed.length).toBeGreaterThan(0);
    for (const line of claimed) expect(rows.has(line), line).toBe(true);
  });
});
