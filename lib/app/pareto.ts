import { InvalidArgumentError } from '../core/errors.js';
import { evaluate, type EvaluateOptions } from '../decoding/evaluate.js';
import type { DiffusionLM } from '../engine/model.js';
import { strategyLabel, SWEEP_THRESHOLDS, thresholdStrategy, type DecodingStrategy } from '../decoding/strategy.js';
import { esc, legendEntry, legendMargin, niceAxis, svgFrame, type Frame } from './svg.js';
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

/**
 * Accuracy at per-sequence NFE budgets, as users run them (`diffpo eval --budgets 2,4,8,16`): each
 * budget decodes with `strategy` (default threshold decoding at DEFAULT_THRESHOLD) and `maxNfe` =
 * the budget, whose last allowed forward fills what is left. A strict strategy (one token per step)
 * spends the whole budget; a loose one may stop earlier.
 */
export async function budgetSweep<Item>(
  model: DiffusionLM,
  task: Task<Item>,
  options: Omit<EvaluateOptions, 'sampler'> & { budgets: readonly number[]; strategy?: DecodingStrategy; blockLength?: number },
): Promise<(ParetoPoint & { budget: number })[]> {
  const { budgets } = options;
  if (!Array.isArray(budgets) || budgets.length === 0 || budgets.some((b) => !Number.isInteger(b) || b < 1))
    throw new InvalidArgumentError(`budgets must be positive integers, got ${JSON.stringify(budgets)}`);
  const strategy = options.strategy ?? thresholdStrategy();
  const out: (ParetoPoint & { budget: number })[] = [];
  const n = options.items.length;
  for (const [k, budget] of budgets.entries()) {
    const onProgress = options.onProgress && ((done: number) => options.onProgress!(k * n + done, n * budgets.length));
    const r = await evaluate(model, task, { ...options, onProgress, sampler: { strategy, blockLength: options.blockLength, maxNfe: budget } });
    out.push({ label: `budget ${budget}`, budget, strategy, accuracy: r.accuracy, meanReward: r.meanReward, meanNfe: r.meanNfe });
  }
  return out;
}

/** How a point compares with a frontier: see paretoCompare. */
export interface ParetoComparison {
  point: ParetoPoint;
  /** The point's accuracy minus the fixed frontier's, interpolated at the point's NFE; null when no fixed point is that cheap. */
  accuracyGain: number | null;
  /** The NFE the fixed frontier needs for the point's accuracy (interpolated) minus the point's; null when no fixed point is that accurate. */
  nfeSaved: number | null;
}

/**
 * What fixed settings reach: the upper concave hull of their points (accuracy against mean NFE).
 * Decoding a fraction q of the prompts at one setting and the rest at another reaches, in
 * expectation, every point of the chord between the two, so a point under a chord (the base's 0.85
 * between 0.75 and 0.9, say) is not the frontier: the hull is. Sorted by NFE, increasing in both.
 */
export function paretoHull(points: ParetoPoint[]): ParetoPoint[] {
  const hull: ParetoPoint[] = [];
  for (const p of paretoFront(points).sort((a, b) => a.meanNfe - b.meanNfe || a.accuracy - b.accuracy)) {
    // drop the last point while it lies on or under the chord from the one before it to p
    while (hull.length >= 2) {
      const [a, b] = [hull.at(-2)!, hull.at(-1)!];
      // (a tolerance: accuracies are fractions like 0.4, whose differences round)
      if ((b.meanNfe - a.meanNfe) * (p.accuracy - a.accuracy) - (b.accuracy - a.accuracy) * (p.meanNfe - a.meanNfe) < -1e-12) break;
      hull.pop();
    }
    hull.push(p);
  }
  return hull;
}

/**
 * Each learned point against the frontier of the fixed ones (their upper concave hull, paretoHull:
 * linear between hull points, flat beyond the most accurate): the accuracy gained at equal NFE and
 * the NFE saved at equal accuracy. Positive numbers mean the point lies above the frontier. The
 * frontier counts only what fixed settings reach: below its cheapest point or above its most
 * accurate one the comparison is null.
 */
export function paretoCompare(fixed: ParetoPoint[], learned: ParetoPoint[]): ParetoComparison[] {
  const front = paretoHull(fixed);
  if (front.length === 0) throw new InvalidArgumentError('paretoCompare needs at least one fixed point');
  const between = (x: number, x0: number, x1: number, y0: number, y1: number) => (x1 === x0 ? Math.max(y0, y1) : y0 + ((x - x0) * (y1 - y0)) / (x1 - x0));
  const accuracyAt = (nfe: number): number | null => {
    if (nfe < front[0]!.meanNfe) return null;
    const i = front.findIndex((p) => p.meanNfe >= nfe);
    if (i < 0) return front.at(-1)!.accuracy; // beyond the costliest point the frontier stays flat
    if (i === 0) return front[0]!.accuracy;
    const [a, b] = [front[i - 1]!, front[i]!];
    return between(nfe, a.meanNfe, b.meanNfe, a.accuracy, b.accuracy);
  };
  const nfeFor = (accuracy: number): number | null => {
    if (accuracy > front.at(-1)!.accuracy) return null;
    const i = front.findIndex((p) => p.accuracy >= accuracy);
    if (i === 0) return front[0]!.meanNfe;
    const [a, b] = [front[i - 1]!, front[i]!];
    return between(accuracy, a.accuracy, b.accuracy, a.meanNfe, b.meanNfe);
  };
  return learned.map((point) => {
    const acc = accuracyAt(point.meanNfe),
      nfe = nfeFor(point.accuracy);
    return { point, accuracyGain: acc === null ? null : point.accuracy - acc, nfeSaved: nfe === null ? null : nfe - point.meanNfe };
  });
}

/** Mean and sample standard deviation of per-seed values (std 0 for one seed). */
export function meanStd(values: readonly number[]): { mean: number; std: number; n: number } {
  if (values.length === 0) throw new InvalidArgumentError('meanStd needs at least one value');
  const mean = values.reduce((a, x) => a + x, 0) / values.length;
  const std = values.length < 2 ? 0 : Math.sqrt(values.reduce((a, x) => a + (x - mean) ** 2, 0) / (values.length - 1));
  return { mean, std, n: values.length };
}

/** The points no other point beats on both accuracy (higher) and mean NFE (lower). */
export function paretoFront(points: ParetoPoint[]): ParetoPoint[] {
  return points.filter((p) => !points.some((q) => q !== p && q.accuracy >= p.accuracy && q.meanNfe <= p.meanNfe && (q.accuracy > p.accuracy || q.meanNfe < p.meanNfe)));
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b'];

/**
 * An SVG plot of accuracy against mean NFE: one polyline per curve (e.g. per model, over thresholds),
 * with `hull` also its upper concave hull dashed (paretoHull: what paretoCompare measures against),
 * and standalone points (e.g. a learned sampler), with axes, ticks and a legend. The NFE axis is
 * logarithmic when the NFEs span more than a factor 4 (one token per step next to a few forwards),
 * and the accuracy axis stops a little above the best accuracy when that is below 0.5.
 */
export function paretoSvg(curves: { name: string; points: ParetoPoint[]; hull?: boolean }[], extra: { name: string; point: ParetoPoint }[] = [], title = 'accuracy vs mean NFE'): string {
  const hullName = (c: { name: string }) => `${c.name}: hull`;
  const legend = [...curves.flatMap((c) => (c.hull ? [c.name, hullName(c)] : [c.name])), ...extra.map((e) => e.name)];
  const f: Frame = { W: 0, H: 420, left: 60, right: legendMargin(legend, 200), top: 40, bottom: 50 };
  f.W = 440 + f.right;
  const { W, H, left, right, top, bottom } = f;
  const all = [...curves.flatMap((c) => c.points), ...extra.map((e) => e.point)];
  const nfes = all.map((p) => Math.max(p.meanNfe, 1e-3));
  const lo = Math.min(...nfes, Infinity),
    hi = Math.max(1, ...nfes);
  const log = Number.isFinite(lo) && hi / lo > 4;
  const linear = niceAxis(hi * 1.02, 5);
  const [x0, x1] = log ? [Math.log(lo / 1.1), Math.log(hi * 1.1)] : [0, linear.top];
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
  ticks.forEach((t, i) => parts.push(`<text x="${x(t)}" y="${H - bottom + 16}" text-anchor="middle">${log ? t : linear.labels[i]}</text>`));
  const line = (pts: ParetoPoint[]) => pts.map((p) => `${x(p.meanNfe).toFixed(1)},${y(p.accuracy).toFixed(1)}`).join(' ');
  let row = 0;
  curves.forEach((c, i) => {
    const color = COLORS[i % COLORS.length]!;
    const pts = [...c.points].sort((p, q) => p.meanNfe - q.meanNfe);
    parts.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${line(pts)}"/>`);
    for (const p of pts) parts.push(`<circle cx="${x(p.meanNfe).toFixed(1)}" cy="${y(p.accuracy).toFixed(1)}" r="3" fill="${color}"><title>${esc(`${c.name}, ${p.label}: accuracy ${p.accuracy.toFixed(3)}, NFE ${p.meanNfe.toFixed(2)}`)}</title></circle>`);
    parts.push(legendEntry(f, row++, c.name, color));
    if (c.hull && pts.length > 0) {
      parts.push(`<polyline fill="none" stroke="${color}" stroke-width="1.5" stroke-dasharray="5,4" opacity="0.7" points="${line(paretoHull(pts))}"/>`);
      parts.push(legendEntry(f, row++, hullName(c), color, false, true));
    }
  });
  extra.forEach((e, j) => {
    const color = COLORS[(curves.length + j) % COLORS.length]!;
    parts.push(`<rect x="${(x(e.point.meanNfe) - 5).toFixed(1)}" y="${(y(e.point.accuracy) - 5).toFixed(1)}" width="10" height="10" fill="${color}"><title>${esc(`${e.name}: accuracy ${e.point.accuracy.toFixed(3)}, NFE ${e.point.meanNfe.toFixed(2)}`)}</title></rect>`);
    parts.push(legendEntry(f, row++, e.name, color, true));
  });
  parts.push('</svg>');
  return parts.join('\n');
}
