import native from 'diffpo/native';

import { BackendUnavailableError, InvalidArgumentError } from '../core/errors.js';

/**
 * Where a model computes: 'cpu' (the default: bit-reproducible across machines), 'cuda' (an NVIDIA
 * GPU; tensor-core GEMMs with bf16 inputs and fp32 accumulation), 'cuda-fp32' (the GPU with fp32
 * GEMMs), 'auto' (CUDA when the CUDA flavour is installed and a device is present, else the CPU), or
 * 'reference' (plain loops, for parity tests).
 */
export type BackendName = 'auto' | 'cpu' | 'cuda' | 'cuda-fp32' | 'reference';

type Addon = typeof native;

export interface BackendStatus {
  /** Whether a CUDA device can be used, and its name, or why not. */
  cuda: { available: boolean; device?: string; reason: string };
}

function cudaAddon(): { addon: Addon | null; reason: string } {
  const { addon, reason } = native.loadCuda();
  if (!addon) return { addon: null, reason };
  const info = addon.backendInfo();
  return info.devices > 0 ? { addon, reason: '' } : { addon: null, reason: info.reason };
}

/** What this installation can run on. */
export function backendStatus(): BackendStatus {
  const { addon, reason } = cudaAddon();
  return { cuda: addon ? { available: true, device: addon.backendInfo().name, reason: '' } : { available: false, reason } };
}

/** The addon and native backend name for a requested backend; throws when it cannot run here. */
export function resolveBackend(name: BackendName = 'cpu'): { addon: Addon; backend: 'cpu' | 'reference' | 'cuda' | 'cuda-fp32' } {
  if (!['auto', 'cpu', 'cuda', 'cuda-fp32', 'reference'].includes(name))
    throw new InvalidArgumentError(`backend must be 'auto', 'cpu', 'cuda', 'cuda-fp32' or 'reference', got ${String(name)}`);
  if (name === 'cpu' || name === 'reference') return { addon: native, backend: name };
  const { addon, reason } = cudaAddon();
  if (addon) return { addon, backend: name === 'auto' ? 'cuda' : name };
  if (name === 'auto') return { addon: native, backend: 'cpu' };
  throw new BackendUnavailableError(`backend '${name}' is not available: ${reason}`);
}
