// Types of copy-task.mjs.
import type { Task } from 'diffpo';

export declare const copy4: Task<string>;
export declare const reverse4: Task<string>;
export declare const easyHard: Task<string>;
export declare const TINY: { vocab_size: number; d_model: number; n_heads: number; n_layers: number; mlp_hidden_size: number; rope_theta: number };
