// An independent LLaDA forward (ALGORITHMS.md §1) in float64 plain loops, written from the spec and
// sharing no code with the library, to check the native model's logits.
export interface RefConfig {
  d_model: number;
  n_heads: number;
  n_kv_heads: number;
  n_layers: number;
  mlp_hidden_size: number;
  embedding_size: number;
  rope_theta: number;
  rms_norm_eps: number;
  weight_tying: boolean;
  scale_logits: boolean;
  input_emb_norm: boolean;
}

type Weights = Map<string, Float32Array>;

function matvec(w: Float32Array, x: Float64Array, rows: number, cols: number): Float64Array {
  const out = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let c = 0; c < cols; c++) s += w[r * cols + c]! * x[c]!;
    out[r] = s;
  }
  return out;
}

function rmsnorm(x: Float64Array, w: Float32Array, eps: number): Float64Array {
  let ss = 0;
  for (const v of x) ss += v * v;
  const r = 1 / Math.sqrt(ss / x.length + eps);
  return x.map((v, i) => w[i]! * v * r);
}

function rope(u: Float64Array, pos: number, heads: number, hd: number, theta: number): void {
  const half = hd / 2;
  for (let h = 0; h < heads; h++)
    for (let j = 0; j < half; j++) {
      // LLaDA computes inv_freq and the angle in float32
      const invFreq = Math.fround(1 / Math.pow(theta, (2 * j) / hd));
      const angle = Math.fround(pos * invFreq);
      const c = Math.cos(angle),
        s = Math.sin(angle);
      const a = u[h * hd + j]!,
        b = u[h * hd + j + half]!;
      u[h * hd + j] = a * c - b * s;
      u[h * hd + j + half] = b * c + a * s;
    }
}

/** Logits (B, T, E) for tokens (B*T); keyMask (B*T) hides padding keys. */
export function referenceLogits(cfg: RefConfig, w: Weights, tokens: Int32Array, B: number, T: number, keyMask?: Uint8Array): Float64Array {
  const D = cfg.d_model,
    H = cfg.n_heads,
    KV = cfg.n_kv_heads,
    hd = D / H,
    F = cfg.mlp_hidden_size,
    E = cfg.embedding_size;
  const get = (n: string) => {
    const t = w.get(n);
    if (!t) throw new Error(`missing ${n}`);
    return t;
  };
  const out = new Float64Array(B * T * E);
  for (let b = 0; b < B; b++) {
    let x: Float64Array[] = [];
    for (let t = 0; t < T; t++) {
      const id = tokens[b * T + t]!;
      const row = get('model.transformer.wte.weight').subarray(id * D, (id + 1) * D);
      x.push(Float64Array.from(row, (v) => (cfg.input_emb_norm ? v * Math.sqrt(D) : v)));
    }
    for (let l = 0; l < cfg.n_layers; l++) {
      const p = `model.transformer.blocks.${l}.`;
      const h = x.map((v) => rmsnorm(v, get(p + 'attn_norm.weight'), cfg.rms_norm_eps));
      const q = h.map((v) => matvec(get(p + 'q_proj.weight'), v, D, D));
      const k = h.map((v) => matvec(get(p + 'k_proj.weight'), v, KV * hd, D));
      const vv = h.map((v) => matvec(get(p + 'v_proj.weight'), v, KV * hd, D));
      q.forEach((u, t) => rope(u, t, H, hd, cfg.rope_theta));
      k.forEach((u, t) => rope(u, t, KV, hd, cfg.rope_theta));
      const att = x.map(() => new Float64Array(D));
      for (let hh = 0; hh < H; hh++) {
        const g = Math.floor(hh / (H / KV));
        for (let i = 0; i < T; i++) {
          const scores: number[] = [];
          for (let j = 0; j < T; j++) {
            if (keyMask && !keyMask[b * T + j]) {
              scores.push(-Infinity);
              continue;
            }
            let s = 0;
            for (let d = 0; d < hd; d++) s += q[i]![hh * hd + d]! * k[j]![g * hd + d]!;
            scores.push(s / Math.sqrt(hd));
          }
          const m = Math.max(...scores);
          const e = scores.map((s) => (s === -Infinity ? 0 : Math.exp(s - m)));
          const z = e.reduce((a, c) => a + c, 0);
          for (let d = 0; d < hd; d++) {
            let s = 0;
            for (let j = 0; j < T; j++) s += (e[j]! / z) * vv[j]![g * hd + d]!;
            att[i]![hh * hd + d] = s;
          }
        }
      }
      x = x.map((v, t) => {
        const o = matvec(get(p + 'attn_out.weight'), att[t]!, D, D);
        return v.map((a, i) => a + o[i]!);
      });
      x = x.map((v) => {
        const hn = rmsnorm(v, get(p + 'ff_norm.weight'), cfg.rms_norm_eps);
        const a = matvec(get(p + 'ff_proj.weight'), hn, F, D);
        const u = matvec(get(p + 'up_proj.weight'), hn, F, D);
        const gated = a.map((ai, i) => (ai / (1 + Math.exp(-ai))) * u[i]!);
        const o = matvec(get(p + 'ff_out.weight'), gated, D, F);
        return v.map((a2, i) => a2 + o[i]!);
      });
    }
    const head = cfg.weight_tying ? get('model.transformer.wte.weight') : get('model.transformer.ff_out.weight');
    for (let t = 0; t < T; t++) {
      const hn = rmsnorm(x[t]!, get('model.transformer.ln_f.weight'), cfg.rms_norm_eps);
      const logits = matvec(head, hn, E, D);
      for (let e = 0; e < E; e++) out[(b * T + t) * E + e] = cfg.scale_logits ? logits[e]! / Math.sqrt(D) : logits[e]!;
    }
  }
  return out;
}

/** The tensor names and shapes of a LLaDA checkpoint, from the spec. */
export function lladaShapes(cfg: RefConfig): [string, number[]][] {
  const D = cfg.d_model,
    KVd = cfg.n_kv_heads * (D / cfg.n_heads),
    F = cfg.mlp_hidden_size,
    E = cfg.embedding_size;
  const out: [string, number[]][] = [['model.transformer.wte.weight', [E, D]]];
  for (let l = 0; l < cfg.n_layers; l++) {
    const p = `model.transformer.blocks.${l}.`;
    out.push(
      [p + 'attn_norm.weight', [D]],
      [p + 'q_proj.weight', [D, D]],
      [p + 'k_proj.weight', [KVd, D]],
      [p + 'v_proj.weight', [KVd, D]],
      [p + 'attn_out.weight', [D, D]],
      [p + 'ff_norm.weight', [D]],
      [p + 'ff_proj.weight', [F, D]],
      [p + 'up_proj.weight', [F, D]],
      [p + 'ff_out.weight', [D, F]],
    );
  }
  out.push(['model.transformer.ln_f.weight', [D]]);
  if (!cfg.weight_tying) out.push(['model.transformer.ff_out.weight', [E, D]]);
  return out;
}
