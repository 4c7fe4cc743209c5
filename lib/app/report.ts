import { paretoSvg, type ParetoPoint } from './pareto.js';
import { esc, legendEntry, legendMargin, niceAxis, svgFrame, type Frame } from './svg.js';
import type { DiffpoStepInfo } from '../training/diffpo.js';

/** What an RL run's report shows: the run, its frontier before and after, and its per-step metrics. */
export interface RunReportInput {
  title: string;
  /** One paragraph on how the run was made (command, steps, seed, test set). */
  summary: string;
  /** Threshold sweeps on the test set of the starting model and the trained one. */
  before: ParetoPoint[];
  after: ParetoPoint[];
  /** The trained model decoding with its learned per-prompt threshold, when it has one. */
  learned?: ParetoPoint;
  /** With a learned head: how many test prompts it gives each grid value, by the task's difficulty. */
  choices?: HeadChoices;
  /**
   * Per step; with `diffpo train --eval-every N`, every Nth also has the validation set's accuracy and
   * NFE (runs made before validation sets existed logged the test set's: `testAccuracy`).
   */
  metrics: (DiffpoStepInfo & { validationAccuracy?: number; validationAccuracyAveraged?: number; testAccuracy?: number; testAccuracyAveraged?: number })[];
}

/** A learned head's most likely grid value for each test prompt, counted by difficulty (is it really per prompt?). */
export interface HeadChoices {
  /** The difficulty knob's name (e.g. 'empty cells'). */
  difficulty: string;
  grid: number[];
  rows: { difficulty: number; counts: number[] }[];
}

/** A small line chart of per-step series sharing one y axis from 0 to the largest value. */
export function stepsSvg(title: string, series: { name: string; color: string; values: number[] }[]): string {
  const f: Frame = { W: 0, H: 220, left: 50, right: legendMargin(series.map((s) => s.name), 150), top: 30, bottom: 35 };
  f.W = 490 + f.right;
  const { W, H, left, right, top, bottom } = f;
  const n = Math.max(1, ...series.map((s) => s.values.length));
  const axis = niceAxis(Math.max(1e-9, ...series.flatMap((s) => s.values.filter(Number.isFinite))), 4);
  const maxY = axis.top;
  const x = (i: number) => left + (n === 1 ? 0 : (i / (n - 1)) * (W - left - right));
  const y = (v: number) => H - bottom - (v / maxY) * (H - top - bottom);
  const parts = svgFrame(f, title, 'step');
  axis.labels.forEach((label, i) => {
    const v = (maxY * i) / 4;
    parts.push(`<text x="${left - 6}" y="${y(v) + 4}" text-anchor="end">${label}</text>`, `<line x1="${left}" y1="${y(v)}" x2="${W - right}" y2="${y(v)}" stroke="#eee"/>`);
  });
  parts.push(`<text x="${x(0)}" y="${H - bottom + 14}" text-anchor="middle">1</text>`, `<text x="${x(n - 1)}" y="${H - bottom + 14}" text-anchor="middle">${n}</text>`);
  series.forEach((s, k) => {
    const pts = s.values.map((v, i) => (Number.isFinite(v) ? `${x(i).toFixed(1)},${y(v).toFixed(1)}` : '')).filter(Boolean);
    parts.push(`<polyline fill="none" stroke="${s.color}" stroke-width="1.5" points="${pts.join(' ')}"/>`);
    parts.push(legendEntry(f, k, s.name, s.color));
  });
  parts.push('</svg>');
  return parts.join('\n');
}

/** The curve(s) of the accuracy evaluated between steps on one split, where the run logged it. */
function heldOutSeries(m: RunReportInput['metrics'], split: 'validation' | 'test', color: string, averagedColor: string): { name: string; color: string; values: number[] }[] {
  const key = split === 'validation' ? (['validationAccuracy', 'validationAccuracyAveraged'] as const) : (['testAccuracy', 'testAccuracyAveraged'] as const);
  return [
    ...(m.some((i) => i[key[0]] !== undefined) ? [{ name: `${split} accuracy`, color, values: m.map((i) => i[key[0]] ?? NaN) }] : []),
    ...(m.some((i) => i[key[1]] !== undefined) ? [{ name: `${split} accuracy, averaged`, color: averagedColor, values: m.map((i) => i[key[1]] ?? NaN) }] : []),
  ];
}

/** The figures and tables of a run: Markdown (with the SVGs as files beside it) and one self-contained HTML page. */
export function runReport(r: RunReportInput): { markdown: string; html: string; paretoSvg: string; stepsSvg: string; klSvg: string } {
  const pareto = paretoSvg(
    [
      { name: 'before RL', points: r.before, hull: true },
      { name: 'after RL', points: r.after, hull: true },
    ],
    r.learned ? [{ name: 'after RL, learned threshold', point: r.learned }] : [],
    `${r.title}: accuracy vs mean NFE`,
  );
  const m = r.metrics;
  const curves = stepsSvg('rollouts per step', [
    { name: 'mean reward', color: '#1f77b4', values: m.map((i) => i.meanReward) },
    { name: 'accuracy', color: '#2ca02c', values: m.map((i) => i.accuracy) },
    { name: 'mean NFE / max', color: '#d62728', values: m.map((i) => i.meanNfe / Math.max(...m.map((j) => j.meanNfe))) },
    { name: 'flat groups, drawn', color: '#7f7f7f', values: m.map((i) => i.zeroVariance ?? NaN) },
    // with resampleFlatGroups, the batch trained on has fewer flat groups than the prompts as drawn
    ...(m.some((i) => (i.resampledGroups ?? 0) > 0) ? [{ name: 'flat groups, trained', color: '#bcbd22', values: m.map((i) => i.zeroVarianceTrained ?? NaN) }] : []),
    // the held-out curve, where the run evaluated between steps: what the rollouts' own accuracy cannot show
    ...heldOutSeries(m, 'validation', '#ff7f0e', '#8c564b'),
    ...heldOutSeries(m, 'test', '#e377c2', '#17becf'),
  ]);
  const kl = stepsSvg('KL to the starting model per step', [{ name: 'mean k3 KL', color: '#9467bd', values: m.map((i) => i.klMean) }]);
  const rows = [
    ...r.before.map((p) => ['before RL', p]),
    ...r.after.map((p) => ['after RL', p]),
    ...(r.learned ? [['after RL', r.learned]] : []),
  ] as [string, ParetoPoint][];
  const table = [
    '| model | decoding | accuracy | mean reward | mean NFE |',
    '|---|---|---|---|---|',
    ...rows.map(([who, p]) => `| ${who} | ${p.label} | ${p.accuracy.toFixed(3)} | ${p.meanReward.toFixed(3)} | ${p.meanNfe.toFixed(2)} |`),
  ].join('\n');
  const sum = (f: (i: DiffpoStepInfo) => number) => m.reduce((a, i) => a + f(i), 0);
  const time = `Time: rollouts ${sum((i) => i.seconds.rollout).toFixed(1)} s, likelihoods ${sum((i) => i.seconds.likelihood).toFixed(1)} s, updates ${sum((i) => i.seconds.update).toFixed(1)} s.`;
  const last = m[m.length - 1];
  const dist = last?.thresholdDistribution ? `Last step's sampled thresholds: ${last.thresholdDistribution.map((d) => `${d.value}: ${(100 * d.fraction).toFixed(0)}%`).join(', ')}.` : '';
  const c = r.choices;
  const choices = c
    ? [
        `The learned threshold of each test prompt (its most likely grid value), by ${c.difficulty}:`,
        '',
        `| ${c.difficulty} | prompts | ${c.grid.map((g) => `at ${g}`).join(' | ')} |`,
        `|---|---|${c.grid.map(() => '---|').join('')}`,
        ...c.rows.map((row) => `| ${row.difficulty} | ${row.counts.reduce((a, n) => a + n, 0)} | ${row.counts.join(' | ')} |`),
      ].join('\n') + '\n\n'
    : '';
  const markdown = `# ${r.title}\n\n${r.summary}\n\n${table}\n\n${choices}![accuracy vs mean NFE](pareto.svg)\n\n![per-step metrics](steps.svg)\n\n![KL per step](kl.svg)\n\n${time} ${dist}\nPer-step metrics: [metrics.jsonl](metrics.jsonl).\n`;
  const htmlTable = `<table><tr><th>model</th><th>decoding</th><th>accuracy</th><th>mean reward</th><th>mean NFE</th></tr>${rows.map(([who, p]) => `<tr><td>${who}</td><td>${esc(p.label)}</td><td>${p.accuracy.toFixed(3)}</td><td>${p.meanReward.toFixed(3)}</td><td>${p.meanNfe.toFixed(2)}</td></tr>`).join('')}</table>`;
  const htmlChoices = c
    ? `<p>The learned threshold of each test prompt (its most likely grid value), by ${esc(c.difficulty)}:</p><table><tr><th>${esc(c.difficulty)}</th><th>prompts</th>${c.grid.map((g) => `<th>at ${g}</th>`).join('')}</tr>${c.rows.map((row) => `<tr><td>${row.difficulty}</td><td>${row.counts.reduce((a, n) => a + n, 0)}</td>${row.counts.map((n) => `<td>${n}</td>`).join('')}</tr>`).join('')}</table>\n`
    : '';
  const html = `<!doctype html>\n<html><head><meta charset="utf-8"><title>${esc(r.title)}</title><style>body{font-family:sans-serif;max-width:720px;margin:2em auto}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}</style></head><body>\n<h1>${esc(r.title)}</h1>\n<p>${esc(r.summary)}</p>\n${htmlTable}\n${htmlChoices}${pareto}\n${curves}\n${kl}\n<p>${esc(time)} ${esc(dist)} Per-step metrics: <a href="metrics.jsonl">metrics.jsonl</a>.</p>\n</body></html>\n`;
  return { markdown, html, paretoSvg: pareto, stepsSvg: curves, klSvg: kl };
}
