import { mkdir } from 'node:fs/promises';
import { availableParallelism } from 'node:os';

import type { NativeModel, NativeTensorSpec } from 'diffpo/native';

import { resolveBackend, type BackendName } from './backend.js';
import { readCheckpointTensors, readConfig, readExtraTensors, planLoad, saveCheckpoint } from './checkpoint.js';
import { presetConfig, resolveConfig, type ConfigInput, type LLaDAConfig, type PresetName } from './config.js';
import { AbortError, CheckpointError, DisposedError, InvalidArgumentError, fromNativeError } from './errors.js';
import { buildMaskedDiffusionBatch, type MaskedDiffusionInput } from './losses.js';
import { Rng } from './rng.js';
import type { CompletionBatch, EstimatorOptions, EstimatorPlan } from './likelihood.js';
import { policyLoss, tokenLogProbs, type PolicyLossInput, type PolicyLossResult } from './policy.js';
import { generate, type GenerateOptions, type GenerateResult } from './sampler.js';
import { ThresholdHead } from './threshold-head.js';

export interface ModelOptions {
  /** Worker threads for the native kernels (default: all cores). */
  threads?: number;
  /** 'cpu' (default), 'cuda', 'cuda-fp32', 'auto' (CUDA when a device is present) or 'reference' (see BackendName). */
  backend?: BackendName;
}

export interface CreateOptions extends ModelOptions {
  /** Seed of the weight initialisation and of the model's own RNG (mask sampling). Default 0. */
  seed?: number;
  /** Standard deviation of the normal initialisation of weight matrices (norms start at 1). Default 0.02. */
  initStd?: number;
}

export interface LoadOptions extends ModelOptions {
  /** Seed of the model's RNG (mask sampling). Default 0. */
  seed?: number;
  signal?: AbortSignal;
}

export interface ForwardOptions {
  batch: number;
  seqLen: number;
  /** (batch*seqLen) 1 = a real token, 0 = padding that no position attends to. Default: all real. */
  attentionMask?: Uint8Array;
  /** (batch*seqLen) RoPE position of each token (default: its index t), e.g. to left-pad a prompt. */
  positions?: Int32Array;
  signal?: AbortSignal;
}

export interface SelectedLogProbsInput extends ForwardOptions {
  tokens: Int32Array;
  /** Flat indices b*seqLen + t of the tokens to score. */
  rows: Int32Array;
  /** The token whose log-probability is taken at each position. */
  targets: Int32Array;
  /** Loss weights: loss = -sum_s weights[s] * logp[s] (default all 1). */
  weights?: Float32Array;
}

export interface BackwardOption {
  /** Accumulate gradients of the loss into model.gradients() (default false). */
  backward?: boolean;
  signal?: AbortSignal;
}

export interface MaskedDiffusionResult {
  loss: number;
  /** Number of positions that were masked and scored. */
  maskedTokens: number;
  /** The mask ratio p used per sequence. */
  pMask: Float32Array;
}

function assertPositiveInt(name: string, v: unknown): asserts v is number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) throw new InvalidArgumentError(`${name} must be a positive integer, got ${String(v)}`);
}

/**
 * A masked-diffusion language model with LLaDA's architecture, running on the native core.
 * Heavy calls return Promises and run off the JS thread; calls on one model run one at a time in
 * the order they were made.
 */
export class DiffusionLM {
  /** The LLaDA config.json of this model. */
  readonly config: LLaDAConfig;
  /** Threads used by the native kernels. */
  readonly threads: number;
  /** The backend the model runs on ('auto' resolved). */
  readonly backend: 'cpu' | 'reference' | 'cuda' | 'cuda-fp32';
  /**
   * DiFFPO's learned sampler (§6) travelling with the weights: saved as `diffpo.` tensors in
   * model.safetensors, loaded by fromPretrained, used by `strategy: { kind: 'learned' }`.
   */
  samplerHead: ThresholdHead | null = null;
  readonly #native: NativeModel;
  readonly #specs: NativeTensorSpec[];
  #queue: Promise<unknown> = Promise.resolve();
  #disposed = false;
  #rng: Rng;

  private constructor(config: LLaDAConfig, options: ModelOptions, seed: number) {
    const threads = options.threads ?? availableParallelism();
    assertPositiveInt('threads', threads);
    if (!Number.isFinite(seed)) throw new InvalidArgumentError(`seed must be a finite number, got ${seed}`);
    this.config = config;
    this.threads = threads;
    try {
      const { addon, backend } = resolveBackend(options.backend);
      this.#native = new addon.NativeModel(config, threads, backend);
      this.backend = backend;
    } catch (err) {
      throw fromNativeError(err);
    }
    this.#specs = this.#native.tensors();
    this.#rng = new Rng(seed);
  }

  /** A randomly initialised model from a config (or a preset name: 'tiny', 'small', 'medium'). */
  static create(config: ConfigInput | PresetName, options: CreateOptions = {}): DiffusionLM {
    const cfg = typeof config === 'string' ? presetConfig(config) : resolveConfig(config);
    const seed = options.seed ?? 0;
    const std = options.initStd ?? 0.02;
    if (!(std >= 0 && Number.isFinite(std))) throw new InvalidArgumentError(`initStd must be a finite number >= 0, got ${std}`);
    const model = new DiffusionLM(cfg, options, seed);
    model.#native.initRandom(seed, std);
    return model;
  }

  /** Loads a LLaDA-layout checkpoint directory (config.json and model.safetensors or a sharded index). */
  static async fromPretrained(dir: string, options: LoadOptions = {}): Promise<DiffusionLM> {
    if (options.signal?.aborted) throw new AbortError();
    const config = await readConfig(dir);
    const entries = await readCheckpointTensors(dir);
    const model = new DiffusionLM(config, options, options.seed ?? 0);
    try {
      const reads = planLoad(dir, entries, model.#specs);
      await model.#run(options.signal, () => model.#native.loadTensors(reads));
      model.samplerHead = ThresholdHead.fromTensors(await readExtraTensors(entries), dir);
      if (model.samplerHead && model.samplerHead.dModel !== config.d_model)
        throw new CheckpointError(`${dir}: the sampler head reads ${model.samplerHead.dModel} features but d_model is ${config.d_model}`);
    } catch (err) {
      model.dispose();
      throw err;
    }
    return model;
  }

  /** Saves config.json and model.safetensors (F32 or BF16, rounded to nearest even; the sampler head in float64) into dir. */
  async save(dir: string, options: { dtype?: 'f32' | 'bf16' } = {}): Promise<void> {
    const dtype = options.dtype ?? 'f32';
    if (dtype !== 'f32' && dtype !== 'bf16') throw new InvalidArgumentError(`dtype must be 'f32' or 'bf16', got ${String(dtype)}`);
    await mkdir(dir, { recursive: true });
    const extras = this.samplerHead?.toTensors() ?? [];
    await this.#run(undefined, () => saveCheckpoint(dir, this.config, this.#native, this.#specs, dtype, extras));
  }

  /** Total number of parameters. */
  get numParameters(): number {
    return this.#specs.reduce((a, s) => a + s.numel, 0);
  }

  /** The tensors, keyed by their HF names, as zero-copy views of the native parameters. */
  parameters(): Map<string, Float32Array> {
    this.#live();
    return this.#views(this.#native.paramBuffer());
  }

  /** The gradients, keyed like parameters(), as zero-copy views (they accumulate until zeroGrad()). */
  gradients(): Map<string, Float32Array> {
    this.#live();
    return this.#views(this.#native.gradBuffer());
  }

  /** @internal AdamW's first and second moments as flat views (for training checkpoints). */
  _optimizerState(): [Float32Array, Float32Array] {
    this.#live();
    const [m, v] = this.#native.optimizerBuffers();
    return [new Float32Array(m), new Float32Array(v)];
  }

  /** Sets every gradient to zero. */
  async zeroGrad(): Promise<void> {
    await this.#run(undefined, async () => this.#native.zeroGrad());
  }

  /** Logits of shape (batch, seqLen, embedding_size), row-major. */
  async logits(tokens: Int32Array, options: ForwardOptions): Promise<Float32Array> {
    const { batch, seqLen } = options;
    this.#checkTokens(tokens, batch, seqLen, options.attentionMask, options.positions);
    const out = new Float32Array(batch * seqLen * this.config.embedding_size);
    await this.#run(options.signal, () =>
      this.#native.logits(tokens, options.attentionMask ?? null, options.positions ?? null, batch, seqLen, out),
    );
    return out;
  }

  /** Final hidden states (after the last RMSNorm), (batch, seqLen, d_model) row-major. */
  async hiddenStates(tokens: Int32Array, options: ForwardOptions): Promise<Float32Array> {
    const { batch, seqLen } = options;
    this.#checkTokens(tokens, batch, seqLen, options.attentionMask, options.positions);
    const out = new Float32Array(batch * seqLen * this.config.d_model);
    await this.#run(options.signal, () => this.#native.hidden(tokens, options.attentionMask ?? null, options.positions ?? null, batch, seqLen, out));
    return out;
  }

  /**
   * Log-probabilities of chosen tokens at chosen positions in one forward pass, and optionally the
   * gradient of loss = -sum_s weights[s] * logp[s]. Every likelihood estimator is built on this.
   */
  async selectedLogProbs(input: SelectedLogProbsInput, options: BackwardOption = {}): Promise<{ loss: number; logProbs: Float32Array }> {
    const { tokens, batch, seqLen, rows, targets } = input;
    this.#checkTokens(tokens, batch, seqLen, input.attentionMask, input.positions);
    if (!(rows instanceof Int32Array) || !(targets instanceof Int32Array))
      throw new InvalidArgumentError('rows and targets must be Int32Arrays');
    if (rows.length !== targets.length) throw new InvalidArgumentError(`rows.length (${rows.length}) != targets.length (${targets.length})`);
    const weights = input.weights ?? new Float32Array(rows.length).fill(1);
    if (!(weights instanceof Float32Array) || weights.length !== rows.length)
      throw new InvalidArgumentError(`weights must be a Float32Array of length ${rows.length}`);
    for (let s = 0; s < rows.length; s++) {
      if (rows[s]! < 0 || rows[s]! >= batch * seqLen)
        throw new InvalidArgumentError(`rows[${s}] = ${rows[s]} is outside [0, batch*seqLen=${batch * seqLen})`);
      if (targets[s]! < 0 || targets[s]! >= this.config.vocab_size)
        throw new InvalidArgumentError(`targets[${s}] = ${targets[s]} is outside [0, vocab_size=${this.config.vocab_size})`);
      if (!Number.isFinite(weights[s]!)) throw new InvalidArgumentError(`weights[${s}] is not finite`);
    }
    const logProbs = new Float32Array(rows.length);
    const loss = await this.#run(options.signal, () =>
      this.#native.logprobLoss(tokens, input.attentionMask ?? null, input.positions ?? null, batch, seqLen, rows, targets, weights, logProbs, options.backward ?? false),
    );
    return { loss, logProbs };
  }

  /**
   * LLaDA's masked-diffusion loss (ALGORITHMS.md §2), 'pretrain' or 'sft' normalisation. Masks and
   * ratios are drawn from the model's seeded RNG unless given (`mask` needs `pMask`).
   */
  async maskedDiffusionLoss(input: MaskedDiffusionInput, options: BackwardOption = {}): Promise<MaskedDiffusionResult> {
    this.#checkTokens(input.tokens, input.batch, input.seqLen, input.attentionMask);
    const rng = input.seed !== undefined ? new Rng(input.seed) : this.#rng;
    const b = buildMaskedDiffusionBatch(input, this.config, rng);
    const { loss } = await this.selectedLogProbs(
      { tokens: b.noisy, batch: input.batch, seqLen: input.seqLen, attentionMask: input.attentionMask, positions: input.positions, rows: b.rows, targets: b.targets, weights: b.weights },
      options,
    );
    return { loss, maskedTokens: b.rows.length, pMask: b.pMask };
  }

  /**
   * Decodes a completion for every prompt (different lengths allowed: prompts are left-padded with
   * their positions shifted, so each sees what it would alone), with the given strategy; see
   * GenerateOptions. Returns the tokens, NFE per sequence and the trajectory (decode steps and
   * behaviour log-probabilities).
   */
  generate(prompts: Int32Array[], options: GenerateOptions): Promise<GenerateResult> {
    return generate(this, (signal, fn) => this._run(signal, fn), prompts, options);
  }

  /**
   * Per-token log-likelihood estimates (batch x genLength) of completions: 'mean-field' (d1),
   * 'two-stage' (DiFFPO), 'trajectory' (exact, TraceRL) or 'elbo' (LLaDA's Monte Carlo bound), with the
   * plan of random choices (prompt masks, tau, ELBO masks) to reuse for the policy loss.
   */
  tokenLogProbs(batch: CompletionBatch, options: EstimatorOptions): Promise<{ logProbs: Float32Array; plan: EstimatorPlan }> {
    return tokenLogProbs(this, batch, options);
  }

  /** The RL objective (clipped ratio, truncated importance weight, k3 KL); with backward, its gradient. */
  policyLoss(input: PolicyLossInput, plan: EstimatorPlan, options: { backward?: boolean; maxTokensPerForward?: number; signal?: AbortSignal } = {}): Promise<PolicyLossResult> {
    return policyLoss(this, input, plan, options);
  }

  /** Frees the native model (after the call in flight, if any). Views from parameters() stay valid. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#native.dispose();
  }

  get disposed(): boolean {
    return this.#disposed;
  }

  /** @internal Runs a native call on this model's queue (used by the optimiser). */
  _run<T>(signal: AbortSignal | undefined, fn: (m: NativeModel) => Promise<T>): Promise<T> {
    return this.#run(signal, () => fn(this.#native));
  }

  /** @internal The model's RNG (its state belongs in training checkpoints). */
  get _rng(): Rng {
    return this.#rng;
  }

  #live(): void {
    if (this.#disposed) throw new DisposedError();
  }

  #views(buffer: ArrayBuffer): Map<string, Float32Array> {
    const map = new Map<string, Float32Array>();
    for (const s of this.#specs) map.set(s.name, new Float32Array(buffer, s.offset * 4, s.numel));
    return map;
  }

  #checkTokens(tokens: Int32Array, batch: number, seqLen: number, attentionMask?: Uint8Array, positions?: Int32Array): void {
    if (!(tokens instanceof Int32Array)) throw new InvalidArgumentError('tokens must be an Int32Array');
    assertPositiveInt('batch', batch);
    assertPositiveInt('seqLen', seqLen);
    if (tokens.length !== batch * seqLen)
      throw new InvalidArgumentError(`tokens.length (${tokens.length}) != batch * seqLen (${batch} * ${seqLen} = ${batch * seqLen})`);
    if (seqLen > this.config.max_sequence_length)
      throw new InvalidArgumentError(`seqLen ${seqLen} exceeds config.max_sequence_length ${this.config.max_sequence_length}`);
    const V = this.config.vocab_size;
    for (let i = 0; i < tokens.length; i++) {
      const t = tokens[i]!;
      if (t < 0 || t >= V) throw new InvalidArgumentError(`token id ${t} at index ${i} is outside [0, vocab_size=${V})`);
    }
    if (attentionMask !== undefined) {
      if (!(attentionMask instanceof Uint8Array) || attentionMask.length !== tokens.length)
        throw new InvalidArgumentError(`attentionMask must be a Uint8Array of length ${tokens.length}`);
      for (let b = 0; b < batch; b++)
        if (!attentionMask.subarray(b * seqLen, (b + 1) * seqLen).some((v) => v !== 0))
          throw new InvalidArgumentError(`attentionMask hides every token of sequence ${b}`);
    }
    if (positions !== undefined) {
      if (!(positions instanceof Int32Array) || positions.length !== tokens.length)
        throw new InvalidArgumentError(`positions must be an Int32Array of length ${tokens.length}`);
      const bad = positions.findIndex((p) => p < 0 || p > this.config.max_sequence_length);
      if (bad >= 0) throw new InvalidArgumentError(`positions[${bad}] = ${positions[bad]} is outside [0, max_sequence_length]`);
    }
  }

  #run<T>(signal: AbortSignal | undefined, fn: () => Promise<T>): Promise<T> {
    const task = async (): Promise<T> => {
      this.#live();
      if (signal?.aborted) throw new AbortError();
      const onAbort = () => this.#native.cancel();
      signal?.addEventListener('abort', onAbort, { once: true });
      try {
        return await fn();
      } catch (err) {
        throw fromNativeError(err);
      } finally {
        signal?.removeEventListener('abort', onAbort);
      }
    };
    const result = this.#queue.then(task, task);
    this.#queue = result.catch(() => undefined);
    return result;
  }
}
