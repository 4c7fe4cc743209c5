// A straightforward TypeScript decoder written from ALGORITHMS.md §3, one sequence at a time, on
// full logits from model.logits(): the reference the native sampler is compared with, at temperature
// 0 and, with the Gumbel noise of the documented Philox stream (written here from Random123's
// definition, in BigInt), at temperature > 0.
import type { DecodingStrategy, DiffusionLM } from 'diffpo';

/** Philox4x32-10 of counter c with key (k0, k1). */
function philox(c: number[], k0: number, k1: number): number[] {
  let [c0, c1, c2, c3] = c as [number, number, number, number];
  for (let r = 0; r < 10; r++) {
    if (r > 0) [k0, k1] = [(k0 + 0x9e3779b9) >>> 0, (k1 + 0xbb67ae85) >>> 0];
    const p0 = 0xd2511f53n * BigInt(c0),
      p1 = 0xcd9e8d57n * BigInt(c2);
    const [hi0, lo0, hi1, lo1] = [Number(p0 >> 32n), Number(p0 & 0xffffffffn), Number(p1 >> 32n), Number(p1 & 0xffffffffn)];
    [c0, c1, c2, c3] = [(hi1 ^ c1 ^ k0) >>> 0, lo1, (hi0 ^ c3 ^ k1) >>> 0, lo0];
  }
  return [c0, c1, c2, c3];
}

/** The decoder's Gumbel noise of vocabulary id v at (seed; sequence, the sequence's forward count, position). */
export function gumbelNoise(seed: number, sequence: number, step: number, position: number, v: number): number {
  const [a, b] = philox([v, position, step, sequence], seed % 2 ** 32, Math.floor(seed / 2 ** 32));
  const u = ((a! >>> 5) * 2 ** 26 + (b! >>> 6) + 0.5) / 2 ** 53;
  return -Math.log(-Math.log(u));
}

export interface ReferenceResult {
  tokens: number[];
  nfe: number;
  decodeStep: number[];
  logp: number[];
  hitBudget: boolean;
}

interface Cand {
  g: number;
  x0: number;
  conf: number;
  entropy: number;
  logp: number;
}

/** A position's candidate: at temperature > 0 the Gumbel-max draw of logits / T with `noise(v)`, its log-prob at T. */
function stats(row: Float32Array, g: number, V: number, M: number, temperature = 0, noise?: (v: number) => number): Cand {
  const score = (v: number) => (temperature > 0 ? row[v]! / temperature + noise!(v) : row[v]!);
  let x0 = -1;
  for (let v = 0; v < V; v++) if (v !== M && (x0 < 0 || score(v) > score(x0))) x0 = v;
  const m = Math.max(...row);
  const z = row.reduce((a, l) => a + Math.exp(l - m), 0);
  const p = Array.from(row, (l) => Math.exp(l - m) / z);
  const entropy = -p.reduce((a, pi) => a + (pi > 0 ? pi * Math.log(pi) : 0), 0);
  const zt = temperature > 0 ? row.reduce((a, l) => a + Math.exp((l - m) / temperature), 0) : z;
  const logp = temperature > 0 ? (row[x0]! - m) / temperature - Math.log(zt) : Math.log(p[x0]!);
  return { g, x0, conf: p[x0]!, entropy, logp };
}

const byConfidence = (a: Cand, b: Cand) => b.conf - a.conf || a.g - b.g;

function choose(cands: Cand[], strategy: DecodingStrategy, tau: number, stepInBlock: number, perBlock: number, blockLength: number): Cand[] {
  switch (strategy.kind) {
    case 'threshold': {
      const sorted = [...cands].sort(byConfidence);
      const above = sorted.filter((c) => c.conf >= tau);
      return above.length > 0 ? above : sorted.slice(0, 1);
    }
    case 'steps': {
      const k = Math.floor(blockLength / perBlock) + (stepInBlock < blockLength % perBlock ? 1 : 0);
      return [...cands].sort(byConfidence).slice(0, k);
    }
    case 'factor': {
      const sorted = [...cands].sort(byConfidence);
      let n = 0;
      for (let r = 1; r <= sorted.length; r++) {
        if (sorted[r - 1]!.conf >= 1 - strategy.factor / (r + 1)) n = r;
        else break;
      }
      return sorted.slice(0, Math.max(1, n));
    }
    case 'entropy': {
      const sorted = [...cands].sort((a, b) => a.entropy - b.entropy || a.g - b.g);
      let k = 1;
      for (let n = 1; n <= sorted.length; n++) {
        const prefix = sorted.slice(0, n).map((c) => c.entropy);
        if (prefix.reduce((a, h) => a + h, 0) - Math.max(...prefix) <= tau) k = n;
      }
      return sorted.slice(0, k);
    }
  }
}

export async function referenceGenerate(
  model: DiffusionLM,
  prompt: Int32Array,
  opts: { genLength: number; blockLength: number; strategy: DecodingStrategy; tau?: number; maxNfe?: number; temperature?: number; seed?: number; sequence?: number },
): Promise<ReferenceResult> {
  const { vocab_size: V, mask_token_id: M, embedding_size: E } = model.config;
  const P = prompt.length,
    L = opts.genLength,
    T = P + L;
  const canvas = Int32Array.from([...prompt, ...new Array(L).fill(M)]);
  const out: ReferenceResult = { tokens: [], nfe: 0, decodeStep: new Array(L).fill(0), logp: new Array(L).fill(0), hitBudget: false };
  const blocks = L / opts.blockLength;
  const perBlock = opts.strategy.kind === 'steps' ? opts.strategy.steps / blocks : 0;
  const tau = opts.tau ?? 0;
  for (let k = 0; k < blocks && !out.hitBudget; k++) {
    const lo = P + k * opts.blockLength,
      hi = lo + opts.blockLength;
    for (let step = 0; ; step++) {
      if (opts.strategy.kind === 'steps' ? step === perBlock : !canvas.subarray(lo, hi).includes(M)) break;
      const logits = await model.logits(canvas, { batch: 1, seqLen: T });
      out.nfe++;
      const last = !!opts.maxNfe && out.nfe >= opts.maxNfe;
      const cands: Cand[] = [];
      const [temperature, forward] = [opts.temperature ?? 0, out.nfe - 1];
      for (let t = last ? P : lo; t < (last ? T : hi); t++)
        if (canvas[t] === M) cands.push(stats(logits.subarray(t * E, (t + 1) * E), t - P, V, M, temperature, (v) => gumbelNoise(opts.seed ?? 0, opts.sequence ?? 0, forward, t - P, v)));
      for (const c of last ? cands : choose(cands, opts.strategy, tau, step, perBlock, opts.blockLength)) {
        canvas[P + c.g] = c.x0;
        out.decodeStep[c.g] = out.nfe;
        out.logp[c.g] = c.logp;
      }
      if (last) {
        out.hitBudget = true;
        break;
      }
    }
  }
  out.tokens = Array.from(canvas.subarray(P));
  return out;
}
