import { InvalidArgumentError } from '../core/errors.js';
import { objectArg, positiveInt } from '../core/checks.js';
import type { LLaDAConfig } from './config.js';
import { D1_LORA_TARGETS, resolveLora, type LoraTarget } from './lora.js';
import { parameterCount } from './model.js';

export interface MemoryPlanOptions {
  /** The base weights: 'f32' (full fine-tuning needs it) or 'bf16' (BF16-resident; with LoRA only). Default 'f32'. */
  weights?: 'f32' | 'bf16';
  /** LoRA adapters (rank, targets: default d1's) instead of training every weight. */
  lora?: { rank: number; targets?: LoraTarget[]; dropout?: number } | null;
  /** Gradient checkpointing ('layer': one layer's activations instead of all). Default 'none'. */
  checkpointing?: 'none' | 'layer';
  /** One training forward's shape: sequences, and tokens per sequence (prompt and completion). */
  batch: number;
  seqLen: number;
  /** Positions scored in that forward (default every one: the most a likelihood pass asks). */
  scored?: number;
  /** AdamW's two moments per trainable float, or none (evaluation). Default 'adamw'. */
  optimizer?: 'adamw' | 'none';
  /** Full fine-tuning with a KL term keeps a float32 copy of the starting weights (LoRA: the base itself). Default false. */
  reference?: boolean;
  /** A float32 moving average of the weights (weightAverage > 0). Default false. */
  weightAverage?: boolean;
  /** Where attention keeps its backward state: 'cpu' (the probabilities, B*H*T*T) or 'cuda' (row log-sum-exps). Default 'cpu'. */
  backend?: 'cpu' | 'cuda';
  /** CPU worker threads (the attention backward's scratch is per thread). Default 1. */
  threads?: number;
}

/** Bytes by category; `total` is their sum. */
export interface MemoryPlan {
  weights: number;
  gradients: number;
  optimizer: number;
  reference: number;
  average: number;
  /** The activation arena one training forward and backward allocates (native Model::plan, with its 25% growth slack). */
  activations: number;
  /** Per-call buffers outside the arena: the LM head's and attention backward's scratch (CPU), a BF16 head widened to float32 (CUDA). */
  scratch: number;
  total: number;
  /** The trainable floats (every weight, or the adapters). */
  trainable: number;
}

/** Floats an arena reservation takes (64-byte aligned). */
const slot = (n: number) => Math.ceil(n / 16) * 16;

/** Floats of the adapters of a config: per block and target, A (r, I) and B (O, r). */
export function loraParameterCount(c: LLaDAConfig, rank: number, targets: readonly LoraTarget[]): number {
  const D = c.d_model,
    F = c.mlp_hidden_size,
    KVd = c.n_kv_heads * (D / c.n_heads);
  const dims: Record<LoraTarget, [number, number]> = { q_proj: [D, D], k_proj: [D, KVd], v_proj: [D, KVd], attn_out: [D, D], ff_proj: [D, F], up_proj: [D, F], ff_out: [F, D] };
  return c.n_layers * targets.reduce((a, t) => a + rank * (dims[t][0] + dims[t][1]), 0);
}

/**
 * The memory one training step holds, by arithmetic on the config (nothing is allocated): weights,
 * gradients, optimizer moments, the reference copy, the activation arena of a forward and backward of
 * `batch` x `seqLen` tokens as the native core plans it, and its scratch. Rollouts (the decoder's
 * canvas and KV caches) come on top when a step generates.
 */
export function memoryPlan(config: LLaDAConfig, options: MemoryPlanOptions): MemoryPlan {
  const o = objectArg('memoryPlan options', options);
  const B = positiveInt('batch', o.batch),
    T = positiveInt('seqLen', o.seqLen);
  const weights = o.weights ?? 'f32';
  if (weights !== 'f32' && weights !== 'bf16') throw new InvalidArgumentError(`weights must be 'f32' or 'bf16', got ${String(weights)}`);
  const lora = o.lora ? resolveLora({ rank: o.lora.rank, targets: o.lora.targets ?? D1_LORA_TARGETS, dropout: o.lora.dropout }) : null;
  if (weights === 'bf16' && !lora) throw new InvalidArgumentError("BF16-resident weights train only with LoRA (full fine-tuning needs float32 weights): give lora, or weights 'f32'");
  const checkpointing = o.checkpointing ?? 'none';
  if (checkpointing !== 'none' && checkpointing !== 'layer') throw new InvalidArgumentError(`checkpointing must be 'none' or 'layer', got ${String(checkpointing)}`);
  const backend = o.backend ?? 'cpu';
  if (backend !== 'cpu' && backend !== 'cuda') throw new InvalidArgumentError(`backend must be 'cpu' or 'cuda', got ${String(backend)}`);
  const threads = positiveInt('threads', o.threads ?? 1);
  const params = parameterCount(config);
  const trainable = lora ? loraParameterCount(config, lora.rank, lora.targets) : params;
  const D = config.d_model,
    F = config.mlp_hidden_size,
    H = config.n_heads,
    E = config.embedding_size,
    L = config.n_layers;
  const QKV = D + 2 * config.n_kv_heads * (D / H);
  const N = B * T,
    S = positiveInt('scored', o.scored ?? N);
  // Model::plan for a training call, reservation by reservation
  const sets = checkpointing === 'layer' ? 1 : L;
  const att = backend === 'cpu' ? B * H * T * T : B * H * T + B * T;
  const perLayer = [N * D, N, N * D, N * QKV, att, N * D, N, N * D, N * 2 * F, N * F].reduce((a, n) => a + slot(n), 0);
  let floats = (L + 1) * slot(N * D) + sets * perLayer + slot(N) + slot(N * D) + slot(S);
  floats += [N * D, N * D, N * QKV, N * D, N * 2 * F, N * F, N * D].reduce((a, n) => a + slot(n), 0) + slot(S);
  if (lora) floats += sets * lora.targets.length * slot(N * lora.rank) + slot(N * Math.max(D, F)) + slot(N * lora.rank);
  if (lora && lora.dropout > 0) floats += slot(N * Math.max(D, F)); // the dropped input
  const arena = floats + Math.floor(floats / 4);
  // CpuBackend::scratch grows to the largest of: the LM head's chunk, attention backward's per-thread T x T, rmsnorm's partial sums
  const chunk = Math.max(1, Math.min(S, Math.floor((4 << 20) / E)));
  const scratch = backend === 'cpu' ? Math.max(chunk * (2 * D + E), threads * T * T, Math.ceil(N / 32) * D) : 0;
  const wideHead = weights === 'bf16' && backend === 'cuda' ? E * D : 0; // the CUDA backend widens a BF16 head per call (the CPU's GEMMs read BF16)
  const plan = {
    weights: params * (weights === 'bf16' ? 2 : 4),
    gradients: trainable * 4,
    optimizer: (o.optimizer ?? 'adamw') === 'adamw' ? 2 * trainable * 4 : 0,
    reference: o.reference && !lora ? params * 4 : 0,
    average: o.weightAverage ? trainable * 4 : 0,
    activations: arena * 4,
    scratch: (scratch + wideHead) * 4,
    trainable,
  };
  return { ...plan, total: plan.weights + plan.gradients + plan.optimizer + plan.reference + plan.average + plan.activations + plan.scratch };
}

/**
 * The most sequences of `seqLen` tokens one training forward can take within `limitBytes` (at most
 * `maxBatch`), or a typed error saying what would fit when not even one does.
 */
export function fitBatch(config: LLaDAConfig, options: Omit<MemoryPlanOptions, 'batch'> & { limitBytes: number; maxBatch: number }): { batch: number; plan: MemoryPlan } {
  const { limitBytes, maxBatch } = options;
  if (!(limitBytes > 0)) throw new InvalidArgumentError(`the memory limit must be a number of bytes > 0, got ${String(limitBytes)}`);
  const at = (batch: number) => memoryPlan(config, { ...options, batch });
  const one = at(1);
  if (one.total > limitBytes) {
    const gib = (b: number) => `${(b / 2 ** 30).toFixed(1)} GiB`;
    const hints = [
      !options.lora && `LoRA (rank 128: ${gib(memoryPlan(config, { ...options, batch: 1, lora: { rank: 128 }, weights: 'bf16', reference: false }).total)})`,
      options.checkpointing !== 'layer' && `checkpointing 'layer' (${gib(memoryPlan(config, { ...options, batch: 1, checkpointing: 'layer' }).total)})`,
    ].filter(Boolean);
    throw new InvalidArgumentError(
      `one sequence of ${options.seqLen} tokens needs ${gib(one.total)} (weights ${gib(one.weights)}, gradients ${gib(one.gradients)}, optimizer ${gib(one.optimizer)}, reference ${gib(one.reference)}, activations ${gib(one.activations)}), over the limit of ${gib(limitBytes)}${hints.length ? `; with ${hints.join(', or ')}` : ''}`,
    );
  }
  let lo = 1,
    hi = Math.max(1, maxBatch);
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (at(mid).total <= limitBytes) lo = mid;
    else hi = mid - 1;
  }
  return { batch: lo, plan: at(lo) };
}
