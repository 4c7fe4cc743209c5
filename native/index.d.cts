// Types of the native addon (see native/bindings.cc). The typed API in lib/ wraps these.
export interface NativeTensorSpec {
  name: string;
  shape: number[];
  offset: number;
  numel: number;
}
export interface NativeConfig {
  d_model: number;
  n_heads: number;
  n_kv_heads: number;
  n_layers: number;
  mlp_hidden_size: number;
  vocab_size: number;
  embedding_size: number;
  mask_token_id: number;
  rope_theta: number;
  rms_norm_eps: number;
  weight_tying: boolean;
  scale_logits: boolean;
  input_emb_norm: boolean;
}
export interface NativeAdamWStep {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** Gradients are multiplied by this first (accumulation). */
  gradScale: number;
  /** 1-based step, for bias correction. */
  t: number;
  /** Clip the global gradient norm to this; 0 disables clipping. */
  maxGradNorm: number;
}
export interface NativeTensorRead {
  file: string;
  byteOffset: number;
  count: number;
  dtype: 0 | 1 | 2;
  dstOffset: number;
}
/** Handle of a native decoder (freed by decoderFree or with the model). */
export type NativeDecoder = number;
export interface NativeDecoderOptions {
  genLength: number;
  blockLength: number;
  temperature: number;
  seed: number;
  /** Index of the first prompt in a larger batch: sequence b draws the noise stream of firstSequence + b. */
  firstSequence: number;
  strategy: 'steps' | 'threshold' | 'factor' | 'entropy';
  steps: number;
  randomRemasking: boolean;
  /** One threshold (or entropy bound gamma) per sequence. */
  threshold: Float32Array;
  factor: number;
  maxNfe: Int32Array;
  compact: boolean;
  cache: 'none' | 'prefix' | 'dual';
}
/** The inputs of a forward: ids (batch*seqLen), optional key-padding mask and RoPE positions. */
export interface NativeBatch {
  tokens: Int32Array;
  attentionMask: Uint8Array | null;
  positions: Int32Array | null;
  batch: number;
  seqLen: number;
}
export interface NativeLogprobLoss extends NativeBatch {
  rows: Int32Array;
  targets: Int32Array;
  weights: Float32Array;
  logProbs: Float32Array | null;
  backward: boolean;
}
export declare class NativeModel {
  /** weights: 'f32' (trainable) or 'bf16' (BF16-resident, inference only). */
  /** device: the CUDA device of a cuda backend (default 0). */
  constructor(config: NativeConfig, threads: number, backend: 'cpu' | 'reference' | 'cuda' | 'cuda-fp32', weights?: 'f32' | 'bf16', device?: number);
  weightsDtype(): 'f32' | 'bf16';
  setCheckpointing(on: boolean): void;
  arenaBytes(): number;
  tensors(): NativeTensorSpec[];
  /** One tensor's bytes (by index in tensors()), or the whole block (refused over 4 GiB). */
  paramBuffer(tensor?: number): ArrayBuffer;
  /** The gradients of what trains: the parameters (indexed as tensors()), or with LoRA the adapters (as loraTensors()). */
  gradBuffer(tensor?: number): ArrayBuffer;
  /** LoRA adapters on every block's targets (bit t: q_proj, k_proj, v_proj, attn_out, ff_proj, up_proj, ff_out), A from the seed, B zero; the base is frozen from then on. */
  addLora(spec: { rank: number; alpha: number; targets: number; dropout: number }, seed: number): void;
  /** LoRA dropout's masks from here on: keyed by (seed; layer and target, training forward since this call, row, column). */
  seedDropout(seed: number): void;
  /** The adapters' tensors in PEFT's names (empty without LoRA). */
  loraTensors(): NativeTensorSpec[];
  loraBuffer(tensor?: number): ArrayBuffer;
  /** Whether forwards apply the adapters (off: the base model). */
  setAdapters(on: boolean): void;
  /** Folds the adapters into the base weights and drops them. */
  mergeLora(): Promise<void>;
  /** Zeroed AdamW moments [m, v] in the model's memory, owned by the caller (pass them to adamwStep). */
  newMoments(): [ArrayBuffer, ArrayBuffer];
  initRandom(seed: number, std: number): void;
  zeroGrad(): void;
  hidden(input: NativeBatch, out: Float32Array): Promise<void>;
  logits(input: NativeBatch, out: Float32Array): Promise<void>;
  logprobLoss(input: NativeLogprobLoss): Promise<number>;
  adamwStep(step: NativeAdamWStep, m: ArrayBuffer, v: ArrayBuffer): Promise<number>;
  loadTensors(reads: NativeTensorRead[]): Promise<void>;
  saveSafetensors(path: string, header: string, writes: { srcOffset: number; count: number }[], dtype: 0 | 2): Promise<void>;
  decoderCreate(prompts: Int32Array[], options: NativeDecoderOptions): NativeDecoder;
  decoderStep(decoder: NativeDecoder): Promise<boolean>;
  /** The first forward and the learned sampler's 8 features per sequence from it (B x 8); the first step selects from that forward. */
  decoderFeatures(decoder: NativeDecoder): Promise<Float32Array>;
  decoderSetThresholds(decoder: NativeDecoder, threshold: Float32Array): void;
  decoderTrace(decoder: NativeDecoder): { sequence: Int32Array; position: Int32Array; token: Int32Array; confidence: Float32Array };
  decoderResult(decoder: NativeDecoder): {
    tokens: Int32Array;
    nfe: Int32Array;
    decodeStep: Int32Array;
    behaviourLogProb: Float32Array;
    hitBudget: Uint8Array;
  };
  decoderFree(decoder: NativeDecoder): void;
  cancel(): void;
  dispose(): void;
}
/** What this build can run on: the CPU flavour reports no devices. */
export declare function backendInfo(): { flavour: 'cpu' | 'cuda'; devices: number; name?: string; reason: string };
/** The tensors a model of this config would have (names, shapes, offsets in the parameter block), allocating nothing. */
export declare function tensorLayout(config: NativeConfig): NativeTensorSpec[];
/** MPI, loaded from the system on first call (collective/mpi_world.cc); throws ERR_MPI when it cannot be. */
export declare function mpiInit(): { rank: number; size: number; library: string; version: string };
/** In-place sum over all ranks, in messages of at most bucketElements elements. */
export declare function mpiAllReduceSum(data: Float32Array | Float64Array, bucketElements: number): Promise<void>;
/** Root's bytes into every rank's array. */
export declare function mpiBroadcast(data: ArrayBufferView, root: number): Promise<void>;
export declare function mpiBarrier(): Promise<void>;
/** MPI_Abort: ends every rank of the job with this exit code. */
export declare function mpiAbort(code: number): never;
export declare function mpiFinalize(): void;
/** The CUDA flavour of the addon (same exports, with backend 'cuda'), or null and why. */
export declare function loadCuda(): { addon: (typeof import('./index.cjs')) | null; reason: string };
export declare const path: string;
