// The test addon (build/Release/testing/diffpo_testing.node, native/testing_bindings.cc): self-checks that the
// product addon does not ship.
import { createRequire } from 'node:module';

import type { NativeConfig } from 'diffpo/native';

export interface CheckResult {
  forward: number;
  backward: Record<string, number>;
  referenceBackward: Record<string, number>;
}

export interface NativeTesting {
  /** The op case table's names, and 'gemm' (the CPU GEMM kernels). */
  opCheckNames(): string[];
  /** The op-list methods a case calls. */
  opCaseCovers(name: string): string[];
  opCheck(op: string, seed: number): CheckResult;
  modelCheck(config: NativeConfig, seed: number): CheckResult;
  referenceLogProbs(
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
  gemmBench(m: number, n: number, k: number, threads: number, reps: number, kernel: 'auto' | 'portable'): number;
  fmaPeak(threads: number, seconds: number): number;
  gemmKernel: string;
}

// DIFFPO_TESTING_NATIVE_PATH: another build of it (the sanitizer run, scripts/test-asan.sh)
export const testing = createRequire(import.meta.url)(process.env.DIFFPO_TESTING_NATIVE_PATH ?? '../../build/Release/testing/diffpo_testing.node') as NativeTesting;
