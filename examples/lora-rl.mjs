// DiFFPO with LoRA adapters on a frozen BF16 base, the way LLaDA-8B-Instruct trains on one GPU: the
// shipped countdown3 base loaded BF16-resident, rank-8 adapters (dropout 0.05) on d1's targets (q_proj, k_proj,
// v_proj, up_proj), a few RL steps whose KL reference is the base itself (the adapters switched off:
// no copy of the weights), then the adapters saved as a PEFT folder, loaded back onto their base and
// merged; last, what a step of LLaDA-8B would hold, full fine-tuning against LoRA, from memoryPlan.
// Run: node examples/lora-rl.mjs   (about 20 s on 2 cores)
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { DiffpoTrainer, DiffusionLM, countdown3Task, loadTestSet, memoryPlan, readModelFolder, resolveConfig } from 'diffpo';

const base = fileURLToPath(new URL('../models/countdown3-base', import.meta.url));
const { tokenizer, genLength } = await readModelFolder(base);
const task = countdown3Task();
const test = await loadTestSet(task);

const model = await DiffusionLM.fromPretrained(base, { dtype: 'auto' }); // the folder's BF16, as it is
await model.addLora({ rank: 8, dropout: 0.05, seed: 0 }); // d1's dropout
console.log(`${model.dtype} base of ${model.numParameters} parameters, ${model.numTrainable} trainable in the adapters`);
const rl = new DiffpoTrainer({ model, task, tokenizer, genLength, promptsPerStep: 8, groupSize: 4, innerIterations: 1, lr: 5e-4, seed: 0, rolloutThresholds: [0.7, 0.9, 0.95, 0.99], exclude: test.map((t) => task.key(t)) });
await rl.train({ steps: 3, onStep: (i) => console.log(`step ${i.step}: reward ${i.meanReward.toFixed(2)}, KL ${i.klMean.toExponential(2)}, NFE ${i.meanNfe.toFixed(2)}`) });
await rl.dispose();

// PEFT's adapter folder: adapter_config.json and adapter_model.safetensors, naming the base
const dir = mkdtempSync(join(tmpdir(), 'diffpo-lora-'));
await model.saveAdapter(dir);
console.log(`saved ${readdirSync(dir).sort().join(', ')}`);
const loaded = await DiffusionLM.fromPretrained(dir); // the base it names, then the adapters
const tokens = Int32Array.from({ length: 24 }, (_, i) => (i * 7) % 60);
const probe = { tokens, batch: 1, seqLen: 24, rows: Int32Array.from([20, 21, 22]), targets: Int32Array.from([1, 2, 3]) };
const [a, b] = [await model.selectedLogProbs(probe), await loaded.selectedLogProbs(probe)];
console.log(`reloaded adapters score as trained: ${a.logProbs.every((v, i) => v === b.logProbs[i])}`);
await loaded.mergeAdapters(); // the base with (alpha/r) B A folded in: loaded.save() writes a full model
console.log(`merged: adapters ${loaded.lora === null ? 'gone' : 'left'}`);
model.dispose();
loaded.dispose();

// LLaDA-8B at d1's per-device batch (6 sequences of 456 tokens) on a GPU
const llada = resolveConfig({ d_model: 4096, n_heads: 32, n_kv_heads: 32, n_layers: 32, mlp_hidden_size: 12288, vocab_size: 126464, embedding_size: 126464, rope_theta: 500000, mask_token_id: 126336 });
const shape = { batch: 6, seqLen: 456, backend: 'cuda' };
for (const [name, o] of [
  ['full fine-tuning, float32, with the reference copy', { ...shape, reference: true }],
  ['LoRA rank 128 on a BF16 base', { ...shape, weights: 'bf16', lora: { rank: 128 } }],
  ['LoRA rank 128 on a BF16 base, checkpointing', { ...shape, weights: 'bf16', lora: { rank: 128 }, checkpointing: 'layer' }],
])
  console.log(`LLaDA-8B, ${name}: ${(memoryPlan(llada, o).total / 2 ** 30).toFixed(1)} GiB`);
