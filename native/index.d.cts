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
  gradScale: number;
  t: number;
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
export interface NativeSamplerOptions {
  genLength: number;
  blockLength: number;
  temperature: number;
  seed: number;
  /** 0 steps, 1 threshold, 2 factor, 3 entropy */
  strategy: 0 | 1 | 2 | 3;
  steps: number;
  randomRemasking: boolean;
  threshold: Float32Array;
  factor: number;
  maxNfe: Int32Array;
  compact: boolean;
  /** 0 none, 1 prefix, 2 dual */
  cache: 0 | 1 | 2;
}
export interface CheckResult {
  forward: number;
  backward: Record<string, number>;
  referenceBackward: Record<string, number>;
}
export declare class NativeModel {
  constructor(config: NativeConfig, threads: number, backend: 'cpu' | 'reference' | 'cuda' | 'cuda-fp32');
  tensors(): NativeTensorSpec[];
  paramBuffer(): ArrayBuffer;
  gradBuffer(): ArrayBuffer;
  optimizerBuffers(): [ArrayBuffer, ArrayBuffer];
  initRandom(seed: number, std: number): void;
  zeroGrad(): void;
  hidden(ids: Int32Array, keymask: Uint8Array | null, positions: Int32Array | null, batch: number, seqLen: number, out: Float32Array): Promise<void>;
  logits(ids: Int32Array, keymask: Uint8Array | null, positions: Int32Array | null, batch: number, seqLen: number, out: Float32Array): Promise<void>;
  logprobLoss(
    ids: Int32Array,
    keymask: Uint8Array | null,
    positions: Int32Array | null,
    batch: number,
    seqLen: number,
    rows: Int32Array,
    targets: Int32Array,
    weights: Float32Array,
    logpOut: Float32Array | null,
    backward: boolean,
  ): Promise<number>;
  adamwStep(step: NativeAdamWStep): Promise<number>;
  loadTensors(reads: NativeTensorRead[]): Promise<void>;
  saveSafetensors(path: string, header: string, writes: { srcOffset: number; count: number }[], dtype: 0 | 2): Promise<void>;
  decoderCreate(prompts: Int32Array[], options: NativeSamplerOptions): NativeDecoder;
  decoderStep(decoder: NativeDecoder): Promise<boolean>;
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
export declare function opCheckNames(): string[];
export declare function opCheck(op: string, seed: number): CheckResult;
export declare function modelCheck(config: NativeConfig, seed: number): CheckResult;
export declare function referenceLogProbs(
  config: NativeConfig,
  params: Float64Array,
  ids: Int32Array,
  keymask: Uint8Array | null,
  positions: Int32Array | null,
  batch: number,
  seqLen: number,
  rows: Int32Array,
  targets: Int32Array,
): Float64Array;
export declare function gemmBench(m: number, n: number, k: number, threads: number, reps: number, kernel: 'auto' | 'portable'): number;
export declare function fmaPeak(threads: number, seconds: number): number;
export declare const gemmKernel: string;
/** What this build can run on: the CPU flavour reports no devices. */
export declare function backendInfo(): { flavour: 'cpu' | 'cuda'; devices: number; name?: string; reason: string };
/** The CUDA flavour of the addon (same exports, with backend 'cuda'), or null and why. */
export declare function loadCuda(): { addon: (typeof import('./index.cjs')) | null; reason: string };
export declare const path: string;
