/** What a derived random stream is for: each purpose gets streams of its own. */
export type SeedPurpose = 'sft-masks' | 'rollout' | 'estimator' | 'head-calibration' | 'lora-dropout';

const PURPOSE: Record<SeedPurpose, number> = { 'sft-masks': 1, rollout: 2, estimator: 3, 'head-calibration': 4, 'lora-dropout': 5 };

// splitmix32's finaliser: every input bit flips about half of the output bits
function mix(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b) >>> 0;
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35) >>> 0;
  return (x ^ (x >>> 16)) >>> 0;
}

/**
 * The seed of one random stream of a run, from the run's seed, the stream's purpose and its place in
 * the run (step, inner iteration, ...). Hashing them, rather than arithmetic such as seed * K + step,
 * keeps streams apart: neighbouring seeds or steps never share masks or noise, and a resumed run
 * derives the same seed for the same step. A non-negative safe integer (53 bits).
 */
export function deriveSeed(seed: number, purpose: SeedPurpose, ...indices: number[]): number {
  let lo = mix((seed >>> 0) ^ 0x9e3779b9),
    hi = mix(Math.floor(seed / 2 ** 32) ^ PURPOSE[purpose]);
  for (const i of [PURPOSE[purpose], ...indices]) {
    lo = mix(lo ^ (i >>> 0) ^ (hi << 7));
    hi = mix(hi ^ Math.floor(i / 2 ** 32) ^ lo);
  }
  return (hi & 0x1fffff) * 2 ** 32 + lo;
}
