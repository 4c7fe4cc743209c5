/** Escapes text for SVG and HTML. */
export const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** The plot area of a chart: margins around it inside a W x H picture. */
export interface Frame {
  W: number;
  H: number;
  left: number;
  right: number;
  top: number;
  bottom: number;
}

/** The opening of a chart: white background, title, both axes and their labels (close with '</svg>'). */
export function svgFrame(f: Frame, title: string, xLabel: string, yLabel?: string): string[] {
  const { W, H, left, right, top, bottom } = f;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${left}" y="${top - 15}" font-size="14">${esc(title)}</text>`,
    `<line x1="${left}" y1="${H - bottom}" x2="${W - right}" y2="${H - bottom}" stroke="black"/>`,
    `<line x1="${left}" y1="${top}" x2="${left}" y2="${H - bottom}" stroke="black"/>`,
    `<text x="${(left + W - right) / 2}" y="${H - 8}" text-anchor="middle">${esc(xLabel)}</text>`,
  ];
  if (yLabel) parts.push(`<text x="16" y="${(top + H - bottom) / 2}" transform="rotate(-90 16 ${(top + H - bottom) / 2})" text-anchor="middle">${esc(yLabel)}</text>`);
  return parts;
}

/** Legend entry k (a line, dashed or not, or a square for standalone points) right of the plot area. */
export function legendEntry(f: Frame, k: number, name: string, color: string, square = false, dashed = false): string {
  const x = f.W - f.right, y = f.top + 18 * k;
  const mark = square
    ? `<rect x="${x + 20}" y="${y - 5}" width="10" height="10" fill="${color}"/>`
    : `<line x1="${x + 15}" y1="${y}" x2="${x + 35}" y2="${y}" stroke="${color}" stroke-width="2"${dashed ? ' stroke-dasharray="5,4"' : ''}/>`;
  return `${mark}<text x="${x + 40}" y="${y + 4}">${esc(name)}</text>`;
}

/** The right margin a legend of these names needs (12px sans-serif: about 6.6px a character), at least `min`. */
export const legendMargin = (names: readonly string[], min: number): number => Math.max(min, Math.ceil(48 + 6.6 * Math.max(0, ...names.map((n) => n.length))));

/**
 * An axis from 0 to at least `max` in `count` equal steps of a round size (1, 2, 2.5 or 5 times a
 * power of ten), with labels of as many decimals as the step has: 0.005, 0.010, ... where plain
 * rounding would print 0.01, 0.01, 0.00.
 */
export function niceAxis(max: number, count: number): { top: number; labels: string[] } {
  const raw = Math.max(max, 1e-12) / count;
  const p = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * p).find((s) => s >= raw * (1 - 1e-9))!;
  const decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9) + (Number.isInteger(Number((step / p).toFixed(6))) ? 0 : 1));
  return { top: step * count, labels: Array.from({ length: count + 1 }, (_, i) => (step * i).toFixed(decimals)) };
}
