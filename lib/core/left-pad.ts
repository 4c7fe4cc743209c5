/** Rows of different lengths as one batch (row-major, batch x seqLen). */
export interface LeftPadded {
  tokens: Int32Array;
  /** 1 for a real token, 0 for padding (which no position attends to). */
  attentionMask: Uint8Array;
  /** RoPE positions: 0 at each row's first real token. */
  positions: Int32Array;
  batch: number;
  seqLen: number;
  /** Where the suffixes start in every row. */
  prefixLength: number;
}

/**
 * Prefixes (prompts) left-padded to a common length and followed by their suffixes (canvases,
 * responses), with the padding hidden from attention and positions shifted, so that each row sees
 * exactly what it would alone. Suffixes shorter than `suffixLength` are filled with `padId` on the
 * right (EOS padding of a response).
 */
export function leftPad(
  prefixes: ArrayLike<number>[],
  suffixes: ArrayLike<number>[] = [],
  options: { padId?: number; prefixLength?: number; suffixLength?: number } = {},
): LeftPadded {
  const padId = options.padId ?? 0;
  const P = options.prefixLength ?? Math.max(...prefixes.map((p) => p.length));
  const S = options.suffixLength ?? Math.max(0, ...suffixes.map((s) => s.length));
  const B = prefixes.length,
    T = P + S;
  const tokens = new Int32Array(B * T).fill(padId),
    attentionMask = new Uint8Array(B * T),
    positions = new Int32Array(B * T);
  prefixes.forEach((prefix, b) => {
    const pad = P - prefix.length;
    const suffix = suffixes[b] ?? [];
    for (let t = pad; t < T; t++) {
      const i = b * T + t;
      attentionMask[i] = 1;
      positions[i] = t - pad;
      if (t < P) tokens[i] = prefix[t - pad]!;
      else if (t - P < suffix.length) tokens[i] = suffix[t - P]!;
    }
  });
  return { tokens, attentionMask, positions, batch: B, seqLen: T, prefixLength: P };
}
