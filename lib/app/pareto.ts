import { evaluate, type EvaluateOptions } from '../decoding/evaluate.js';
import type { DiffusionLM } from '../engine/model.js';
import { strategyLabel, SWEEP_THRESHOLDS, type DecodingStrategy } from '../decoding/strategy.js';
import { esc, legendEntry, svgFrame, type Frame } from './svg.js';
import type { Task } from '../tasks/task.js';

export interface ParetoPoint {
  label: string;
  strategy: DecodingStrategy;
  accuracy: number;
  meanReward: number;
  meanNfe: number;
}

/** Accuracy and mean NFE of threshold (and entropy-bounded) decoding across a grid of settings. */
export async function paretoSweep<Item>(
  model: DiffusionLM,
  task: Task<Item>,
  options: Omit<EvaluateOptions, 'sampler'> & { thresholds?: readonly number[]; gammas?: readonly number[]; blockLength?: number },
): Promise<ParetoPoint[]> {
  const strategies: DecodingStrategy[] = [
    ...(options.thresholds ?? SWEEP_THRESHOLDS).map((threshold): DecodingStrategy => ({ kind: 'threshold', threshold })),
    ...(options.gammas ?? []).map((gamma): DecodingStrategy => ({ kind: 'entropy', gamma })),
  ];
  const results = await evaluate(model, task, { ...options, sampler: { blockLength: options.blockLength }, strategies });
  return results.map((r) => ({ label: strategyLabel(r.strategy), strategy: r.strategy, accuracy: r.accuracy, meanReward: r.meanReward, meanNfe: r.meanNfe }));
}

/** The points no other point beats on both accuracy (higher) and mean NFE (lower). */
export function paretoFront(points: ParetoPoint[]): ParetoPoint[] {
  return points.filter((p) => !points.some((q) => q !== p && q.accuracy >= p.accuracy && q.meanNfe <= p.meanNfe && (q.accuracy > p.accuracy || q.meanNfe < p.meanNfe)));
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b'];

/**
 * An SVG plot of accuracy against mean NFE: one polyline per curve (e.g. per model, over thresholds)
 * and standalone points (e.g. a learned sampler), with axes, ticks and a legend. The NFE axis is
 * logarithmic when the NFEs span more than a factor 4 (one token per step next to a few forwards),
 * and the accuracy axis stops a little above the best accuracy when that is below 0.5.
 */
export function paretoSvg(curves: { name: string; points: ParetoPoint[] }[], extra: { name: string; point: ParetoPoint }[] = [], title = 'accuracy vs mean NFE'): string {
  const f: Frame = { W: 640, H: 420, left: 60, right: 200, top: 40, bottom: 50 };
  const { W, H, left, right, top, bottom } = f;
  const all = [...curves.flatMap((c) => c.points), ...extra.map((e) => e.point)];
  const nfes = all.map((p) => Math.max(p.meanNfe, 1e-3));
  const lo = Math.min(...nfes, Infinity),
    hi = Math.max(1, ...nfes);
  const log = Number.isFinite(lo) && hi / lo > 4;
  const [x0, x1] = log ? [Math.log(lo / 1.1), Math.log(hi * 1.1)] : [0, hi * 1.05];
  const x = (nfe: number) => left + (((log ? Math.log(Math.max(nfe, 1e-3)) : nfe) - x0) / (x1 - x0)) * (W - left - right);
  const best = Math.max(0, ...all.map((p) => p.accuracy));
  const yMax = best > 0.5 ? 1 : Math.max(0.05, Math.ceil((best * 1.2) / 0.05) * 0.05);
  const y = (acc: number) => H - bottom - (acc / yMax) * (H - top - bottom);
  const parts = svgFrame(f, title, log ? 'mean NFE (log scale)' : 'mean NFE', 'accuracy');
  for (let i = 0; i <= 5; i++) {
    const a = (yMax * i) / 5;
    parts.push(`<text x="${left - 6}" y="${y(a) + 4}" text-anchor="end">${a.toFixed(yMax < 0.5 ? 2 : 1)}</text>`, `<line x1="${left}" y1="${y(a)}" x2="${W - right}" y2="${y(a)}" stroke="#eee"/>`);
  }
  const ticks = log
    ? [1, 2, 5].flatMap((m) => [0.1, 1, 10, 100, 1000].map((p) => m * p)).filter((t) => Math.log(t) >= x0 && Math.log(t) <= x1)
    : Array.from({ length: 6 }, (_, i) => (x1 * i) / 5);
  for (const t of ticks) parts.push(`<text x="${x(t)}" y="${H - bottom + 16}" text-anchor="middle">${log ? t : t.toFixed(1)}</text>`);
  curves.forEach((c, i) => {
    const color = COLORS[i % COLORS.length];
    const pts = [...c.points].sort((p, q) => p.meanNfe - q.meanNfe);
    parts.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${pts.map((p) => `${x(p.meanNfe).toFixed(1)},${y(p.accuracy).toFixed(1)}`).join(' ')}"/>`);
    for (const p of pts) parts.push(`<circle cx="${x(p.meanNfe).toFixed(1)}" cy="${y(p.accuracy).toFixed(1)}" r="3" fill="${color}"><title>${esc(`${c.name}, ${p.label}: accuracy ${p.accuracy.toFixed(3)}, NFE ${p.meanNfe.toFixed(2)}`)}</title></circle>`);
    parts.push(legendEntry(f, i, c.name, color));
  });
  extra.forEach((e, j) => {
    const i = curves.length + j;
    const color = COLORS[i % COLORS.length];
    parts.push(`<rect x="${(x(e.point.meanNfe) - 5).toFixed(1)}" y="${(y(e.point.accuracy) - 5).toFixed(1)}" width="10" height="10" fill="${color}"><title>${esc(`${e.name}: accuracy ${e.point.accuracy.toFixed(3)}, NFE ${e.point.meanNfe.toFixed(2)}`)}</title></rect>`);
    parts.push(legendEntry(f, i, e.name, color, true));
  });
  parts.push('</svg>');
  return parts.join('\n');
}
