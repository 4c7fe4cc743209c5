import type { NativeConfig } from 'diffpo/native';

import { ConfigError } from '../core/errors.js';

/**
 * A LLaDA `config.json` (the keys of LLaDA-8B's Hugging Face checkpoint): the keys the native model
 * reads (NativeConfig) and the rest. Keys the model does not read are kept as they are, so a saved
 * config round-trips.
 */
export interface LLaDAConfig extends NativeConfig {
  eos_token_id: number;
  pad_token_id: number;
  max_sequence_length: number;
  block_type: string;
  activation_type: string;
  layer_norm_type: string;
  rope: boolean;
  alibi: boolean;
  include_bias: boolean;
  include_qkv_bias: boolean;
  attention_layer_norm: boolean;
  block_group_size: number;
  [key: string]: unknown;
}

/** The architectural switches: the only values the model implements; anything else is rejected by name. */
const ARCHITECTURE = {
  block_type: 'llama',
  activation_type: 'silu',
  layer_norm_type: 'rms',
  rope: true,
  alibi: false,
  include_bias: false,
  include_qkv_bias: false,
  attention_layer_norm: false,
  block_group_size: 1,
} as const;

/**
 * Defaults for keys a partial config leaves out: those of LLaDA's configuration class, so a config.json
 * that omits a key means what it means to LLaDA's own code (rope_theta 10000 there; LLaDA-8B's
 * config.json states its 500000 explicitly).
 */
export const CONFIG_DEFAULTS = {
  rope_theta: 10000,
  rms_norm_eps: 1e-5,
  weight_tying: false,
  scale_logits: false,
  input_emb_norm: false,
  max_sequence_length: 4096,
  ...ARCHITECTURE,
} as const;

/** Size presets used by the tests, the benchmark and the CLI (vocab 64 with the last id the mask). */
export const PRESETS = {
  tiny: { vocab_size: 64, d_model: 128, n_layers: 4, n_heads: 4, mlp_hidden_size: 512 },
  small: { vocab_size: 64, d_model: 256, n_layers: 6, n_heads: 8, mlp_hidden_size: 1024 },
  medium: { vocab_size: 512, d_model: 512, n_layers: 8, n_heads: 8, mlp_hidden_size: 2048 },
} as const;
export type PresetName = keyof typeof PRESETS;

export type ConfigInput = Partial<LLaDAConfig> &
  Pick<LLaDAConfig, 'd_model' | 'n_heads' | 'n_layers' | 'mlp_hidden_size' | 'vocab_size'>;

function positiveInt(cfg: Record<string, unknown>, key: string): number {
  const v = cfg[key];
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0 || v > 2 ** 31 - 1)
    throw new ConfigError(key, `config.${key} must be a positive integer, got ${JSON.stringify(v)}`);
  return v;
}
function idInRange(cfg: Record<string, unknown>, key: string, vocab: number): void {
  const v = cfg[key];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v >= vocab)
    throw new ConfigError(key, `config.${key} must be a token id in [0, ${vocab}), got ${JSON.stringify(v)}`);
}
function positiveNumber(cfg: Record<string, unknown>, key: string): void {
  const v = cfg[key];
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0)
    throw new ConfigError(key, `config.${key} must be a positive number, got ${JSON.stringify(v)}`);
}
function bool(cfg: Record<string, unknown>, key: string): void {
  if (typeof cfg[key] !== 'boolean') throw new ConfigError(key, `config.${key} must be a boolean, got ${JSON.stringify(cfg[key])}`);
}

/**
 * Fills defaults (n_kv_heads = n_heads, embedding_size = vocab_size, mask = last id, EOS/pad = the id
 * before it) and validates. Throws ConfigError naming the first bad key.
 */
export function resolveConfig(input: ConfigInput | Record<string, unknown>): LLaDAConfig {
  if (input === null || typeof input !== 'object') throw new ConfigError('config', 'config must be an object');
  const raw = input as Record<string, unknown>;
  const vocab = positiveInt(raw, 'vocab_size');
  const cfg: Record<string, unknown> = {
    ...CONFIG_DEFAULTS,
    n_kv_heads: raw.n_heads,
    embedding_size: vocab,
    mask_token_id: vocab - 1,
    eos_token_id: vocab - 2,
    pad_token_id: vocab - 2,
    ...raw,
  };
  for (const [key, want] of Object.entries(ARCHITECTURE))
    if (cfg[key] !== want)
      throw new ConfigError(key, `config.${key} = ${JSON.stringify(cfg[key])} is not supported (only ${JSON.stringify(want)})`);
  const d = positiveInt(cfg, 'd_model');
  const h = positiveInt(cfg, 'n_heads');
  const kv = positiveInt(cfg, 'n_kv_heads');
  positiveInt(cfg, 'n_layers');
  positiveInt(cfg, 'mlp_hidden_size');
  positiveInt(cfg, 'max_sequence_length');
  const e = positiveInt(cfg, 'embedding_size');
  if (d % h !== 0) throw new ConfigError('n_heads', `config.n_heads = ${h} must divide d_model = ${d}`);
  if ((d / h) % 2 !== 0) throw new ConfigError('n_heads', `config.d_model / n_heads = ${d / h} must be even (RoPE)`);
  if (h % kv !== 0) throw new ConfigError('n_kv_heads', `config.n_kv_heads = ${kv} must divide n_heads = ${h}`);
  if (e < vocab) throw new ConfigError('embedding_size', `config.embedding_size = ${e} must be >= vocab_size = ${vocab}`);
  idInRange(cfg, 'mask_token_id', vocab);
  idInRange(cfg, 'eos_token_id', vocab);
  idInRange(cfg, 'pad_token_id', vocab);
  positiveNumber(cfg, 'rope_theta');
  positiveNumber(cfg, 'rms_norm_eps');
  for (const key of ['weight_tying', 'scale_logits', 'input_emb_norm']) bool(cfg, key);
  return cfg as LLaDAConfig;
}

/** A preset's config with the given overrides. */
export function presetConfig(name: PresetName, overrides: Partial<LLaDAConfig> = {}): LLaDAConfig {
  const preset = PRESETS[name];
  if (!preset) throw new ConfigError('preset', `unknown preset '${String(name)}' (one of ${Object.keys(PRESETS).join(', ')})`);
  return resolveConfig({ ...preset, rope_theta: 10000, max_sequence_length: 1024, ...overrides });
}
