import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { availableParallelism, totalmem } from 'node:os';
import { join, resolve } from 'node:path';

import native, { type NativeAdamWStep, type NativeDecoderOptions, type NativeModel, type NativeTensorSpec } from 'diffpo/native';

import { resolveBackend, type BackendName } from './backend.js';
import { cudaDevice } from './collective.js';
import { checkSignal, objectArg, positiveInt } from '../core/checks.js';
import { AbortError, CheckpointError, ConfigError, DisposedError, InvalidArgumentError, fromNativeError } from '../core/errors.js';
import { Rng } from '../core/rng.js';
import { readCheckpointTensors, readConfig, readExtraTensors, planLoad, refuseInterruptedCommit, saveCheckpoint, type ExtraTensor } from './checkpoint.js';
import { presetConfig, resolveConfig, type ConfigInput, type LLaDAConfig, type PresetName } from './config.js';
import { ADAPTER_CONFIG, readAdapterConfig, readAdapterTensors, resolveAdapterBase, resolveLora, targetMask, writeAdapter, type LoraConfig, type LoraOptions } from './lora.js';
import { readSafetensorsHeader } from './safetensors.js';

/**
 * How the weights are held: 'f32' (float32, trainable) or 'bf16' (BF16-resident: half the memory,
 * inference only; the GEMMs widen exactly while packing). Loading also takes 'auto' (LoadOptions.dtype).
 */
export type WeightsDtype = 'f32' | 'bf16';

export interface ModelOptions {
  /**
   * Gradient checkpointing: 'layer' keeps only each layer's input in a training forward and
   * recomputes the layer in the backward (about one more forward's work; activations of one layer
   * instead of all; gradients bit-identical). Default 'none'. Also settable later (model.checkpointing).
   */
  checkpointing?: 'none' | 'layer';
  /** Worker threads for the native kernels (default: all cores). */
  threads?: number;
  /** 'cpu' (default), 'cuda', 'cuda-fp32', 'auto' (CUDA when a device is present) or 'reference' (see BackendName). */
  backend?: BackendName;
  /**
   * The CUDA device of a cuda backend. Default: the process's local rank under mpirun modulo the
   * devices (each process of a job on one machine its own GPU), else 0.
   */
  device?: number;
}

export interface CreateOptions extends ModelOptions {
  /** 'f32' (default) or 'bf16' (inference only; the random weights rounded to BF16). */
  dtype?: WeightsDtype;
  /** Seed of the weight initialisation and of the model's own RNG (mask sampling). Default 0. */
  seed?: number;
  /** Standard deviation of the normal initialisation of weight matrices (norms start at 1). Default 0.02. */
  initStd?: number;
}

export interface LoadOptions extends ModelOptions {
  /**
   * 'f32' (default: float32 weights, what training needs), 'bf16' (BF16-resident, inference only;
   * F32 checkpoints rounded to nearest even) or 'auto' (the checkpoint's own: BF16 when its matrices
   * are BF16, as LLaDA-8B-Instruct ships; what eval, generate and TextDiffusion use).
   */
  dtype?: WeightsDtype | 'auto';
  /** Seed of the model's RNG (mask sampling). Default 0. */
  seed?: number;
  signal?: AbortSignal;
  /**
   * Loading an adapter folder (adapter_config.json, PEFT's LoRA): the base model folder to put it on,
   * instead of the config's base_model_name_or_path (a path: absolute, else relative to the adapter
   * folder, else to the working directory). An adapter folder's dtype defaults to 'auto'.
   */
  baseModel?: string;
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
  /** With LoRA adapters: false scores the base model (the reference policy; no gradient). Default true. */
  adapters?: boolean;
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

/** Library tensors that travel with the weights (names starting with `diffpo.`, float64), e.g. a learned sampler head. */
export interface ExtraTensorSource {
  toTensors(): ExtraTensor[];
}

/** The extras a checkpoint held, as read (the layer that owns them parses them on first use). */
class LoadedExtras implements ExtraTensorSource {
  constructor(readonly tensors: Map<string, ExtraTensor>) {}
  toTensors(): ExtraTensor[] {
    return [...this.tensors.values()];
  }
}

/** More worker threads than any machine has cores only costs memory (and past int32, wraps). */
const MAX_THREADS = 1024;

/** The decoder options of the native core (validated by the decoding layer). */
export type DecoderOptions = NativeDecoderOptions;

/** A native decoder's state: its canvas, per-sequence progress and trajectory. Free it when done. */
export interface DecoderSession {
  /** One forward and selection; true when every sequence is done. */
  step(signal?: AbortSignal): Promise<boolean>;
  /**
   * Before any step: the first forward, and from it the learned sampler's confidence features (B x 8,
   * see ThresholdHead); the first step then selects from this forward instead of running one (no
   * extra NFE). Set the thresholds they choose with setThresholds.
   */
  firstForwardFeatures(signal?: AbortSignal): Promise<Float32Array>;
  /** One threshold (or gamma) per sequence for the steps to come. */
  setThresholds(threshold: Float32Array): Promise<void>;
  /** What the last step unmasked. */
  trace(): Promise<{ sequence: Int32Array; position: Int32Array; token: Int32Array; confidence: Float32Array }>;
  /** Tokens, NFE, decode steps, behaviour log-probs and budget flags so far. */
  result(): Promise<{ tokens: Int32Array; nfe: Int32Array; decodeStep: Int32Array; behaviourLogProb: Float32Array; hitBudget: Uint8Array }>;
  free(): Promise<void>;
}

/** AdamW's first and second moments for one optimizer, in the model's memory (zero at first). */
export interface OptimizerMoments {
  readonly m: Float32Array;
  readonly v: Float32Array;
}

/** One AdamW update's hyperparameters (see training/optimizer.ts). */
export type AdamWUpdate = NativeAdamWStep;

/**
 * The tensors of a config (names, shapes, offsets in the parameter block), allocating nothing; a
 * config whose parameters alone exceed this machine's memory is a ConfigError here, before any
 * allocation (gradients and optimizer moments would triple it).
 */
export function tensorLayout(config: LLaDAConfig, dtype: WeightsDtype = 'f32'): NativeTensorSpec[] {
  checkFitsMemory(config, dtype);
  try {
    return native.tensorLayout(config);
  } catch (err) {
    throw fromNativeError(err);
  }
}

/**
 * A ConfigError when a config's parameters alone exceed this machine's memory, from arithmetic on the
 * config: a config of a million layers is refused before a million layers' worth of tensor
 * descriptions exist.
 */
function checkFitsMemory(config: LLaDAConfig, dtype: WeightsDtype): void {
  const bytes = parameterCount(config) * (dtype === 'bf16' ? 2 : 4);
  if (bytes > totalmem())
    throw new ConfigError('n_layers', `this config has ${(bytes / 2 ** 30).toFixed(1)} GiB of ${dtype === 'bf16' ? 'BF16' : 'float32'} parameters, more than this machine's ${(totalmem() / 2 ** 30).toFixed(1)} GiB of memory`);
}

/** The number of parameters of a config, by arithmetic alone (what tensorLayout would sum). */
export function parameterCount(c: LLaDAConfig): number {
  const D = c.d_model,
    F = c.mlp_hidden_size,
    E = c.embedding_size;
  const KVd = c.n_kv_heads * (D / c.n_heads);
  return E * D + c.n_layers * (2 * D + 2 * D * D + 2 * KVd * D + 3 * F * D) + D + (c.weight_tying ? 0 : E * D);
}

/** A private copy of a typed array (anything else is returned as is, for the checks to reject). */
function own<T>(a: T): T {
  if (!ArrayBuffer.isView(a) || a instanceof DataView) return a;
  try {
    return (a as unknown as Int32Array).slice() as unknown as T;
  } catch {
    // slice() throws a plain TypeError only for a view of a detached (transferred) buffer
    throw new InvalidArgumentError(`a ${a.constructor.name} argument is a view of a detached ArrayBuffer (transferred elsewhere): pass a live array`);
  }
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
  /** How the weights are held: 'f32' (trainable) or 'bf16' (inference only). */
  readonly dtype: WeightsDtype;
  /**
   * Library tensors saved with the weights (in model.safetensors, after the model's tensors): what
   * fromPretrained found, or a source set by a layer above (the learned sampler head).
   */
  extras: ExtraTensorSource | null = null;
  /** The folder the weights were loaded from (fromPretrained), which an adapter saved from this model names as its base. */
  sourceDir: string | null = null;
  readonly #native: NativeModel;
  readonly #specs: NativeTensorSpec[];
  #lora: LoraConfig | null = null;
  #loraSpecs: NativeTensorSpec[] = [];
  #queue: Promise<unknown> = Promise.resolve();
  #disposed = false;
  #rng: Rng;

  private constructor(config: LLaDAConfig, options: ModelOptions, seed: number, dtype: WeightsDtype = 'f32') {
    const threads = positiveInt('threads', options.threads ?? availableParallelism());
    if (threads > MAX_THREADS) throw new InvalidArgumentError(`threads must be at most ${MAX_THREADS}, got ${threads}`);
    if (!Number.isFinite(seed)) throw new InvalidArgumentError(`seed must be a finite number, got ${seed}`);
    this.config = config;
    this.threads = threads;
    if (dtype !== 'f32' && dtype !== 'bf16') throw new InvalidArgumentError(`dtype must be 'f32' or 'bf16', got ${String(dtype)}`);
    const checkpointing = options.checkpointing ?? 'none';
    if (checkpointing !== 'none' && checkpointing !== 'layer') throw new InvalidArgumentError(`checkpointing must be 'none' or 'layer', got ${String(checkpointing)}`);
    this.dtype = dtype;
    tensorLayout(config, dtype); // checked before anything is allocated
    try {
      const { addon, backend } = resolveBackend(options.backend);
      const device = backend.startsWith('cuda') ? cudaDevice(options.device, addon.backendInfo().devices) : 0;
      this.#native = new addon.NativeModel(config, threads, backend, dtype, device);
      this.backend = backend;
    } catch (err) {
      throw fromNativeError(err);
    }
    this.#specs = this.#native.tensors();
    this.#rng = new Rng(seed);
    this.checkpointing = checkpointing;
  }

  #checkpointing: 'none' | 'layer' = 'none';

  /** Gradient checkpointing ('none' or 'layer'; see ModelOptions.checkpointing). */
  get checkpointing(): 'none' | 'layer' {
    return this.#checkpointing;
  }

  set checkpointing(mode: 'none' | 'layer') {
    if (mode !== 'none' && mode !== 'layer') throw new InvalidArgumentError(`checkpointing must be 'none' or 'layer', got ${String(mode)}`);
    this.#live();
    try {
      this.#native.setCheckpointing(mode === 'layer');
    } catch (err) {
      throw fromNativeError(err);
    }
    this.#checkpointing = mode;
  }

  /** Bytes of the activation arena as the last call planned it (what a forward or backward holds besides the weights). */
  get activationBytes(): number {
    this.#live();
    return this.#native.arenaBytes();
  }

  /** A randomly initialised model from a config (or a preset name: 'tiny', 'small', 'medium'). */
  static create(config: ConfigInput | PresetName, options: CreateOptions = {}): DiffusionLM {
    const cfg = typeof config === 'string' ? presetConfig(config) : resolveConfig(config);
    const seed = options.seed ?? 0;
    const std = options.initStd ?? 0.02;
    if (!(std >= 0 && std <= 1)) throw new InvalidArgumentError(`initStd must be a number in [0, 1], got ${std}`); // larger overflows RMSNorm's squares
    const model = new DiffusionLM(cfg, options, seed, options.dtype ?? 'f32');
    if (std > 0) model.#native.initRandom(seed, std); // at 0 the fresh (zero) pages stay untouched
    return model;
  }

  /**
   * Loads a LLaDA-layout checkpoint directory (config.json and model.safetensors or a sharded index),
   * or an adapter folder (PEFT's adapter_config.json and adapter_model.safetensors): its base, then
   * the adapters on it.
   */
  static async fromPretrained(dir: string, options: LoadOptions = {}): Promise<DiffusionLM> {
    if (options.signal?.aborted) throw new AbortError();
    if (typeof dir === 'string' && existsSync(join(dir, ADAPTER_CONFIG))) return DiffusionLM.#fromAdapter(dir, options);
    const config = await readConfig(dir);
    const requested = options.dtype ?? 'f32';
    if (requested !== 'f32' && requested !== 'bf16' && requested !== 'auto')
      throw new InvalidArgumentError(`dtype must be 'f32', 'bf16' or 'auto', got ${String(requested)}`);
    checkFitsMemory(config, requested === 'f32' ? 'f32' : 'bf16');
    await refuseInterruptedCommit(dir);
    const entries = await readCheckpointTensors(dir);
    // a config that names more blocks than the files hold fails on the first missing one, before any layout
    for (let l = 0; l < config.n_layers; l++) {
      const name = `model.transformer.blocks.${l}.attn_norm.weight`;
      if (!entries.has(name)) throw new CheckpointError(`${dir}: missing tensor '${name}'`);
    }
    const specs = tensorLayout(config, requested === 'f32' ? 'f32' : 'bf16'); // the model's own check follows once 'auto' is resolved
    const reads = planLoad(dir, entries, specs); // every tensor found, with its shape, before anything is allocated
    const dtype = requested !== 'auto' ? requested : specs.every((s) => s.shape.length < 2 || entries.get(s.name)!.dtype === 'BF16') ? 'bf16' : 'f32';
    const model = new DiffusionLM(config, options, options.seed ?? 0, dtype);
    try {
      // the native read refuses a NaN or infinite weight by name (it would make every logit non-finite)
      await model.#run(options.signal, () => model.#native.loadTensors(reads));
      const extras = await readExtraTensors(entries);
      if (extras.size > 0) model.extras = new LoadedExtras(extras);
    } catch (err) {
      model.dispose();
      throw err;
    }
    model.sourceDir = resolve(dir);
    return model;
  }

  static async #fromAdapter(dir: string, options: LoadOptions): Promise<DiffusionLM> {
    const { lora, baseModel } = await readAdapterConfig(dir);
    const base = resolveAdapterBase(dir, options.baseModel ?? baseModel);
    const model = await DiffusionLM.fromPretrained(base, { ...options, dtype: options.dtype ?? 'auto' });
    try {
      await model.addLora(lora);
      const { tensors, file } = await readAdapterTensors(dir, model.#loraSpecs);
      for (const [name, view] of model.parameters()) view.set(tensors.get(name)!);
      const extras = await readExtraTensors((await readSafetensorsHeader(file)).tensors);
      if (extras.size > 0) model.extras = new LoadedExtras(extras);
    } catch (err) {
      model.dispose();
      throw err;
    }
    return model;
  }

  /**
   * Adds LoRA adapters (PEFT's LoRA: each target W of every block computes W x + (alpha/r) B A x, A
   * initialised as PEFT does and B at zero, so the model is unchanged until it trains; with `dropout`,
   * x is PEFT's lora_dropout of the input in forwards that compute gradients, see seedDropout). From then on
   * the base is frozen and may be BF16-resident: parameters(), gradients(), the optimizer's moments
   * and adamwStep hold the adapters alone, and selectedLogProbs({ adapters: false }) scores the base
   * model (the reference policy without a copy).
   */
  async addLora(options: LoraOptions): Promise<LoraConfig> {
    const lora = resolveLora(options);
    const seed = options.seed ?? 0;
    if (!Number.isSafeInteger(seed) || seed < 0) throw new InvalidArgumentError(`LoRA seed must be a non-negative integer, got ${String(seed)}`);
    if (this.#lora) throw new InvalidArgumentError('this model already has LoRA adapters (mergeAdapters() folds them in first)');
    await this.#run(undefined, async () => {
      this.#native.addLora({ rank: lora.rank, alpha: lora.alpha, targets: targetMask(lora.targets), dropout: lora.dropout }, seed);
      this.#loraSpecs = this.#native.loraTensors();
      this.#lora = lora;
    });
    return lora;
  }

  /**
   * Keys LoRA dropout's masks from here on: a forward with a backward drops each adapter's input
   * elements with probability `lora.dropout` (scaling the rest by 1 / (1 - dropout), as PyTorch's
   * dropout in training mode), by a mask that is a function of (seed; layer and target, training
   * forward since this call, row, column); the backward remakes it. Forwards without a backward
   * (decoding, scoring, the reference) never drop. addLora seeds it with its own seed; a trainer
   * seeds each step (so that a resumed run draws the same masks). Queued behind the calls in flight.
   */
  async seedDropout(seed: number): Promise<void> {
    if (!Number.isSafeInteger(seed) || seed < 0) throw new InvalidArgumentError(`dropout seed must be a non-negative integer, got ${String(seed)}`);
    await this.#run(undefined, async () => this.#native.seedDropout(seed));
  }

  /** The LoRA adapters' configuration, or null without adapters. */
  get lora(): LoraConfig | null {
    return this.#lora;
  }

  /**
   * Writes the adapters as PEFT does (adapter_config.json, adapter_model.safetensors with PEFT's tensor
   * names, float32; a learned sampler head as `diffpo.` extras): loadable by PEFT onto the base, and by
   * fromPretrained(dir). `baseModel`: what the config names as the base (default: the folder this
   * model was loaded from, as an absolute path).
   */
  async saveAdapter(dir: string, options: { baseModel?: string } = {}): Promise<void> {
    if (!this.#lora) throw new InvalidArgumentError('saveAdapter: this model has no LoRA adapters');
    const baseModel = objectArg('saveAdapter options', options).baseModel ?? this.sourceDir;
    if (!baseModel) throw new InvalidArgumentError('saveAdapter: this model was not loaded from a folder; pass options.baseModel (the base folder the adapter belongs to)');
    try {
      await mkdir(dir, { recursive: true });
    } catch (err) {
      throw new CheckpointError(`cannot create ${dir}: ${(err as Error).message}`, { cause: err });
    }
    const params = this.parameters();
    const tensors = this.#loraSpecs.map((s) => ({ name: s.name, shape: s.shape, data: params.get(s.name)! }));
    const lora = this.#lora;
    await this.#run(undefined, () => writeAdapter(dir, lora, baseModel, tensors, this.extras?.toTensors() ?? []));
  }

  /** Folds the adapters into the base weights ((alpha/r) B A added; rounded to BF16 for a BF16 model) and drops them: save() then writes a full model. */
  async mergeAdapters(): Promise<void> {
    if (!this.#lora) throw new InvalidArgumentError('mergeAdapters: this model has no LoRA adapters');
    await this.#run(undefined, async () => {
      await this.#native.mergeLora();
      this.#lora = null;
      this.#loraSpecs = [];
    });
  }

  /**
   * Saves config.json and model.safetensors (F32 or BF16, rounded to nearest even; the extras in
   * float64) into dir; with `shards` > 1, Hugging Face's sharded layout with its index.
   */
  async save(dir: string, options: { dtype?: 'f32' | 'bf16'; shards?: number } = {}): Promise<void> {
    const dtype = objectArg('save options', options).dtype ?? 'f32';
    const shards = options.shards ?? 1;
    if (dtype !== 'f32' && dtype !== 'bf16') throw new InvalidArgumentError(`dtype must be 'f32' or 'bf16', got ${String(dtype)}`);
    if (typeof dir !== 'string' || dir === '') throw new InvalidArgumentError(`save needs a directory path, got ${JSON.stringify(dir) ?? String(dir)}`);
    try {
      await mkdir(dir, { recursive: true });
    } catch (err) {
      throw new CheckpointError(`cannot create ${dir}: ${(err as Error).message}`, { cause: err });
    }
    const extras = this.extras?.toTensors() ?? [];
    await this.#run(undefined, () => saveCheckpoint(dir, this.config, this.#native, this.#specs, dtype, extras, shards));
  }

  /** Total number of parameters (of the base model, adapters not counted). */
  get numParameters(): number {
    return this.#specs.reduce((a, s) => a + s.numel, 0);
  }

  /** Number of trainable parameters: the base's, or with LoRA the adapters'. */
  get numTrainable(): number {
    return this.#lora ? this.#loraSpecs.reduce((a, s) => a + s.numel, 0) : this.numParameters;
  }

  /**
   * What trains, keyed by name, as zero-copy views of the native tensors: the weights (HF names;
   * float32 models, a BF16-resident model's are in parameterBits()), or with LoRA the adapters
   * (PEFT's names, float32 on any base).
   */
  parameters(): Map<string, Float32Array> {
    this.#live();
    if (this.#lora) return this.#views((i) => this.#native.loraBuffer(i), this.#loraSpecs);
    if (this.dtype !== 'f32')
      throw new InvalidArgumentError(`parameters() views float32 weights, but this model keeps them in BF16 (inference only): use parameterBits(), or load with dtype 'f32'`);
    return this.#views((i) => this.#native.paramBuffer(i));
  }

  /** A BF16-resident model's tensors as zero-copy views of their raw BF16 bits (the high halves of float32s). */
  parameterBits(): Map<string, Uint16Array> {
    this.#live();
    if (this.dtype !== 'bf16') throw new InvalidArgumentError(`parameterBits() views BF16 weights, but this model keeps them in float32: use parameters()`);
    const map = new Map<string, Uint16Array>();
    this.#specs.forEach((s, i) => map.set(s.name, new Uint16Array(this.#native.paramBuffer(i))));
    return map;
  }

  /** The gradients, keyed like parameters(), as zero-copy views (they accumulate until zeroGrad()). */
  gradients(): Map<string, Float32Array> {
    this.#live();
    return this.#views((i) => this.#native.gradBuffer(i), this.#lora ? this.#loraSpecs : this.#specs);
  }

  /** Every gradient as one zero-copy view, in the parameter block's layout (what a data-parallel all-reduce sums). */
  flatGradients(): Float32Array {
    this.#live();
    try {
      return new Float32Array(this.#native.gradBuffer());
    } catch (err) {
      throw fromNativeError(err);
    }
  }

  /** Fresh AdamW moments for one optimizer (each optimizer owns its own). */
  createMoments(): OptimizerMoments {
    this.#live();
    let m: ArrayBuffer, v: ArrayBuffer;
    try {
      [m, v] = this.#native.newMoments();
    } catch (err) {
      throw fromNativeError(err);
    }
    return { m: new Float32Array(m), v: new Float32Array(v) };
  }

  /** One AdamW update of every parameter from the accumulated gradients; returns the gradient norm before clipping. */
  adamwStep(moments: OptimizerMoments, update: AdamWUpdate, signal?: AbortSignal): Promise<number> {
    objectArg('adamwStep update', update);
    if (!(objectArg('adamwStep moments', moments).m instanceof Float32Array) || !(moments.v instanceof Float32Array)) throw new InvalidArgumentError('adamwStep moments must be the {m, v} of model.createMoments()');
    return this.#run(signal, () => this.#native.adamwStep(update, moments.m.buffer as ArrayBuffer, moments.v.buffer as ArrayBuffer));
  }

  /** Sets every gradient to zero. */
  async zeroGrad(): Promise<void> {
    await this.#run(undefined, async () => this.#native.zeroGrad());
  }

  /** Logits of shape (batch, seqLen, embedding_size), row-major. */
  async logits(tokens: Int32Array, options: ForwardOptions): Promise<Float32Array> {
    const { batch, seqLen } = objectArg('logits options', options);
    const input = this.#ownForward(tokens, options);
    const out = new Float32Array(batch * seqLen * this.config.embedding_size);
    await this.#run(options.signal, () => this.#native.logits(input, out));
    return out;
  }

  /** Final hidden states (after the last RMSNorm), (batch, seqLen, d_model) row-major. */
  async hiddenStates(tokens: Int32Array, options: ForwardOptions): Promise<Float32Array> {
    const { batch, seqLen } = objectArg('hiddenStates options', options);
    const input = this.#ownForward(tokens, options);
    const out = new Float32Array(batch * seqLen * this.config.d_model);
    await this.#run(options.signal, () => this.#native.hidden(input, out));
    return out;
  }

  /** Private copies of a forward's inputs, then checked: the native work reads them later on another thread, where a caller's change must not reach. */
  #ownForward(tokens: Int32Array, options: { batch: number; seqLen: number; attentionMask?: Uint8Array; positions?: Int32Array }) {
    const { batch, seqLen } = options;
    const input = { tokens: own(tokens), attentionMask: own(options.attentionMask) ?? null, positions: own(options.positions) ?? null, batch, seqLen };
    this.checkTokens(input.tokens, batch, seqLen, input.attentionMask ?? undefined, input.positions ?? undefined);
    return input;
  }

  /**
   * Log-probabilities of chosen tokens at chosen positions in one forward pass, and optionally the
   * gradient of loss = -sum_s weights[s] * logp[s]. Every likelihood estimator is built on this.
   */
  async selectedLogProbs(input: SelectedLogProbsInput, options: BackwardOption = {}): Promise<{ loss: number; logProbs: Float32Array }> {
    const forward = this.#ownForward(objectArg('selectedLogProbs input', input).tokens, input);
    const { batch, seqLen } = input;
    const [rows, targets] = [own(input.rows), own(input.targets)];
    if (!(rows instanceof Int32Array) || !(targets instanceof Int32Array))
      throw new InvalidArgumentError('rows and targets must be Int32Arrays');
    if (rows.length !== targets.length) throw new InvalidArgumentError(`rows.length (${rows.length}) != targets.length (${targets.length})`);
    const weights = own(input.weights) ?? new Float32Array(rows.length).fill(1);
    if (!(weights instanceof Float32Array) || weights.length !== rows.length)
      throw new InvalidArgumentError(`weights must be a Float32Array of length ${rows.length}`);
    for (let s = 0; s < rows.length; s++) {
      if (rows[s]! < 0 || rows[s]! >= batch * seqLen)
        throw new InvalidArgumentError(`rows[${s}] = ${rows[s]} is outside [0, batch*seqLen=${batch * seqLen})`);
      if (targets[s]! < 0 || targets[s]! >= this.config.vocab_size)
        throw new InvalidArgumentError(`targets[${s}] = ${targets[s]} is outside [0, vocab_size=${this.config.vocab_size})`);
      if (!Number.isFinite(weights[s]!)) throw new InvalidArgumentError(`weights[${s}] is not finite`);
    }
    const adapters = input.adapters ?? true;
    if (typeof adapters !== 'boolean') throw new InvalidArgumentError(`adapters must be a boolean, got ${String(adapters)}`);
    const logProbs = new Float32Array(rows.length);
    const loss = await this.#run(
      options.signal,
      () =>
      this.#native.logprobLoss({
        ...forward,
        rows,
        targets,
        weights,
        logProbs,
        backward: options.backward ?? false,
      }),
      adapters,
    );
    return { loss, logProbs };
  }

  /** A native decoder over these prompts; its calls run on this model's queue. */
  async createDecoder(prompts: Int32Array[], options: DecoderOptions, signal?: AbortSignal): Promise<DecoderSession> {
    // private copies, checked: the native decoder is created later, when the queue reaches it
    const mine = Array.isArray(prompts) ? prompts.map(own) : prompts;
    const opts = { ...options, threshold: own(options.threshold), maxNfe: own(options.maxNfe) };
    if (!Array.isArray(mine) || !mine.every((p) => p instanceof Int32Array)) throw new InvalidArgumentError('prompts must be an array of Int32Array');
    const V = this.config.vocab_size;
    mine.forEach((p, b) => {
      const bad = p.findIndex((t) => t < 0 || t >= V);
      if (bad >= 0) throw new InvalidArgumentError(`prompt ${b}: token id ${p[bad]} at index ${bad} is outside [0, vocab_size=${V})`);
    });
    const id = await this.#run(signal, async () => this.#native.decoderCreate(mine, opts));
    return {
      step: (s) => this.#run(s, () => this.#native.decoderStep(id)),
      firstForwardFeatures: (s) => this.#run(s, () => this.#native.decoderFeatures(id)),
      setThresholds: (threshold) => this.#run(undefined, async () => this.#native.decoderSetThresholds(id, own(threshold))),
      trace: () => this.#run(undefined, async () => this.#native.decoderTrace(id)),
      result: () => this.#run(undefined, async () => this.#native.decoderResult(id)),
      free: () => this.#run(undefined, async () => this.#native.decoderFree(id)),
    };
  }

  /**
   * Frees the native model and its memory now (a call in flight is cancelled first). Views from
   * parameters(), gradients() and createMoments() are detached (length 0): copy what must outlive it.
   */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#native.dispose();
  }

  get disposed(): boolean {
    return this.#disposed;
  }

  /** The model's own random stream (mask sampling when a call gives no seed). */
  get rng(): Rng {
    return this.#rng;
  }

  #live(): void {
    if (this.#disposed) throw new DisposedError();
  }

  // One buffer per tensor: Node cannot view a native block over 4 GiB (a 1.25B-parameter model's).
  #views(buffer: (index: number) => ArrayBuffer, specs = this.#specs): Map<string, Float32Array> {
    const map = new Map<string, Float32Array>();
    try {
      specs.forEach((s, i) => map.set(s.name, new Float32Array(buffer(i))));
    } catch (err) {
      throw fromNativeError(err);
    }
    return map;
  }

  /** Throws an InvalidArgumentError naming the first bad input of a forward (ids, shapes, mask, positions). */
  checkTokens(tokens: Int32Array, batch: number, seqLen: number, attentionMask?: Uint8Array, positions?: Int32Array): void {
    if (!(tokens instanceof Int32Array)) throw new InvalidArgumentError('tokens must be an Int32Array');
    positiveInt('batch', batch);
    positiveInt('seqLen', seqLen);
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

  /** Queues fn; with LoRA, its forwards apply the adapters unless `adapters` is false. */
  #run<T>(signal: AbortSignal | undefined, fn: () => Promise<T>, adapters = true): Promise<T> {
    checkSignal(signal);
    const task = async (): Promise<T> => {
      this.#live();
      if (signal?.aborted) throw new AbortError();
      if (this.#lora) this.#native.setAdapters(adapters);
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
